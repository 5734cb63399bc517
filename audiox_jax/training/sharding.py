"""Device layout for training: a 1-D ``data`` mesh, state shardings, and batches on devices.

Two layouts, same maths (see :mod:`audiox_jax.training.step`):

* ``jit``: a ``Mesh`` over every device (all hosts) with one axis, ``"data"``. The batch's
  leading axis is sharded over it; the state is replicated, or with ``train.fsdp`` every
  state leaf of at least ``FSDP_MIN_SIZE`` elements is sharded along its largest axis
  that divides the device count (params, EMA and Adam moments alike; XLA inserts the
  all-gathers). Each host passes its own rows of the global batch
  (``jax.make_array_from_process_local_data``).
* ``pmap``: the state is replicated on this host's devices (leading axis = local
  devices) and each host's batch is reshaped to ``[local_devices, per_device, ...]``.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from audiox_jax.errors import ParamError

AXIS = "data"
FSDP_MIN_SIZE = 2**12  # smaller leaves (biases, norms, step counters) stay replicated


def make_mesh(devices=None) -> Mesh:
    """A 1-D mesh with axis ``"data"`` over ``devices`` (default: every device of every host)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (AXIS,))


def check_batch(micro_batch: int, mesh: Mesh, parallel: str) -> None:
    """The global micro-batch must split evenly over processes and devices."""
    n = mesh.devices.size
    if micro_batch % n:
        raise ParamError(
            f"the micro-batch data.batch_size / train.grad_accum = {micro_batch} must be divisible by the "
            f"{n} devices ({parallel} data parallelism); try data.batch_size={max(n, micro_batch - micro_batch % n)} "
            "times train.grad_accum"
        )


def state_shardings(abstract_state: Any, mesh: Mesh, fsdp: bool) -> Any:
    """A NamedSharding per state leaf: replicated, or FSDP-sharded (see the module docstring)."""
    n = mesh.devices.size
    replicated = NamedSharding(mesh, P())

    def leaf(x):
        if not fsdp or x.size < FSDP_MIN_SIZE or n == 1:
            return replicated
        axes = sorted((a for a in range(x.ndim) if x.shape[a] % n == 0), key=lambda a: -x.shape[a])
        if not axes:
            return replicated
        spec = [None] * x.ndim
        spec[axes[0]] = AXIS
        return NamedSharding(mesh, P(*spec))

    return jax.tree.map(leaf, abstract_state)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (example) axis over ``"data"``."""
    return NamedSharding(mesh, P(AXIS))


def put_batch(batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
    """This host's rows of the global batch -> global jax.Arrays sharded on the example axis."""
    return {k: jax.make_array_from_process_local_data(sharding, np.ascontiguousarray(v)) for k, v in batch.items()}


def split_for_pmap(batch: dict[str, np.ndarray], n_local: int) -> dict[str, np.ndarray]:
    """[b, ...] -> [n_local, b / n_local, ...] (device-major: device d gets rows d*b/n ..)."""
    return {k: v.reshape(n_local, v.shape[0] // n_local, *v.shape[1:]) for k, v in batch.items()}


def replicate(tree: Any, devices=None) -> Any:
    """Copy a pytree onto each local device: leaves get a leading axis of size local devices (for pmap)."""
    devices = jax.local_devices() if devices is None else list(devices)
    sharding = NamedSharding(Mesh(np.asarray(devices), (AXIS,)), P(AXIS))

    def leaf(x):
        copies = [jax.device_put(x, d).reshape((1,) + x.shape) for d in devices]  # one per device
        return jax.make_array_from_single_device_arrays((len(devices),) + x.shape, sharding, copies)

    return jax.tree.map(leaf, tree)


def unreplicate(tree: Any) -> Any:
    """Device 0's copy of a pmap-replicated pytree."""
    return jax.tree.map(lambda x: x[0], tree)
