"""Cutting a waveform into fixed-shape items (pure NumPy; nothing here is traced).

Conventions (stated once, here):

* Clip mode (``keep_whole=False``): items of ``clip_samples = round(clip_seconds * sr)``
  samples start at ``0, hop, 2 hop, ...`` (``hop = round(hop_seconds * sr)``, default
  ``clip_samples``: no overlap) while they fit in the file. After the last full clip,
  one more clip at the next hop offset is kept, zero-padded at the end, when the
  samples no full clip covers are at least ``MIN_REMAINDER`` (25 %) of a clip. A
  file shorter than one clip is kept whole as a single zero-padded clip.
* Whole mode (``keep_whole=True``): one item per file, its first ``max_seconds``
  (longer files are truncated, and the report says so), zero-padded to
  ``round(max_seconds * sr)`` samples so every item has the same shape.
* Every item records ``offset`` (its first sample in the file, at ``sr``) and
  ``length`` (its samples before padding), so consumers can mask the padding.
* Loudness: ``rms_db`` is ``20 log10(rms)`` in dBFS over an item's unpadded samples
  (floored at -200 dB for digital silence); with ``min_rms_db`` set, quieter items are
  dropped and counted.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from audiox_jax.errors import ParamError

MIN_REMAINDER = 0.25  # a trailing partial clip is kept when it holds >= 25 % of a clip of new audio


@dataclasses.dataclass(frozen=True)
class ClipSpec:
    """How files become fixed-shape items.

    Attributes:
      clip_seconds: clip length in seconds (clip mode), e.g. 2.0.
      hop_seconds: seconds between clip starts; None = ``clip_seconds`` (no overlap).
      keep_whole: one item per file, padded to ``max_seconds``, instead of clips.
      max_seconds: read at most this many seconds of each file (None: all); in whole
        mode it is also the padded item length, so it is required there.
      min_rms_db: drop items quieter than this RMS in dBFS, e.g. -60.0 (None: keep all).
    """

    clip_seconds: float
    hop_seconds: float | None = None
    keep_whole: bool = False
    max_seconds: float | None = None
    min_rms_db: float | None = None

    def __post_init__(self):
        if not self.clip_seconds > 0:
            raise ParamError(f"clip_seconds={self.clip_seconds!r} must be > 0; try clip_seconds=2.0")
        if self.hop_seconds is not None and not self.hop_seconds > 0:
            raise ParamError(f"hop_seconds={self.hop_seconds!r} must be > 0; use None for non-overlapping clips")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ParamError(f"max_seconds={self.max_seconds!r} must be > 0 or None (read whole files)")
        if self.keep_whole and self.max_seconds is None:
            raise ParamError(
                "keep_whole=True needs max_seconds (every item is padded to that common length); "
                "try max_seconds=10.0"
            )
        if self.keep_whole and self.hop_seconds is not None:
            raise ParamError(f"hop_seconds={self.hop_seconds} has no meaning with keep_whole=True; pass hop_seconds=None")

    def item_samples(self, sr: int) -> int:
        """Samples per item: ``round(max_seconds * sr)`` in whole mode, else ``round(clip_seconds * sr)``."""
        seconds = self.max_seconds if self.keep_whole else self.clip_seconds
        return max(1, int(round(seconds * sr)))

    def hop_samples(self, sr: int) -> int:
        """Samples between clip starts (clip mode)."""
        return max(1, int(round((self.hop_seconds or self.clip_seconds) * sr)))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ClipSpec":
        return cls(**d)


def clip_offsets(n_samples: int, clip_samples: int, hop_samples: int) -> np.ndarray:
    """Start samples i64[k] of the clips cut from ``n_samples`` samples (see module docstring)."""
    if n_samples <= clip_samples:
        return np.zeros(1, np.int64)
    full = np.arange(0, n_samples - clip_samples + 1, hop_samples, dtype=np.int64)
    uncovered = n_samples - (full[-1] + clip_samples)
    if uncovered >= MIN_REMAINDER * clip_samples:
        full = np.append(full, full[-1] + hop_samples)
    return full


def cut(y: np.ndarray, spec: ClipSpec, sr: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Waveform f32[samples] -> items f32[k, item_samples], offsets i64[k], lengths i64[k].

    Items are zero-padded at the end; ``lengths`` counts the unpadded samples.
    """
    size = spec.item_samples(sr)
    if spec.keep_whole:
        offsets = np.zeros(1, np.int64)
    else:
        offsets = clip_offsets(len(y), size, spec.hop_samples(sr))
    lengths = np.minimum(len(y) - offsets, size).astype(np.int64)
    items = np.zeros((len(offsets), size), np.float32)
    for i, (o, n) in enumerate(zip(offsets, lengths)):
        items[i, :n] = y[o : o + n]
    return items, offsets, lengths


def rms_db(items: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """RMS in dBFS f64[k] of items f32[k, samples] over their first ``lengths`` i64[k] samples."""
    mask = np.arange(items.shape[1])[None, :] < lengths[:, None]
    power = np.sum(np.where(mask, items.astype(np.float64) ** 2, 0.0), axis=1) / np.maximum(lengths, 1)
    return 10.0 * np.log10(np.maximum(power, 1e-20))
