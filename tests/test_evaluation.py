"""Evaluation: pitch estimation, Frechet distance, reconstruction metrics, the probe, and evaluate() end to end."""

import json
import os

import numpy as np
import pytest
import scipy.linalg

from audiox_jax import audio
from audiox_jax.data import notes, render
from audiox_jax.data.cache import load_cache
from audiox_jax.data.prepare import log_mel_items
from audiox_jax.data.synthetic import synthetic_dataset
from audiox_jax.errors import AudioxError, ParamError
from audiox_jax.audio import pitch
from audiox_jax.evaluation import metrics, probe, report

SR = 22050


def harmonic(f0, seconds=1.0, sr=SR, n_harm=6, seed=0):
    """A decaying harmonic tone at ``f0`` Hz with 1/k partials: f32[samples]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    y = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, n_harm + 1)
            if k * f0 < sr / 2)
    return (0.5 * np.exp(-2 * t) * y / n_harm).astype(np.float32)


# ------------------------------------------------------------------ pitch


@pytest.mark.parametrize("midi", [48, 57, 69, 84])
def test_f0_of_harmonic_tones(midi):
    f = float(pitch.midi_to_hz(midi))
    y = harmonic(f)
    assert pitch.estimate_f0(y, SR, target_midi=midi) == pytest.approx(f, rel=0.01)
    assert pitch.estimate_f0(y, SR) == pytest.approx(f, rel=0.01)  # without a target: C2..C7
    assert pitch.pitch_correct(y, SR, midi)


def test_octave_and_semitone_errors_are_wrong():
    f = float(pitch.midi_to_hz(60))
    assert not pitch.pitch_correct(harmonic(2 * f), SR, 60)  # an octave up
    assert not pitch.pitch_correct(harmonic(f / 2), SR, 60)  # an octave down
    assert not pitch.pitch_correct(harmonic(f * 2 ** (1.5 / 12)), SR, 60)  # 1.5 semitones sharp
    assert pitch.pitch_correct(harmonic(f * 2 ** (0.6 / 12)), SR, 60)  # 0.6 semitones: within one
    err = pitch.pitch_errors([harmonic(2 * f)], [60], SR)
    assert err[0] == pytest.approx(12.0, abs=0.2)


def test_noise_and_silence_have_no_pitch():
    noise = 0.3 * np.random.default_rng(0).standard_normal(SR).astype(np.float32)
    assert np.isnan(pitch.estimate_f0(noise, SR, target_midi=60))
    assert np.isnan(pitch.estimate_f0(np.zeros(SR, np.float32), SR, target_midi=60))
    clips = [harmonic(pitch.midi_to_hz(m)) for m in (60, 64, 67)] + [noise]
    assert pitch.pitch_accuracy(clips, [60, 64, 60, 60], SR) == 0.5


def test_pitch_argument_errors():
    with pytest.raises(ParamError, match="shorter than one pYIN frame"):
        pitch.estimate_f0(np.zeros(1000, np.float32), SR)
    with pytest.raises(ParamError, match="one MIDI pitch per clip"):
        pitch.pitch_errors([np.zeros(SR)], [60, 62], SR)


# ------------------------------------------------------------------ Frechet distance


def test_frechet_closed_form_diagonal():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, -1.0, 2.5])
    v1, v2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    want = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)  # commuting covariances
    got = metrics.frechet_distance_gaussians(mu1, np.diag(v1), mu2, np.diag(v2))
    assert got == pytest.approx(want, rel=1e-10)


def test_frechet_general_covariances_against_scipy_sqrtm():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((5, 5)), rng.standard_normal((5, 5))
    s1, s2 = a @ a.T + 0.1 * np.eye(5), b @ b.T + 0.1 * np.eye(5)
    mu1, mu2 = rng.standard_normal(5), rng.standard_normal(5)
    want = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * np.real(scipy.linalg.sqrtm(s1 @ s2)))
    assert metrics.frechet_distance_gaussians(mu1, s1, mu2, s2) == pytest.approx(want, rel=1e-8)
    assert metrics.frechet_distance_gaussians(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-9)
    # rank-deficient covariances (fewer samples than dimensions) stay real and >= 0
    low = a[:, :2] @ a[:, :2].T
    assert abs(metrics.frechet_distance_gaussians(mu1, low, mu1, low)) < 1e-6 * np.trace(low)


def test_frechet_from_samples_approaches_closed_form():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((20000, 3)) * [1.0, 2.0, 0.5]
    y = rng.standard_normal((20000, 3)) * [3.0, 1.0, 0.5] + [1.0, 0.0, -1.0]
    want = 1.0 + 1.0 + (1 - 3) ** 2 + (2 - 1) ** 2 + 0.0
    assert metrics.frechet_distance(x, y) == pytest.approx(want, abs=0.15)
    with pytest.warns(UserWarning, match="rank-deficient"):
        metrics.frechet_distance(x[:3], y[:3])
    with pytest.raises(ParamError, match="same d"):
        metrics.frechet_distance(x, y[:, :2])


# ------------------------------------------------------------------ reconstruction metrics

CFG = audio.AudioConfig()


def test_reconstruction_metrics_identity_and_gain():
    y = 0.1 * np.random.default_rng(0).standard_normal((2, SR)).astype(np.float32)
    same = metrics.reconstruction_metrics(y, y, CFG)
    assert same["spectral_convergence"] < 1e-5 and same["log_spectral_distance_db"] < 1e-3
    louder = metrics.reconstruction_metrics(y, 2 * y, CFG)  # |S_hat| = 2 |S| in every bin: SC 1, LSD 6.02 dB
    assert louder["spectral_convergence"] == pytest.approx(1.0, rel=1e-4)
    assert louder["log_spectral_distance_db"] == pytest.approx(20 * np.log10(2), rel=1e-3)


def test_vocoder_metrics_on_a_tone():
    y = harmonic(220.0)
    m = metrics.vocoder_metrics(y, CFG)
    assert m["clips"] == 1 and 0 < m["spectral_convergence"] < 0.5 and 0 < m["log_spectral_distance_db"] < 25


# ------------------------------------------------------------------ probe

SMALL = audio.AudioConfig(sr=8000, n_fft=256, hop_length=64, n_mels=32)


def test_probe_separates_tones_from_noise_bursts(tmp_path):
    clips, labels, vocab = synthetic_dataset(160, sr=SMALL.sr, seconds=0.5, seed=0)
    keep = np.isin(labels["kind"], [vocab["kind"].index("tone"), vocab["kind"].index("noise_burst")])
    mels = log_mel_items(clips[keep], SMALL)  # 80 clips: 40 tones, 40 noise bursts
    y = (labels["kind"][keep] == vocab["kind"].index("tone")).astype(np.int32)
    p = probe.train_probe(mels[:48], y[:48], classes=("noise_burst", "tone"), label="kind", seed=0, steps=200)
    assert probe.probe_accuracy(p, mels[48:], y[48:]) > 0.9
    assert probe.probe_embed(p, mels[48:]).shape == (32, 64)
    probe.save_probe(str(tmp_path), p._replace(val_accuracy=0.95))
    loaded = probe.load_probes(str(tmp_path))["kind"]
    assert loaded.classes == ("noise_burst", "tone") and loaded.val_accuracy == 0.95
    np.testing.assert_allclose(probe.probe_logits(loaded, mels[48:]), probe.probe_logits(p, mels[48:]), rtol=1e-6)
    with pytest.raises(ParamError, match="class ids in 0..1"):
        probe.train_probe(mels[:4], np.array([0, 1, 2, 1]), classes=("a", "b"))


# ------------------------------------------------------------------ evaluate() end to end


@pytest.fixture(scope="module")
def note_cache(tmp_path_factory):
    """12 GM notes (piano, flute x C4, G4, C5 x velocity 100, 120) prepared into a cache, and its probes."""
    root = tmp_path_factory.mktemp("eval")
    try:
        notes.render_note_dataset(str(root / "notes"), instruments=("piano", "flute"), pitches=(60, 67, 72),
                                  velocities=(100, 120), progress=False)
    except render.ToolMissingError as err:
        if os.environ.get("CI"):
            pytest.fail(f"CI must have fluidsynth and fluid-soundfont-gm: {err}")
        pytest.skip(str(err))
    notes.prepare_note_cache(str(root / "notes"), str(root / "cache"), audio_cfg=CFG, progress=False)
    cache = load_cache(str(root / "cache"))
    probes = probe.load_or_train_probes(cache, str(root / "probes"), label_names=("instrument",), val_fraction=0.25,
                                        config=probe.ProbeConfig(steps=200))
    return cache, probes, str(root / "probes")


def _real_notes_generator(cache, calls):
    """A fake model: returns the velocity-120 real note of each requested (instrument, pitch)."""
    by_labels = {tuple(cache.labels[i]): i for i in range(len(cache))}  # the last file of a combo: velocity 120

    def generate(ids, seed):
        calls.append(ids.shape)
        return np.stack([audio.load(os.path.join(cache.manifest.audio_dir, cache.source(by_labels[tuple(r)])[0]),
                                    SR)[0] for r in ids])

    return generate


def test_probes_are_saved_and_reused(note_cache):
    cache, probes, probe_dir = note_cache
    assert sorted(os.listdir(probe_dir)) == ["instrument.json", "instrument.msgpack"]
    again = probe.load_or_train_probes(cache, probe_dir, label_names=("instrument",))
    assert again["instrument"].val_accuracy == probes["instrument"].val_accuracy
    np.testing.assert_array_equal(again["instrument"].params["Dense_0"]["kernel"],
                                  probes["instrument"].params["Dense_0"]["kernel"])


def test_evaluate_real_notes_vs_noise(note_cache):
    cache, probes, _ = note_cache
    combos = report.label_combos(cache)
    assert combos.shape == (6, 2)
    calls = []
    good = report.evaluate(_real_notes_generator(cache, calls), combos, cache, probes, batch_size=4, seed=0)
    assert calls == [(4, 2), (4, 2)]  # the last batch of 2 is padded to 4
    assert good["generated"] == 6 and good["matched_real_clips"] == 6
    assert good["pitch"]["accuracy"] == 1.0 and good["pitch"]["accuracy_real"] == 1.0
    assert good["probe"]["instrument"]["accuracy_generated"] == 1.0
    assert good["by_class"]["instrument"]["flute"] == {"n": 3, "pitch_accuracy": 1.0,
                                                       "probe_accuracy": {"instrument": 1.0}}
    assert 0 < good["vocoder"]["spectral_convergence"] < 0.6

    def noise(ids, seed):
        return 0.3 * np.random.default_rng(seed).standard_normal((len(ids), SR)).astype(np.float32)

    bad = report.evaluate(noise, combos, cache, probes, batch_size=4, seed=0)
    assert bad["pitch"]["accuracy"] == 0.0 and bad["pitch"]["unvoiced_fraction"] > 0.5
    assert bad["frechet"]["instrument"]["generated"] > 10 * good["frechet"]["instrument"]["generated"]
    json.dumps(bad, allow_nan=False)  # JSON-able, NaN written as None
    text = report.format_report(good)
    assert "pitch accuracy" in text and "instrument probe accuracy" in text and "flute" in text


def test_evaluate_rejects_bad_inputs(note_cache):
    cache, probes, _ = note_cache
    combos = report.label_combos(cache)
    with pytest.raises(ParamError, match=r"combos must be i32\[K, 2\]"):
        report.evaluate(lambda ids, s: None, combos[:, :1], cache, probes)
    with pytest.raises(ParamError, match="pitch_label='note'"):
        report.evaluate(lambda ids, s: None, combos, cache, probes, pitch_label="note")
    with pytest.raises(AudioxError, match="generate_fn returned shape"):
        report.evaluate(lambda ids, s: np.zeros((1, SR), np.float32), combos, cache, probes, batch_size=2)


def test_seam_flux_ratio_sees_hard_cuts_and_not_smooth_joins():
    from audiox_jax.audio import AudioConfig
    from audiox_jax.evaluation.metrics import seam_flux_ratio

    cfg = AudioConfig()
    sr, n = 22050, 22050
    t = np.arange(4 * n) / sr
    rng = np.random.default_rng(0)
    smooth = (0.3 * np.sin(2 * np.pi * 330 * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
    seams = [n, 2 * n, 3 * n]
    assert seam_flux_ratio(smooth, seams, cfg) < 1.3
    cut = smooth.copy()
    for k, f in enumerate((220, 550, 880)):  # a new note (and phase) starts at every seam
        cut[(k + 1) * n :] = 0.3 * np.sin(2 * np.pi * f * t[: cut.size - (k + 1) * n])
    assert seam_flux_ratio(cut, seams, cfg) > 2.0
