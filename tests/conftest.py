"""Shared fixtures: synthetic and real recorded test audio (no downloads), and a tiny random DiT.

Real audio comes from Debian's fluidsynth + fluid-soundfont-gm (sampled instruments)
and espeak-ng (speech), which `.ci/run` installs, as it installs torch for the torch
parity tests. Where one is missing on a developer's machine the tests that need it skip
with the install command; under CI (CI=true, set by `.ci/run`) a missing dependency is a
failure, never a skip (:func:`_missing`).
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from audiox_jax.config import load_config
from audiox_jax.data import render
from audiox_jax.models.dit import DiT

SR = 22050


def _missing(what: str) -> None:
    """A test dependency is missing: fail under CI (CI=true), skip elsewhere; ``what`` names it
    and the install command."""
    if os.environ.get("CI"):
        pytest.fail(f"CI must have {what}")
    pytest.skip(what)


def _real(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` from the real-audio renderers; a missing tool goes to :func:`_missing`."""
    try:
        return fn(*args, **kwargs)
    except render.ToolMissingError as err:
        _missing(f"the real-audio renderers: {err}")


def tiny_dit(*overrides: str, seed: int = 0, scale: float = 0.05):
    """``(config, params)``: a tiny DiT (dim 32, 2 heads, 1 block, 4 NNLS + 4 Griffin-Lim iterations;
    ``overrides`` on top, e.g. the labels) with random weights: its init plus N(0, scale^2) noise on
    every leaf, drawn with numpy, so adaLN-Zero's zero-initialised layers are live."""
    config = load_config(None, ["model.dim=32", "model.depth=1", "model.heads=2", "audio.gla_iters=4",
                                "audio.nnls_iters=4", *overrides])
    x = jnp.zeros((1, config.model.n_mels, config.model.patch))
    cond = {"labels": jnp.zeros((1, len(config.model.labels)), jnp.int32)}
    params = DiT(config.model).init(jax.random.key(seed), x, jnp.zeros((1,)), cond)["params"]
    leaves, tree = jax.tree.flatten(params)
    rng = np.random.default_rng(seed)
    return config, tree.unflatten([p + scale * rng.standard_normal(p.shape).astype(np.float32) for p in leaves])


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
