"""Synthetic audio made in milliseconds: test signals now, a labelled toy data set later.

Everything is a pure function of its arguments and a seed (NumPy ``default_rng``).
"""

from __future__ import annotations

import numpy as np


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
