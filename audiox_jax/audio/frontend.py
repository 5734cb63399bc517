"""The audio front end as one config: waveform <-> log-mel, both directions jit-able.

``AudioConfig`` fixes every DSP choice a model is trained with (rate, STFT, mel, log)
and is saved with the model, so generation inverts exactly what training computed.
Forward: ``log_mel`` = STFT -> ``|.|**power`` -> mel filterbank -> log. Inverse:
``log_mel_to_audio`` = exp -> NNLS mel inversion -> ``**(1/power)`` -> Griffin-Lim.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import jax
import jax.numpy as jnp

from audiox_jax.errors import ParamError
from audiox_jax.audio.griffin_lim import METHODS as GLA_METHODS, griffin_lim
from audiox_jax.audio import mel as melmod
from audiox_jax.audio.stft import check_params, n_frames


VOCODER_FIELDS = ("nnls_iters", "gla_iters", "gla_momentum", "gla_method")  # the inverse path only


@dataclasses.dataclass(frozen=True)
class AudioConfig:
    """Front-end settings. Defaults: 22.05 kHz, n_fft 1024 (46 ms), hop 256 (11.6 ms), 80 Slaney mels.

    Attributes:
      sr: sample rate in Hz.
      n_fft, hop_length, win_length: STFT sizes in samples (win_length None = n_fft).
      n_mels, fmin, fmax, htk, norm: mel filterbank (see :func:`mel.mel_filterbank`).
      power: 2.0 power mel (default) or 1.0 magnitude mel.
      log: "ln" (natural log) or "db"; ``floor`` is the log floor (amin for "db").
      top_db: dB clipping below each clip's peak ("db" only; None = none).
      nnls_iters, gla_iters, gla_momentum, gla_method: inversion defaults.
    """

    sr: int = 22050
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int | None = None
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float | None = None
    htk: bool = False
    norm: str | None = "slaney"
    power: float = 2.0
    log: str = "ln"
    floor: float = 1e-5
    top_db: float | None = None
    nnls_iters: int = 32
    gla_iters: int = 32
    gla_momentum: float = 0.99
    gla_method: str = "fast"

    def __post_init__(self):
        check_params(self.n_fft, self.hop_length, self.win_length)
        if self.power not in (1.0, 2.0):
            raise ParamError(f"power={self.power} must be 1.0 (magnitude) or 2.0 (power)")
        if self.log not in melmod.LOG_KINDS:
            raise ParamError(f"log={self.log!r} must be one of {melmod.LOG_KINDS}")
        if self.gla_method not in GLA_METHODS:
            raise ParamError(f"gla_method={self.gla_method!r} must be one of {GLA_METHODS}")
        if self.floor <= 0:
            raise ParamError(f"floor={self.floor} must be > 0; try 1e-5")

    @property
    def mel_basis(self) -> np.ndarray:
        """f32[n_mels, n_fft // 2 + 1], built once per config."""
        return _basis(self.sr, self.n_fft, self.n_mels, self.fmin, self.fmax, self.htk, self.norm)

    def features(self) -> "AudioConfig":
        """This config with the vocoder's settings at their defaults: two configs with equal
        ``features()`` compute the same log-mel (data prepared with one trains the other's model)."""
        return dataclasses.replace(self, **{f: getattr(AudioConfig, f) for f in VOCODER_FIELDS})

    def frames(self, samples: int) -> int:
        """Number of log-mel frames for ``samples`` samples."""
        return n_frames(samples, self.n_fft, self.hop_length)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "AudioConfig":
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - valid
        if unknown:
            raise ParamError(f"unknown audio config keys {sorted(unknown)}; valid keys: {sorted(valid)}")
        return cls(**d)


@functools.lru_cache(maxsize=16)
def _basis(sr, n_fft, n_mels, fmin, fmax, htk, norm) -> np.ndarray:
    fb = melmod.mel_filterbank(sr, n_fft, n_mels, fmin=fmin, fmax=fmax, htk=htk, norm=norm)
    fb.setflags(write=False)
    return fb


def mel(y: jnp.ndarray, cfg: AudioConfig) -> jnp.ndarray:
    """Waveform f32[..., samples] -> mel spectrogram f32[..., n_mels, frames] (linear units)."""
    return melmod.melspectrogram(
        y, cfg.mel_basis, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length, power=cfg.power
    )


def log_mel(y: jnp.ndarray, cfg: AudioConfig) -> jnp.ndarray:
    """Waveform f32[..., samples] -> log-mel f32[..., n_mels, frames] (nats or dB per ``cfg.log``)."""
    return melmod.to_log(mel(y, cfg), kind=cfg.log, floor=cfg.floor, top_db=cfg.top_db)


def log_mel_to_audio(
    logmel: jnp.ndarray,
    cfg: AudioConfig,
    *,
    key: jax.Array | None = None,
    length: int | None = None,
    nnls_iters: int | None = None,
    gla_iters: int | None = None,
    init_phase: jnp.ndarray | None = None,
) -> jnp.ndarray:
    """Log-mel f32[..., n_mels, frames] -> waveform f32[..., samples], all in-graph.

    ``key`` gives Griffin-Lim a random initial phase (None: zero phase);
    ``length`` defaults to ``hop_length * (frames - 1)`` samples.
    """
    S = magnitude_from_log_mel(logmel, cfg, nnls_iters=nnls_iters)
    return griffin_lim(
        S,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=cfg.win_length,
        n_iter=cfg.gla_iters if gla_iters is None else gla_iters,
        momentum=cfg.gla_momentum,
        method=cfg.gla_method,
        key=key,
        init_phase=init_phase,
        length=length,
    )


def magnitude_from_log_mel(logmel: jnp.ndarray, cfg: AudioConfig, *, nnls_iters: int | None = None) -> jnp.ndarray:
    """Log-mel f32[..., n_mels, frames] -> linear magnitude f32[..., n_fft // 2 + 1, frames]."""
    m = melmod.from_log(logmel, kind=cfg.log)
    iters = cfg.nnls_iters if nnls_iters is None else nnls_iters
    return melmod.mel_to_linear(m, cfg.mel_basis, n_iter=iters, power=cfg.power)
