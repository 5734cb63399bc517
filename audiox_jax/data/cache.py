"""The on-disk log-mel cache that :func:`audiox_jax.data.prepare.prepare` writes, and its reader.

Layout of ``out_dir`` (every array is little-endian ``.npy``/``.npz``, item axis first):

* ``mels-00000.npy``, ``mels-00001.npy``, ...: f32[<=1024, n_mels, frames] log-mel shards
  (``audio.log_mel`` of each zero-padded item; ``frames = cfg.frames(item_samples)``).
* ``labels.npy``: i32[N, n_labels] class ids, column ``j`` indexing ``vocab[label_names[j]]``.
* ``clips.npz``: per item ``file_index`` i32[N] (into ``manifest.files``), ``offset``
  i64[N] (first sample in the file, at ``sr``), ``length`` i64[N] (unpadded samples) and
  ``frames`` i32[N] (frames not made only of padding: ``min(frames, cfg.frames(length))``).
* ``manifest.json``: audio config, clip settings, label names/vocabularies/source,
  counts, shard list, and one record per audio file found (path relative to
  ``audio_dir``, size, mtime_ns, status ok/bad/unlabelled, reason, first item, items).
* ``stats.json``: ``MelStats.to_dict()`` fitted on the valid frames of every item.
* ``report.txt``: what was skipped and why, plus notes (truncated files, quiet items).

Items are ordered by file path, then by offset. Change detection uses size + mtime_ns.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from audiox_jax import files
from audiox_jax.audio import AudioConfig, MelStats
from audiox_jax.data.clips import ClipSpec
from audiox_jax.errors import AudioxError

MANIFEST = "manifest.json"
STATS = "stats.json"
REPORT = "report.txt"
LABELS = "labels.npy"
CLIPS = "clips.npz"
SHARD_SIZE = 1024
VERSION = 1

STATUS_OK, STATUS_BAD, STATUS_UNLABELLED = "ok", "bad", "unlabelled"


def shard_name(i: int) -> str:
    return f"mels-{i:05d}.npy"


@dataclasses.dataclass(frozen=True)
class FileRecord:
    """One audio file found under ``audio_dir``.

    path: relative, "/"-separated. size, mtime_ns: change detection.
    status: "ok" (has items), "bad" (unusable audio; kept until the file changes) or
      "unlabelled" (no labels; re-checked every run). reason: why not ok, or a note.
    first: index of its first item in the cache (-1 if none). n_items: its item count.
    labels: its class names, one per label. seconds: duration read, at ``sr``.
    """

    path: str
    size: int
    mtime_ns: int
    status: str
    reason: str = ""
    first: int = -1
    n_items: int = 0
    labels: tuple[str, ...] = ()
    seconds: float = 0.0

    @classmethod
    def from_dict(cls, d: dict) -> "FileRecord":
        return cls(**{**d, "labels": tuple(d.get("labels", ()))})


@dataclasses.dataclass(frozen=True)
class Manifest:
    """What a cache holds and how it was made (``manifest.json``).

    ``processed`` lists the files whose audio this run decoded (new or changed);
    ``reused`` those whose items came from the previous cache unchanged.
    """

    audio_dir: str
    audio_config: AudioConfig
    clips: ClipSpec
    item_samples: int
    frames: int
    label_source: str
    label_names: tuple[str, ...]
    vocab: dict[str, tuple[str, ...]]
    stats_kind: str
    n_items: int
    shards: tuple[tuple[str, int], ...]
    files: tuple[FileRecord, ...]
    processed: tuple[str, ...] = ()
    reused: tuple[str, ...] = ()
    version: int = VERSION

    @property
    def skipped(self) -> dict[str, str]:
        """{relative path: reason} for every file without items."""
        return {f.path: f.reason for f in self.files if f.status != STATUS_OK}

    @property
    def n_mels(self) -> int:
        return self.audio_config.n_mels

    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "audio_dir": self.audio_dir,
            "audio_config": self.audio_config.to_dict(),
            "clips": self.clips.to_dict(),
            "item_samples": self.item_samples,
            "frames": self.frames,
            "labels": {"source": self.label_source, "names": list(self.label_names),
                       "vocab": {k: list(v) for k, v in self.vocab.items()}},
            "stats_kind": self.stats_kind,
            "counts": {
                "items": self.n_items,
                "files_found": len(self.files),
                "files_used": sum(f.status == STATUS_OK for f in self.files),
                "files_skipped": sum(f.status != STATUS_OK for f in self.files),
                "files_processed": len(self.processed),
                "files_reused": len(self.reused),
            },
            "shards": [{"path": p, "items": n} for p, n in self.shards],
            "files": [dataclasses.asdict(f) for f in self.files],
            "processed": list(self.processed),
            "reused": list(self.reused),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Manifest":
        if d.get("version") != VERSION:
            raise AudioxError(f"cache manifest version {d.get('version')!r} is not {VERSION}; re-run prepare")
        lab = d["labels"]
        return cls(
            audio_dir=d["audio_dir"],
            audio_config=AudioConfig.from_dict(d["audio_config"]),
            clips=ClipSpec.from_dict(d["clips"]),
            item_samples=int(d["item_samples"]),
            frames=int(d["frames"]),
            label_source=lab["source"],
            label_names=tuple(lab["names"]),
            vocab={k: tuple(v) for k, v in lab["vocab"].items()},
            stats_kind=d["stats_kind"],
            n_items=int(d["counts"]["items"]),
            shards=tuple((s["path"], int(s["items"])) for s in d["shards"]),
            files=tuple(FileRecord.from_dict(f) for f in d["files"]),
            processed=tuple(d.get("processed", ())),
            reused=tuple(d.get("reused", ())),
        )


class ShardedMels:
    """The shards as one read-only array-like f32[N, n_mels, frames] (memory-mapped).

    Supports ``len``, ``shape``, ``dtype``, ``np.asarray`` and indexing the item axis with
    an int, a slice or an int array (which returns a NumPy copy, in the order asked).
    """

    def __init__(self, shards: list[np.ndarray]):
        self.shards = shards
        self.starts = np.cumsum([0] + [len(s) for s in shards])
        first = shards[0]
        self.shape = (int(self.starts[-1]),) + tuple(first.shape[1:])
        self.dtype = first.dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            i = int(index) + (len(self) if index < 0 else 0)
            s = int(np.searchsorted(self.starts, i, side="right") - 1)
            return np.array(self.shards[s][i - self.starts[s]])
        idx = np.arange(*index.indices(len(self))) if isinstance(index, slice) else np.asarray(index)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        idx = np.where(idx < 0, idx + len(self), idx)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"item index out of range for {len(self)} items")
        out = np.empty((idx.size,) + self.shape[1:], self.dtype)
        shard_of = np.searchsorted(self.starts, idx, side="right") - 1
        for s in np.unique(shard_of):
            where = np.flatnonzero(shard_of == s)
            out[where] = self.shards[s][idx[where] - self.starts[s]]
        return out.reshape(np.shape(idx) + self.shape[1:])

    def __array__(self, dtype=None, copy=None):
        out = np.concatenate([np.asarray(s) for s in self.shards])
        return out if dtype is None else out.astype(dtype)


@dataclasses.dataclass(frozen=True)
class Cache:
    """A prepared data set.

    mels: f32[N, n_mels, frames] log-mel (np.ndarray, or :class:`ShardedMels` when memory-mapped).
    labels: i32[N, n_labels] class ids. frames: i32[N] valid (not padding-only) frames.
    file_index: i32[N] into ``manifest.files``. offset, length: i64[N] first sample and
    unpadded samples of each item in its file, at ``manifest.audio_config.sr``.
    """

    mels: np.ndarray | ShardedMels
    labels: np.ndarray
    frames: np.ndarray
    file_index: np.ndarray
    offset: np.ndarray
    length: np.ndarray
    manifest: Manifest
    stats: MelStats

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def source(self, i: int) -> tuple[str, float]:
        """(path relative to audio_dir, start in seconds) of item ``i``."""
        sr = self.manifest.audio_config.sr
        return self.manifest.files[int(self.file_index[i])].path, float(self.offset[i]) / sr


def read_manifest(out_dir: str) -> Manifest:
    path = os.path.join(out_dir, MANIFEST)
    try:
        with open(path, encoding="utf-8") as f:
            return Manifest.from_dict(json.load(f))
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise AudioxError(
            f"{path} is unreadable ({type(err).__name__}: {err}); re-run prepare with overwrite=True"
        ) from err


def load_cache(out_dir: str, *, mmap: bool = False) -> Cache:
    """Open a cache written by ``prepare``.

    Args:
      out_dir: the cache folder.
      mmap: True memory-maps the shards (``Cache.mels`` is a :class:`ShardedMels`);
        False (default) loads them as one array f32[N, n_mels, frames].
    Raises:
      AudioxError: no cache there, or its files disagree with the manifest.
    """
    out_dir = os.fspath(out_dir)
    if not os.path.isfile(os.path.join(out_dir, MANIFEST)):
        raise AudioxError(f"no {MANIFEST} in {out_dir!r}; run audiox_jax.data.prepare.prepare(..., out_dir) first")
    manifest = read_manifest(out_dir)
    shards = [np.load(os.path.join(out_dir, p), mmap_mode="r") for p, _ in manifest.shards]
    counts = [len(s) for s in shards]
    if counts != [n for _, n in manifest.shards] or sum(counts) != manifest.n_items:
        raise AudioxError(
            f"cache {out_dir!r} is inconsistent: shards hold {counts} items but the manifest says "
            f"{[n for _, n in manifest.shards]}; re-run prepare with overwrite=True"
        )
    mels = ShardedMels(shards) if mmap else np.concatenate([np.asarray(s) for s in shards])
    clips = np.load(os.path.join(out_dir, CLIPS))
    with open(os.path.join(out_dir, STATS), encoding="utf-8") as f:
        stats = MelStats.from_dict(json.load(f))
    return Cache(
        mels=mels,
        labels=np.load(os.path.join(out_dir, LABELS)),
        frames=clips["frames"],
        file_index=clips["file_index"],
        offset=clips["offset"],
        length=clips["length"],
        manifest=manifest,
        stats=stats,
    )


def write_json(path: str, obj) -> None:
    """Write JSON atomically (temporary file + rename)."""
    files.write_json(path, obj)
