"""Pure-JAX audio front end: STFT, mel, log-mel normalisation, mel inversion, Griffin-Lim, file I/O;
and pitch estimation (``audio.pitch``: pYIN, semitone errors; NumPy/librosa, host side).

Nothing here imports flax. Every transform is batched over leading axes and jit-able.
"""

from audiox_jax.audio.stft import stft, istft, hann_window, n_frames
from audiox_jax.audio.mel import (
    MelStats,
    denormalize,
    fit_meanstd,
    from_log,
    mel_filterbank,
    mel_to_linear,
    melspectrogram,
    normalize,
    power_to_db,
    to_log,
)
from audiox_jax.audio.griffin_lim import griffin_lim, spectral_convergence
from audiox_jax.audio.frontend import AudioConfig, log_mel, log_mel_to_audio, magnitude_from_log_mel, mel
from audiox_jax.audio.io import load, save

__all__ = [
    "AudioConfig", "MelStats", "denormalize", "fit_meanstd", "from_log", "griffin_lim", "hann_window",
    "istft", "load", "log_mel", "log_mel_to_audio", "magnitude_from_log_mel", "mel", "mel_filterbank",
    "mel_to_linear", "melspectrogram", "n_frames", "normalize", "power_to_db", "save",
    "spectral_convergence", "stft", "to_log",
]
