"""The model shipped in the package generates the conditioned pitch and instrument, offline."""

import numpy as np
import pytest

from audiox_jax.audio.pitch import pitch_errors
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


def test_a_longer_request_gives_the_note_its_release_and_silence(pipe):
    """The model knows where its notes end (whole 1.5 s notes, length-conditioned): asked for 2.5 s it
    plays the note and its release, then silence, and never clips."""
    r = pipe.generate([{"instrument": "organ", "pitch": "C4"}, {"instrument": "flute", "pitch": "G4"}],
                      seconds=2.5, seed=0)
    sr = r.sr
    assert r.audio.shape == (2, int(2.5 * sr))
    rms_db = lambda y: 20 * np.log10(np.sqrt(np.mean(y.astype(np.float64) ** 2)) + 1e-12)  # noqa: E731
    for y in r.audio:
        held, tail = rms_db(y[int(0.1 * sr):int(0.7 * sr)]), rms_db(y[int(1.9 * sr):])
        assert held > -30 and tail < -60, (held, tail)  # sounding while held, silent after its release
        assert np.max(np.abs(y)) < 2.0  # at most a little over full scale (the CLI limits it to -1 dBFS)
