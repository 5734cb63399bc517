"""Training data: a prepared cache or the built-in synthetic set, labels matched to the model, model batches.

Sources (``data.cache``):

* a folder written by ``audiox-jax prepare`` (memory-mapped; its audio settings must
  equal ``config.audio``, since the model is saved with ``config.audio``);
* ``"synthetic"``: ``data.synthetic_size`` items of :func:`audiox_jax.data.synthetic.synthetic_dataset`
  (labels "kind" and "pitch"), ``data.clip_seconds`` long at ``audio.sr``, seeded by
  ``train.seed``, made in-process with the same front end and stats fit as ``prepare``.

Labels (:func:`resolve_labels`), explicitly:

* The model is conditioned on ``data.labels`` (names of label columns in the data), in
  that order. If ``data.labels`` is empty the names of ``model.labels`` are used; if both
  are empty the model is unconditional (the data's labels are ignored).
* ``model.labels`` empty: it is derived from the data, ``((name, len(vocab[name])), ...)``.
  ``model.labels`` given: its names must equal the label names above, in order, and each
  ``num_classes`` must be at least the data's vocabulary size.
* Class ids index the data's sorted vocabulary; the resolved config and the vocabulary are
  saved with every checkpoint and export, so generation maps names to the same ids.

Batches: :func:`model_batch` turns the iterator's NumPy batch into the step's input:
``x0 = audio.normalize(mel, stats)``, edge-padded in time to a multiple of the DiT patch
(the padded frames are dropped again at generation, see ``pipeline.shapes``), and
``length``: the item's content frames (``frames``: whole files padded to a common length
keep their real length; the step keeps the frames past it out of the loss).
"""

from __future__ import annotations

import dataclasses
import os
from typing import NamedTuple

import numpy as np

from audiox_jax.audio import MelStats, normalize
from audiox_jax.config import Config
from audiox_jax.data.cache import ShardedMels, load_cache
from audiox_jax.data.iterator import split
from audiox_jax.data.prepare import fit_stats, log_mel_items
from audiox_jax.data.synthetic import synthetic_dataset
from audiox_jax.errors import ParamError

SYNTHETIC = "synthetic"


class TrainData(NamedTuple):
    """A data set ready to train on.

    config: the run's config with ``model.labels`` and ``data.labels`` resolved.
    mels: f32[N, n_mels, frames] log-mel (np.ndarray or memory-mapped ShardedMels).
    labels: i32[N, n_labels] class ids in ``config.model.labels`` order.
    file_index: i32[N] into ``files``. files: a readable name per source file.
    offset_seconds: f32[N] start of each item in its file.
    frames: i32[N] content frames of each item (the rest of its ``mels`` frames is padding).
    stats: the log-mel normaliser. vocab: {label name: class names}, model labels only.
    train_idx, val_idx: i64 item indices of the split (whole files to one side).
    """

    config: Config
    mels: np.ndarray | ShardedMels
    labels: np.ndarray
    file_index: np.ndarray
    files: tuple[str, ...]
    offset_seconds: np.ndarray
    frames: np.ndarray
    stats: MelStats
    vocab: dict[str, tuple[str, ...]]
    train_idx: np.ndarray
    val_idx: np.ndarray

    def source(self, item: int) -> str:
        """Where item ``item`` comes from, e.g. ``"piano/C4.wav@1.50s"``."""
        return f"{self.files[int(self.file_index[item])]}@{float(self.offset_seconds[item]):.2f}s"


def resolve_labels(config: Config, names: tuple[str, ...], vocab: dict[str, tuple[str, ...]]
                   ) -> tuple[Config, list[int]]:
    """The config with its labels resolved against the data (module docstring), and the data's
    label columns to keep, in model order."""
    model_names = tuple(n for n, _ in config.model.labels)
    wanted = tuple(config.data.labels) or model_names
    missing = [n for n in wanted if n not in names]
    if missing:
        raise ParamError(f"data.labels {list(wanted)}: {missing} not in the data, whose labels are {list(names)}; "
                         "set data.labels to some of those")
    if config.model.labels:
        if model_names != wanted:
            raise ParamError(f"model.labels names {list(model_names)} differ from data.labels {list(wanted)}; "
                             "make them equal, or leave model.labels empty to derive it from the data")
        small = [(n, k, len(vocab[n])) for n, k in config.model.labels if k < len(vocab[n])]
        if small:
            n, k, v = small[0]
            raise ParamError(f"model.labels gives {n!r} {k} classes but the data has {v} ({list(vocab[n])[:8]}...); "
                             f"set it to >= {v}, or leave model.labels empty to derive it")
        model = config.model
    else:
        model = dataclasses.replace(config.model, labels=tuple((n, len(vocab[n])) for n in wanted))
    config = dataclasses.replace(config, model=model, data=dataclasses.replace(config.data, labels=wanted))
    return config, [names.index(n) for n in wanted]


def load_train_data(config: Config) -> TrainData:
    """The data named by ``config.data.cache`` (see the module docstring), split into train/val."""
    if config.model.n_mels != config.audio.n_mels:
        raise ParamError(f"model.n_mels={config.model.n_mels} differs from audio.n_mels={config.audio.n_mels}; "
                         "make them equal")
    if config.data.cache == SYNTHETIC:
        return _synthetic(config)
    return _cache(config)


def _cache(config: Config) -> TrainData:
    path = config.data.cache
    if not os.path.isdir(path):
        raise ParamError(f"data.cache={path!r} is not a folder; run `audiox-jax prepare --audio DIR --config C "
                         f"--out {path}` first, or set data.cache=synthetic")
    cache = load_cache(path, mmap=True)
    if cache.manifest.audio_config.features() != config.audio.features():
        cached, now = cache.manifest.audio_config.to_dict(), config.audio.to_dict()
        diffs = [f"audio.{k}: cache {cached[k]!r}, config {now[k]!r}" for k in now if cached[k] != now[k]]
        raise ParamError(f"data.cache={path!r} was prepared with other audio settings ({'; '.join(diffs)}); "
                         "re-run prepare with this config or use the cache's audio settings")
    names, vocab = tuple(cache.manifest.label_names), dict(cache.manifest.vocab)
    config, cols = resolve_labels(config, names, vocab)
    labels = np.ascontiguousarray(cache.labels[:, cols], np.int32).reshape(len(cache), len(cols))
    sr = cache.manifest.audio_config.sr
    if config.model.length_cond and not cache.manifest.clips.keep_whole:
        raise ParamError(f"model.length_cond is set but data.cache={path!r} holds fixed-length clips; "
                         "prepare it with data.whole_files=true (whole files padded to data.max_seconds)")
    return _finish(config, cache.mels, labels, cache.file_index.astype(np.int32),
                   tuple(f.path for f in cache.manifest.files), (cache.offset / sr).astype(np.float32),
                   np.asarray(cache.frames, np.int32), cache.stats, {n: vocab[n] for n in config.data.labels})


def _synthetic(config: Config) -> TrainData:

    n = config.data.synthetic_size
    audio, labels, vocab = synthetic_dataset(n, sr=config.audio.sr, seconds=config.data.clip_seconds,
                                             seed=config.train.seed)
    mels = log_mel_items(audio, config.audio)
    stats = fit_stats([mels], np.full(n, mels.shape[-1]), config.data.stats)
    names = tuple(labels)
    config, cols = resolve_labels(config, names, vocab)
    table = np.stack([labels[k] for k in names], axis=1).astype(np.int32)[:, cols]
    files = tuple(f"synthetic item {i} ({', '.join(f'{k}={vocab[k][labels[k][i]]}' for k in names)})"
                  for i in range(n))
    return _finish(config, mels, table, np.arange(n, dtype=np.int32), files, np.zeros(n, np.float32),
                   np.full(n, mels.shape[-1], np.int32), stats, {k: vocab[k] for k in config.data.labels})


def _finish(config, mels, labels, file_index, files, offsets, frames, stats, vocab) -> TrainData:
    data = TrainData(config, mels, labels, file_index, files, offsets, frames, stats, vocab,
                     np.arange(len(labels), dtype=np.int64), np.zeros(0, np.int64))
    train_idx, val_idx = split(data, config.data.val_fraction, config.train.seed)  # reads file_index, labels
    if len(train_idx) == 0:
        raise ParamError(f"data.val_fraction={config.data.val_fraction} leaves no training items; lower it")
    return data._replace(train_idx=train_idx, val_idx=val_idx)


def model_frames(frames: int, patch: int) -> int:
    """Frames rounded up to a multiple of the DiT patch."""
    return -(-frames // patch) * patch


def model_batch(mel: np.ndarray, labels: np.ndarray, stats: MelStats, patch: int,
                frames: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Log-mel f32[b, n_mels, frames] and labels i32[b, n_labels] -> the step's batch
    ``{"x0": f32[b, n_mels, model_frames], "labels": i32[b, n_labels], "length": i32[b]}``
    (see the module docstring). ``frames`` i32[b]: content frames per item (None: all)."""
    x0 = np.asarray(normalize(np.asarray(mel, np.float32), stats), np.float32)
    n = x0.shape[-1]
    pad = model_frames(n, patch) - n
    if pad:
        x0 = np.pad(x0, ((0, 0), (0, 0), (0, pad)), mode="edge")
    length = np.full(len(x0), n, np.int32) if frames is None else np.minimum(np.asarray(frames, np.int32), n)
    return {"x0": x0, "labels": np.asarray(labels, np.int32), "length": np.maximum(length, 1)}


def length_table(data: TrainData) -> dict | None:
    """Typical content lengths of the training items, saved with a whole-file model and used as
    the default sound length at generation: ``{"frames": median, "by_labels": {"i,j": median}}``
    (class ids joined by ","), or None for fixed-length clips (nothing to learn there)."""
    if not data.config.data.whole_files:
        return None
    idx = data.train_idx
    frames, labels = np.asarray(data.frames)[idx], np.asarray(data.labels)[idx]
    by = {}
    for row in np.unique(labels, axis=0) if labels.shape[1] else []:
        hit = np.all(labels == row, axis=1)
        by[",".join(str(int(v)) for v in row)] = int(np.median(frames[hit]))
    return {"frames": int(np.median(frames)), "by_labels": by}
