"""Training: EMA, the step (loss falls, grad accumulation, device layouts), NaN guard,
checkpoints and exact resume after SIGKILL, the CLI end to end, and the generation export.

Everything runs on configs/tiny.yaml sizes (8 kHz, 0.5 s clips, a 2-block 64-wide DiT).
Multi-device tests run in a subprocess with 8 forced CPU devices (XLA_FLAGS must be set
before jax is imported).
"""

import dataclasses
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from audiox_jax import cli
from audiox_jax.audio import MelStats
from audiox_jax.config import load_config
from audiox_jax.data.iterator import BatchIterator
from audiox_jax.data.synthetic import write_synthetic_folder
from audiox_jax.errors import AudioxError, ParamError
from audiox_jax.modelio import load_for_generation
from audiox_jax.training import checkpoint as ckpt
from audiox_jax.training.data import load_train_data, model_batch
from audiox_jax.training.ema import ema, ema_decay
from audiox_jax.training.loop import fresh_state, is_time, make_layout, train
from audiox_jax.training.metrics import read_metrics
from audiox_jax.training.sharding import make_mesh
from audiox_jax.training.state import init_state, make_ema, make_optimizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "configs", "tiny.yaml")
QUIET = ["train.eval_every=0", "train.demo_every=0", "train.ckpt_every=0"]
ONE_BLOCK = ["model.dim=32", "model.depth=1"]  # compiles faster, where the loss value does not matter


def tiny(*overrides):
    return load_config(TINY, list(overrides))


def losses(workdir):
    return [(r["step"], r["loss"]) for r in read_metrics(workdir) if "loss" in r]


def run_python(code, env_extra=None, timeout=300):
    env = {**os.environ, **(env_extra or {})}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


# ------------------------------------------------------------------ EMA and schedule helpers


def test_ema_constant_decay_matches_closed_form():
    e = ema(0.9)
    state = e.init({"w": jnp.zeros(3)})
    p = {"w": jnp.array([1.0, -2.0, 4.0])}
    for _ in range(5):
        state = e.update(p, state)
    np.testing.assert_allclose(state.ema["w"], (1 - 0.9**5) * p["w"], rtol=1e-6)
    assert int(state.count) == 5


def test_ema_warmup_copies_first_then_ramps_to_decay():
    e = ema(0.99, warmup=10)
    state = e.init({"w": jnp.zeros(2)})
    state = e.update({"w": jnp.array([3.0, 5.0])}, state)  # count 0: d = 0, a copy
    np.testing.assert_array_equal(state.ema["w"], [3.0, 5.0])
    np.testing.assert_allclose(ema_decay(jnp.int32(5), 0.99, 10), 0.495, rtol=1e-6)
    np.testing.assert_allclose(ema_decay(jnp.int32(50), 0.99, 10), 0.99, rtol=1e-6)
    state = e.update({"w": jnp.array([13.0, 5.0])}, state)  # d = 0.099
    np.testing.assert_allclose(state.ema["w"], [0.099 * 3 + 0.901 * 13, 5.0], rtol=1e-6)
    with pytest.raises(ParamError, match="decay=1.0 must be in"):
        ema(1.0)


def test_is_time():
    assert [s for s in range(1, 11) if is_time(s, 4)] == [4, 8]
    assert not any(is_time(s, 0) for s in range(5))


# ------------------------------------------------------------------ the step


def test_loss_falls_on_the_synthetic_set(tmp_path):
    cfg = tiny(*QUIET, "train.log_every=1")
    train(cfg, str(tmp_path), progress=False)
    curve = np.array([loss for _, loss in losses(str(tmp_path))])
    assert len(curve) == cfg.train.steps == 300
    first, last = curve[:20].mean(), curve[-20:].mean()
    assert last < 0.6 * first, (first, last)


def test_grad_accumulation_equals_one_step_on_the_whole_batch():
    base = (*ONE_BLOCK, "train.warmup_steps=0", "data.synthetic_size=24", "data.val_fraction=0")
    data = load_train_data(tiny(*base))
    batch = model_batch(data.mels[:8], data.labels[:8], data.stats, 4)
    mesh = make_mesh(jax.devices()[:1])
    finals = {}
    for k in (1, 2):
        cfg = dataclasses.replace(data.config, train=tiny(*base, f"train.grad_accum={k}").train)
        opt, ema_fn = make_optimizer(cfg.train), make_ema(cfg.train)
        layout = make_layout(cfg, opt, ema_fn, mesh)
        state = fresh_state(cfg, layout, opt, ema_fn)
        seen = []
        for update in range(2):
            for j in range(k):
                part = {key: v[j * 8 // k:(j + 1) * 8 // k] for key, v in batch.items()}
                state, m = layout.step(state, layout.put(part))
                seen.append(float(m["loss"]))
        assert layout.step._cache_size() == 1  # compiled once
        finals[k] = (state, np.mean(seen))
    (s1, l1), (s2, l2) = finals[1], finals[2]
    assert int(s1.step) == 2 and int(s2.step) == 4
    np.testing.assert_allclose(l1, l2, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s2.params)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-6)
    for a, b in zip(jax.tree.leaves(s1.ema_params), jax.tree.leaves(s2.ema_params)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-6)


PARALLEL = r"""
import json, sys, tempfile
import jax
from audiox_jax.config import load_config
from audiox_jax.training.loop import train
from audiox_jax.training.metrics import read_metrics
from audiox_jax.modelio import load_for_generation
out = {"devices": jax.device_count()}
for mode in sys.argv[1:]:
    par, _, fsdp = mode.partition("+")
    layout = [f"train.parallel={par}", f"train.fsdp={str(bool(fsdp)).lower()}"]
    cfg = load_config("configs/tiny.yaml", OVERRIDES + layout)
    w = tempfile.mkdtemp()
    train(cfg, w, progress=False)
    out[mode] = {"loss": [r["loss"] for r in read_metrics(w) if "loss" in r],
                 "val": [r["val_loss"] for r in read_metrics(w) if "val_loss" in r],
                 "ema0": float(jax.tree.leaves(load_for_generation(w + "/model").params)[0].ravel()[0])}
print(json.dumps(out))
"""


def test_jit_sharded_pmap_and_single_device_give_the_same_losses():
    overrides = [*QUIET, *ONE_BLOCK, "train.steps=5", "train.log_every=1", "train.warmup_steps=0", "train.ema_warmup=1",
                 "train.eval_every=5", "data.batch_size=16", "data.synthetic_size=48"]
    code = PARALLEL.replace("OVERRIDES", repr(overrides))
    multi = json.loads(run_python(f"import sys; sys.argv[1:] = ['jit', 'jit+fsdp', 'pmap']\n{code}",
                                  {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}).splitlines()[-1])
    single = json.loads(run_python(f"import sys; sys.argv[1:] = ['jit']\n{code}",
                                   {"XLA_FLAGS": ""}).splitlines()[-1])
    assert multi["devices"] == 8 and single["devices"] == 1
    ref = single["jit"]
    assert len(ref["loss"]) == 5 and ref["loss"][0] != ref["loss"][-1] and len(ref["val"]) == 1
    for mode in ("jit", "jit+fsdp", "pmap"):
        np.testing.assert_allclose(multi[mode]["loss"], ref["loss"], rtol=2e-5, err_msg=mode)
        np.testing.assert_allclose(multi[mode]["val"], ref["val"], rtol=2e-5, err_msg=mode)
        np.testing.assert_allclose(multi[mode]["ema0"], ref["ema0"], rtol=1e-4, atol=1e-6, err_msg=mode)


# ------------------------------------------------------------------ NaN guard


def test_non_finite_loss_stops_naming_step_and_batch_and_keeps_last_good_checkpoint(tmp_path):
    cfg = tiny(*QUIET, *ONE_BLOCK, "train.ckpt_every=2", "train.log_every=1000", "train.steps=8")
    data = load_train_data(cfg)
    it = BatchIterator({"i": np.arange(len(data.labels))}, 8, seed=0, indices=data.train_idx)
    bad = int(it.global_batch(0, 3)[2])  # in the 4th update's batch
    mels = np.array(data.mels)
    mels[bad, 3, 5] = np.nan
    with pytest.raises(AudioxError, match=r"non-finite training value at step 4 .*") as err:
        train(cfg, str(tmp_path), data=data._replace(mels=mels), progress=False)
    msg = str(err.value)
    assert f"synthetic item {bad} " in msg and str(bad) in msg and "last good checkpoint is step 2" in msg
    with ckpt.make_manager(str(tmp_path), cfg.train) as manager:
        assert manager.all_steps() == [2]
        opt, ema_fn = make_optimizer(cfg.train), make_ema(cfg.train)
        layout = make_layout(data.config, opt, ema_fn, make_mesh())
        shapes = jax.eval_shape(lambda: init_state(data.config, opt, ema_fn))
        got = ckpt.restore(manager, ckpt.abstract_like(shapes, layout.shardings))
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(got.state.params))


# ------------------------------------------------------------------ checkpoints


def test_checkpoint_round_trip(tmp_path):
    data = load_train_data(tiny("data.synthetic_size=24"))
    cfg = data.config
    opt, ema_fn = make_optimizer(cfg.train), make_ema(cfg.train)
    layout = make_layout(cfg, opt, ema_fn, make_mesh())
    state = fresh_state(cfg, layout, opt, ema_fn)
    state = state.replace(step=state.step + 14, key=state.key + 1)
    data_state = {"seed": 0, "epoch": 3, "position": 1, "n": 20, "batch_size": 8, "shuffle": True,
                  "drop_remainder": True}
    with ckpt.make_manager(str(tmp_path), cfg.train) as manager:
        ckpt.save(manager, 7, state, data_state=data_state, config=cfg, stats=data.stats, vocab=data.vocab)
        manager.wait_until_finished()
    with ckpt.make_manager(str(tmp_path), cfg.train) as manager:
        got = ckpt.restore(manager, ckpt.abstract_like(state, layout.shardings))
    assert got.step == 7 and got.data_state == data_state and got.config == cfg
    assert got.stats == data.stats and got.vocab == data.vocab
    assert jax.tree.structure(got.state) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(got.state), jax.tree.leaves(state)):
        np.testing.assert_array_equal(a, b)


def test_keeps_the_latest_and_the_best_by_validation_loss(tmp_path):
    cfg = tiny("train.keep=1", "train.keep_best=1")
    data_state = {"seed": 0, "epoch": 0, "position": 0, "n": 1, "batch_size": 1, "shuffle": True,
                  "drop_remainder": True}
    with ckpt.make_manager(str(tmp_path), cfg.train) as manager:
        for step, val in [(1, 3.0), (2, 1.0), (3, 2.0), (4, None), (5, 2.5)]:
            ckpt.save(manager, step, {"w": jnp.full(2, step, jnp.float32)}, data_state=data_state, config=cfg,
                      stats=MelStats(), vocab={}, val_loss=val)
            manager.wait_until_finished()
        assert manager.all_steps() == [2, 5]


RESUME_ARGS = [*ONE_BLOCK, "train.steps=160", "train.log_every=1", "train.ckpt_every=20", "train.eval_every=40",
               "train.keep_best=1", "train.demo_every=0", "data.synthetic_size=48"]


def _train_cmd(workdir):
    sets = [a for s in RESUME_ARGS for a in ("--set", s)]
    return [sys.executable, "-m", "audiox_jax.cli", "train", "--config", TINY, "--workdir", workdir,
            "--no-progress", *sets]


def _finished_checkpoints(workdir):
    d = os.path.join(workdir, "checkpoints")
    return sorted(int(n) for n in os.listdir(d) if n.isdigit()) if os.path.isdir(d) else []


def test_exact_resume_after_sigkill(tmp_path):
    whole, killed = str(tmp_path / "whole"), str(tmp_path / "killed")
    subprocess.run(_train_cmd(whole), cwd=ROOT, check=True, capture_output=True, timeout=300)

    proc = subprocess.Popen(_train_cmd(killed), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            done = _finished_checkpoints(killed)
            if done and losses(killed) and losses(killed)[-1][0] > done[-1] + 2:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the run finished before it could be killed; make it longer"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    at_kill = losses(killed)
    assert _finished_checkpoints(killed) and at_kill[-1][0] < 160

    resumed = subprocess.run(_train_cmd(killed), cwd=ROOT, check=True, capture_output=True, text=True, timeout=300)
    start = int(re.search(r"resumed from the checkpoint at step (\d+)", resumed.stdout).group(1))
    assert 20 <= start < at_kill[-1][0] and start % 20 == 0
    assert losses(killed) == losses(whole)  # identical floats, every step
    val = lambda w: [(r["step"], r["val_loss"]) for r in read_metrics(w) if "val_loss" in r]  # noqa: E731
    assert val(killed) == val(whole) and len(val(whole)) == 4
    assert _finished_checkpoints(killed)[-1] == 160


# ------------------------------------------------------------------ CLI end to end and export


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """prepare + train (6 steps, demos at the end) from the CLI on a small synthetic folder."""
    root = tmp_path_factory.mktemp("cli")
    audio, cache, work = root / "audio", root / "cache", root / "work"
    write_synthetic_folder(str(audio), 3, sr=8000, seconds=1.0, seed=1)
    assert cli.main(["prepare", "--audio", str(audio), "--config", TINY, "--out", str(cache),
                     "--labels-csv", str(audio / "labels.csv"), "--no-progress"]) == 0
    assert cli.main(["train", "--config", TINY, "--workdir", str(work), "--no-progress",
                     "--set", f"data.cache={cache}", "--set", "train.steps=6", "--set", "train.log_every=2",
                     "--set", "train.ckpt_every=3", "--set", "train.demo_every=6"]) == 0
    return cache, work


def test_cli_prepare_and_train_end_to_end(cli_run):
    cache, work = cli_run
    assert os.path.isfile(cache / "manifest.json")
    assert [s for s, _ in losses(str(work))] == [2, 4, 6]
    assert _finished_checkpoints(str(work)) == [3, 6]
    saved = json.loads((work / "config.json").read_text())
    assert saved["model"]["labels"] == [["kind", 4], ["pitch", 3]]  # derived from the cache vocab
    demos = sorted(os.listdir(work / "demos" / "step_0000006"))
    assert "kind=tone.wav" in demos and "pitch=C4.png" in demos and len(demos) == 2 * (4 + 3)
    # TensorBoard: the event file decodes (TFRecord framing, Event protos) to the logged losses
    from tensorboardX.proto.event_pb2 import Event

    (events,) = os.listdir(work / "tb")
    blob, got = (work / "tb" / events).read_bytes(), {}
    while blob:
        (n,) = struct.unpack("<Q", blob[:8])
        event = Event.FromString(blob[12:12 + n])
        blob = blob[16 + n:]
        for v in event.summary.value:
            got[(v.tag, event.step)] = v.simple_value
    assert {s: got[("train/loss", s)] for s, _ in losses(str(work))} == pytest.approx(dict(losses(str(work))))


def test_generation_export_loads_and_generates(cli_run, tmp_path):
    from audiox_jax import pipeline

    _, work = cli_run
    out = ckpt.export_for_generation(str(work), str(tmp_path / "export"), step=6)
    model = load_for_generation(out)
    final = load_for_generation(str(work / "model"))  # written at the end of training
    for a, b in zip(jax.tree.leaves(model.params), jax.tree.leaves(final.params)):
        np.testing.assert_array_equal(a, b)
    assert model.vocab["kind"] == ("chord", "noise_burst", "sweep", "tone") and model.config == final.config
    labels = jnp.array([[model.vocab["kind"].index("tone"), -1]], jnp.int32)
    g = pipeline.generate_jit(model.params, jax.random.key(0), {"labels": labels},
                              model=pipeline.ModelSpec.of(model.config, model.stats),
                              spec=pipeline.sampling_spec(model.config, seconds=0.5),
                              guide=pipeline.guidance(model.config, 2.0))
    assert g.audio.shape == (1, 4000) and np.isfinite(np.asarray(g.audio)).all()
    with pytest.raises(AudioxError, match="not an exported model"):
        load_for_generation(str(tmp_path))


def test_config_errors_are_one_line_naming_the_key(tmp_path, capsys):
    cases = [(["--set", "train.bogus=1"], r"unknown key\(s\) train.bogus; valid keys: seed, steps"),
             (["--set", "train.lr=fast"], r"train.lr='fast' must be a number"),
             (["--set", "train.parallel=tpu"], r"train.parallel='tpu' is not valid; choose one of \['jit', 'pmap'\]"),
             (["--set", "trian.lr=1"], r"unknown section 'trian'")]
    for extra, pattern in cases:
        assert cli.main(["train", "--config", TINY, "--workdir", str(tmp_path), *extra]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and err.startswith("audiox-jax train: error: ")
        assert re.search(pattern, err), err
    assert cli.main(["train", "--config", str(tmp_path / "nope.yaml"), "--workdir", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
