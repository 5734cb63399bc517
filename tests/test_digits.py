"""Spoken-digit data set, digit judge and silence check (audiox_jax.evaluation.digits).

The espeak-ng tests skip with the install command where espeak-ng is missing, but fail
under CI (CI=true), as tests/conftest.py does for the other real-audio renderers.
"""

import os

import numpy as np
import pytest
import soundfile as sf

from audiox_jax.evaluation import digits

from conftest import _real  # noqa: E402  (the shared CI-fails/locally-skips rule)

SR = digits.SR


def _db(x):
    return 20 * np.log10(max(float(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2))), 1e-12))


def test_render_digits_files_and_silence(tmp_path):
    clips = _real(digits.render_digits, str(tmp_path), words=("seven", "two"), n_per_word=3)
    assert sorted(os.listdir(tmp_path)) == ["seven", "two"]
    for word in ("seven", "two"):
        assert sorted(os.listdir(tmp_path / word)) == [f"{word}_{k}.wav" for k in range(3)]
        for k in range(3):
            info = sf.info(str(tmp_path / word / f"{word}_{k}.wav"))
            assert (info.samplerate, info.channels, info.subtype) == (SR, 1, "PCM_16")
            y, sr = sf.read(str(tmp_path / word / f"{word}_{k}.wav"), dtype="float32")
            assert sr == SR and np.allclose(y, clips[word][k], atol=1 / 32768 + 1e-6)
            assert 0.4 < len(y) / SR < 1.3
            n = int(0.1 * SR)
            assert _db(y[:n]) < -40 and _db(y[-n:]) < -40, "0.1 s of silence before and after the word"
            assert _db(y[n:-n]) > -35 and np.max(np.abs(y)) > 10 ** (-13 / 20), "speech in the middle"
            start, end = digits.word_bounds(y, SR)
            assert 0.08 <= start and end <= len(y) / SR - 0.08 and end - start > 0.2  # 20 ms frames
            assert digits.trailing_silence_db(y, SR) < -50
    # takes differ (voice, pitch, speed) and the same seed gives the same audio
    assert len({len(y) for y in clips["seven"]}) == 3
    again = _real(digits.render_digits, None, words=("seven",), n_per_word=2)
    assert all(np.array_equal(a, b) for a, b in zip(again["seven"], clips["seven"]))


def test_judge_voices_are_not_training_voices():
    accent = lambda v: v.split("+")[0]
    variant = lambda v: v.split("+")[1]
    assert len(set(digits.TRAIN_VOICES)) == 48 and len(set(digits.JUDGE_VOICES)) == len(digits.JUDGE_VOICES)
    assert not {accent(v) for v in digits.TRAIN_VOICES} & {accent(v) for v in digits.JUDGE_VOICES}
    assert not {variant(v) for v in digits.TRAIN_VOICES} & {variant(v) for v in digits.JUDGE_VOICES}
    with pytest.raises(digits.ParamError, match="training voices"):
        digits.render_judge_digits(None, voices=digits.TRAIN_VOICES[:2], n_per_word=1)


def test_judge_separates_words_in_unheard_voices():
    judge = _real(digits.train_digit_judge, words=("zero", "one"), n_per_word=12)
    test = _real(digits.render_digits, None, words=("zero", "one"), n_per_word=8, seed=3)
    for word in ("zero", "one"):
        assert digits.judge_digits(judge, test[word], SR) == [word] * 8
    # level, a noise floor and the sample rate do not change its answer
    y = test["one"][0]
    rng = np.random.default_rng(0)
    noisy = 0.3 * y + 10 ** (-60 / 20) * rng.standard_normal(len(y)).astype(np.float32)
    import librosa

    y22 = librosa.resample(y, orig_sr=SR, target_sr=22050)
    assert judge.predict([noisy], SR) == ["one"] and judge.predict([y22], 22050) == ["one"]


def test_trailing_silence_and_word_end():
    t = np.arange(SR) / SR
    word = np.where((t >= 0.2) & (t < 0.6), 0.05 * np.sin(2 * np.pi * 220 * t), 0.0).astype(np.float32)
    assert digits.word_bounds(word, SR) == pytest.approx((0.2, 0.6), abs=0.02)
    assert digits.trailing_silence_db(word, SR) == digits.SILENCE_FLOOR_DB
    # a steady floor within 40 dB of a quiet word (as a vocoder leaves) is not word; its level is reported
    floor = (10 ** (-64 / 20) * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)
    assert digits.word_end(word + floor, SR) == pytest.approx(0.6, abs=0.02)
    assert digits.trailing_silence_db(word + floor, SR) == pytest.approx(-64, abs=1.5)
    # sound after the word: the word goes on, and a given word end measures it
    hum = np.where(t >= 0.6, 0.01 * np.sin(2 * np.pi * 100 * t), 0.0).astype(np.float32)
    assert digits.word_end(word + hum, SR) > 0.95
    after = _db(hum[int(0.62 * SR) :])
    assert digits.trailing_silence_db(word + hum, SR, word_end_s=0.6) == pytest.approx(after, abs=0.5)
    assert np.isnan(digits.trailing_silence_db(word, SR, word_end_s=1.0))


def test_word_of_path():
    assert digits.word_of_path("out/seven_3.wav") == "seven"
    assert digits.word_of_path("data/two/take.wav") == "two"
    assert digits.word_of_path("out/out_3.wav") is None
