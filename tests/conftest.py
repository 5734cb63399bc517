"""Shared fixtures: synthetic and real recorded test audio, made here (no downloads).

Real audio comes from Debian's fluidsynth + fluid-soundfont-gm (sampled instruments)
and espeak-ng (speech), which `.ci/run` installs. Where they are missing on a
developer's machine the fixtures skip with the install command; under CI (CI=true)
a missing tool is a failure, never a skip.
"""

import os

import numpy as np
import pytest

from audiox_jax.data import render

SR = 22050


def _real(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except render.ToolMissingError as err:
        if os.environ.get("CI"):
            pytest.fail(f"CI must have the real-audio renderers: {err}")
        pytest.skip(str(err))


@pytest.fixture(scope="session")
def speech():
    """About 2.8 s of espeak-ng speech at 22.05 kHz, f32[samples]."""
    return _real(render.render_speech, "The quick brown fox jumps over the lazy dog.", sr=SR)


@pytest.fixture(scope="session")
def piano():
    """A 1.5 s sampled-piano chord-ish note (C4) from the GM SoundFont, f32[samples]."""
    return _real(render.render_note, "piano", 60, velocity=110, hold_s=1.0, seconds=1.5, sr=SR)


def synthetic_signal(seconds=2.0, sr=SR, seed=0):
    """A chirp plus a harmonic tone, a click train and light noise: f32[samples]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    chirp = 0.3 * np.sin(2 * np.pi * (200 * t + 800 * t**2))
    tone = sum(0.15 / k * np.sin(2 * np.pi * 330 * k * t) for k in range(1, 6))
    clicks = np.zeros_like(t)
    clicks[:: sr // 4] = 0.5
    return (chirp + tone + clicks + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="session")
def synth():
    return synthetic_signal()


@pytest.fixture(scope="session", params=["synth", "speech", "piano"])
def signal(request):
    """Each test signal in turn: synthetic, recorded speech, recorded piano."""
    return request.getfixturevalue(request.param)
