"""The pitch of a note: f0 by probabilistic YIN (``librosa.pyin``) and "within a semitone" checks.

Conventions (stated once, here):

* MIDI pitch ``m`` sounds at ``440 * 2 ** ((m - 69) / 12)`` Hz (A4 = 69, C4 = 60 = 261.6 Hz).
* ``estimate_f0`` runs pYIN (Mauch & Dixon 2014, "pYIN: a fundamental frequency estimator
  using probabilistic threshold distributions") with frames of ``FRAME_LENGTH`` = 2048
  samples (93 ms at 22.05 kHz) and a hop of 512 (23 ms). The search range is
  ``[f / 2.2, 2.2 f]`` around a target pitch ``f`` (just over an octave each way, so an
  octave error is still seen as one, and pYIN runs about 5x faster than over the whole
  range), or ``DEFAULT_FMIN..DEFAULT_FMAX`` = C2..C7 (65-2093 Hz) without a target.
* A clip's f0 is the median f0 over its voiced frames; NaN when no frame is voiced
  (noise, silence) or the clip is digitally silent (peak below ``SILENCE`` = 1e-6).
* The pitch error is ``12 log2(f0 / f_target)`` semitones; a note is correct when
  ``|error| <= 1.0`` (within a semitone). Octave errors (+-12) and NaN count as wrong.

Cost: about 0.03-0.05 s per 1 s clip at 22.05 kHz with a target on one CPU core (the first
call also compiles librosa's numba kernels, a few seconds).
"""

from __future__ import annotations

from typing import Sequence

import librosa
import numpy as np

from audiox_jax.errors import ParamError

FRAME_LENGTH = 2048  # samples per pYIN frame: 93 ms at 22.05 kHz
HOP_LENGTH = 512  # samples between frames: 23 ms at 22.05 kHz
DEFAULT_FMIN = 65.41  # C2, Hz
DEFAULT_FMAX = 2093.0  # C7, Hz
SEARCH_RATIO = 2.2  # search f / 2.2 .. 2.2 f around a target
TOLERANCE = 1.0  # semitones
SILENCE = 1e-6  # peak below which a clip has no pitch


def note_to_midi(name: str) -> int:
    """'C4' -> 60, 'A#3' -> 58, 'Bb2' -> 46 (scientific pitch, A4 = 69; ``librosa.note_to_midi``); '60' -> 60."""
    s = str(name).strip()
    if s.isdigit():
        return int(s)
    try:
        return int(librosa.note_to_midi(s))
    except (librosa.ParameterError, ValueError, IndexError):
        raise ParamError(f"pitch {name!r} is not a note name; use a name like 'C4', 'F#3', 'Bb2' or a MIDI number") from None


def midi_to_note(midi: int) -> str:
    """60 -> 'C4', 61 -> 'C#4' (``librosa.midi_to_note`` with ASCII sharps)."""
    return librosa.midi_to_note(int(midi), unicode=False)


def midi_to_hz(midi) -> np.ndarray:
    """MIDI pitch (float or array) -> Hz: ``440 * 2 ** ((midi - 69) / 12)``."""
    return 440.0 * 2.0 ** ((np.asarray(midi, np.float64) - 69.0) / 12.0)


def estimate_f0(
    y: np.ndarray,
    sr: int,
    *,
    target_midi: float | None = None,
    fmin: float | None = None,
    fmax: float | None = None,
) -> float:
    """The f0 of one note in Hz (median over voiced pYIN frames), or NaN when unvoiced.

    Args:
      y: f32[samples] mono waveform in [-1, 1], at least ``FRAME_LENGTH`` samples.
      sr: sample rate in Hz, e.g. 22050.
      target_midi: the expected MIDI pitch; sets the search range to ``[f / 2.2, 2.2 f]``.
      fmin, fmax: explicit search range in Hz (override the target's; default C2..C7).
    """
    y = np.asarray(y, np.float32)
    if y.ndim != 1:
        raise ParamError(f"estimate_f0 needs one mono clip f32[samples], got shape {y.shape}")
    if len(y) < FRAME_LENGTH:
        raise ParamError(
            f"clip of {len(y)} samples is shorter than one pYIN frame ({FRAME_LENGTH} samples); pass a longer clip"
        )
    if not np.all(np.isfinite(y)):
        raise ParamError("estimate_f0 got NaN or Inf samples; check the generator's output")
    if target_midi is not None:
        f = float(midi_to_hz(target_midi))
        lo, hi = f / SEARCH_RATIO, f * SEARCH_RATIO
    else:
        lo, hi = DEFAULT_FMIN, DEFAULT_FMAX
    lo, hi = (lo if fmin is None else fmin), (hi if fmax is None else fmax)
    hi = min(hi, 0.45 * sr)
    if not 0 < lo < hi:
        raise ParamError(f"pitch search range fmin={lo:.1f} Hz .. fmax={hi:.1f} Hz is empty at sr={sr}; "
                         "pass a target_midi or a range below sr / 2")
    if np.max(np.abs(y)) < SILENCE:
        return float("nan")
    import librosa

    f0, voiced, _ = librosa.pyin(y, sr=sr, fmin=lo, fmax=hi, frame_length=FRAME_LENGTH, hop_length=HOP_LENGTH)
    voiced = voiced & np.isfinite(f0)
    return float(np.median(f0[voiced])) if voiced.any() else float("nan")


def semitone_error(f0, midi) -> np.ndarray:
    """``12 log2(f0 / f_midi)``: f64, NaN where ``f0`` is NaN (unvoiced)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return 12.0 * np.log2(np.asarray(f0, np.float64) / midi_to_hz(midi))


def pitch_errors(audios: np.ndarray | Sequence[np.ndarray], midis: Sequence[float], sr: int) -> np.ndarray:
    """Semitone errors f64[N] of clips ``audios`` f32[N, samples] against MIDI pitches ``midis`` [N] (NaN: unvoiced)."""
    if len(audios) != len(midis):
        raise ParamError(f"got {len(audios)} clips but {len(midis)} pitches; pass one MIDI pitch per clip")
    f0 = [estimate_f0(y, sr, target_midi=m) for y, m in zip(audios, midis)]
    return semitone_error(np.asarray(f0, np.float64), np.asarray(midis, np.float64))


def pitch_correct(y: np.ndarray, sr: int, midi: float, *, tolerance: float = TOLERANCE) -> bool:
    """True when the f0 of ``y`` f32[samples] is within ``tolerance`` semitones (1.0) of MIDI pitch ``midi``."""
    err = semitone_error(estimate_f0(y, sr, target_midi=midi), midi)
    return bool(np.abs(err) <= tolerance)  # NaN compares False: unvoiced is wrong


def pitch_accuracy(
    audios: np.ndarray | Sequence[np.ndarray], midis: Sequence[float], sr: int, *, tolerance: float = TOLERANCE
) -> float:
    """Fraction of clips f32[N, samples] whose f0 is within ``tolerance`` semitones of ``midis`` [N]."""
    if len(audios) == 0:
        raise ParamError("pitch_accuracy got no clips; pass at least one")
    err = pitch_errors(audios, midis, sr)
    return float(np.mean(np.abs(np.nan_to_num(err, nan=np.inf)) <= tolerance))
