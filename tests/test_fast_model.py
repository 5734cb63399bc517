"""The shipped few-step model (`--model fast`): complete, and it plays the conditioned pitch in
one and two network evaluations, from the CLI and the Python API, offline."""

import jax
import numpy as np
import pytest
import soundfile as sf

from audiox_jax import cli
from audiox_jax.audio.pitch import pitch_errors
from audiox_jax.generator import load_pipeline
from audiox_jax.pipeline import default_seconds


@pytest.fixture(scope="module")
def pipe():
    return load_pipeline("fast")


def test_shipped_fast_model_is_a_few_step_twin_of_the_default(pipe):
    default = load_pipeline("default")
    cfg = pipe.config
    assert cfg.model.interval and cfg.diffusion.objective != "diffusion"
    assert (cfg.sampling.sampler, cfg.sampling.steps) == ("fewstep", 2)
    assert pipe.model.vocab == default.model.vocab and cfg.audio == default.config.audio
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(pipe.model.params))
    assert 1e6 < n_params < 7.5e6  # <= 30 MB of float32


@pytest.mark.parametrize("steps", [1, 2])
def test_cli_fast_flute_a4_in_few_network_evaluations(steps, tmp_path, capsys):
    out = tmp_path / "a4.wav"
    assert cli.main(["generate", "--model", "fast", "--instrument", "flute", "--pitch", "A4", "--steps", str(steps),
                     "--out", str(out), "--no-cache"]) == 0
    assert f"{steps} network evaluations" in capsys.readouterr().out
    y, sr = sf.read(out)
    n = int(round(default_seconds(load_pipeline("fast").config) * sr))
    assert sr == 22050 and len(y) == n and np.max(np.abs(y)) > 0.05
    err = pitch_errors(y[None].astype(np.float32), [69], sr)
    assert abs(float(err[0])) <= 1.0, err  # A4 within a semitone


@pytest.mark.parametrize("steps", [1, 2])
def test_fast_model_plays_the_requested_pitches(pipe, steps):
    notes = [("piano", "C4", 60), ("flute", "A4", 69), ("organ", "G3", 55), ("strings", "E5", 76),
             ("brass", "D4", 62), ("guitar", "B3", 59)]
    r = pipe.generate([{"instrument": i, "pitch": p} for i, p, _ in notes], steps=steps, seed=1)
    n = int(round(default_seconds(pipe.config) * r.sr))
    assert r.nfe == steps and r.audio.shape == (6, n) and np.all(np.isfinite(r.audio))
    err = pitch_errors(r.audio, [m for _, _, m in notes], r.sr)
    assert np.sum(np.abs(np.nan_to_num(err, nan=99)) <= 1.0) >= 5, err  # eval: ~95 % within a semitone
