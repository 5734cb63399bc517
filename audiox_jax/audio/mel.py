"""Mel filterbank, (log-)mel spectrograms, normalisation, and mel -> linear inversion.

Conventions (stated once, here):

* Scales: "slaney" (librosa's default; linear below 1 kHz, logarithmic above, the
  Auditory Toolbox formula) or HTK (``2595 * log10(1 + f / 700)``), chosen by ``htk``.
* Filter norm: ``norm="slaney"`` divides each triangle by its width in Hz (constant
  energy per filter); ``norm=None`` leaves peak-1 triangles. Filterbanks are built
  once in NumPy at trace time and match ``librosa.filters.mel``.
* Spectrogram: ``mel = M @ |STFT|**power`` with ``power=2`` (power) or ``1``
  (magnitude), shaped ``f32[..., n_mels, frames]``.
* Log: "ln" is ``log(max(mel, floor))`` (natural log; floor 1e-5 by default, about
  -50 dB); "db" is ``10 * log10(max(mel, amin) / ref)``, clipped to ``top_db``
  below the maximum *of each item* (the last two axes), as ``librosa.power_to_db``
  does on a single clip and librosa >= 1.0 does per item of a batch.
* Normalisation: a :class:`MelStats` maps log-mel to the model's space: "meanstd"
  (per-bin mean/std measured on data) or "range" (a fixed ``[lo, hi]`` mapped to
  ``[-1, 1]``). It is plain data (``to_dict``/``from_dict``) so it is saved with the
  model config and generation can denormalise.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Iterable

import numpy as np
import jax
import jax.numpy as jnp

from audiox_jax.errors import ParamError
from audiox_jax.audio.stft import per_item, stft

NORMS = ("slaney", None)
LOG_KINDS = ("ln", "db")


# ---------------------------------------------------------------- filterbank (NumPy)


def hz_to_mel(f, htk: bool = False):
    """Hz -> mel on the Slaney (default) or HTK scale. Works on scalars and arrays."""
    f = np.asarray(f, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + f / 700.0)
    f_sp = 200.0 / 3
    min_log_hz, logstep = 1000.0, np.log(6.4) / 27.0
    mels = f / f_sp
    return np.where(
        f >= min_log_hz,
        min_log_hz / f_sp + np.log(np.maximum(f, min_log_hz) / min_log_hz) / logstep,
        mels,
    )


def mel_to_hz(m, htk: bool = False):
    """Mel -> Hz, the inverse of :func:`hz_to_mel`."""
    m = np.asarray(m, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    f_sp = 200.0 / 3
    min_log_hz, logstep = 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filterbank(
    sr: float,
    n_fft: int,
    n_mels: int,
    *,
    fmin: float = 0.0,
    fmax: float | None = None,
    htk: bool = False,
    norm: str | None = "slaney",
) -> np.ndarray:
    """Triangular mel filterbank, f32[n_mels, n_fft // 2 + 1], as ``librosa.filters.mel``.

    Args:
      sr: sample rate in Hz (22050 by default elsewhere in the package).
      n_fft: FFT size in samples.
      n_mels: number of mel bands (80 is the usual TTS/vocoder choice).
      fmin, fmax: band edges in Hz; fmax None means sr / 2.
      htk: HTK mel scale instead of Slaney's.
      norm: "slaney" (area-normalised triangles) or None (peak 1).
    """
    fmax = sr / 2.0 if fmax is None else float(fmax)
    if norm not in NORMS:
        raise ParamError(f"norm={norm!r} is not supported; choose one of {NORMS}")
    if not 0 <= fmin < fmax <= sr / 2.0 + 1e-6:
        raise ParamError(f"need 0 <= fmin ({fmin}) < fmax ({fmax}) <= sr/2 ({sr / 2}); fix fmin/fmax")
    if n_mels < 1:
        raise ParamError(f"n_mels={n_mels} must be >= 1; try n_mels=80")
    fftfreqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sr)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(fmin, htk), hz_to_mel(fmax, htk), n_mels + 2), htk)
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    if norm == "slaney":
        weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    weights = weights.astype(np.float32)
    if not np.all((mel_f[:-2] == 0) | (weights.max(axis=1) > 0)):
        warnings.warn(
            f"Empty filters detected in mel frequency basis (n_mels={n_mels}, n_fft={n_fft}): "
            "some channels will produce empty responses. Try a larger n_fft or fewer mels.",
            stacklevel=2,
        )
    return weights


# ---------------------------------------------------------------- spectrograms (JAX)


def melspectrogram(
    y: jnp.ndarray,
    mel_basis: np.ndarray | jnp.ndarray,
    *,
    n_fft: int,
    hop_length: int,
    win_length: int | None = None,
    power: float = 2.0,
    center: bool = True,
    pad_mode: str = "constant",
) -> jnp.ndarray:
    """Mel spectrogram ``M @ |STFT(y)|**power``: f32[..., samples] -> f32[..., n_mels, frames]."""
    basis = jnp.asarray(mel_basis)

    def one(y):  # f32[samples] -> f32[n_mels, frames]
        spec = stft(y, n_fft, hop_length, win_length=win_length, center=center, pad_mode=pad_mode)
        mag = jnp.abs(spec)
        mag = mag * mag if power == 2.0 else mag**power
        return jnp.einsum("mk,kt->mt", basis, mag, precision="highest")

    return per_item(one, (jnp.asarray(y, jnp.float32),), (1,))


def power_to_db(S: jnp.ndarray, *, ref: float = 1.0, amin: float = 1e-10, top_db: float | None = 80.0) -> jnp.ndarray:
    """``10 log10(max(S, amin) / ref)`` clipped to ``top_db`` below each item's max.

    ``S`` is f32[..., n_mels, frames]; the max is taken over the last two axes.
    """
    if amin <= 0:
        raise ParamError(f"amin={amin} must be strictly positive; try amin=1e-10")
    if top_db is not None and top_db < 0:
        raise ParamError(f"top_db={top_db} must be non-negative or None")
    log_spec = 10.0 * jnp.log10(jnp.maximum(S, amin)) - 10.0 * np.log10(max(amin, ref))
    if top_db is not None:
        peak = jnp.max(log_spec, axis=(-2, -1), keepdims=True)
        log_spec = jnp.maximum(log_spec, peak - top_db)
    return log_spec


def to_log(mel: jnp.ndarray, *, kind: str = "ln", floor: float = 1e-5, top_db: float | None = None) -> jnp.ndarray:
    """Mel (power or magnitude) -> log-mel: "ln" = ``log(max(mel, floor))``, "db" = power_to_db."""
    if kind == "ln":
        return jnp.log(jnp.maximum(mel, floor))
    if kind == "db":
        return power_to_db(mel, amin=floor, top_db=top_db)
    raise ParamError(f"log kind={kind!r} is not supported; choose one of {LOG_KINDS}")


def from_log(logmel: jnp.ndarray, *, kind: str = "ln") -> jnp.ndarray:
    """Inverse of :func:`to_log` (exact above the floor): log-mel -> mel."""
    if kind == "ln":
        return jnp.exp(logmel)
    if kind == "db":
        return jnp.power(10.0, logmel / 10.0)
    raise ParamError(f"log kind={kind!r} is not supported; choose one of {LOG_KINDS}")


# ---------------------------------------------------------------- normalisation


@dataclasses.dataclass(frozen=True)
class MelStats:
    """How log-mel maps to the model's space and back (saved with the model config).

    kind "meanstd": ``z = (logmel - mean[:, None]) / std[:, None]`` per mel bin.
    kind "range":   ``z = 2 (logmel - lo) / (hi - lo) - 1`` (``lo``/``hi`` in log units).
    """

    kind: str = "range"
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    lo: float = float(np.log(1e-5))
    hi: float = 4.0

    def __post_init__(self):
        if self.kind not in ("meanstd", "range"):
            raise ParamError(f"MelStats kind={self.kind!r} must be 'meanstd' or 'range'")
        if self.kind == "meanstd" and (len(self.mean) == 0 or len(self.mean) != len(self.std)):
            raise ParamError("MelStats(kind='meanstd') needs mean and std of equal, non-zero length (one per mel bin)")
        if self.kind == "range" and not self.hi > self.lo:
            raise ParamError(f"MelStats range needs hi > lo, got lo={self.lo}, hi={self.hi}")

    def to_dict(self) -> dict:
        return {"kind": self.kind, "mean": list(self.mean), "std": list(self.std), "lo": self.lo, "hi": self.hi}

    @classmethod
    def from_dict(cls, d: dict) -> "MelStats":
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ParamError(f"unknown MelStats keys {sorted(unknown)}; valid: kind, mean, std, lo, hi")
        d = dict(d)
        d["mean"] = tuple(float(v) for v in d.get("mean", ()))
        d["std"] = tuple(float(v) for v in d.get("std", ()))
        return cls(**d)


def fit_meanstd(logmels: Iterable[np.ndarray], *, min_std: float = 1e-3) -> MelStats:
    """Per-bin mean/std over all frames of an iterable of log-mels f32[n_mels, frames] (streaming)."""
    total, sq, count = None, None, 0
    for lm in logmels:
        lm = np.asarray(lm, np.float64)
        lm = lm.reshape(-1, *lm.shape[-2:]).transpose(1, 0, 2).reshape(lm.shape[-2], -1)
        total = lm.sum(1) if total is None else total + lm.sum(1)
        sq = (lm**2).sum(1) if sq is None else sq + (lm**2).sum(1)
        count += lm.shape[1]
    if count == 0:
        raise ParamError("fit_meanstd got no frames; pass at least one non-empty log-mel")
    mean = total / count
    std = np.sqrt(np.maximum(sq / count - mean**2, 0.0))
    return MelStats(kind="meanstd", mean=tuple(mean.tolist()), std=tuple(np.maximum(std, min_std).tolist()))


def normalize(logmel: jnp.ndarray, stats: MelStats) -> jnp.ndarray:
    """log-mel f32[..., n_mels, frames] -> model space (see :class:`MelStats`)."""
    if stats.kind == "range":
        return 2.0 * (logmel - stats.lo) / (stats.hi - stats.lo) - 1.0
    mean, std = _bin_stats(stats, logmel.shape[-2])
    return (logmel - mean) / std


def denormalize(z: jnp.ndarray, stats: MelStats) -> jnp.ndarray:
    """Model space f32[..., n_mels, frames] -> log-mel; the inverse of :func:`normalize`."""
    if stats.kind == "range":
        return (z + 1.0) * 0.5 * (stats.hi - stats.lo) + stats.lo
    mean, std = _bin_stats(stats, z.shape[-2])
    return z * std + mean


def _bin_stats(stats: MelStats, n_mels: int):
    if len(stats.mean) != n_mels:
        raise ParamError(f"MelStats has {len(stats.mean)} bins but the spectrogram has n_mels={n_mels}")
    return (np.asarray(stats.mean, np.float32)[:, None], np.asarray(stats.std, np.float32)[:, None])


# ---------------------------------------------------------------- mel -> linear


def mel_to_linear(
    mel: jnp.ndarray,
    mel_basis: np.ndarray,
    *,
    n_iter: int = 32,
    power: float = 2.0,
) -> jnp.ndarray:
    """Invert a mel spectrogram to a linear magnitude spectrogram by non-negative least squares.

    Solves ``min_{P >= 0} ||M P - mel||^2`` per frame with FISTA (Beck & Teboulle
    2009: projected gradient with Nesterov momentum, step ``1 / ||M||_2^2``) for a
    fixed ``n_iter``, started from the clipped pseudo-inverse ``max(pinv(M) mel, 0)``,
    then returns ``P ** (1 / power)``. The same problem ``librosa.feature.inverse.
    mel_to_stft`` solves with L-BFGS-B, but batched, jit-able and with a fixed cost.

    Args:
      mel: f32[..., n_mels, frames] mel spectrogram (``M @ |S|**power``).
      mel_basis: f32[n_mels, n_fft // 2 + 1] from :func:`mel_filterbank`.
      n_iter: FISTA iterations (static); each costs two [n_mels x bins] matmuls per frame.
      power: the exponent ``mel`` was computed with (2 power, 1 magnitude).
    Returns:
      f32[..., n_fft // 2 + 1, frames] magnitude spectrogram ``|S|``.
    """
    if n_iter < 0:
        raise ParamError(f"n_iter={n_iter} must be >= 0")
    M = np.asarray(mel_basis, np.float64)
    if mel.shape[-2] != M.shape[0]:
        raise ParamError(f"mel has {mel.shape[-2]} bands but mel_basis has {M.shape[0]}; build both with the same n_mels")
    step = 1.0 / np.linalg.norm(M, 2) ** 2
    Mj = jnp.asarray(M, jnp.float32)
    pinv = jnp.asarray(np.linalg.pinv(M), jnp.float32)
    mel = jnp.asarray(mel, jnp.float32)
    mm = lambda a, b: jnp.einsum("km,...mt->...kt", a, b, precision="highest")

    def one(mel):  # f32[n_mels, frames] -> f32[bins, frames]
        p0 = jnp.maximum(mm(pinv, mel), 0.0)

        def body(i, carry):
            p, y, t = carry
            grad = mm(Mj.T, mm(Mj, y) - mel)
            p_next = jnp.maximum(y - step * grad, 0.0)
            t_next = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * t * t))
            y_next = p_next + ((t - 1.0) / t_next) * (p_next - p)
            return p_next, y_next, t_next

        p, _, _ = jax.lax.fori_loop(0, n_iter, body, (p0, p0, jnp.float32(1.0)))
        return p if power == 1.0 else jnp.power(p, 1.0 / power)

    return per_item(one, (mel,), (2,))
