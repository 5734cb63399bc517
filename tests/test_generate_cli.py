"""`audiox-jax generate` and `load_pipeline(...).generate(...)` on a small saved model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile as sf

from audiox_jax import cli, modelio
from audiox_jax.audio.mel import MelStats
from audiox_jax.errors import ParamError
from audiox_jax.generator import load_pipeline

from conftest import tiny_dit

VOCAB = {"instrument": ("flute", "organ", "piano"), "pitch": ("060", "062", "064")}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    cfg, params = tiny_dit("model.labels=[[instrument,3],[pitch,3]]", "sampling.steps=2")
    out = tmp_path_factory.mktemp("model")
    modelio.save_for_generation(str(out), params, cfg, MelStats(kind="range", lo=-11.5, hi=2.0), VOCAB, step=7)
    return str(out)


def test_cli_generate_writes_a_playable_wav_and_png(model_dir, tmp_path, capsys):
    out = tmp_path / "note.wav"
    rc = cli.main(["generate", "--checkpoint", model_dir, "--instrument", "flute", "--pitch", "D4",
                   "--seconds", "0.5", "--out", str(out), "--no-cache"])
    assert rc == 0
    y, sr = sf.read(out)
    assert sr == 22050 and len(y) == 11025 and np.all(np.isfinite(y))
    assert (tmp_path / "note.png").stat().st_size > 1000
    text = capsys.readouterr().out
    assert "real-time factor" in text and "instrument=flute, pitch=062" in text


def test_cli_batch_and_continuation(model_dir, tmp_path):
    rc = cli.main(["generate", "--checkpoint", model_dir, "--label", "instrument=piano", "--pitch", "60",
                   "--seconds", "0.5", "--batch", "2", "--out", str(tmp_path / "b.wav"), "--no-cache"])
    assert rc == 0
    a, _ = sf.read(tmp_path / "b_0.wav")
    b, _ = sf.read(tmp_path / "b_1.wav")
    assert a.shape == b.shape and not np.allclose(a, b)  # different per-sample keys
    t = np.arange(5000) / 22050
    sf.write(tmp_path / "init.wav", 0.3 * np.sin(2 * np.pi * 262 * t), 22050)
    rc = cli.main(["generate", "--checkpoint", model_dir, "--instrument", "piano", "--pitch", "C4", "--seconds", "0.5",
                   "--init-audio", str(tmp_path / "init.wav"), "--out", str(tmp_path / "c.wav"), "--no-cache"])
    assert rc == 0 and sf.read(tmp_path / "c.wav")[0].shape == (11025,)


def test_cli_errors_list_valid_choices(model_dir, tmp_path, capsys):
    rc = cli.main(["generate", "--checkpoint", model_dir, "--instrument", "banjo", "--out", str(tmp_path / "x.wav"),
                   "--no-cache"])
    err = capsys.readouterr().err
    assert rc == 2 and "instrument='banjo' is not known" in err and "flute, organ, piano" in err
    rc = cli.main(["generate", "--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "x.wav")])
    assert rc == 2 and "neither a built-in model" in capsys.readouterr().err
    rc = cli.main(["generate", "--checkpoint", model_dir, "--seconds", "0.01", "--out", str(tmp_path / "x.wav"),
                   "--no-cache"])
    assert rc == 2 and "fewer than one DiT patch" in capsys.readouterr().err
    rc = cli.main(["generate", "--checkpoint", model_dir, "--strength", "0.5", "--out", str(tmp_path / "x.wav")])
    assert rc == 2 and "--strength needs --init-audio FILE" in capsys.readouterr().err


def test_python_api_matches_options(model_dir):
    import audiox_jax

    pipe = audiox_jax.load_pipeline(model_dir)
    assert pipe.label_ids({"instrument": "organ", "pitch": "E4"}).tolist() == [1, 2]
    assert pipe.label_ids({"pitch": 62}).tolist() == [-1, 1]
    r = pipe.generate([{"instrument": "piano", "pitch": "C4"}, {"instrument": "flute", "pitch": "E4"}],
                      seconds=0.5, seed=3, sampler="heun", steps=2, cfg=2.0)
    assert r.audio.shape == (2, 11025) and r.nfe == 3 and r.labels[1] == {"instrument": "flute", "pitch": "064"}
    again = pipe.generate([{"instrument": "piano", "pitch": "C4"}, {"instrument": "flute", "pitch": "E4"}],
                          seconds=0.5, seed=3, sampler="heun", steps=2, cfg=2.0)
    np.testing.assert_array_equal(r.audio, again.audio)
    with pytest.raises(ParamError, match="unknown label"):
        pipe.label_ids({"timbre": "x"})
    with pytest.raises(ParamError, match="neither a built-in model"):
        load_pipeline("no-such-model")


def test_a_missing_builtin_model_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setitem(modelio.BUILTIN, "fast", str(tmp_path / "gone"))
    with pytest.raises(ParamError, match="built-in model 'fast' is not in this installation"):
        load_pipeline("fast")


def test_stream_to_file_and_stdout(model_dir, tmp_path, capsysbinary):
    import io

    n, ov, chunks = 11025, 2205, 3  # 0.5 s chunks, 0.1 s overlap
    path = tmp_path / "s.wav"
    rc = cli.main(["generate", "--checkpoint", model_dir, "--instrument", "organ", "--pitch", "C4", "--seconds", "0.5",
                   "--stream", str(path), "--chunks", str(chunks), "--overlap", "0.1", "--no-cache"])
    assert rc == 0
    y, sr = sf.read(path)
    assert sr == 22050 and len(y) == chunks * (n - ov) + ov and np.all(np.isfinite(y))
    capsysbinary.readouterr()
    rc = cli.main(["generate", "--checkpoint", model_dir, "--instrument", "organ", "--pitch", "C4", "--seconds", "0.5",
                   "--stream", "-", "--chunks", str(chunks), "--overlap", "0.1", "--no-cache"])
    assert rc == 0
    piped, sr = sf.read(io.BytesIO(capsysbinary.readouterr().out))
    np.testing.assert_allclose(piped, y, atol=1e-4)  # same seed: the same stream through a pipe


def test_stream_chunks_continue_each_other(model_dir):
    import audiox_jax

    pipe = audiox_jax.load_pipeline(model_dir)
    pieces = list(pipe.generate_stream({"instrument": "piano", "pitch": "C4"}, chunks=3, chunk_seconds=0.5,
                                       overlap_seconds=0.1, seed=2))
    # first chunk body, then (seam, body) per further chunk, then the final tail
    assert [p.shape[1] for p in pieces] == [11025 - 2205, 2205, 11025 - 2 * 2205, 2205, 11025 - 2 * 2205, 2205]
    # chunk 0 is one generate call with key fold_in(key(seed), 0) and nothing kept
    from audiox_jax import pipeline

    spec = pipe.spec(0.5)
    chunk0 = pipeline.generate_jit(pipe.model.params, jax.random.fold_in(jax.random.key(2), 0),
                                   {"labels": jnp.asarray(pipe.label_ids({"instrument": "piano", "pitch": "C4"}))[None]},
                                   model=pipe.model_spec, spec=spec, guide=pipeline.guidance(pipe.config),
                                   prompt=pipeline.audio_prompt(spec, pipe.config, np.zeros(2205),
                                                                mask=np.zeros(spec.model_frames))).audio
    np.testing.assert_allclose(pieces[0], np.asarray(chunk0)[:, : 11025 - 2205], atol=1e-5)
    with pytest.raises(ParamError, match="overlap_seconds=0.4 must be in"):
        next(pipe.generate_stream({"instrument": "piano"}, chunk_seconds=0.5, overlap_seconds=0.4))


@pytest.mark.parametrize("args, message", [
    (["--batch", "0"], "--batch 0 must be >= 1"),
    (["--cfg", "nan"], "--cfg nan must be a finite number"),
    (["--strength", "2"], "--strength 2.0 must be in"),
    (["--strength", "-0.5"], "--strength -0.5 must be in"),
    (["--out", "x.txt"], "unknown audio extension '.txt'"),
    (["--init-audio", "IN", "--keep", "nan:1"], "0 <= START < END"),
    (["--init-audio", "IN", "--keep", "5:1"], "0 <= START < END"),
    (["--init-audio", "IN", "--keep", "0:0.2", "--strength", "0.5"], "--keep and --strength are different edits"),
    (["--init-audio", "IN", "--continue", "--strength", "0.5"], "--continue and --strength are different edits"),
    (["--continue"], "--continue needs --init-audio FILE"),
])
def test_cli_bad_generate_options_are_one_line_errors(model_dir, tmp_path, capsys, args, message):
    t = np.arange(4000) / 22050
    sf.write(tmp_path / "in.wav", 0.3 * np.sin(2 * np.pi * 262 * t), 22050)
    args = [str(tmp_path / "in.wav") if a == "IN" else a for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "o.wav")]
    rc = cli.main(["generate", "--checkpoint", model_dir, "--instrument", "flute", "--pitch", "D4", "--seconds", "0.5",
                   "--no-cache", *args])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "o.wav").exists()


def test_cli_out_folder_is_refused_before_generating(model_dir, tmp_path, capsys):
    rc = cli.main(["generate", "--checkpoint", model_dir, "--instrument", "flute", "--seconds", "0.5",
                   "--out", str(tmp_path), "--no-cache"])
    assert rc == 2 and "is a folder" in capsys.readouterr().err


def test_keep_without_seconds_takes_the_input_length(model_dir, tmp_path):
    t = np.arange(11025) / 22050
    sf.write(tmp_path / "in.wav", 0.3 * np.sin(2 * np.pi * 262 * t), 22050)
    rc = cli.main(["generate", "--checkpoint", model_dir, "--instrument", "piano", "--init-audio", str(tmp_path / "in.wav"),
                   "--keep", "0:0.25", "--out", str(tmp_path / "k.wav"), "--no-cache"])
    assert rc == 0 and sf.read(tmp_path / "k.wav")[0].shape == (11025,)


def test_loudness_policy_never_clips_silently(capsys):
    loud = np.stack([np.linspace(-4, 4, 100), np.linspace(-0.5, 0.5, 100)]).astype(np.float32)
    out, peak, done = cli.loudness_policy(loud, "limit")
    assert peak == 4.0 and "scaled" in done
    assert abs(np.abs(out[0]).max() - 10 ** (-1 / 20)) < 1e-6 and np.allclose(out[1], loud[1])  # only the loud clip
    out, _, _ = cli.loudness_policy(loud, "peak")
    assert np.allclose(np.abs(out).max(axis=1), 10 ** (-1 / 20))
    out, _, done = cli.loudness_policy(loud, "none")
    assert np.array_equal(out, loud) and done == "as generated"
    assert "clip" in capsys.readouterr().err
