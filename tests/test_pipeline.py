"""generate(): one compiled program, traced guidance, per-sample randomness, audio-to-audio, export."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from audiox_jax import pipeline
from audiox_jax.audio.mel import MelStats
from audiox_jax.errors import ParamError

from conftest import tiny_dit

SECONDS = 0.5
STATS = MelStats(kind="range", lo=-11.5, hi=2.0)


@pytest.fixture(scope="module")
def model():
    """A tiny labelled DiT with random (non-zero) weights, and its config."""
    return tiny_dit("model.labels=[[inst,3]]", "sampling.steps=4")


LABELS = {"labels": jnp.array([[0], [2]], jnp.int32)}


def spec_for(cfg, batch=2, **kw):
    return pipeline.sampling_spec(cfg, seconds=SECONDS, batch=batch, **kw)


def gen(model, key=0, cond=LABELS, *, cfg=None, neg_cond=None, batch=None, init_audio=None, mask=None, strength=None,
        **spec_kw):
    """generate_jit with the spec objects built from keyword settings (``cfg``: a traced guidance scale)."""
    config, params = model
    batch = batch or (cond["labels"].shape[0] if cond else 1)
    spec = spec_for(config, batch, **spec_kw)
    guide = None if cfg is None else pipeline.Guidance(jnp.asarray(cfg, jnp.float32), negative=neg_cond)
    prompt = None if init_audio is None else pipeline.audio_prompt(spec, config, init_audio, mask=mask, strength=strength)
    return pipeline.generate_jit(params, jax.random.key(key), cond, model=pipeline.ModelSpec.of(config, STATS),
                                 spec=spec, guide=guide, prompt=prompt)


def rel(a, b):
    return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


def _whiles(text):
    """Result types of every stablehlo.while in a lowered module."""
    return re.findall(r"stablehlo\.while\(.*?\) : (.*)", text)


def test_generate_is_one_program_with_a_single_sampler_loop(model):
    cfg, params = model
    texts = {}
    for steps in (3, 12):
        spec = spec_for(cfg, steps=steps, sampler="heun")
        fn = lambda p, k, c, w: pipeline.generate(p, k, c, model=pipeline.ModelSpec.of(cfg, STATS), spec=spec,  # noqa: E731
                                                  guide=pipeline.Guidance(w)).audio
        texts[steps] = jax.jit(fn).lower(params, jax.random.key(0), LABELS, 2.0).as_text()
    a, b = texts[3], texts[12]
    # no host round trips
    for t in (a, b):
        assert "callback" not in t
    # the step count changes a loop bound, not the program: same loops, same number of matmuls
    assert len(_whiles(a)) == len(_whiles(b))
    assert a.count("stablehlo.dot_general") == b.count("stablehlo.dot_general")
    assert abs(len(a) - len(b)) < 0.01 * len(a)
    _, frames, model_frames = pipeline.shapes(cfg, SECONDS)
    types = " | ".join(_whiles(a))
    # exactly one loop runs the network: it carries x f32[B, n_mels, model_frames] and the DiT's
    # patch-embedding kernel f32[patch * n_mels, dim] (heun's correction is a cond inside it)
    patch_kernel = f"tensor<{cfg.model.patch * 80}x{cfg.model.dim}xf32>"
    sampler_loops = [w for w in _whiles(a) if f"tensor<2x80x{model_frames}xf32>" in w and patch_kernel in w]
    assert len(sampler_loops) == 1, types
    # Griffin-Lim's loop (complex spectra [B, frames, bins]) is inside the same module
    assert any(f"tensor<2x{frames}x513xcomplex<f32>>" in w for w in _whiles(a)), types


def test_generate_shapes_determinism_and_finite(model):
    cfg, _ = model
    out = gen(model, cfg=2.0)
    samples, frames, _ = pipeline.shapes(cfg, SECONDS)
    assert out.audio.shape == (2, samples) and out.log_mel.shape == (2, 80, frames)
    assert bool(jnp.all(jnp.isfinite(out.audio)))
    again = gen(model, cfg=2.0)
    np.testing.assert_array_equal(out.audio, again.audio)  # same seed, same backend: same bits
    other = gen(model, key=1, cfg=2.0)
    assert rel(other.log_mel, out.log_mel) > 1e-3
    assert spec_for(cfg, sampler="heun", steps=4).nfe == 7 and spec_for(cfg, sampler="euler", steps=4).nfe == 4


def test_guidance_is_traced_vmappable_and_compiles_once(model):
    cfg, params = model
    traces = []

    @jax.jit
    def run(w):
        traces.append(1)
        return pipeline.generate(params, jax.random.key(0), LABELS, model=pipeline.ModelSpec.of(cfg, STATS),
                                 spec=spec_for(cfg), guide=pipeline.Guidance(w)).log_mel

    a, b = run(1.0), run(4.0)
    assert len(traces) == 1
    assert rel(a, b) > 1e-4  # the scale really acts
    # cfg=1 is the conditional model alone (no guidance)
    np.testing.assert_allclose(a, gen(model).log_mel, rtol=1e-4, atol=1e-4)
    # one vmapped call over a vector of scales equals the separate calls
    many = jax.jit(jax.vmap(run))(jnp.array([1.0, 4.0]))
    np.testing.assert_allclose(many[0], a, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(many[1], b, rtol=1e-4, atol=1e-4)
    # per-example scales in one batch
    per = gen(model, cfg=jnp.array([1.0, 4.0]))
    np.testing.assert_allclose(per.log_mel[0], a[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(per.log_mel[1], b[1], rtol=1e-4, atol=1e-4)


def test_a_sample_does_not_depend_on_batch_size(model):
    both = gen(model, cfg=3.0, sampler="ddpm")
    alone = gen(model, cond={"labels": LABELS["labels"][1:]}, cfg=3.0, sampler="ddpm")
    # sample 1 of the batch used key fold_in(key, 1); alone it is sample 0 with fold_in(key, 0): differs
    assert rel(alone.log_mel[0], both.log_mel[1]) > 1e-3
    first = gen(model, cond={"labels": LABELS["labels"][:1]}, cfg=3.0, sampler="ddpm")
    assert rel(first.log_mel[0], both.log_mel[0]) < 1e-4
    assert rel(first.audio[0], both.audio[0]) < 1e-3


def test_unconditional_and_negative_conditioning(model):
    out = gen(model, cond=None, batch=3)
    assert out.audio.shape[0] == 3
    neg = gen(model, cfg=3.0, neg_cond={"labels": jnp.array([[1], [1]], jnp.int32)})
    plain = gen(model, cfg=3.0)
    assert rel(neg.log_mel, plain.log_mel) > 1e-4
    with pytest.raises(ParamError, match=r"leading sizes \[2\] but the call makes 3 clips"):
        gen(model, batch=3)


def test_inpainting_keeps_the_known_region(model):
    cfg, _ = model
    samples, frames, model_frames = pipeline.shapes(cfg, SECONDS)
    t = np.arange(samples) / cfg.audio.sr
    init = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    mask = pipeline.continuation_mask(samples // 2, cfg, model_frames)
    assert 0 < mask.sum() < model_frames and mask[0] == 1 and mask[-1] == 0
    out = gen(model, cfg=2.0, init_audio=init[: samples // 2], mask=mask)
    known = pipeline.to_log_mel(
        pipeline.audio_to_model_space(jnp.asarray(np.pad(init[: samples // 2], (0, samples - samples // 2)))[None],
                                      cfg, STATS, model_frames)[..., :frames], STATS, cfg.audio)
    keep = mask[:frames] == 1
    np.testing.assert_allclose(out.log_mel[0][:, keep], known[0][:, keep], atol=1e-4)
    free = gen(model, cfg=2.0)
    assert float(jnp.mean(jnp.abs(free.log_mel[0][:, keep] - known[0][:, keep]))) > 0.1


def test_variation_strength_controls_distance_from_the_input(model):
    cfg, _ = model
    samples, frames, model_frames = pipeline.shapes(cfg, SECONDS)
    t = np.arange(samples) / cfg.audio.sr
    init = (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    ref = pipeline.clip_log_mel(pipeline.denormalize(
        pipeline.audio_to_model_space(jnp.asarray(init)[None], cfg, STATS, model_frames), STATS)[..., :frames], cfg.audio)
    dist = {}
    for s in (0.25, 1.0):
        out = gen(model, cond={"labels": LABELS["labels"][:1]}, init_audio=init, strength=s, steps=8)
        dist[s] = float(jnp.mean(jnp.abs(out.log_mel - ref)))
    assert dist[0.25] < 0.5 * dist[1.0], dist
    with pytest.raises(ParamError, match="init_audio needs exactly one of"):
        gen(model, init_audio=init)
    with pytest.raises(ParamError, match="init_audio needs exactly one of"):
        gen(model, init_audio=init, strength=0.5, mask=np.ones(spec_for(cfg).model_frames, np.float32))
    with pytest.raises(ParamError, match=r"strength=1.5 must be in \[0, 1\]"):
        gen(model, init_audio=init, strength=1.5)


def test_trajectory_output(model):
    out = gen(model, steps=5, trajectory=True)
    _, _, model_frames = pipeline.shapes(model[0], SECONDS)
    assert out.trajectory_x.shape == (5, 2, 80, model_frames) and out.trajectory_x0.shape == (5, 2, 80, model_frames)


def test_bad_lengths_name_the_fix(model):
    with pytest.raises(ParamError, match="seconds=0.01 gives 1 mel frames, fewer than one DiT patch"):
        pipeline.shapes(model[0], 0.01)
    with pytest.raises(ParamError, match="seconds=0 must be > 0"):
        pipeline.shapes(model[0], 0)


def test_export_round_trip(model):
    cfg, params = model
    blob = pipeline.export_generate(params, cfg, STATS, seconds=SECONDS, batch=2, steps=3)
    key_data = jax.random.key_data(jax.random.key(5))
    direct = gen(model, key=5, steps=3, cfg=2.5).audio
    run = pipeline.load_exported(blob)
    a = run(key_data, LABELS["labels"], jnp.float32(2.5))
    b = pipeline.load_exported(blob)(key_data, LABELS["labels"], jnp.float32(2.5))
    np.testing.assert_array_equal(a, b)  # the reloaded artifact is deterministic
    assert a.shape == direct.shape
    assert rel(a, direct) < 1e-4  # and computes what generate computes


def test_continuation_is_phase_coherent_with_the_input(model):
    """The kept region starts Griffin-Lim from the input's own phase: the waveform itself comes back."""
    cfg, _ = model
    samples, frames, model_frames = pipeline.shapes(cfg, SECONDS)
    t = np.arange(samples) / cfg.audio.sr
    init = (0.3 * np.sin(2 * np.pi * 440 * t) * np.exp(-2 * t)).astype(np.float32)
    known = samples // 2
    mask = pipeline.continuation_mask(known, cfg, model_frames)
    out = np.asarray(gen(model, cond={"labels": LABELS["labels"][:1]}, cfg=2.0, init_audio=init[:known], mask=mask).audio[0])
    hop, keep = cfg.audio.hop_length, int(mask.sum())
    seg = slice(cfg.audio.n_fft, keep * hop - cfg.audio.n_fft)  # well inside the kept frames
    corr = np.corrcoef(out[seg], init[seg])[0, 1]
    assert corr > 0.9, corr


def test_the_sampling_spec_is_resolved_and_checked_once(model):
    cfg, _ = model
    spec = pipeline.sampling_spec(cfg)  # the model's defaults
    assert (spec.sampler, spec.steps, spec.schedule) == (cfg.sampling.sampler, cfg.sampling.steps, cfg.sampling.schedule)
    assert (spec.gla_iters, spec.nnls_iters) == (cfg.audio.gla_iters, cfg.audio.nnls_iters)
    assert spec.samples == round(pipeline.default_seconds(cfg) * cfg.audio.sr) and spec.batch == 1
    hash(spec)  # a jit static argument
    for kw, msg in (({"sampler": "eulr"}, "sampler='eulr' is not one of"), ({"steps": 0}, "steps=0 must be an integer >= 1"),
                    ({"batch": 0}, "batch=0 must be an integer >= 1"), ({"schedule": "x"}, "schedule='x' is not one of"),
                    ({"sampler": "fewstep"}, "needs a few-step model"), ({"seconds": 0.001}, "fewer than one DiT patch")):
        with pytest.raises(ParamError, match=msg):
            pipeline.sampling_spec(cfg, **kw)
    assert pipeline.guidance(cfg, 1.0) is None  # scale 1: one network call per step
    assert float(pipeline.guidance(cfg, 3.0).scale) == 3.0
    with pytest.raises(ParamError, match="cfg=nan must be a finite number"):
        pipeline.guidance(cfg, float("nan"))
    with pytest.raises(ParamError, match="longer than the 0.50 s to generate"):
        pipeline.audio_prompt(spec_for(cfg), cfg, np.zeros(cfg.audio.sr), continue_audio=True)
