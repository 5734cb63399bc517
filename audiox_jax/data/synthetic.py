"""Synthetic audio made in milliseconds: test signals and a labelled toy data set.

Everything is a pure function of its arguments and a seed (NumPy ``default_rng``).

The toy data set has two labels. "kind": chord (major triad of harmonic tones),
noise_burst (white noise band-passed around the pitch), sweep (harmonic tone gliding
up one octave over the item) and tone (harmonic tone); "pitch": the note names of
``PITCHES``. Item ``i`` has kind ``KINDS[i % 4]`` and pitch ``PITCHES[(i // 4) % 6]``,
so every 24 consecutive items cover each (kind, pitch) pair once, and its audio
depends only on ``(seed, i)`` (``default_rng([seed, i])``: random onset, level, decay,
detune and phases), so a longer data set starts with the shorter one. Vocabularies
list class names sorted, as :func:`audiox_jax.data.prepare.prepare` does.
"""

from __future__ import annotations

import csv
import os

import numpy as np

from audiox_jax.data.render import midi_to_note
from audiox_jax.errors import ParamError

KINDS = ("chord", "noise_burst", "sweep", "tone")
PITCHES = (48, 55, 60, 64, 67, 72)  # MIDI: C3 G3 C4 E4 G4 C5 (A4 = 69 = 440 Hz)
FORMATS = ("wav", "flac")


def music_like(seconds: float = 10.0, sr: int = 22050, seed: int = 0) -> np.ndarray:
    """A vibrato harmonic tone, a chirp and gated noise bursts: f32[round(seconds * sr)] in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sr))) / sr
    f0 = 220 * (1 + 0.01 * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    y = sum(0.2 / k * np.sin(k * phase) for k in range(1, 8))
    y = y + 0.1 * np.sin(2 * np.pi * (300 * t + 150 * t**2) % (2 * np.pi))
    gate = (np.sin(2 * np.pi * 0.5 * t) > 0.7).astype(float)
    y = y + 0.05 * gate * rng.standard_normal(t.size)
    return y.astype(np.float32)


def synthetic_dataset(
    n: int, *, sr: int = 22050, seconds: float = 1.0, seed: int = 0
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, tuple[str, ...]]]:
    """A labelled toy data set (see the module docstring).

    Args:
      n: number of items.
      sr: sample rate in Hz.
      seconds: length of every item, e.g. 1.0 s = 22050 samples at 22.05 kHz.
      seed: the data set's seed; item ``i`` uses ``default_rng([seed, i])``.
    Returns:
      ``(audio, labels, vocab)``: audio f32[n, round(seconds * sr)] with peaks in
      [0.3, 0.7]; labels {"kind": i32[n], "pitch": i32[n]} as indices into
      vocab {"kind": sorted kind names, "pitch": sorted note names}.
    """
    if n < 1:
        raise ParamError(f"n={n!r} must be >= 1 items")
    if not seconds > 0 or sr < 1:
        raise ParamError(f"seconds={seconds!r} and sr={sr!r} must be positive; try seconds=1.0, sr=22050")
    samples = int(round(seconds * sr))
    vocab = {"kind": KINDS, "pitch": tuple(sorted(midi_to_note(p) for p in PITCHES))}
    idx = np.arange(n)
    kinds = idx % len(KINDS)
    midis = np.asarray(PITCHES)[(idx // len(KINDS)) % len(PITCHES)]
    audio = np.stack([
        _item(KINDS[k], int(m), sr, samples, np.random.default_rng([seed, int(i)]))
        for i, k, m in zip(idx, kinds, midis)
    ])
    pitch_ids = np.asarray([vocab["pitch"].index(midi_to_note(int(m))) for m in midis], np.int32)
    return audio, {"kind": kinds.astype(np.int32), "pitch": pitch_ids}, vocab


def _item(kind: str, midi: int, sr: int, samples: int, rng: np.random.Generator) -> np.ndarray:
    """One item f32[samples] of ``kind`` at MIDI pitch ``midi``, peak-normalised to a random level."""
    t = np.arange(samples) / sr
    f0 = 440.0 * 2.0 ** ((midi - 69) / 12) * (1 + rng.uniform(-0.005, 0.005))
    onset, level = rng.uniform(0.0, 0.05), rng.uniform(0.3, 0.7)
    decay = rng.uniform(8.0, 15.0) if kind == "noise_burst" else rng.uniform(1.5, 4.0)
    tt = np.maximum(t - onset, 0.0)
    env = np.where(t >= onset, np.minimum(tt / 0.005, 1.0) * np.exp(-decay * tt), 0.0)  # 5 ms attack
    if kind == "tone":
        y = _harmonic(2 * np.pi * f0 * t, f0, sr, rng)
    elif kind == "chord":
        y = sum(_harmonic(2 * np.pi * f0 * 2 ** (s / 12) * t, f0 * 2 ** (s / 12), sr, rng) for s in (0, 4, 7))
    elif kind == "sweep":
        T = max(samples / sr, 1e-3)  # exponential glide f0 -> 2 f0 over the item
        y = _harmonic(2 * np.pi * f0 * T / np.log(2) * (2 ** (t / T) - 1), 2 * f0, sr, rng)
    elif kind == "noise_burst":
        spec = np.fft.rfft(rng.standard_normal(samples))
        f = np.fft.rfftfreq(samples, 1 / sr)
        y = np.fft.irfft(spec * np.exp(-0.5 * ((f - f0) / (0.25 * f0)) ** 2), samples)
    else:
        raise ParamError(f"kind={kind!r} must be one of {KINDS}")
    y = env * y
    return (level * y / max(np.max(np.abs(y)), 1e-9)).astype(np.float32)


def _harmonic(phase: np.ndarray, f_top: float, sr: int, rng: np.random.Generator, n_harm: int = 8) -> np.ndarray:
    """Sum of up to ``n_harm`` harmonics of ``phase`` with 1/k amplitudes, those below Nyquist at ``f_top``."""
    ks = [k for k in range(1, n_harm + 1) if k * f_top < sr / 2] or [1]
    return sum(np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k for k in ks)


def write_synthetic_folder(
    out_dir: str,
    n_per_class: int,
    *,
    sr: int = 22050,
    seconds: float = 1.0,
    seed: int = 0,
    fmt: str = "wav",
    csv_name: str | None = "labels.csv",
) -> list[str]:
    """Write the toy data set as audio files in class sub-folders, for ``prepare``.

    Files are ``out_dir/<kind>/<kind>_<pitch>_<i:04d>.<fmt>`` (16-bit PCM), ``n_per_class``
    per kind, so folder labels give "kind"; with ``csv_name`` a ``path,kind,pitch`` CSV
    is written too (paths relative to ``out_dir``).

    Returns:
      the paths written, audio files first in item order, then the CSV.
    """
    import soundfile as sf

    if fmt not in FORMATS:
        raise ParamError(f"fmt={fmt!r} must be one of {FORMATS}")
    if n_per_class < 1:
        raise ParamError(f"n_per_class={n_per_class!r} must be >= 1")
    audio, labels, vocab = synthetic_dataset(n_per_class * len(KINDS), sr=sr, seconds=seconds, seed=seed)
    rows, paths = [], []
    for i, y in enumerate(audio):
        kind, pitch = vocab["kind"][labels["kind"][i]], vocab["pitch"][labels["pitch"][i]]
        rel = f"{kind}/{kind}_{pitch}_{i:04d}.{fmt}"
        path = os.path.join(out_dir, *rel.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        sf.write(path, y, sr, subtype="PCM_16")
        rows.append((rel, kind, pitch))
        paths.append(path)
    if csv_name is not None:
        path = os.path.join(out_dir, csv_name)
        with open(path, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([("path", "kind", "pitch"), *rows])
        paths.append(path)
    return paths
