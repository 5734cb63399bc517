"""Reading and writing audio files (host-side NumPy; nothing here is traced).

``load`` reads anything soundfile (libsndfile: wav, flac, ogg, mp3 with libsndfile
>= 1.1) or, failing that, librosa's fallback decoder reads; mixes to mono by
averaging channels; resamples with soxr (librosa's "soxr_hq") to the target rate;
returns float32 in [-1, 1]. Every failure raises :class:`AudioFileError` naming
the file and the reason.
"""

from __future__ import annotations

import os
import sys
import warnings

import numpy as np

from audiox_jax.errors import AudioFileError, ParamError

SUBTYPES = ("PCM_16", "PCM_24", "FLOAT")


def load(path: str | os.PathLike, sr: int | None = 22050, *, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Load an audio file as mono float32.

    Args:
      path: file to read.
      sr: target sample rate in Hz; None keeps the file's own rate.
      max_seconds: read at most this many seconds from the start (None: all).
    Returns:
      ``(y, sr)`` with ``y`` f32[samples] in [-1, 1] and ``sr`` the rate of ``y``.
    Raises:
      AudioFileError: the file is missing, empty, not decodable audio, or holds
        NaN/Inf samples.
    """
    import soundfile as sf

    path = os.fspath(path)
    if not os.path.exists(path):
        raise AudioFileError(f"{path}: no such file; check the path")
    if os.path.isdir(path):
        raise AudioFileError(f"{path}: is a directory, not an audio file")
    if os.path.getsize(path) == 0:
        raise AudioFileError(f"{path}: file is empty (0 bytes)")
    try:
        with sf.SoundFile(native_path(path)) as f:
            native_sr = f.samplerate
            frames = -1 if max_seconds is None else int(max_seconds * native_sr)
            y = f.read(frames=frames, dtype="float32", always_2d=True)
    except Exception as sf_err:  # noqa: BLE001 - soundfile raises several types; try librosa next
        y, native_sr = _load_fallback(path, max_seconds, sf_err)
    y = y.mean(axis=1) if y.ndim == 2 else y
    if y.size == 0:
        raise AudioFileError(f"{path}: contains no samples (zero-length audio)")
    if not np.all(np.isfinite(y)):
        raise AudioFileError(f"{path}: contains NaN or Inf samples; re-export the file")
    if sr is not None and sr != native_sr:
        import librosa

        y = librosa.resample(y, orig_sr=native_sr, target_sr=sr, res_type="soxr_hq")
    else:
        sr = native_sr
    return np.ascontiguousarray(y, dtype=np.float32), int(sr)


def native_path(path: str) -> str | bytes:
    """``path``, or its bytes where the name is not valid in the file-system encoding (a Latin-1
    name on a UTF-8 system: Python holds it with surrogates, which soundfile cannot encode)."""
    try:
        path.encode(sys.getfilesystemencoding())
    except UnicodeEncodeError:
        return os.fsencode(path)
    return path


def _load_fallback(path: str, max_seconds: float | None, sf_err: Exception) -> tuple[np.ndarray, int]:
    """Decode with librosa's audioread fallback; raise AudioFileError naming both failures."""
    import librosa

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # librosa warns that it is falling back; we say why below
            y, native_sr = librosa.load(path, sr=None, mono=False, duration=max_seconds, dtype=np.float32)
    except Exception as err:  # noqa: BLE001
        raise AudioFileError(
            f"{path}: not a readable audio file (soundfile: {sf_err}; fallback decoder: {type(err).__name__}: "
            f"{err or 'no decoder could read it'})"
        ) from err
    y = np.atleast_2d(y).T  # [samples, channels]
    return y, int(native_sr)


def save(path: str | os.PathLike, y, sr: int, *, subtype: str = "PCM_16") -> str:
    """Write a mono or multi-channel waveform as WAV.

    Args:
      path: output file (parent directories are created).
      y: f32[samples] or f32[channels, samples] in [-1, 1]; PCM subtypes clip outside.
      sr: sample rate in Hz.
      subtype: "PCM_16" (default), "PCM_24" or "FLOAT".
    Returns:
      the path written.
    """
    import soundfile as sf

    if subtype not in SUBTYPES:
        raise ParamError(f"subtype={subtype!r} is not supported; choose one of {SUBTYPES}")
    y = np.asarray(y, dtype=np.float32)
    if y.ndim not in (1, 2) or y.size == 0:
        raise ParamError(f"save needs f32[samples] or f32[channels, samples] audio, got shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ParamError(f"refusing to write {path}: the waveform has NaN or Inf samples")
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    data = y.T if y.ndim == 2 else y
    if subtype != "FLOAT":
        data = np.clip(data, -1.0, 1.0)
    sf.write(path, data, int(sr), subtype=subtype)
    return path


class WavStream:
    """Write 16-bit PCM WAV incrementally to a binary file or pipe (e.g. ``sys.stdout.buffer``).

    The header is written first with its sizes unknown (0xFFFFFFFF, which players and
    libsndfile read as "until the end"); ``close()`` patches the real sizes when the
    target is seekable (a file), so the result is also a strictly valid WAV.
    """

    def __init__(self, f, sr: int, channels: int = 1):
        import struct

        self.f, self.channels, self.frames = f, channels, 0
        self.f.write(b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVEfmt " + struct.pack(
            "<IHHIIHH", 16, 1, channels, sr, sr * channels * 2, channels * 2, 16) + b"data"
            + struct.pack("<I", 0xFFFFFFFF))

    def write(self, y) -> None:
        """y: f32[samples] (mono) or f32[channels, samples] in [-1, 1] (clipped)."""
        y = np.atleast_2d(np.asarray(y, np.float32))
        if y.shape[0] != self.channels:
            raise ParamError(f"WavStream has {self.channels} channel(s); got audio of shape {y.shape}")
        pcm = (np.clip(y.T, -1.0, 1.0) * 32767.0).round().astype("<i2")
        self.f.write(pcm.tobytes())
        self.f.flush()
        self.frames += pcm.shape[0]

    def close(self) -> None:
        import struct

        data = self.frames * self.channels * 2
        try:
            self.f.seek(4)
            self.f.write(struct.pack("<I", 36 + data))
            self.f.seek(40)
            self.f.write(struct.pack("<I", data))
            self.f.seek(0, 2)
        except (OSError, ValueError):  # a pipe: the open-ended header stays
            pass
        self.f.flush()
