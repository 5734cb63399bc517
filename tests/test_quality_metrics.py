"""Issue 12 part 3: FD ratio, silence floor, the independent instrument judge, other SoundFonts."""

import os

import numpy as np
import pytest

from audiox_jax.audio import AudioConfig
from audiox_jax.data import render
from audiox_jax.data.prepare import log_mel_items
from audiox_jax.errors import ParamError
from audiox_jax.evaluation import judge, metrics

SR = 22050
CFG = AudioConfig()


def note(midi, seconds=1.0, *, kind="sine", decay=3.0, tail_s=0.3, seed=0):
    """A synthetic note: ``kind`` "sine" (pure), "square" (odd harmonics 1/k) or "saw" (all harmonics 1/k)
    with a 10 ms attack and exponential decay, silent for its last ``tail_s``: f32[samples]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    ks = {"sine": [1], "square": range(1, 30, 2), "saw": range(1, 30)}[kind]
    y = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) / k for k in ks if k * f0 < SR / 2)
    env = np.minimum(t / 0.01, 1.0) * np.exp(-decay * t) * (t < seconds - tail_s)
    return (0.5 * env * y / np.max(np.abs(y))).astype(np.float32)


def embed(logmels):
    """A fixed 16-dim embedding of log-mels f32[B, 80, T]: per 10-bin band, mean and std over time."""
    bands = logmels.reshape(len(logmels), 8, 10, -1).mean(2)  # [B, 8, T]
    return np.concatenate([bands.mean(-1), bands.std(-1)], axis=1)


@pytest.fixture(scope="module")
def sets():
    """Two draws of 40 clean notes (MIDI 48..87, random phases) and the first draw with white noise added."""
    clean = np.stack([note(48 + i, seed=i) for i in range(40)])
    other = np.stack([note(48 + i, seed=100 + i) for i in range(40)])
    noisy = clean + 0.01 * np.random.default_rng(0).standard_normal(clean.shape).astype(np.float32)
    return clean, other, noisy


# ------------------------------------------------------------------ FD ratio and silence floor


def test_identical_sets_score_zero(sets):
    clean, _, _ = sets
    mels = log_mel_items(clean, CFG)
    emb = embed(mels)
    assert metrics.frechet_distance(emb, emb) == pytest.approx(0.0, abs=1e-6)  # the FD ratio's numerator
    assert metrics.fd_ratio(0.0, 5.0) == 0.0 and metrics.fd_ratio(10.0, 5.0) == 2.0
    assert metrics.fd_ratio(None, 5.0) is None and metrics.fd_ratio(1.0, 0.0) == float("inf")
    sf = metrics.silence_floor(mels, mels, CFG)
    assert sf["silence_floor_db_difference"] == 0.0
    assert sf["silent_frames_per_clip"] == round(0.2 * mels.shape[-1])
    assert sf["silence_floor_db_real"] < -45.0  # the notes' silent tails sit at the -50 dB log floor


def test_added_noise_raises_fd_and_silence_floor(sets):
    clean, other, noisy = sets
    ref, alt, bad = (log_mel_items(x, CFG) for x in (clean, other, noisy))
    fd_clean = metrics.frechet_distance(embed(alt), embed(ref))
    fd_noisy = metrics.frechet_distance(embed(bad), embed(ref))
    assert fd_noisy > 5 * fd_clean, (fd_noisy, fd_clean)
    assert metrics.fd_ratio(fd_noisy, fd_clean) > 5
    sf = metrics.silence_floor(bad, ref, CFG)
    assert sf["silence_floor_db_difference"] > 15.0, sf  # white noise at -40 dBFS vs the -50 dB floor
    assert metrics.silence_floor(alt, ref, CFG)["silence_floor_db_difference"] == pytest.approx(0.0, abs=0.5)


def test_silence_floor_of_a_longer_generation():
    """A 2 s generation against a 1.5 s real clip: frames past 1.5 s count as silent at the log floor."""
    real = note(60, 1.5, tail_s=0.2)[None]
    same_padded = np.pad(real, ((0, 0), (0, SR // 2)))  # the real note, then 0.5 s of silence
    hiss = same_padded.copy()
    hiss[0, int(1.5 * SR):] = 0.01 * np.random.default_rng(0).standard_normal(SR // 2)  # a hiss after the note
    r, g, h = (log_mel_items(x, CFG) for x in (real, same_padded, hiss))
    assert g.shape[-1] > r.shape[-1]
    quiet = metrics.silence_floor(g, r, CFG)
    assert quiet["silent_frames_per_clip"] == round(0.2 * r.shape[-1]) + g.shape[-1] - r.shape[-1]
    assert quiet["silence_floor_db_difference"] == pytest.approx(0.0, abs=1e-4)
    assert quiet["silence_floor_db_real"] == pytest.approx(-50.0, abs=1.0)  # mostly the floor
    assert metrics.silence_floor(h, r, CFG)["silence_floor_db_difference"] > 10.0
    with pytest.raises(ParamError, match="same B and n_mels"):
        metrics.silence_floor(g[:, :40], r, CFG)


# ------------------------------------------------------------------ the judge


def test_judge_separates_timbres_across_sets():
    """Trained on sines and saws at one set of pitches, phases and decays, it names those of another set."""
    def make(pitches, seed):
        rng = np.random.default_rng(seed)
        clips = [note(m, kind=k, decay=rng.uniform(2.0, 5.0), seed=seed + m) for m in pitches for k in ("sine", "saw")]
        return np.stack(clips), np.repeat(pitches, 2), np.tile([0, 1], len(pitches))

    xa, ma, ya = make(np.arange(48, 84, 4), 0)
    xb, mb, yb = make(np.arange(50, 84, 6), 1000)
    fa = judge.judge_features(xa, ma, SR)
    assert fa.shape == (len(xa), judge.FEATURE_DIM) and np.all(np.isfinite(fa))
    j = judge.fit_judge(fa, ya, ("sine", "saw"))
    assert j.accuracy(xb, mb, np.asarray(j.classes)[yb], SR) >= 0.9
    assert np.all(np.isfinite(judge.judge_features(np.zeros((1, SR), np.float32), 60, SR)))  # silence: no NaN
    with pytest.raises(ParamError, match="midi f\\[B\\]"):
        judge.judge_features(xa, ma[:3], SR)


def test_recipe_key_changes_with_the_recipe():
    base = judge.JudgeRecipe()
    assert base.key() == judge.JudgeRecipe().key()
    assert base.key() != judge.JudgeRecipe(soundfonts=("timgm6mb", "csound")).key()
    assert base.key() != judge.JudgeRecipe(vocoder=None).key()
    with pytest.raises(ParamError, match="vocoder runs at"):
        judge.JudgeRecipe(sr=16000)


# ------------------------------------------------------------------ other SoundFonts


def _other(name):
    try:
        return render.other_soundfont(name)
    except render.ToolMissingError as err:
        if os.environ.get("CI"):
            pytest.fail(f"CI must have the judge's SoundFont: {err}")
        pytest.skip(str(err))


def test_another_soundfont_plays_another_piano():
    sf2 = _other("timgm6mb")
    try:
        fluid = render.render_note("piano", 60, velocity=100, hold_s=0.8, seconds=1.0)
    except render.ToolMissingError as err:
        if os.environ.get("CI"):
            pytest.fail(f"CI must have fluidsynth and fluid-soundfont-gm: {err}")
        pytest.skip(str(err))
    tim = render.render_note("piano", 60, velocity=100, hold_s=0.8, seconds=1.0, soundfont=sf2)
    assert tim.shape == fluid.shape and np.max(np.abs(tim)) > 0.01
    spec = lambda y: np.log(np.abs(np.fft.rfft(y)) ** 2 + 1e-6)
    assert np.corrcoef(spec(tim), spec(fluid))[0, 1] < 0.95  # other samples, not the same note
    again = render.render_note("piano", 60, velocity=100, hold_s=0.8, seconds=1.0, soundfont=sf2)
    np.testing.assert_array_equal(again, tim)  # deterministic
    seq = render.render_note_sequence("piano", [(60, 100), (72, 80)], hold_s=0.8, seconds=1.0, soundfont=sf2)
    assert seq.shape == (2, SR) and np.corrcoef(spec(seq[0]), spec(tim))[0, 1] > 0.95
    with pytest.raises(render.ToolMissingError, match="is not a file"):
        render.render_note("piano", 60, soundfont="/nonexistent.sf2")


# ------------------------------------------------------------------ evaluate() reports them


class _Cache:
    """The parts of a ``data.cache.Cache`` that ``report.evaluate`` reads, over wav files in a folder."""

    def __init__(self, folder, clips, instruments, pitches):
        import soundfile as sf
        from types import SimpleNamespace

        files = []
        for i, y in enumerate(clips):
            sf.write(os.path.join(folder, f"{i}.wav"), y, SR)
            files.append(SimpleNamespace(path=f"{i}.wav"))
        vocab = {"instrument": tuple(sorted(set(instruments))), "pitch": tuple(sorted(set(pitches)))}
        self.manifest = SimpleNamespace(label_names=("instrument", "pitch"), audio_config=CFG, vocab=vocab,
                                        item_samples=clips.shape[1], audio_dir=str(folder), files=files, n_mels=80)
        self.labels = np.array([[vocab["instrument"].index(a), vocab["pitch"].index(p)]
                                for a, p in zip(instruments, pitches)], np.int32)
        self.mels = log_mel_items(clips, CFG)
        self.file_index, self.offset = np.arange(len(clips)), np.zeros(len(clips), np.int64)

    def __len__(self):
        return len(self.labels)


def test_evaluate_reports_silence_floor_and_judge(tmp_path):
    from audiox_jax.evaluation import report

    kinds, midis = ["sine", "saw"] * 3, [60, 60, 67, 67, 72, 72]
    clips = np.stack([note(m, kind=k, seed=i) for i, (k, m) in enumerate(zip(kinds, midis))])
    cache = _Cache(tmp_path, clips, kinds, [f"{m:03d}" for m in midis])
    train = np.stack([note(m, kind=k, decay=d, seed=100 + m) for m in (55, 62, 64, 69, 74) for k in ("sine", "saw")
                      for d in (2.0, 4.0)])
    feats = judge.judge_features(train, np.repeat([55, 62, 64, 69, 74], 4), SR)
    j = judge.fit_judge(feats, np.tile([1, 1, 0, 0], 5), ("saw", "sine"))
    combos = report.label_combos(cache)

    def real_notes(ids, seed):  # a perfect generator: the real clip of each combination
        return np.stack([clips[np.flatnonzero((cache.labels == r).all(1))[0]] for r in ids])

    def hissing(ids, seed):  # the same, with a hiss where the notes are silent
        hiss = 0.01 * np.random.default_rng(seed).standard_normal((len(ids), SR))
        return real_notes(ids, seed) + hiss.astype(np.float32)

    good = report.evaluate(real_notes, combos, cache, {}, batch_size=6, judge=j)
    assert list(good)[0] == "fd_ratio"
    assert good["silence_floor"]["silence_floor_db_difference"] == pytest.approx(0.0, abs=1e-6)
    assert good["judge"]["accuracy_generated"] == good["judge"]["accuracy_real"] == 1.0
    assert good["judge"]["by_class"]["saw"]["generated"] == 1.0
    bad = report.evaluate(hissing, combos, cache, {}, batch_size=6, judge=j)
    assert bad["silence_floor"]["silence_floor_db_difference"] > 10.0
    text = report.format_report(good)
    assert "silence floor (dB)" in text and "instrument judge accuracy" in text
    with pytest.raises(ParamError, match="judge knows"):
        report.evaluate(real_notes, combos, cache, {}, judge=j._replace(classes=("saw", "square")))
