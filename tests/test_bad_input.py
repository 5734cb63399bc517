"""Bad input meets a one-line error naming the input and the fix (exit status 2), a logged
skip with its reason, or a documented conversion; never a traceback, never lost work (issue 14)."""

import os
import re

import numpy as np
import pytest
import soundfile as sf

from audiox_jax import cli
from audiox_jax.errors import AudioxError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "configs", "tiny.yaml")


def one_line_error(capsys, command: str) -> str:
    """The CLI's stderr, checked to be the single ``audiox-jax COMMAND: error: ...`` line."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"audiox-jax {command}: error: "), err
    return lines[0]


# ------------------------------------------------------------------ config


@pytest.mark.parametrize("value", ["-1e-3", "0", ".nan", ".inf"])
def test_a_learning_rate_that_is_not_positive_and_finite_is_rejected(tmp_path, capsys, value):
    assert cli.main(["train", "--config", TINY, "--workdir", str(tmp_path / "w"), "--set", f"train.lr={value}"]) == 2
    assert re.search(r"train\.lr=\S+ must be a finite number > 0", one_line_error(capsys, "train"))
    assert not (tmp_path / "w").exists()  # refused before anything was written


# ------------------------------------------------------------------ prepare


def _prepare(audio, out, *extra):
    """`audiox-jax prepare` at 16 kHz (tiny.yaml's front end otherwise), labels from sub-folders."""
    return cli.main(["prepare", "--audio", str(audio), "--config", TINY, "--out", str(out), "--no-progress",
                     "--set", "audio.sr=16000", "--set", "data.labels=[label]", *extra])


def _tone(seconds=0.6, sr=16000, hz=440.0, amp=0.5, channels=1):
    t = np.arange(int(seconds * sr)) / sr
    y = (amp * np.sin(2 * np.pi * hz * t)).astype(np.float32)
    return np.repeat(y[:, None], channels, axis=1) if channels > 1 else y


def _bad_folder(root):
    """Good files, files legitimately converted, and bad files of every kind, under root/kind/.

    Returns ({name: reason fragment} of the files to skip, {name: note fragment} of the files
    kept with a conversion, [names of the good files kept as they are])."""
    d = root / "kind"
    d.mkdir(parents=True)
    good = ["good_a.wav", "good_b.flac", "cañón é.wav"]
    for i, name in enumerate(good):
        sf.write(d / name, _tone(hz=300.0 + 100 * i), 16000, subtype="PCM_16")
    (d / os.fsdecode(b"latin1 \xe9.wav")).write_bytes((d / "good_a.wav").read_bytes())  # not a UTF-8 name
    good.append(os.fsdecode(b"latin1 \xe9.wav"))
    sf.write(d / "unit.wav", _tone(amp=1.0), 16000, subtype="FLOAT")  # the 1e6 file's scaled twin

    sf.write(d / "six_channels.wav", _tone(channels=6), 16000, subtype="PCM_16")
    sf.write(d / "at_8k.wav", _tone(sr=8000), 8000, subtype="PCM_16")
    sf.write(d / "loud_1e6.wav", _tone(amp=1e6), 16000, subtype="FLOAT")
    whole = (d / "good_a.wav").read_bytes()
    (d / "cut_short.wav").write_bytes(whole[: len(whole) // 2])
    converted = {"six_channels.wav": "mixed 6 channels to mono", "at_8k.wav": "upsampled from 8000 Hz",
                 "loud_1e6.wav": "above full scale: divided by it", "cut_short.wav": "cut short"}

    (d / "empty.wav").write_bytes(b"")
    (d / os.fsdecode(b"empty \xff.wav")).write_bytes(b"")  # reported under an escaped name: \udcff
    (d / "text.wav").write_text("not audio, just notes\n")
    (d / "header_only.wav").write_bytes(whole[:44])
    nan = _tone()
    nan[100] = np.nan
    sf.write(d / "nan.wav", nan, 16000, subtype="FLOAT")
    sf.write(d / "silent.wav", np.zeros(16000, np.float32), 16000, subtype="PCM_16")
    sf.write(d / "short_10ms.wav", _tone(seconds=0.01), 16000, subtype="PCM_16")
    (d / "random.mp3").write_bytes(np.random.default_rng(0).bytes(4000))
    os.symlink("loop.wav", d / "loop.wav")
    os.symlink("gone.wav", d / "broken.wav")
    bad = {"empty.wav": "file is empty", os.fsdecode(b"empty \xff.wav"): "file is empty",
           "text.wav": "not a readable audio file",
           "header_only.wav": "contains no samples", "nan.wav": "NaN", "silent.wav": "digital silence",
           "short_10ms.wav": "too short", "random.mp3": "not a readable audio file",
           "loop.wav": "symbolic link that loops", "broken.wav": "symbolic link to a missing file"}
    return bad, converted, good


def test_prepare_skips_each_bad_file_with_its_reason_and_keeps_the_rest(tmp_path, capsys):
    """The fuzz-style folder: every good file kept, every bad one skipped with its reason in
    report.txt, the convertible ones kept with a note saying what was done."""
    from audiox_jax.data.cache import load_cache

    bad, converted, good = _bad_folder(tmp_path / "audio")
    out = tmp_path / "cache"
    assert _prepare(tmp_path / "audio", out) == 0, capsys.readouterr().err
    assert "Traceback" not in capsys.readouterr().err
    cache = load_cache(str(out))
    files = {f.path.split("/", 1)[1]: f for f in cache.manifest.files}
    assert {n for n, f in files.items() if f.status == "ok"} == {*good, "unit.wav", *converted}
    report = (out / "report.txt").read_text(encoding="utf-8")
    for name, reason in bad.items():
        assert files[name].status == "bad" and reason in files[name].reason, (name, files[name])
        assert f"kind/{name}: [bad] ".encode("utf-8", "backslashreplace").decode() in report
    for name, note in converted.items():
        assert note in files[name].reason and f"kind/{name}: {files[name].reason}" in report
    for name in good:
        assert files[name].reason == "", (name, files[name].reason)

    def mels(name):
        f = files[name]
        return np.asarray(cache.mels[f.first : f.first + f.n_items])

    np.testing.assert_allclose(mels("loud_1e6.wav"), mels("unit.wav"), atol=1e-4)  # scaled, not cached at 1e6
    np.testing.assert_array_equal(mels(good[-1]), mels("good_a.wav"))  # the non-UTF-8 name was read

    # a re-run reuses everything, the broken links still skipped; mending a link brings its file in
    assert _prepare(tmp_path / "audio", out) == 0
    os.remove(tmp_path / "audio" / "kind" / "broken.wav")
    os.symlink("good_a.wav", tmp_path / "audio" / "kind" / "broken.wav")
    assert _prepare(tmp_path / "audio", out) == 0
    again = {f.path.split("/", 1)[1]: f for f in load_cache(str(out)).manifest.files}
    assert again["broken.wav"].status == "ok" and again["loop.wav"].status == "bad"


def test_prepare_labels_csv_that_is_not_utf8_is_a_one_line_error(tmp_path, capsys):
    d = tmp_path / "audio" / "kind"
    d.mkdir(parents=True)
    sf.write(d / "a.wav", _tone(), 16000, subtype="PCM_16")
    csv_path = tmp_path / "labels.csv"
    csv_path.write_bytes("path,label\nkind/a.wav,café\n".encode("latin-1"))
    assert _prepare(tmp_path / "audio", tmp_path / "cache", "--labels-csv", str(csv_path)) == 2
    line = one_line_error(capsys, "prepare")
    assert f"labels_csv='{csv_path}' is not UTF-8 text (byte 0xe9 on line 2); save it as UTF-8" in line


# ------------------------------------------------------------------ train


@pytest.mark.parametrize("where", ["file", "/proc/audiox-jax-test", "under_a_file"])
def test_train_workdir_that_cannot_hold_a_run_is_a_one_line_error(tmp_path, capsys, where):
    (tmp_path / "file").write_text("I am a file")
    workdir = {"file": str(tmp_path / "file"), "under_a_file": str(tmp_path / "file" / "run")}.get(where, where)
    assert cli.main(["train", "--config", TINY, "--workdir", workdir, "--no-progress"]) == 2
    line = one_line_error(capsys, "train")
    assert f"workdir={workdir!r} " in line and ("is a file" in line or "cannot be created" in line), line


def test_a_batch_larger_than_the_data_names_the_config_key(tmp_path, capsys):
    assert cli.main(["train", "--config", TINY, "--workdir", str(tmp_path / "w"), "--no-progress",
                     "--set", "data.synthetic_size=12", "--set", "data.batch_size=16",
                     "--set", "data.val_fraction=0.25"]) == 2
    line = one_line_error(capsys, "train")
    m = re.search(r"data\.batch_size=16 is more than the (\d+) training items \(data\.val_fraction=0\.25 holds out "
                  r"(\d+) more\); set data\.batch_size=\1 or less", line)
    assert m and int(m.group(1)) + int(m.group(2)) == 12 and "drop_remainder" not in line, line
    assert cli.main(["train", "--config", TINY, "--workdir", str(tmp_path / "w"), "--no-progress",
                     "--set", "data.synthetic_size=12", "--set", "data.batch_size=32",
                     "--set", "train.grad_accum=2"]) == 2
    assert "= 16 examples per micro-batch" in one_line_error(capsys, "train")


# ------------------------------------------------------------------ models and checkpoints


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A one-block DiT saved as a model folder (random params; 2 sampler steps, 4 vocoder iterations)."""
    import jax
    import jax.numpy as jnp

    from audiox_jax import modelio
    from audiox_jax.audio.mel import MelStats
    from audiox_jax.config import load_config
    from audiox_jax.models.dit import DiT

    cfg = load_config(None, ["model.dim=32", "model.depth=1", "model.heads=2", "model.labels=[[instrument,2]]",
                             "sampling.steps=2"])
    params = DiT(cfg.model).init(jax.random.key(0), jnp.zeros((1, 80, 4)), jnp.zeros((1,)),
                                 {"labels": jnp.zeros((1, 1), jnp.int32)})["params"]
    out = tmp_path_factory.mktemp("model")
    modelio.save_for_generation(str(out), params, cfg, MelStats(kind="range", lo=-11.5, hi=2.0),
                                {"instrument": ("flute", "piano")}, step=1)
    return out


@pytest.mark.parametrize("name", ["params.msgpack", "model.json"])
def test_a_truncated_model_file_is_a_one_line_error_naming_it(model_dir, tmp_path, capsys, name):
    import shutil

    broken = tmp_path / "model"
    shutil.copytree(model_dir, broken)
    blob = (broken / name).read_bytes()
    (broken / name).write_bytes(blob[: len(blob) // 2])
    rc = cli.main(["generate", "--checkpoint", str(broken), "--instrument", "flute", "--seconds", "0.5",
                   "--out", str(tmp_path / "x.wav"), "--no-cache"])
    line = one_line_error(capsys, "generate")
    assert rc == 2 and f"{broken / name} is damaged" in line and "export the model again" in line, line
    assert not (tmp_path / "x.wav").exists()


TRAIN_SMALL = ["--set", "train.steps=4", "--set", "train.ckpt_every=2", "--set", "train.log_every=2",
               "--set", "train.eval_every=0", "--set", "train.demo_every=0", "--set", "model.dim=32",
               "--set", "model.depth=1", "--set", "data.synthetic_size=24"]


def _tree(folder):
    return sorted((os.path.relpath(os.path.join(r, f), folder), os.path.getsize(os.path.join(r, f)))
                  for r, _, fs in os.walk(folder) for f in fs)


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys):
    """generate --checkpoint W uses the previous complete checkpoint; train resumes from it and moves
    the damaged one to checkpoints.damaged/; both name the damaged step; nothing is deleted."""
    work = tmp_path / "w"
    assert cli.main(["train", "--config", TINY, "--workdir", str(work), "--no-progress", *TRAIN_SMALL]) == 0
    assert sorted(os.listdir(work / "checkpoints")) == ["2", "4"]
    size, biggest = max((os.path.getsize(os.path.join(r, f)), os.path.join(r, f))
                        for r, _, fs in os.walk(work / "checkpoints" / "4") for f in fs)
    with open(biggest, "r+b") as f:
        f.truncate(size // 2)
    damaged = _tree(work / "checkpoints" / "4")
    capsys.readouterr()

    with pytest.warns(UserWarning, match=r"damaged checkpoint\(s\) in .*checkpoints \(step 4: .*\); using step 2, "
                                         r"the newest complete one \(nothing was deleted\)"):
        rc = cli.main(["generate", "--checkpoint", str(work), "--label", "kind=tone", "--out", str(tmp_path / "g.wav"),
                       "--no-cache"])
    assert rc == 0 and len(sf.read(tmp_path / "g.wav")[0]) == 4000
    assert _tree(work / "checkpoints" / "4") == damaged  # generate changes nothing

    with pytest.warns(UserWarning, match=r"step 4: .*using step 2, the newest complete one; moved "
                                         r".*checkpoints\.damaged/4 out of the way \(nothing was deleted\)"):
        rc = cli.main(["train", "--config", TINY, "--workdir", str(work), "--no-progress", *TRAIN_SMALL])
    assert rc == 0 and "resumed from the checkpoint at step 2" in capsys.readouterr().out
    assert _tree(work / "checkpoints.damaged" / "4") == damaged
    assert sorted(os.listdir(work / "checkpoints")) == ["2", "4"]  # step 4 saved again, complete


def test_every_checkpoint_damaged_is_a_one_line_error_that_changes_nothing(tmp_path, capsys):
    from audiox_jax.training import checkpoint as ckpt

    work = tmp_path / "w"
    (work / "checkpoints" / "3").mkdir(parents=True)  # a step folder Orbax cannot read back
    (work / "checkpoints" / "3" / "_CHECKPOINT_METADATA").write_text("{")
    with pytest.raises(AudioxError, match=r"every checkpoint tried in .* is damaged \(step 3: .*\); nothing was "
                                          r"changed"):
        ckpt.export_for_generation(str(work), str(tmp_path / "out"))
    assert os.listdir(work / "checkpoints") == ["3"]


# ------------------------------------------------------------------ generate: requests too big to run


def test_request_cost_matches_xla_and_the_default_model_at_600_s(model_dir):
    """The attention-memory estimate against XLA's own memory analysis of the forward pass, and the
    numbers the refusal quotes for the shipped model at 600 s (~27 TFLOP, 8 GB)."""
    import jax
    import jax.numpy as jnp

    from audiox_jax.modelio import load_for_generation
    from audiox_jax.models.dit import DiT

    tiny = load_for_generation(str(model_dir))
    cost = cli.request_cost(tiny.config, seconds=60.0, batch=1, steps=2, sampler="euler", cfg=2.0)
    assert cost.rows == 2 and cost.nfe == 2 and cost.tokens == 1292
    x = jax.ShapeDtypeStruct((2, 80, 4 * cost.tokens), jnp.float32)
    cond = {"labels": jax.ShapeDtypeStruct((2, 1), jnp.int32)}
    fwd = jax.jit(lambda p, x, t, c: DiT(tiny.config.model).apply({"params": p}, x, t, c))
    xla = fwd.lower(tiny.params, x, jax.ShapeDtypeStruct((2,), jnp.float32), cond).compile().memory_analysis()
    assert 0.8 < cost.memory / xla.temp_size_in_bytes < 1.25, (cost.memory, xla.temp_size_in_bytes)

    default = load_for_generation(os.path.join(ROOT, "audiox_jax", "assets", "default")).config
    big = cli.request_cost(default, seconds=600.0, batch=1, steps=16, sampler="euler", cfg=1.5)
    assert big.tokens == 12920 and 25 < big.tflop < 30 and 7.5e9 < big.memory < 8.5e9


def _generate(model_dir, tmp_path, *extra):
    return cli.main(["generate", "--checkpoint", str(model_dir), "--instrument", "flute", "--seconds", "0.5",
                     "--out", str(tmp_path / "g.wav"), "--no-cache", *extra])


def test_requests_over_the_caps_are_refused_with_the_estimate_and_the_fix(model_dir, tmp_path, capsys, monkeypatch):
    assert _generate(model_dir, tmp_path, "--steps", "100000") == 2
    assert "--steps 100000 is more than 1000" in one_line_error(capsys, "generate")

    monkeypatch.setattr(cli, "_available_memory", lambda: 1e9)
    assert _generate(model_dir, tmp_path, "--seconds", "600") == 2
    line = one_line_error(capsys, "generate")
    assert re.search(r"--seconds 600 x --batch 1 \(2 network evaluations of 2 x 12,920 tokens: ~[\d.]+ TFLOP, "
                     r"~5.34 GB of attention memory\) needs more memory than the 1 GB free on CPU; make long audio "
                     r"in pieces with --stream OUT --seconds 10 --chunks 60, .* or pass --force", line), line

    monkeypatch.setattr(cli, "CPU_TFLOP", 1e-6)
    assert _generate(model_dir, tmp_path, "--batch", "2") == 2
    line = one_line_error(capsys, "generate")
    assert re.search(r"would take about .* min on CPU .*the cap is 1e-06 TFLOP per call", line), line
    assert not (tmp_path / "g_0.wav").exists() and not (tmp_path / "g.wav").exists()

    assert _generate(model_dir, tmp_path, "--steps", "1001", "--force") == 0  # --force: the user's call
    assert (tmp_path / "g.wav").exists()


# ------------------------------------------------------------------ claims


def test_a_sample_does_not_depend_on_the_batch_as_the_readme_states(model_dir, tmp_path):
    """README: bit-identical in any batch with guidance on; an unguided batch-1 call within 7e-6 in log-mel."""
    for cfg in ("2", "1"):
        for batch in ("1", "4"):
            assert _generate(model_dir, tmp_path, "--seed", "3", "--batch", batch, "--cfg", cfg,
                             "--normalize", "none", "--out", str(tmp_path / f"cfg{cfg}_b{batch}.wav")) == 0
        one, _ = sf.read(tmp_path / f"cfg{cfg}_b1.wav", dtype="int16")
        first, _ = sf.read(tmp_path / f"cfg{cfg}_b4_0.wav", dtype="int16")
        if cfg == "2":
            np.testing.assert_array_equal(one, first)
        else:
            assert np.corrcoef(one, first)[0, 1] > 0.999
    import audiox_jax

    pipe = audiox_jax.load_pipeline(str(model_dir))
    lab = {"instrument": "flute"}
    a = pipe.generate(lab, batch=1, seed=3, seconds=0.5, cfg=1.0)
    b = pipe.generate(lab, batch=4, seed=3, seconds=0.5, cfg=1.0)
    assert np.abs(a.log_mel[0] - b.log_mel[0]).max() < 7e-6


# ------------------------------------------------------------------ bench


def test_bench_compare_with_a_missing_or_malformed_file_is_a_one_line_error(tmp_path, capsys):
    import json

    good = tmp_path / "good.json"
    good.write_text(json.dumps({"env": {"device": "cpu", "backend": "cpu", "jax": "0", "date": "today"},
                                "rows": [{"name": "stft", "median_s": 0.0}]}))
    (tmp_path / "truncated.json").write_text(good.read_text()[:40])
    (tmp_path / "other.json").write_text('{"rows": 3}')
    cases = {"missing.json": "no such file", "truncated.json": "cannot be read as JSON",
             "other.json": "is JSON but not a saved bench run", ".": "cannot be read as JSON"}
    for name, message in cases.items():
        assert cli.main(["bench", "--compare", str(good), str(tmp_path / name)]) == 2
        line = one_line_error(capsys, "bench")
        assert message in line and "audiox-jax bench --json FILE" in line, line
    assert cli.main(["bench", "--compare", str(good), str(good)]) == 0  # a zero median: no division by zero
    assert "stft" in capsys.readouterr().out
