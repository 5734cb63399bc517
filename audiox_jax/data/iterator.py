"""A deterministic, checkpointable batch iterator over a prepared cache, and a train/val split.

Conventions (stated once, here):

* Order: epoch ``e`` visits the items in ``default_rng([seed, e]).permutation(n)``
  (``arange(n)`` with ``shuffle=False``); global batch ``k`` of the epoch is positions
  ``k * batch_size .. (k + 1) * batch_size`` of that order. With ``drop_remainder`` the
  last partial batch is dropped, else it is yielded short.
* Processes: process ``p`` of ``P`` receives rows ``p * b .. (p + 1) * b`` of every global
  batch, ``b = batch_size // P`` (``batch_size`` must divide by ``P``); a short final
  batch is split with ``np.array_split`` (pieces differ by at most one row). The union
  over processes is the global batch, in order.
* State: ``{"seed", "epoch", "position", "n", "batch_size", "shuffle", "drop_remainder"}``
  where ``position`` counts global batches already yielded in ``epoch``. It does not
  depend on the process count, so a run can resume on a different topology.
* Batches are NumPy dicts keyed like the source: from a :class:`Cache`,
  ``{"mel": f32[b, n_mels, frames], "labels": i32[b, n_labels], "frames": i32[b]}``.
* Split: whole source files go to one side (clips of one recording never straddle
  train and val), stratified by the first label when there is one.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from audiox_jax.data.cache import Cache
from audiox_jax.errors import ParamError

STATE_KEYS = ("seed", "epoch", "position", "n", "batch_size", "shuffle", "drop_remainder")


def epoch_order(n: int, *, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """Positions i64[n] visited in ``epoch``: a permutation from ``default_rng([seed, epoch])``."""
    if not shuffle:
        return np.arange(n, dtype=np.int64)
    return np.random.default_rng([seed, epoch]).permutation(n).astype(np.int64)


def steps_per_epoch(n: int, batch_size: int, drop_remainder: bool) -> int:
    """Global batches per epoch."""
    return n // batch_size if drop_remainder else -(-n // batch_size)


def process_slice(batch: np.ndarray, process_index: int, process_count: int) -> np.ndarray:
    """This process's rows of a global batch (see the module docstring)."""
    return np.array_split(batch, process_count)[process_index]


class BatchIterator:
    """Endless (or ``epochs``-long) deterministic batches of a cache or of arrays.

    Args:
      data: a :class:`Cache`, or a mapping of arrays sharing a leading item axis N
        (e.g. ``{"mel": f32[N, n_mels, frames], "labels": i32[N, n_labels]}``).
      batch_size: global batch size (over all processes), e.g. 64.
      seed: the order's seed (explicit: there is no random default).
      shuffle: permute each epoch (False: item order, for evaluation).
      drop_remainder: drop each epoch's last partial batch.
      process_index, process_count: this process and how many share each batch.
      indices: i64[n] items to iterate over (e.g. from :func:`split`); None = all N.
      epochs: stop after this many epochs; None = never stop.
    """

    def __init__(
        self,
        data: Cache | Mapping[str, np.ndarray],
        batch_size: int,
        *,
        seed: int,
        shuffle: bool = True,
        drop_remainder: bool = True,
        process_index: int = 0,
        process_count: int = 1,
        indices: np.ndarray | None = None,
        epochs: int | None = None,
    ):
        arrays = _arrays(data)
        n_all = len(next(iter(arrays.values())))
        self.indices = np.arange(n_all, dtype=np.int64) if indices is None else np.asarray(indices, np.int64)
        n = len(self.indices)
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ParamError(f"seed={seed!r} must be a non-negative integer (it seeds default_rng([seed, epoch]))")
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ParamError(f"batch_size={batch_size!r} must be a positive integer")
        if process_count < 1 or not 0 <= process_index < process_count:
            raise ParamError(
                f"process_index={process_index} must be in [0, process_count={process_count}); "
                "use jax.process_index() and jax.process_count()"
            )
        if batch_size % process_count:
            raise ParamError(
                f"batch_size={batch_size} must be divisible by process_count={process_count}; "
                f"try batch_size={batch_size - batch_size % process_count or process_count}"
            )
        if steps_per_epoch(n, batch_size, drop_remainder) == 0:
            raise ParamError(
                f"batch_size={batch_size} is larger than the {n} items with drop_remainder=True; "
                f"lower batch_size or construct the BatchIterator with drop_remainder=False"
            )
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= n_all):
            raise ParamError(f"indices must lie in [0, {n_all}), got range [{self.indices.min()}, {self.indices.max()}]")
        self.arrays, self.batch_size, self.seed = arrays, int(batch_size), int(seed)
        self.shuffle, self.drop_remainder, self.epochs = bool(shuffle), bool(drop_remainder), epochs
        self.process_index, self.process_count = int(process_index), int(process_count)
        self.epoch, self.position = 0, 0
        self._order_epoch, self._order = -1, None

    @property
    def steps_per_epoch(self) -> int:
        return steps_per_epoch(len(self.indices), self.batch_size, self.drop_remainder)

    def global_batch(self, epoch: int, position: int) -> np.ndarray:
        """Item indices i64[<=batch_size] of global batch ``position`` in ``epoch`` (pure in its arguments)."""
        if epoch != self._order_epoch:
            self._order = epoch_order(len(self.indices), seed=self.seed, epoch=epoch, shuffle=self.shuffle)
            self._order_epoch = epoch
        return self.indices[self._order[position * self.batch_size : (position + 1) * self.batch_size]]

    def __iter__(self) -> "BatchIterator":
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self.epochs is not None and self.epoch >= self.epochs:
            raise StopIteration
        rows = process_slice(self.global_batch(self.epoch, self.position), self.process_index, self.process_count)
        self.position += 1
        if self.position == self.steps_per_epoch:
            self.epoch, self.position = self.epoch + 1, 0
        return {k: np.asarray(v[rows]) for k, v in self.arrays.items()}

    def state(self) -> dict:
        """JSON-serialisable position of the stream (see the module docstring)."""
        return {
            "seed": self.seed, "epoch": self.epoch, "position": self.position, "n": int(len(self.indices)),
            "batch_size": self.batch_size, "shuffle": self.shuffle, "drop_remainder": self.drop_remainder,
        }

    def restore(self, state: Mapping) -> None:
        """Continue from ``state()``: the next batches are those that followed it.

        Raises:
          ParamError: the state is from a stream with another seed, size, batch size or order.
        """
        missing = [k for k in STATE_KEYS if k not in state]
        if missing:
            raise ParamError(f"iterator state is missing keys {missing}; pass a dict from BatchIterator.state()")
        mine = self.state()
        for k in ("seed", "n", "batch_size", "shuffle", "drop_remainder"):
            if state[k] != mine[k]:
                raise ParamError(
                    f"iterator state has {k}={state[k]!r} but this iterator has {k}={mine[k]!r}; "
                    f"build the iterator with the same {k} to resume"
                )
        if not 0 <= int(state["position"]) < self.steps_per_epoch or int(state["epoch"]) < 0:
            raise ParamError(
                f"iterator state epoch={state['epoch']}, position={state['position']} is out of range "
                f"(0 <= position < {self.steps_per_epoch})"
            )
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


def _arrays(data) -> dict[str, np.ndarray]:
    if isinstance(data, Cache):
        return {"mel": data.mels, "labels": data.labels, "frames": data.frames}
    if not isinstance(data, Mapping) or not data:
        raise ParamError(f"data must be a Cache or a non-empty mapping of arrays, got {type(data).__name__}")
    sizes = {k: len(v) for k, v in data.items()}
    if len(set(sizes.values())) != 1 or 0 in sizes.values():
        raise ParamError(f"data arrays must share a non-zero leading item axis, got lengths {sizes}")
    return dict(data)


def split(cache: Cache, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic train/val item indices (i64, sorted), whole files to one side.

    In each class of the first label (or over all files when unlabelled),
    ``round(val_fraction * files in class)`` files, chosen with ``default_rng([seed, class])``,
    go to val; so ``val_fraction`` is a fraction of files, not of clips.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ParamError(f"val_fraction={val_fraction!r} must be in [0, 1); try val_fraction=0.1")
    files, first = np.unique(cache.file_index, return_index=True)
    klass = cache.labels[first, 0] if cache.labels.shape[1] else np.zeros(len(files), np.int32)
    val_files = []
    for c in np.unique(klass):
        members = files[klass == c]
        k = int(round(val_fraction * len(members)))
        val_files.append(np.random.default_rng([seed, int(c)]).permutation(members)[:k])
    is_val = np.isin(cache.file_index, np.concatenate(val_files))
    return np.flatnonzero(~is_val).astype(np.int64), np.flatnonzero(is_val).astype(np.int64)
