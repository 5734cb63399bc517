"""Few-step models: the objectives' targets, the "fewstep" sampler and schedule, the DiT's
interval input, training from an existing model, and the one-program generate with them.

The analytic case: data x0 ~ N(MU, diag(S^2)) under rectified flow, x_t = t x0 + (1 - t) eps.
The marginal of x_t is N(MU t, sig_t^2), sig_t = sqrt(t^2 S^2 + (1 - t)^2), and the flow's
map from t to T is affine: x_T = MU T + (sig_T / sig_t)(x_t - MU t). So the exact average
velocity ``u(x, t, h) = (x_{t+h} - x) / h`` and the exact velocity
``v(x, t) = MU + (sig_t' / sig_t)(x - MU t)`` are known in closed form, and a few-step sampler
driven by the exact u lands exactly on the flow map from its start, in any number of steps.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from audiox_jax.config import load_config
from audiox_jax.diffusion import (batched_pair, cfg_denoiser, get_formulation, initial_noise, nfe, sample,
                                  sigmas)
from audiox_jax.diffusion.fewstep import (consistency_count, intervals, meanflow_loss, meanflow_target,
                                          shortcut_loss, shortcut_target)
from audiox_jax.errors import ParamError
from audiox_jax.models.dit import DiT, DiTConfig

from conftest import tiny_dit

DIM = 16
MU = jnp.linspace(-1.0, 1.0, DIM)
S = jnp.linspace(0.3, 2.0, DIM)


def _sig(t):
    return jnp.sqrt(t[:, None] ** 2 * S**2 + (1.0 - t[:, None]) ** 2)  # [B, DIM]


def flow_map(x, t, T):
    """Exact rf flow map of the Gaussian from time t to T (f32[B, DIM], f32[B], f32[B])."""
    return MU * T[:, None] + _sig(T) / _sig(t) * (x - MU * t[:, None])


def exact_u(x, t, h=None):
    """The exact average velocity over [t, t + h] (h=None or 0: the instantaneous velocity)."""
    if h is None:
        h = jnp.zeros_like(t)
    dsig = (t[:, None] * S**2 - (1.0 - t[:, None])) / _sig(t)  # d sig_t / dt
    v = MU + dsig / _sig(t) * (x - MU * t[:, None])
    safe = jnp.where(h > 0, h, 1.0)[:, None]
    return jnp.where(h[:, None] > 0, (flow_map(x, t, t + h) - x) / safe, v)


def _points(n=64, seed=0):
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    h = jax.random.uniform(k1, (n,), minval=0.05, maxval=0.9)
    t = jax.random.uniform(k2, (n,)) * (1.0 - h)
    x = jax.random.normal(k3, (n, DIM)) * _sig(t) + MU * t[:, None]
    return x, t, h


# ------------------------------------------------------------------ targets and losses


def test_shortcut_target_of_the_exact_flow_is_the_exact_average_velocity():
    x, t, h = _points()
    np.testing.assert_allclose(shortcut_target(exact_u, x, t, h), exact_u(x, t, h), atol=2e-5)


def test_shortcut_target_takes_short_substeps_from_the_teacher():
    """Sub-steps below min_interval come from flow_fn (the teacher), never from the model's h=0 answer."""
    x, t, h = _points()
    h = h * 0.1  # every sub-step h/4 < min_interval = 0.1
    broken = lambda x, t, h: jnp.where(h[:, None] > 0, exact_u(x, t, h), 100.0)  # noqa: E731
    got = shortcut_target(broken, x, t, h, min_interval=0.1, substeps=4, flow_fn=exact_u)
    want, xs = jnp.zeros_like(x), x  # 4 Euler steps of the exact flow, averaged
    for k in range(4):
        v = exact_u(xs, t + k * h / 4)
        want, xs = want + v / 4, xs + (h / 4)[:, None] * v
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(got, exact_u(x, t, h), atol=0.15)  # and near the true average (Euler error)


def test_meanflow_target_with_the_true_velocity_is_the_exact_average_velocity():
    x, t, h = _points()
    u, target = meanflow_target(exact_u, x, t, h, exact_u(x, t))
    np.testing.assert_allclose(u, exact_u(x, t, h), atol=1e-6)
    np.testing.assert_allclose(target, u, atol=2e-4)


def test_meanflow_target_detects_a_wrong_average_velocity():
    """A model that answers the instantaneous velocity for every h is not a flow map: its target differs."""
    x, t, h = _points()
    wrong = lambda x, t, h: exact_u(x, t)  # noqa: E731
    u, target = meanflow_target(wrong, x, t, h, exact_u(x, t))
    assert float(jnp.mean((u - target) ** 2)) > 1e-2


def test_losses_are_per_example_and_zero_gradient_through_the_target():
    x0 = MU + S * jax.random.normal(jax.random.key(1), (8, DIM))
    scale = jnp.float32(1.0)

    def model(scale):
        return lambda x, t, h: scale * exact_u(x, t, h)

    for loss in (shortcut_loss, meanflow_loss):
        out = loss(model(scale), x0, jax.random.key(2), min_interval=1 / 128)
        assert out.shape == (8,) and np.all(np.isfinite(out))
        # d loss / d scale only flows through the prediction: 2 * mean(u * (u - target)).
        grad = jax.grad(lambda s: loss(model(s), x0, jax.random.key(2)).sum())(scale)
        assert np.isfinite(float(grad))


def test_intervals_cover_log_uniform_steps_inside_the_unit_interval():
    t, h = intervals(jax.random.key(0), 20000, 1 / 128)
    t, h = np.asarray(t), np.asarray(h)
    assert np.all(h >= 1 / 128 - 1e-7) and np.all(h <= 1) and np.all(t >= 0) and np.all(t + h <= 1 + 1e-6)
    frac_long = np.mean(h > 0.5)  # log-uniform over 7 octaves: 1/7 of the steps are longer than 1/2
    assert abs(frac_long - 1 / 7) < 0.01, frac_long
    assert consistency_count(32, 0.25) == 8 and consistency_count(2, 0.01) == 1 and consistency_count(1, 0.5) == 0
    with pytest.raises(ParamError, match="min_interval"):
        intervals(jax.random.key(0), 4, 0.0)


# ------------------------------------------------------------------ sampler and schedule


@pytest.mark.parametrize("steps", [1, 2])
def test_fewstep_sampler_with_the_exact_average_velocity_lands_on_the_flow_map(steps):
    f = get_formulation("rf")
    s = sigmas("uniform_t_end", steps, sigma_min=f.sigma_min, sigma_max=f.sigma_max, formulation=f)
    t_grid = np.asarray(f.sigma_to_t(s))
    np.testing.assert_allclose(np.diff(t_grid), (1 - t_grid[0]) / steps, rtol=1e-4)  # equal steps to t=1
    keys = jax.random.split(jax.random.key(3), 4096)
    x_init = initial_noise(keys, (DIM,), s[0])
    calls = []

    def model_fn(x, t, *h):
        calls.append(len(h))
        return exact_u(x, t, *h)

    out = jax.jit(lambda x: sample(f.denoiser(model_fn), x, s, keys, sampler="fewstep").x)(x_init)
    assert nfe("fewstep", steps) == steps and calls == [1]  # traced once inside the scan, always with h
    t0 = jnp.full((x_init.shape[0],), t_grid[0])
    want = flow_map(x_init * t0[:, None], t0, jnp.ones_like(t0))  # the exact answer from the same start
    np.testing.assert_allclose(out, want, atol=2e-4)
    z = (np.asarray(out) - np.asarray(MU)) / np.asarray(S)
    assert abs(z.mean()) < 0.05 and abs(z.std() - 1) < 0.05


def test_fewstep_with_guidance_and_inpainting():
    f = get_formulation("rf")
    s = sigmas("uniform_t_end", 2, sigma_min=f.sigma_min, sigma_max=f.sigma_max, formulation=f)
    keys = jax.random.split(jax.random.key(4), 8)
    x_init = initial_noise(keys, (DIM,), s[0])
    plain = sample(f.denoiser(exact_u), x_init, s, keys, sampler="fewstep").x
    # Both branches are the same model, so any guidance scale gives the unguided answer.
    guided = sample(cfg_denoiser(batched_pair(f.denoiser(exact_u)), 3.0), x_init, s, keys, sampler="fewstep").x
    np.testing.assert_allclose(guided, plain, atol=1e-5)
    known = jnp.full((8, DIM), 0.7)
    mask = jnp.zeros((8, DIM)).at[:, :4].set(1.0)
    out = sample(f.denoiser(exact_u), x_init, s, keys, sampler="fewstep", inpaint=(known, mask)).x
    np.testing.assert_array_equal(out[:, :4], known[:, :4])


# ------------------------------------------------------------------ the DiT's interval input


def test_dit_interval_embedding_starts_at_zero_and_h_none_is_h_zero():
    base = DiTConfig(n_mels=8, patch=2, dim=32, depth=1, heads=2)
    x, t = jax.random.normal(jax.random.key(0), (2, 8, 6)), jnp.array([0.2, 0.7])
    p_plain = DiT(base).init(jax.random.key(1), x, t)["params"]
    p_int = DiT(dataclasses.replace(base, interval=True)).init(jax.random.key(1), x, t)["params"]
    assert set(p_int) - set(p_plain) == {"h_mlp_in", "h_mlp_out"}
    p_int = {**p_int, **jax.tree.map(lambda a: a + 0.1, p_plain)}  # the plain model's weights, zero h output layer
    model = DiT(dataclasses.replace(base, interval=True))
    a = model.apply({"params": p_int}, x, t)
    b = model.apply({"params": p_int}, x, t, None, jnp.array([0.5, 0.9]))
    c = DiT(base).apply({"params": jax.tree.map(lambda a: a + 0.1, p_plain)}, x, t)
    np.testing.assert_allclose(a, c, atol=1e-6)
    np.testing.assert_allclose(b, c, atol=1e-6)  # zero-initialised: h has no effect yet
    with pytest.raises(ParamError, match="without interval"):
        DiT(base).apply({"params": p_plain}, x, t, None, jnp.array([0.5, 0.9]))


def test_few_step_objectives_need_rf_and_the_interval_model():
    with pytest.raises(ParamError, match="model.interval"):
        load_config(None, ["diffusion.objective=meanflow"])
    with pytest.raises(ParamError, match="formulation='rf'"):
        load_config(None, ["diffusion.objective=shortcut", "diffusion.formulation=edm", "model.interval=true"])
    with pytest.raises(ParamError, match="diffusion.objective"):
        load_config(None, ["diffusion.objective=consistency"])


# ------------------------------------------------------------------ generate with a few-step model


@pytest.fixture(scope="module")
def fast_model():
    """A tiny labelled few-step DiT (interval=True) with random non-zero weights, and its config."""
    return tiny_dit("model.labels=[[inst,3]]", "model.interval=true", "diffusion.objective=shortcut",
                    "sampling.sampler=fewstep", "sampling.steps=2", "sampling.schedule=uniform_t_end")


def _gen(fast_model, *, cfg=None, init_audio=None, mask=None, **spec_kw):
    """generate_jit of the two clips [[0], [2]], 0.5 s; ``cfg``: a traced guidance scale."""
    from audiox_jax import pipeline
    from audiox_jax.audio.mel import MelStats

    config, params = fast_model
    spec = pipeline.sampling_spec(config, seconds=0.5, batch=2, **spec_kw)
    prompt = None if init_audio is None else pipeline.audio_prompt(spec, config, init_audio, mask=mask)
    return pipeline.generate_jit(params, jax.random.key(0), {"labels": jnp.array([[0], [2]], jnp.int32)},
                                 model=pipeline.ModelSpec.of(config, MelStats(kind="range", lo=-11.5, hi=2.0)),
                                 spec=spec, guide=None if cfg is None else pipeline.Guidance(cfg), prompt=prompt)


def test_one_fewstep_step_is_one_jump_of_the_average_velocity(fast_model):
    """generate's 1-step output equals x_1 = x_t0 + (1 - t0) u(x_t0, t0, h=1 - t0), computed by hand."""
    from audiox_jax import pipeline
    from audiox_jax.audio.mel import MelStats, normalize

    cfg, params = fast_model
    stats = MelStats(kind="range", lo=-11.5, hi=2.0)
    out = _gen(fast_model, steps=1, cfg=None)
    _, frames, model_frames = pipeline.shapes(cfg, 0.5)
    f = cfg.diffusion.make_formulation()
    keys = pipeline.sample_keys(jax.random.key(0), 2)
    z = initial_noise(keys, (80, model_frames), f.sigma_max)
    t0 = f.sigma_to_t(jnp.float32(f.sigma_max))
    t = jnp.full((2,), t0)
    x_t = z * t0
    u = DiT(cfg.model).apply({"params": params}, x_t, t, {"labels": jnp.array([[0], [2]], jnp.int32)}, 1.0 - t)
    want = x_t + (1.0 - t0) * u
    got = normalize(out.log_mel, stats)
    lm = np.asarray(out.log_mel)  # range stats bound it to [lo, hi] (pipeline.to_log_mel): compare inside
    live = (lm > stats.lo + 1e-3) & (lm < stats.hi - 1e-3)
    assert live.mean() > 0.5
    np.testing.assert_allclose(np.asarray(got)[live], np.asarray(want[..., :frames])[live], atol=2e-4)
    # h matters: the same start with h=0 (the "euler" sampler) is another answer
    euler = _gen(fast_model, steps=1, sampler="euler", cfg=None)
    assert float(jnp.max(jnp.abs(euler.log_mel - out.log_mel))) > 1e-3


def test_fewstep_generate_keeps_guidance_vmap_inpainting_and_export(fast_model):
    from audiox_jax import pipeline
    from audiox_jax.audio.mel import MelStats

    cfg, params = fast_model
    stats = MelStats(kind="range", lo=-11.5, hi=2.0)
    a = _gen(fast_model, cfg=jnp.float32(2.0))
    np.testing.assert_array_equal(a.audio, _gen(fast_model, cfg=jnp.float32(2.0)).audio)  # same seed, same bits
    samples, frames, model_frames = pipeline.shapes(cfg, 0.5)
    assert a.audio.shape == (2, samples) and np.isfinite(np.asarray(a.audio)).all()
    spec = pipeline.sampling_spec(cfg, seconds=0.5, batch=2)
    model = pipeline.ModelSpec.of(cfg, stats)
    assert spec.nfe == 2
    # guidance scale stays traced: vmap over scales is one compile and matches single calls
    labels = {"labels": jnp.array([[0], [2]], jnp.int32)}
    fn = jax.jit(jax.vmap(lambda w: pipeline.generate(params, jax.random.key(0), labels, model=model, spec=spec,
                                                      guide=pipeline.Guidance(w)).log_mel))
    many = fn(jnp.array([1.0, 2.0, 4.0], jnp.float32))
    np.testing.assert_allclose(many[1], a.log_mel, rtol=1e-4, atol=1e-4)
    assert float(jnp.max(jnp.abs(many[0] - many[2]))) > 1e-3
    # vmap over seeds: one call for several keys equals the calls one by one
    seeds = jax.vmap(lambda k: pipeline.generate(params, k, labels, model=model, spec=spec,
                                                 guide=pipeline.Guidance(jnp.float32(2.0))).log_mel)
    per_key = jax.jit(seeds)(jnp.stack([jax.random.key(0), jax.random.key(7)]))
    np.testing.assert_allclose(per_key[0], a.log_mel, rtol=1e-4, atol=1e-4)
    assert float(jnp.max(jnp.abs(per_key[0] - per_key[1]))) > 1e-3
    # inpainting: the kept region of the model-space mel is the input's
    init = 0.1 * np.sin(2 * np.pi * 440 * np.arange(samples) / cfg.audio.sr)
    mask = np.zeros(model_frames, np.float32)
    mask[:8] = 1.0
    inp = _gen(fast_model, init_audio=init, mask=mask)
    known = jnp.clip(pipeline.frontend.log_mel(jnp.asarray(init, jnp.float32)[None], cfg.audio), stats.lo, stats.hi)  # range stats bound it
    np.testing.assert_allclose(inp.log_mel[0, :, :8], known[0, :, :8], atol=1e-3)
    # export: a serialised few-step generate reproduces the direct call
    blob = pipeline.export_generate(params, cfg, stats, seconds=0.5, batch=2)
    out = pipeline.load_exported(blob)(jax.random.key_data(jax.random.key(0)), labels["labels"], jnp.float32(2.0))
    assert float(jnp.max(jnp.abs(out - a.audio)) / jnp.max(jnp.abs(a.audio))) < 1e-4


def test_fewstep_sampler_on_a_plain_model_names_the_fix():
    from audiox_jax import pipeline

    cfg = load_config(None, ["model.dim=32", "model.depth=1", "model.heads=2"])
    with pytest.raises(ParamError, match="few-step model"):
        pipeline.sampling_spec(cfg, seconds=0.5, sampler="fewstep", steps=2)


# ------------------------------------------------------------------ training


def _tiny(*overrides):
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return load_config(os.path.join(root, "configs", "tiny.yaml"),
                       ["train.eval_every=0", "train.demo_every=0", "train.ckpt_every=0", *overrides])


FEW = ["model.interval=true", "diffusion.objective=shortcut", "sampling.sampler=fewstep",
       "sampling.schedule=uniform_t_end", "sampling.steps=2"]


def test_few_step_training_from_scratch_reduces_both_losses(tmp_path):
    from audiox_jax.training.loop import train
    from audiox_jax.training.metrics import read_metrics

    cfg = _tiny(*FEW, "train.steps=150", "train.log_every=10", "diffusion.consistency_fraction=0.5")
    train(cfg, str(tmp_path), progress=False)
    rows = [r for r in read_metrics(str(tmp_path)) if "loss" in r]
    assert all("loss_consistency" in r and "loss_flow" in r for r in rows)
    flow = [r["loss_flow"] for r in rows]
    assert flow[-1] < 0.7 * flow[0], flow
    assert all(np.isfinite(r["loss_consistency"]) for r in rows)


def test_init_from_a_trained_model_starts_exactly_there(tmp_path):
    from audiox_jax.modelio import load_for_generation
    from audiox_jax.training.data import load_train_data
    from audiox_jax.training.loop import init_from_model, train

    src_dir = tmp_path / "src"
    train(_tiny("train.steps=5", "model.depth=1"), str(src_dir), progress=False)
    src = load_for_generation(str(src_dir / "model"))
    cfg = _tiny(*FEW, "model.depth=1", "train.steps=3", "train.log_every=1", f"train.init_from={src_dir / 'model'}")
    data = load_train_data(cfg)
    params, data2 = init_from_model(data.config, data, cfg.train.init_from)
    assert data2.stats == src.stats
    x = jax.random.normal(jax.random.key(0), (2, cfg.model.n_mels, 8))
    t, cond = jnp.array([0.3, 0.8]), {"labels": jnp.array([[0, 1], [2, -1]], jnp.int32)}
    want = DiT(src.config.model).apply({"params": src.params}, x, t, cond)
    for h in (None, jnp.array([0.5, 0.1])):
        got = DiT(data.config.model).apply({"params": params}, x, t, cond, h)
        np.testing.assert_allclose(got, want, atol=1e-6)  # the interval embedding starts at zero
    result = train(cfg, str(tmp_path / "fast"), progress=False)  # and the run goes on from there
    assert int(result.state.step) == 3
    with pytest.raises(ParamError, match="only model.interval may differ"):
        deeper = dataclasses.replace(data.config, model=dataclasses.replace(data.config.model, depth=2))
        init_from_model(deeper, data, str(src_dir / "model"))


def test_distillation_from_a_frozen_teacher_trains_consistency_only(tmp_path):
    from audiox_jax.training.loop import train
    from audiox_jax.training.metrics import read_metrics

    src = tmp_path / "src"
    train(_tiny("train.steps=5", "model.depth=1"), str(src), progress=False)
    cfg = _tiny(*FEW, "model.depth=1", "train.steps=4", "train.log_every=1", f"train.init_from={src / 'model'}",
                f"diffusion.teacher={src / 'model'}", "diffusion.consistency_fraction=1.0")
    train(cfg, str(tmp_path / "fast"), progress=False)
    rows = [r for r in read_metrics(str(tmp_path / "fast")) if "loss" in r]
    assert len(rows) == 4 and all("loss_consistency" in r and "loss_flow" not in r for r in rows)
    assert all(np.isfinite(r["loss"]) and r["loss"] == r["loss_consistency"] for r in rows)
    with pytest.raises(ParamError, match="consistency_fraction"):
        _tiny(*FEW, "diffusion.consistency_fraction=1.0")  # only with a teacher
    # the flow-map distance: 0 for the reference against itself, finite and shrinking with steps otherwise
    from audiox_jax.evaluation.model_eval import flow_map_error
    from audiox_jax.modelio import load_for_generation

    ref, fast = load_for_generation(str(src / "model")), load_for_generation(str(tmp_path / "fast" / "model"))
    same = flow_map_error(ref, ref, steps=(64,), sampler="euler", batch=4)
    assert same["rms"][64] == 0.0
    r = flow_map_error(fast, ref, steps=(1, 8), batch=4)
    assert r["sampler"] == "fewstep" and all(np.isfinite(v) and v > 0 for v in r["rms"].values())


def test_teacher_flow_is_the_guided_velocity():
    """teacher_flow(cfg=w) = v_u + w (v_c - v_u) from two separate calls; w = 1 is the conditional flow;
    an x0-predicting teacher gives the velocity of its x0."""
    from audiox_jax.config import load_config
    from audiox_jax.diffusion.formulations import x0_prediction
    from audiox_jax.models.dit import DiT
    from audiox_jax.training.step import teacher_flow

    cfg = load_config(None, ["model.dim=32", "model.depth=1", "model.heads=2", "model.labels=[[k,3]]"])
    model = DiT(cfg.model)
    x = jax.random.normal(jax.random.key(0), (2, 80, 8))
    t = jnp.array([0.3, 0.7])
    params = model.init(jax.random.key(1), x, t, {"labels": jnp.zeros((2, 1), jnp.int32)})["params"]
    params = jax.tree.map(lambda p: p + 0.05 * jax.random.normal(jax.random.key(2), p.shape), params)
    cond = {"labels": jnp.array([[1], [2]])}
    v = lambda c: model.apply({"params": params}, x, t, c)  # noqa: E731
    v_c, v_u = v(cond), v({"labels": jnp.full((2, 1), -1)})
    np.testing.assert_allclose(teacher_flow(model, params, cond, "v", 3.0)(x, t), v_u + 3.0 * (v_c - v_u),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(teacher_flow(model, params, cond, "v", 1.0)(x, t), v_c, rtol=1e-5, atol=1e-6)
    x0v = x0_prediction(lambda a, b: model.apply({"params": params}, a, b, cond))(x, t)
    np.testing.assert_allclose(teacher_flow(model, params, cond, "x0", 1.0)(x, t), x0v, rtol=1e-5, atol=1e-5)
