"""Cluster launcher for training: one process per host, same arguments as `audiox-jax train`.

    python train/train.py --config configs/base.yaml --workdir /ckpt/run1 [--set a.b=c ...]

On a multi-host cluster (JAX_COORDINATOR_ADDRESS set, or a SLURM / Open MPI job with more
than one task, or a Cloud TPU pod) it first calls ``jax.distributed.initialize()``, which
reads the coordinator, process count and id from that environment; then every process
runs the same training program: the batch is split over processes
(``data.BatchIterator``) and over all devices of all hosts (``train.parallel: jit``), and
Orbax writes each checkpoint once, cooperatively. Only process 0 writes logs and demos.
On one host it is exactly ``audiox-jax train``.
"""

from __future__ import annotations

import os
import sys


def multihost_env() -> bool:
    """True when the environment describes a multi-process job."""
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        return True
    for count in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
        if int(os.environ.get(count, "1") or 1) > 1:
            return True
    return "," in os.environ.get("TPU_WORKER_HOSTNAMES", "")


def main(argv: list[str] | None = None) -> int:
    import jax

    if multihost_env():
        jax.distributed.initialize()
    from audiox_jax import cli

    return cli.main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
