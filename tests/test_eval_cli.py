"""`audiox-jax render-notes` + `audiox-jax eval` end to end on a tiny real note set and a small model."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from audiox_jax import cli, modelio
from audiox_jax.audio.mel import MelStats
from audiox_jax.config import load_config
from audiox_jax.errors import ParamError
from audiox_jax.evaluation.model_eval import label_id_map
from audiox_jax.models.dit import DiT


@pytest.fixture(scope="module")
def notes_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("notes")
    rc = cli.main(["render-notes", "--out", str(out), "--instruments", "piano,flute", "--pitches", "60,67",
                   "--velocities", "70,100,120"])
    if rc != 0:
        pytest.fail("render-notes failed (are fluidsynth and fluid-soundfont-gm installed?)")
    return str(out)


def _tiny_model(path):
    cfg = load_config(None, ["model.dim=32", "model.depth=1", "model.heads=2",
                             "model.labels=[[instrument,2],[pitch,2]]", "sampling.steps=2",
                             "audio.gla_iters=8", "audio.nnls_iters=8"])
    params = DiT(cfg.model).init(jax.random.key(0), jnp.zeros((1, 80, 4)), jnp.zeros((1,)),
                                 {"labels": jnp.zeros((1, 2), jnp.int32)})["params"]
    modelio.save_for_generation(str(path), params, cfg, MelStats(kind="range", lo=-11.5, hi=2.0),
                                {"instrument": ("flute", "piano"), "pitch": ("060", "067")})
    return str(path)


def test_sweep_writes_json_and_plot(notes_dir, tmp_path):
    model = _tiny_model(tmp_path / "m")
    out = tmp_path / "sweep.json"
    rc = cli.main(["eval", "--checkpoint", model, "--data", notes_dir, "--sweep", "--samplers", "euler,heun",
                   "--sweep-steps", "1,2", "--max-combos", "3", "--out", str(out), "--no-progress"])
    assert rc == 0
    result = json.loads(out.read_text())
    got = [(r["sampler"], r["steps"], r["nfe"]) for r in result["settings"]]
    assert got == [("euler", 1, 1), ("euler", 2, 2), ("heun", 1, 1), ("heun", 2, 3)]
    assert result["combinations"] == 3
    assert all(math.isfinite(r["wall_s_per_clip"]) and set(r["probe_accuracy"]) == {"instrument", "pitch"}
               for r in result["settings"])
    assert (tmp_path / "sweep.png").stat().st_size > 5000


def test_render_and_eval(notes_dir, tmp_path, capsys):
    cfg = load_config(None, ["model.dim=32", "model.depth=1", "model.heads=2",
                             "model.labels=[[instrument,2],[pitch,2]]", "sampling.steps=2",
                             "audio.gla_iters=8", "audio.nnls_iters=8", "data.clip_seconds=1.0"])
    params = DiT(cfg.model).init(jax.random.key(0), jnp.zeros((1, 80, 4)), jnp.zeros((1,)),
                                 {"labels": jnp.zeros((1, 2), jnp.int32)})["params"]
    model = tmp_path / "model"
    # the model's vocabulary lists the classes in another order than the data: ids are mapped by name
    modelio.save_for_generation(str(model), params, cfg, MelStats(kind="range", lo=-11.5, hi=2.0),
                                {"instrument": ("piano", "flute"), "pitch": ("067", "060")})
    out = tmp_path / "report.json"
    rc = cli.main(["eval", "--checkpoint", str(model), "--data", notes_dir, "--batch", "4", "--out", str(out),
                   "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    report = json.loads(out.read_text())
    assert report["combinations"] == 4 and report["generated"] == 4 and report["real_reference_clips"] == 12
    # an untrained (zero-output) model makes no pitched notes; the real references are right
    assert report["pitch"]["accuracy"] <= 0.25
    assert report["pitch"]["accuracy_real"] == 1.0
    assert set(report["probe"]) == {"instrument", "pitch"}
    assert report["vocoder"]["spectral_convergence"] < 0.6
    assert report["frechet"]["instrument"]["generated"] > report["frechet"]["instrument"]["real_matched"]
    assert "pitch" in capsys.readouterr().out


def test_label_id_map_by_name():
    maps = label_id_map({"a": ("x", "y", "z")}, {"a": ("z", "x")}, ("a",))
    assert maps[0].tolist() == [2, 0]
    with pytest.raises(ParamError, match="classes the model was not trained on"):
        label_id_map({"a": ("x",)}, {"a": ("q",)}, ("a",))


def test_prepare_and_train_tiny_on_real_notes(notes_dir, tmp_path):
    """Issue 4's end-to-end path on real recorded audio: fluidsynth GM notes -> prepare -> train."""
    cache, work = tmp_path / "cache", tmp_path / "run"
    labels = ["--set", "data.labels=[instrument, pitch]"]
    assert cli.main(["prepare", "--audio", notes_dir, "--config", "configs/tiny.yaml", "--labels-csv",
                     f"{notes_dir}/labels.csv", "--out", str(cache), "--no-progress"] + labels) == 0
    assert cli.main(["train", "--config", "configs/tiny.yaml", "--workdir", str(work), "--no-progress",
                     "--set", f"data.cache={cache}", "--set", "train.steps=120", "--set", "train.log_every=20",
                     "--set", "train.ckpt_every=60", "--set", "train.eval_every=0", "--set", "train.demo_every=0",
                     "--set", "data.val_fraction=0.0"] + labels) == 0
    rows = [json.loads(l) for l in (work / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) == 6 and all(np.isfinite(losses))
    assert losses[-1] < 0.8 * losses[0], losses  # the loss really falls on real audio
    assert (work / "model" / "params.msgpack").exists()
