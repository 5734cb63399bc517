"""The model shipped in the package generates the conditioned pitch and instrument, offline."""

import numpy as np
import pytest

from audiox_jax.evaluation.pitch import pitch_errors
from audiox_jax.generator import load_pipeline


@pytest.fixture(scope="module")
def pipe():
    return load_pipeline("default")


def test_shipped_model_is_complete(pipe):
    assert [n for n, _ in pipe.config.model.labels] == ["instrument", "pitch"]
    assert set(pipe.model.vocab["instrument"]) == {"brass", "flute", "guitar", "organ", "piano", "strings"}
    n_params = sum(int(np.prod(p.shape)) for p in __import__("jax").tree.leaves(pipe.model.params))
    assert 1e6 < n_params < 7.5e6  # <= 30 MB of float32


def test_shipped_model_plays_the_requested_pitch(pipe):
    notes = [("piano", "C4", 60), ("flute", "A4", 69), ("organ", "G3", 55), ("strings", "E5", 76)]
    r = pipe.generate([{"instrument": i, "pitch": p} for i, p, _ in notes], seconds=1.0, steps=8, seed=0)
    assert r.audio.shape == (4, 22050) and np.all(np.isfinite(r.audio))
    assert np.max(np.abs(r.audio)) > 0.05  # not silence
    err = pitch_errors(r.audio, [m for _, _, m in notes], r.sr)
    assert np.sum(np.abs(np.nan_to_num(err, nan=99)) <= 1.0) >= 3, err  # within a semitone (eval: ~97 %)
