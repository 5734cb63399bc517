"""The PyTorch reference (audiox_jax.bench.torch_ref) computes what our JAX DiT and generate compute.

torch is an optional extra: without it every test here skips, except under CI (CI=true, set
by `.ci/run`, which installs torch), where they fail (conftest's ``_missing``).
"""

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from audiox_jax import pipeline
from audiox_jax.audio.mel import MelStats
from audiox_jax.diffusion import samplers, schedules
from audiox_jax.models.dit import DiT

from conftest import _missing, tiny_dit

HAVE_TORCH = importlib.util.find_spec("torch") is not None
if HAVE_TORCH:
    import torch

    from audiox_jax.bench import torch_ref

SECONDS = 0.5
STATS = MelStats(kind="range", lo=-11.5, hi=2.0)


@pytest.fixture(scope="module", autouse=True)
def _needs_torch():
    """Runs before the module's other fixtures: skip or (under CI) fail when torch is missing."""
    if not HAVE_TORCH:
        _missing("torch for the torch parity tests: pip install 'audiox-jax[torch]'")


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.fixture(scope="module", params=["v", "x0+length"])
def model(request):
    """A tiny DiT with two label tables and random (non-zero, so adaLN-Zero is live) weights; also as
    the shipped default is made: x0-prediction and length conditioning."""
    extra = ["model.length_cond=true", "diffusion.prediction=x0"] if request.param != "v" else []
    cfg, params = tiny_dit("model.depth=2", "model.labels=[[inst,3],[pitch,5]]", "sampling.steps=4", *extra)
    module = torch_ref.load_flax_params(torch_ref.TorchDiT(cfg.model), params).eval()
    return cfg, params, module


def test_torch_dit_matches_flax_dit(model):
    cfg, params, module = model
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 80, 24)).astype(np.float32)
    t = np.array([0.05, 0.3, 0.7, 0.999], np.float32)
    labels = np.array([[0, 4], [-1, 2], [2, -1], [-1, -1]], np.int32)  # -1 = the null row
    cond = {"labels": jnp.asarray(labels)}
    length = np.array([24, 10, 13, 1], np.float32)
    if cfg.model.length_cond:
        cond["length"] = jnp.asarray(length)
    ours = DiT(cfg.model).apply({"params": params}, jnp.asarray(x), jnp.asarray(t), cond)
    with torch.inference_mode():
        ref = module(torch.from_numpy(x), torch.from_numpy(t), torch.from_numpy(labels).long(),
                     torch.from_numpy(length) if cfg.model.length_cond else None).numpy()
    assert np.abs(np.asarray(ours)).max() > 1e-2  # a live network, not adaLN-Zero's zeros
    assert rel(ref, ours) < 1e-4
    # an out-of-range label gives NaN in that row only, as in Flax
    with torch.inference_mode():
        bad = module(torch.from_numpy(x[:2]), torch.from_numpy(t[:2]), torch.tensor([[3, 0], [0, 0]])).numpy()
    assert np.isnan(bad[0]).all() and np.isfinite(bad[1]).all()


def test_load_flax_params_rejects_unsupported_configs(model):
    cfg, _, _ = model
    import dataclasses

    with pytest.raises(NotImplementedError):
        torch_ref.TorchDiT(dataclasses.replace(cfg.model, vec_dim=4))


def test_karras_schedule_matches(model):
    cfg, _, _ = model
    form = cfg.diffusion.make_formulation()
    for steps in (1, 4, 8):
        ours = schedules.sigmas("karras", steps, sigma_min=form.sigma_min, sigma_max=form.sigma_max, rho=7.0)
        np.testing.assert_allclose(torch_ref.karras_sigmas(steps, form.sigma_min, form.sigma_max, 7.0), ours,
                                   rtol=1e-5)


def test_torch_generate_log_mel_and_audio_match_pipeline(model):
    """Same initial noise and Griffin-Lim phase: the same log-mel (sampler + CFG + DiT) and audio."""
    cfg, params, module = model
    labels = np.array([[0, 1], [2, -1]], np.int32)
    key = jax.random.key(3)
    out = pipeline.generate_jit(params, key, {"labels": jnp.asarray(labels)}, model=pipeline.ModelSpec.of(cfg, STATS),
                                spec=pipeline.sampling_spec(cfg, seconds=SECONDS, batch=2),
                                guide=pipeline.guidance(cfg, 3.0))
    # the pipeline's own initial noise and Griffin-Lim phase, rebuilt from its key streams
    samples, frames, model_frames = pipeline.shapes(cfg, SECONDS)
    form = cfg.diffusion.make_formulation()
    sig = schedules.sigmas("karras", cfg.sampling.steps, sigma_min=form.sigma_min, sigma_max=form.sigma_max,
                           rho=cfg.sampling.rho)
    keys = pipeline.sample_keys(key, 2)
    x_init = np.asarray(samplers.initial_noise(keys, (80, model_frames), sig[0]))
    phase_keys = jax.vmap(lambda k: jax.random.fold_in(k, pipeline._GLA_STREAM))(keys)
    phase = np.asarray(jax.vmap(lambda k: 2 * jnp.pi * jax.random.uniform(k, (513, frames)))(phase_keys))
    with torch.inference_mode():
        audio, log_mel = torch_ref.torch_generate(module, cfg, STATS, labels, seconds=SECONDS,
                                                  steps=cfg.sampling.steps, cfg=3.0, x_init=x_init,
                                                  init_phase=phase, return_log_mel=True)
    assert log_mel.shape == out.log_mel.shape and audio.shape == out.audio.shape == (2, samples)
    assert rel(log_mel, out.log_mel) < 1e-4
    # the vocoder too (4 NNLS + 4 GLA iterations; float32 FFTs round differently, ~2e-6 seen)
    assert rel(audio, out.audio) < 1e-4


def test_torch_generate_seeded_and_unguided(model):
    cfg, _, module = model
    labels = np.array([[1, 3]], np.int32)
    with torch.inference_mode():
        a = torch_ref.torch_generate(module, cfg, STATS, labels, seconds=SECONDS, steps=2, cfg=None, seed=5)
        b = torch_ref.torch_generate(module, cfg, STATS, labels, seconds=SECONDS, steps=2, cfg=None, seed=5)
    assert a.shape == (1, pipeline.shapes(cfg, SECONDS)[0]) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
