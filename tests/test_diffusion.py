"""Tests for audiox_jax.diffusion against an analytic Gaussian.

Data: x0 ~ N(MU, diag(S^2)), 16 independent dims. In VE coordinates z = x0 + sigma eps the
ideal denoiser is E[x0 | z] = MU + S^2 / (S^2 + sigma^2) (z - MU). For each formulation the
test builds the ideal *network* by inverting that formulation's parametrisation with its own
maths (not the package's), so the package's conversions are what is tested.

Statistical tolerances: a correct sampler gives u = (x - MU) / S ~ N(0, 1) iid. With N
samples a per-dim mean has standard error 1/sqrt(N) and a per-dim std 1/sqrt(2N); Z = 4.5
standard errors is p ~ 7e-6 per check, so the ~1,000 checks here have ~0.7 % chance of a
false alarm in total (the keys are fixed, so a run is deterministic). The pooled checks over
all dims are 4x tighter (1.2 % on the std, 1.8 % on the mean, in units of S, with N=4096)
and catch systematic errors. Biases are kept well below them: first-order samplers get 2048
Karras steps (std bias, from the exact per-step variance recursion of the Gaussian: Euler
-0.2 %, ancestral -0.5 % over rf's sigma range 1e-3..999), second-order ones 128 steps
(+0.3 %); starting from sigma_max * eps instead of x0 + sigma_max * eps shifts a mean by
MU S / sigma_max, at most 1.3 % of S (edm's sigma_max = 80).
"""

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from audiox_jax.diffusion import (FORMULATIONS, SAMPLERS, SCHEDULES, batched_pair,
                                  cfg_denoiser, get_formulation, initial_noise, nfe,
                                  noise_level, sample, sigmas, variation_start)
from audiox_jax.errors import ParamError

DIM = 16
MU = jnp.linspace(-1.0, 1.0, DIM)
S = jnp.asarray(np.random.default_rng(0).permutation(np.linspace(0.3, 2.0, DIM)), jnp.float32)
N = 4096
Z = 4.5


def ideal_x0(z, sigma):
    """E[x0 | z]: f32[B, DIM], sigma: f32[B]."""
    return MU + S**2 / (S**2 + sigma[:, None] ** 2) * (z - MU)


def _vp_alpha_sig(schedule, t):
    """(sqrt(a_t), sqrt(1 - a_t)) for the test's own VP schedules, cancellation-free."""
    if schedule == "cosine":  # a_t = cos^2(phi) / cos^2(phi0); cos^2 a - cos^2 b = sin(b-a)sin(b+a)
        phi0 = 0.5 * math.pi * 0.008 / 1.008
        phi = 0.5 * math.pi * (t + 0.008) / 1.008
        one_minus_a = jnp.sin(phi - phi0) * jnp.sin(phi + phi0)
        return jnp.cos(phi) / math.cos(phi0), jnp.sqrt(one_minus_a) / math.cos(phi0)
    # 1 - a_t = 2 tanh(L/2) / (1 + tanh(L/2)), L = -log a_t. Not -expm1(-L): XLA:CPU (jax 0.10.2)
    # miscompiles two expm1/log/log1p of different operands inside one large reduce fusion
    # (the second returns the first's value), and the loss under jit would fuse this one
    # with the package's expm1.
    half = jnp.tanh(0.5 * (0.1 * t + 9.95 * t**2))
    return jnp.exp(-0.5 * (0.1 * t + 9.95 * t**2)), jnp.sqrt(2 * half / (1 + half))


def ideal_model(name, schedule="cosine", sigma_data=0.5):
    """The network a perfect training run would give: model_fn(x_t: f32[B, DIM], t: f32[B])."""

    def rf(x_t, t):  # x_t = t x0 + (1 - t) eps, v = x0 - eps, so x0 = x_t + (1 - t) v
        tb = t[:, None]
        return (ideal_x0(x_t / tb, (1 - t) / t) - x_t) / (1 - tb)

    def vp(x_t, t):
        a, sv = (c[:, None] for c in _vp_alpha_sig(schedule, t))
        x0 = ideal_x0(x_t / a, (sv / a)[:, 0])
        eps = (x_t - a * x0) / sv
        return eps if name == "vp_eps" else a * eps - sv * x0

    def edm(x_t, c_noise):  # x_t = c_in z, F = (D - c_skip z) / c_out
        sigma = jnp.exp(4.0 * c_noise)
        sb = sigma[:, None]
        c_in = 1.0 / jnp.sqrt(sb**2 + sigma_data**2)
        z = x_t / c_in
        return (ideal_x0(z, sigma) - sigma_data**2 * c_in**2 * z) / (sb * sigma_data * c_in)

    return {"rf": rf, "vp_eps": vp, "vp_v": vp, "edm": edm}[name]


FORMS = [("rf", {}), ("vp_eps", {}), ("vp_v", {}), ("vp_eps", {"schedule": "linear"}),
         ("edm", {})]
FORM_IDS = ["rf", "vp_eps_cos", "vp_v_cos", "vp_eps_lin", "edm"]


def ideal_denoiser(name, opts):
    """(formulation, its denoiser of the ideal network); cached so compiled samplers are reused."""
    return _ideal_denoiser(name, tuple(sorted(opts.items())))


@functools.lru_cache(maxsize=None)
def _ideal_denoiser(name, opts):
    f = get_formulation(name, **dict(opts))
    return f, f.denoiser(ideal_model(name, **dict(opts)))


@functools.lru_cache(maxsize=None)
def _jitted_sample(denoise, sampler):
    return jax.jit(lambda x, s, k, eta, inpaint: sample(denoise, x, s, k, sampler=sampler, eta=eta,
                                                         inpaint=inpaint).x)


def run(denoise, x, s, keys, *, sampler="euler", eta=None, inpaint=None):
    """sample(...).x under jit; eta and inpaint are traced, so shapes alone trigger compiles."""
    return _jitted_sample(denoise, sampler)(x, s, keys, eta, inpaint)


def assert_gaussian(x, mu=MU, s=S):
    """x: f32[n, d] is N(mu, s^2) per dim, within Z standard errors (per dim and pooled)."""
    n = x.shape[0]
    u = np.asarray((x - mu) / s, np.float64)
    np.testing.assert_array_less(np.abs(u.mean(0)), Z / math.sqrt(n))
    np.testing.assert_array_less(np.abs(u.std(0) - 1), Z / math.sqrt(2 * n))
    assert abs(u.mean()) < Z / math.sqrt(u.size)
    assert abs(u.std() - 1) < Z / math.sqrt(2 * u.size)


# ---------------------------------------------------------------- samplers x formulations

SAMPLER_CASES = [("euler", None), ("heun", None), ("ddim", 0.5), ("ddpm", None),
                 ("dpmpp_2m", None), ("dpmpp_2m_sde", None)]
SECOND_ORDER = ("heun", "dpmpp_2m")


@pytest.mark.parametrize("sampler,eta", SAMPLER_CASES, ids=[c[0] for c in SAMPLER_CASES])
@pytest.mark.parametrize("name,opts", FORMS, ids=FORM_IDS)
def test_every_sampler_recovers_gaussian(name, opts, sampler, eta):
    f, den = ideal_denoiser(name, opts)
    steps = 128 if sampler in SECOND_ORDER else 2048
    s = sigmas("karras", steps, sigma_min=f.sigma_min, sigma_max=f.sigma_max)
    keys = jax.random.split(jax.random.key(1), N)
    x = run(den, initial_noise(keys, (DIM,), s[0]), s, keys, sampler=sampler, eta=eta)
    assert x.shape == (N, DIM) and x.dtype == jnp.float32
    assert_gaussian(x)


@pytest.mark.parametrize("name,opts", FORMS, ids=FORM_IDS)
def test_denoiser_inverts_the_parametrisation(name, opts):
    """f.denoiser(ideal network) is the ideal denoiser, pointwise over the sampling range."""
    f, den = ideal_denoiser(name, opts)
    sigma = jnp.geomspace(f.sigma_min, f.sigma_max, 64)
    z = MU + jnp.sqrt(S**2 + sigma[:, None] ** 2) * jax.random.normal(jax.random.key(23), (64, DIM))
    # x0 = z - sigma * eps in float32 loses ~sigma * ulp(eps): the tolerance grows with sigma.
    err = np.abs(den(z, sigma) - ideal_x0(z, sigma))
    tol = 1e-4 * np.abs(ideal_x0(z, sigma)) + 2e-5 + 1e-6 * sigma[:, None]
    np.testing.assert_array_less(err, tol)


def _reference_sample(sampler, x, s, keys, eta):
    """k-diffusion's loops (Crowson, sampling.py) in float64 with the documented noise."""
    x, s = np.asarray(x, np.float64), np.asarray(s, np.float64)
    mu, sd2 = np.asarray(MU, np.float64), np.asarray(S, np.float64) ** 2
    den = lambda z, sig: mu + sd2 / (sd2 + sig**2) * (z - mu)  # noqa: E731
    old = h_last = None
    for i, (sig, nxt) in enumerate(zip(s[:-1], s[1:])):
        step_noise = lambda k: jax.random.normal(jax.random.fold_in(k, i), (DIM,))  # noqa: E731
        noise = np.asarray(jax.vmap(step_noise)(keys))
        x0 = den(x, sig)
        d = (x - x0) / sig
        if sampler in ("euler", "heun"):
            x_new = x + d * (nxt - sig)
            if sampler == "heun" and nxt > 0:
                x_new = x + (d + (x_new - den(x_new, nxt)) / nxt) / 2 * (nxt - sig)
            x = x_new
        elif sampler in ("ddim", "ddpm"):  # get_ancestral_step
            up = min(nxt, eta * math.sqrt(nxt**2 * (sig**2 - nxt**2) / sig**2))
            x = x + d * (math.sqrt(nxt**2 - up**2) - sig) + noise * up
        elif nxt == 0:  # dpmpp_2m(_sde): the last step returns the denoised value
            x = x0
        else:
            h = math.log(sig / nxt)
            e_h = eta * h if sampler == "dpmpp_2m_sde" else 0.0
            x = nxt / sig * math.exp(-e_h) * x - math.expm1(-h - e_h) * x0
            if old is not None:
                x = x - 0.5 * math.expm1(-h - e_h) * (h / h_last) * (x0 - old)
            x = x + noise * nxt * math.sqrt(-math.expm1(-2 * e_h))
            h_last = h
        old = x0
    return x


@pytest.mark.parametrize("sampler,eta", [("euler", 0.0), ("heun", 0.0), ("ddim", 0.6),
                                         ("ddpm", 1.0), ("dpmpp_2m", 0.0), ("dpmpp_2m_sde", 0.7)])
def test_samplers_match_reference_loops(sampler, eta):
    f, den = ideal_denoiser("edm", {})
    s = sigmas("karras", 7, sigma_min=f.sigma_min, sigma_max=f.sigma_max)
    keys = jax.random.split(jax.random.key(24), 8)
    x_init = initial_noise(keys, (DIM,), s[0])
    got = run(den, x_init, s, keys, sampler=sampler,
              eta=eta if sampler in ("ddim", "dpmpp_2m_sde") else None)
    np.testing.assert_allclose(got, _reference_sample(sampler, x_init, s, keys, eta),
                               rtol=1e-5, atol=1e-5)


def test_sampler_registry_covers_all():
    # "fewstep" needs a few-step (interval) model: tested against the exact Gaussian flow map in test_fewstep.py
    assert set(SAMPLERS) == {c[0] for c in SAMPLER_CASES} | {"fewstep"}
    # every registered formulation builds, under its own name
    assert [get_formulation(name).name for name in FORMULATIONS] == list(FORMULATIONS)


def _exact_ode(x_init, sigma_max):
    """Probability-flow ODE solution for the Gaussian: z - MU scales as sqrt(S^2 + sigma^2)."""
    return MU + (x_init - MU) * S / jnp.sqrt(S**2 + sigma_max**2)


@pytest.mark.parametrize("sampler", ["euler", "heun", "dpmpp_2m"])
def test_convergence_order(sampler):
    f, den = ideal_denoiser("edm", {})
    keys = jax.random.split(jax.random.key(2), 64)
    errs = []
    for steps in (8, 16, 32):
        s = sigmas("karras", steps, sigma_min=f.sigma_min, sigma_max=f.sigma_max)
        x_init = initial_noise(keys, (DIM,), s[0])
        x = run(den, x_init, s, keys, sampler=sampler)
        errs.append(float(jnp.max(jnp.abs(x - _exact_ode(x_init, s[0])))))
    assert errs[0] > errs[1] > errs[2]
    ratio = errs[1] / errs[2]  # error(16) / error(32): 2 for first, 4 for second order
    if sampler in SECOND_ORDER:
        assert 3.4 < ratio < 6.0, errs
    else:
        assert 1.7 < ratio < 2.3, errs


def test_sampler_identities():
    """ddim(eta=0) is euler, ddpm is ddim(eta=1), dpmpp_2m_sde(eta=0) is dpmpp_2m."""
    f, den = ideal_denoiser("edm", {})
    keys = jax.random.split(jax.random.key(3), 32)
    s = sigmas("karras", 12, sigma_min=f.sigma_min, sigma_max=f.sigma_max)
    x = initial_noise(keys, (DIM,), s[0])
    np.testing.assert_array_equal(run(den, x, s, keys, sampler="ddim"),
                                  run(den, x, s, keys, sampler="euler"))
    np.testing.assert_array_equal(run(den, x, s, keys, sampler="ddpm"),
                                  run(den, x, s, keys, sampler="ddim", eta=1.0))
    np.testing.assert_allclose(run(den, x, s, keys, sampler="dpmpp_2m_sde", eta=0.0),
                               run(den, x, s, keys, sampler="dpmpp_2m"), rtol=1e-5, atol=1e-5)


def test_rf_euler_is_flow_matching_euler():
    """z-space Euler on a uniform-t grid equals x_{t'} = x_t + (t' - t) v(x_t, t) for rf."""
    f = get_formulation("rf")
    model = ideal_model("rf")
    s = sigmas("uniform_t", 8, sigma_min=f.sigma_min, sigma_max=f.sigma_max, formulation=f)
    keys = jax.random.split(jax.random.key(4), 16)
    z = initial_noise(keys, (DIM,), s[0])
    t = np.asarray(f.sigma_to_t(s))
    np.testing.assert_allclose(np.diff(t[:-1]), (t[-2] - t[0]) / 7, rtol=1e-4)  # uniform in t
    x_t = z * t[0]
    for t_i, t_next in zip(t[:-1], t[1:]):
        x_t = x_t + (t_next - t_i) * model(x_t, jnp.full((16,), t_i))
    np.testing.assert_allclose(run(f.denoiser(model), z, s, keys), x_t, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("sampler,eta", [("ddpm", None), ("dpmpp_2m_sde", None), ("ddim", 0.7)])
def test_stochastic_samplers_batch_invariant(sampler, eta):
    f, den = ideal_denoiser("vp_v", {})
    s = sigmas("karras", 10, sigma_min=f.sigma_min, sigma_max=f.sigma_max)
    keys = jax.random.split(jax.random.key(5), 4)
    x_init = initial_noise(keys, (DIM,), s[0])
    batch = run(den, x_init, s, keys, sampler=sampler, eta=eta)
    for b in range(4):
        alone = run(den, x_init[b:b + 1], s, keys[b:b + 1], sampler=sampler, eta=eta)
        np.testing.assert_allclose(alone[0], batch[b], rtol=1e-6, atol=1e-6)
    perm = np.array([2, 0, 3, 1])
    np.testing.assert_allclose(run(den, x_init[perm], s, keys[perm], sampler=sampler, eta=eta),
                               batch[perm], rtol=1e-6, atol=1e-6)
    assert not np.allclose(batch, run(den, x_init, s, jax.random.split(jax.random.key(6), 4),
                                      sampler=sampler, eta=eta))  # the noise is used


def test_raw_uint32_keys_accepted():
    f, den = ideal_denoiser("edm", {})
    s = sigmas("karras", 6, sigma_min=f.sigma_min, sigma_max=f.sigma_max)
    raw = jax.random.split(jax.random.PRNGKey(0), 3)  # uint32[3, 2]
    x = run(den, jnp.zeros((3, DIM)) + 80.0, s, raw, sampler="ddpm")
    assert x.shape == (3, DIM) and bool(jnp.all(jnp.isfinite(x)))


def test_inpainting_keeps_known_and_samples_rest():
    f, den = ideal_denoiser("edm", {})
    s = sigmas("karras", 512, sigma_min=f.sigma_min, sigma_max=f.sigma_max)
    keys = jax.random.split(jax.random.key(7), N)
    mask = jnp.broadcast_to((jnp.arange(DIM) % 2 == 0).astype(jnp.float32), (N, DIM))
    known = jax.random.uniform(jax.random.key(8), (N, DIM), minval=-5.0, maxval=5.0)
    x = run(den, initial_noise(keys, (DIM,), s[0]), s, keys, sampler="dpmpp_2m_sde",
            inpaint=(known, mask))
    free = np.arange(DIM) % 2 == 1
    np.testing.assert_array_equal(x[:, ~free], known[:, ~free])  # exact where mask == 1
    assert_gaussian(x[:, free], MU[free], S[free])


def test_trajectory():
    f, den = ideal_denoiser("rf", {})
    s = sigmas("karras", 6, sigma_min=f.sigma_min, sigma_max=f.sigma_max)
    keys = jax.random.split(jax.random.key(9), 5)
    x_init = initial_noise(keys, (DIM,), s[0])
    out = jax.jit(lambda x: sample(den, x, s, keys, sampler="heun", return_trajectory=True))(x_init)
    assert out.trajectory_x.shape == out.trajectory_x0.shape == (6, 5, DIM)
    np.testing.assert_array_equal(out.trajectory_x[-1], out.x)
    np.testing.assert_allclose(out.trajectory_x0[0], den(x_init, jnp.full((5,), s[0])), rtol=1e-5)
    np.testing.assert_allclose(out.trajectory_x0[3], den(out.trajectory_x[2], jnp.full((5,), s[3])),
                               rtol=1e-4, atol=1e-5)
    plain = sample(den, x_init, s, keys, sampler="heun")
    assert plain.trajectory_x is None and plain.trajectory_x0 is None


@pytest.mark.parametrize("sampler", ["euler", "heun", "dpmpp_2m", "dpmpp_2m_sde"])
def test_variation_noop_steps_equal_truncated_schedule(sampler):
    f, den = ideal_denoiser("edm", {})
    s = sigmas("karras", 10, sigma_min=f.sigma_min, sigma_max=f.sigma_max)
    keys = jax.random.split(jax.random.key(10), 8)
    init_x0 = MU + S * jax.random.normal(jax.random.key(11), (8, DIM))

    @jax.jit
    def vary(strength):
        x_init, s_eff = variation_start(init_x0, s, strength, keys)
        return x_init, sample(den, x_init, s_eff, keys, sampler=sampler).x

    for strength, start in ((0.4, 6), (1.0, 0), (0.0, 9)):
        x_init, x = vary(jnp.float32(strength))
        np.testing.assert_allclose(x_init, init_x0 + initial_noise(keys, (DIM,), s[start]),
                                   rtol=1e-6, atol=1e-6)
        # Deterministic samplers: the no-op steps change nothing, so this equals running the
        # truncated schedule s[start:] (a stochastic one draws its noise at other step indices).
        if sampler != "dpmpp_2m_sde":
            np.testing.assert_allclose(x, run(den, x_init, s[start:], keys, sampler=sampler),
                                       rtol=1e-5, atol=1e-5)
        assert bool(jnp.all(jnp.isfinite(x)))
    many = jax.vmap(vary)(jnp.array([0.2, 0.5, 0.9]))  # strength is traced: vmappable
    assert many[1].shape == (3, 8, DIM) and bool(jnp.all(jnp.isfinite(many[1])))
    np.testing.assert_allclose(many[1][1], vary(jnp.float32(0.5))[1], rtol=1e-5, atol=1e-5)


def test_nfe_matches_counted_denoiser_calls():
    """Under jax.disable_jit, lax.scan runs its body per step and lax.cond one branch, so a
    Python counter sees every executed denoiser call."""
    f, den = ideal_denoiser("edm", {})
    keys = jax.random.split(jax.random.key(12), 2)
    for sampler in SAMPLERS:
        for steps in (1, 4):
            calls = []

            def counted(z, sigma, *sigma_next):  # "fewstep" also passes sigma_next
                calls.append(1)
                return den(z, sigma)

            s = sigmas("karras", steps, sigma_min=f.sigma_min, sigma_max=f.sigma_max)
            with jax.disable_jit():
                sample(counted, initial_noise(keys, (DIM,), s[0]), s, keys, sampler=sampler)
            assert len(calls) == nfe(sampler, steps), (sampler, steps)
    assert nfe("heun", 10) == 19 and nfe("dpmpp_2m", 10) == 10


def _while_ops_outside_prng(text):
    """Count stablehlo.while in MLIR functions other than the PRNG's own (threefry loops)."""
    funcs = text.split("func.func")
    return sum(fn.count("stablehlo.while") for fn in funcs if "threefry" not in fn.split("(")[0])


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_single_scan_no_unrolling(sampler):
    f, den = ideal_denoiser("vp_eps", {})
    keys = jax.random.split(jax.random.key(13), 2)

    def lowered(steps):
        s = sigmas("karras", steps, sigma_min=f.sigma_min, sigma_max=f.sigma_max)
        fn = jax.jit(lambda x, s, k: sample(lambda z, sig, *_: den(z, sig), x, s, k, sampler=sampler).x)
        return fn.lower(jnp.zeros((2, DIM)), s, keys).as_text()

    text16, text4 = lowered(16), lowered(4)
    assert _while_ops_outside_prng(text16) == 1
    assert text16.count("stablehlo.") == text4.count("stablehlo.")  # size independent of steps


# ---------------------------------------------------------------- losses


def _expected_ideal_loss(name, opts):
    """E[loss] of the ideal model: the target's posterior variance, weighted, averaged over
    the default training noise levels (midpoint quadrature in float64)."""
    s2 = np.asarray(S, np.float64) ** 2
    if name == "edm":
        # ln sigma ~ N(-1.2, 1.2^2); lambda Var(x0|z) = (sig^2 + sd^2) s^2 / (sd^2 (s^2 + sig^2))
        n = np.linspace(-8, 8, 20001)
        w = np.exp(-0.5 * n**2)
        sig2 = np.exp(2 * (-1.2 + 1.2 * n))[:, None]
        per = (sig2 + 0.25) * s2 / (0.25 * (s2 + sig2))
        return float((w[:, None] * per).sum() / w.sum() / DIM)
    u = (np.arange(200000) + 0.5) / 200000
    if name == "rf":  # Var(v | x_t) = s^2 / (t^2 s^2 + (1 - t)^2), t = 1 - u
        t = 1 - u[:, None]
        return float(np.mean(s2 / (t**2 * s2 + (1 - t) ** 2)))
    a, sv = (np.asarray(c, np.float64) for c in _vp_alpha_sig(opts.get("schedule", "cosine"),
                                                               jnp.asarray(u, jnp.float32)))
    sig2 = ((sv / a) ** 2)[:, None]
    per = s2 / (s2 + sig2) if name == "vp_eps" else (1 + sig2) * s2 / (s2 + sig2)
    return float(np.mean(per))


@pytest.mark.parametrize("name,opts", FORMS, ids=FORM_IDS)
def test_loss_ideal_model(name, opts):
    f = get_formulation(name, **opts)
    model = ideal_model(name, **opts)
    x0 = MU + S * jax.random.normal(jax.random.key(14), (N, DIM))
    key = jax.random.key(15)
    loss = jax.jit(lambda m, x, k: f.loss(m, x, k), static_argnums=0)
    ideal = loss(model, x0, key)
    assert ideal.shape == (N,) and bool(jnp.all(jnp.isfinite(ideal)))
    mean, se = float(ideal.mean()), float(ideal.std()) / math.sqrt(N)
    assert abs(mean - _expected_ideal_loss(name, opts)) < Z * se
    # A biased network, output + 0.1 on the same draws: per example the loss grows by
    # 0.1^2 + 0.2 * mean residual in the natural target's units (EDM: lambda = 1 / c_out^2
    # makes it the F-space MSE); the residual has mean 0 for the ideal model.
    diff = loss(lambda x, t: model(x, t) + 0.1, x0, key) - ideal
    assert float(diff.mean()) > 0
    assert abs(float(diff.mean()) - 0.01) < Z * float(diff.std()) / math.sqrt(N) + 1e-5


@pytest.mark.parametrize("t_sampler", ["uniform", "logit_normal", "shift"])
def test_losses_with_each_t_sampler(t_sampler):
    x0 = MU + S * jax.random.normal(jax.random.key(16), (64, DIM))
    for name in FORMULATIONS:
        f = get_formulation(name)
        out = f.loss(ideal_model(name), x0, jax.random.key(17), t_sampler=t_sampler, shift=3.0)
        assert out.shape == (64,) and bool(jnp.all(jnp.isfinite(out)))


def test_noise_level_samplers():
    key = jax.random.key(18)
    u = noise_level(key, 20000, "uniform")
    assert 0 < float(u.min()) and float(u.max()) < 1 and abs(float(u.mean()) - 0.5) < 0.01
    u = noise_level(key, 20000, "shift", shift=3.0)  # median of shift(U) = shift(0.5) = 0.75
    assert abs(float(jnp.median(u)) - 0.75) < 0.01
    u = noise_level(key, 20000, "logit_normal", mean=0.5, std=0.8)
    logit = jnp.log(u / (1 - u))
    assert abs(float(logit.mean()) - 0.5) < 0.03 and abs(float(logit.std()) - 0.8) < 0.03
    with pytest.raises(ParamError, match="t_sampler='gauss'.*uniform"):
        noise_level(key, 4, "gauss")
    with pytest.raises(ParamError, match="shift=-2.0 must be > 0"):
        noise_level(key, 4, "shift", shift=-2.0)


# ---------------------------------------------------------------- formulations and schedules


@pytest.mark.parametrize("name,opts", FORMS, ids=FORM_IDS)
def test_time_sigma_round_trip(name, opts):
    f = get_formulation(name, **opts)
    assert 0 < f.sigma_min < f.sigma_max
    s = jnp.geomspace(f.sigma_min, f.sigma_max, 50)
    np.testing.assert_allclose(f.t_to_sigma(f.sigma_to_t(s)), s, rtol=2e-4)
    if name != "edm":  # the sampling range is t in [t_eps, 1 - t_eps]
        ts = sorted(float(f.sigma_to_t(jnp.float32(v))) for v in (f.sigma_min, f.sigma_max))
        np.testing.assert_allclose(ts, [1e-3, 1 - 1e-3], rtol=1e-3)


def test_get_formulation_errors():
    with pytest.raises(ParamError, match=r"name='ddpm'.*'rf', 'vp_eps', 'vp_v', 'edm'"):
        get_formulation("ddpm")
    with pytest.raises(ParamError, match="schedule='sqrt'"):
        get_formulation("vp_v", schedule="sqrt")
    with pytest.raises(ParamError, match="t_eps=0.7"):
        get_formulation("rf", t_eps=0.7)
    with pytest.raises(ParamError, match="sigma_data=0"):
        get_formulation("edm", sigma_data=0.0)
    with pytest.raises(ParamError, match="sigma_max=1.0 must satisfy"):
        get_formulation("edm", sigma_min=2.0, sigma_max=1.0)
    with pytest.raises(ParamError, match=r"schedule='linear' does not apply to formulation 'rf'"):
        get_formulation("rf", schedule="linear")


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("steps", [1, 2, 17])
def test_schedule_shape_and_ends(schedule, steps):
    f = get_formulation("rf")
    s = np.asarray(sigmas(schedule, steps, sigma_min=0.01, sigma_max=50.0, formulation=f,
                          shift=3.0))
    assert s.shape == (steps + 1,) and s.dtype == np.float32
    assert s[0] == np.float32(50.0) and s[-1] == 0.0
    assert np.all(np.diff(s) < 0)
    if steps > 1 and schedule == "uniform_t_end":  # the one schedule that ignores sigma_min
        t = np.asarray(f.sigma_to_t(s))
        np.testing.assert_allclose(np.diff(t), (1 - t[0]) / steps, rtol=1e-4)  # equal steps up to t=1
    elif steps > 1:
        assert s[-2] == np.float32(0.01)


def test_schedule_values():
    kw = dict(sigma_min=0.002, sigma_max=80.0)
    np.testing.assert_allclose(sigmas("karras", 5, rho=1.0, **kw)[:-1], np.linspace(80, 0.002, 5),
                               rtol=1e-5)
    r = 1 / 7  # Karras et al. eq. 5, i = 1 of 4
    mid = (80**r + (0.002**r - 80**r) / 3) ** 7
    np.testing.assert_allclose(sigmas("karras", 4, **kw)[1], mid, rtol=1e-5)
    np.testing.assert_allclose(sigmas("exponential", 6, **kw)[:-1], np.geomspace(80, 0.002, 6),
                               rtol=1e-5)
    logsnr = -2 * np.log(np.asarray(sigmas("logsnr_linear", 6, **kw)[:-1], np.float64))
    np.testing.assert_allclose(np.diff(logsnr), np.diff(logsnr)[0], rtol=1e-4)
    f = get_formulation("rf")
    np.testing.assert_allclose(sigmas("shifted", 9, shift=1.0, formulation=f, **kw),
                               sigmas("uniform_t", 9, formulation=f, **kw), rtol=1e-4)
    # shift > 1 raises every interior level (more of the steps at high noise)
    shifted = sigmas("shifted", 9, shift=3.0, **kw)
    plain = sigmas("shifted", 9, shift=1.0, **kw)
    assert np.all(np.asarray(shifted[1:-2]) > np.asarray(plain[1:-2]))


def test_schedule_errors():
    kw = dict(sigma_min=0.002, sigma_max=80.0)
    with pytest.raises(ParamError, match="steps=0 must be an int >= 1"):
        sigmas("karras", 0, **kw)
    with pytest.raises(ParamError, match="steps=2.5"):
        sigmas("karras", 2.5, **kw)
    with pytest.raises(ParamError, match="schedule='cosine'.*karras"):
        sigmas("cosine", 8, **kw)
    with pytest.raises(ParamError, match="sigma_max=0.001 must be > sigma_min=0.002"):
        sigmas("karras", 8, sigma_min=0.002, sigma_max=0.001)
    with pytest.raises(ParamError, match="sigma_min=0.0 must be > 0"):
        sigmas("karras", 8, sigma_min=0.0, sigma_max=80.0)
    with pytest.raises(ParamError, match="rho=-1"):
        sigmas("karras", 8, rho=-1.0, **kw)
    with pytest.raises(ParamError, match="shift=0"):
        sigmas("shifted", 8, shift=0.0, **kw)
    with pytest.raises(ParamError, match="needs formulation="):
        sigmas("uniform_t", 8, **kw)


def test_sampler_errors():
    s = sigmas("karras", 4, sigma_min=0.002, sigma_max=80.0)
    keys = jax.random.split(jax.random.key(0), 2)
    x = jnp.zeros((2, DIM))
    den = ideal_denoiser("edm", {})[1]
    with pytest.raises(ParamError, match="sampler='lms'.*euler"):
        sample(den, x, s, keys, sampler="lms")
    with pytest.raises(ParamError, match="eta=0.5 is not used by sampler='heun'"):
        sample(den, x, s, keys, sampler="heun", eta=0.5)
    with pytest.raises(ParamError, match="keys.shape=.3,. must hold one key per sample"):
        sample(den, x, s, jax.random.split(jax.random.key(0), 3))
    with pytest.raises(ParamError, match="sigmas.shape"):
        sample(den, x, s[:1], keys)
    with pytest.raises(ParamError, match="inpaint shapes"):
        sample(den, x, s, keys, inpaint=(x, x[:1]))
    with pytest.raises(ParamError, match="steps=0"):
        nfe("euler", 0)


def test_bfloat16_dtype_is_kept():
    f, den = ideal_denoiser("edm", {})
    s = sigmas("karras", 8, sigma_min=f.sigma_min, sigma_max=f.sigma_max)
    keys = jax.random.split(jax.random.key(19), 64)
    x = initial_noise(keys, (DIM,), s[0])
    for sampler in ("dpmpp_2m", "ddpm"):
        lo = run(den, x.astype(jnp.bfloat16), s, keys, sampler=sampler)
        assert lo.dtype == jnp.bfloat16
        np.testing.assert_allclose(lo.astype(jnp.float32), run(den, x, s, keys, sampler=sampler),
                                   atol=0.1, rtol=0.05)


# ---------------------------------------------------------------- guidance


def _pair():
    """A cond/uncond pair with distinct, sigma-dependent outputs, and a call counter."""
    calls = []

    def batched(z2, sigma2):
        calls.append(z2.shape[0])
        half = z2.shape[0] // 2
        bias = jnp.concatenate([jnp.ones((half, 1)), -jnp.ones((half, 1))]) * (1 + sigma2[:, None])
        return 0.5 * z2 + bias * jnp.linspace(0.0, 1.0, z2.shape[1])

    return batched_pair(batched), calls


def test_cfg_basic_identities():
    pair, calls = _pair()
    z = jax.random.normal(jax.random.key(20), (3, DIM))
    sigma = jnp.array([0.1, 1.0, 10.0])
    cond, uncond = pair(z, sigma)
    assert calls == [6]  # one network call of batch 2B
    np.testing.assert_array_equal(cfg_denoiser(pair, 1.0)(z, sigma), cond)
    np.testing.assert_allclose(cfg_denoiser(pair, 0.0)(z, sigma), uncond, atol=1e-6)
    guided = cfg_denoiser(pair, 4.0)(z, sigma)
    np.testing.assert_allclose(guided, uncond + 4.0 * (cond - uncond), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(cfg_denoiser(pair, 4.0, rescale=0.0)(z, sigma), guided)
    full = cfg_denoiser(pair, 4.0, rescale=1.0)(z, sigma)  # Lin et al.: std matches cond
    np.testing.assert_allclose(jnp.std(full, axis=1), jnp.std(cond, axis=1), rtol=1e-5)
    half = cfg_denoiser(pair, 4.0, rescale=0.5)(z, sigma)
    np.testing.assert_allclose(half, 0.5 * (full + guided), rtol=1e-5, atol=1e-6)
    per_example = cfg_denoiser(pair, jnp.array([1.0, 0.0, 4.0]))(z, sigma)
    np.testing.assert_allclose(per_example, jnp.stack([cond[0], uncond[1], guided[2]]), atol=1e-6)


def test_cfg_interval():
    pair, _ = _pair()
    z = jax.random.normal(jax.random.key(21), (4, DIM))
    sigma = jnp.array([0.1, 0.5, 2.0, 20.0])
    cond, _ = pair(z, sigma)
    guided = cfg_denoiser(pair, 3.0)(z, sigma)
    out = cfg_denoiser(pair, 3.0, interval=(jnp.float32(0.5), jnp.float32(2.0)))(z, sigma)
    inside = np.array([False, True, True, False])  # bounds are inclusive
    np.testing.assert_array_equal(out[inside], guided[inside])
    np.testing.assert_array_equal(out[~inside], cond[~inside])


def test_cfg_vmap_over_scales_compiles_once():
    pair, _ = _pair()
    s = sigmas("karras", 6, sigma_min=0.002, sigma_max=80.0)
    keys = jax.random.split(jax.random.key(22), 2)
    x_init = initial_noise(keys, (DIM,), s[0])

    def one(scale, rescale, lo):
        return sample(cfg_denoiser(pair, scale, rescale=rescale, interval=(lo, jnp.inf)), x_init,
                      s, keys, sampler="dpmpp_2m").x

    many = jax.jit(jax.vmap(chex.assert_max_traces(one, n=1)))
    scales = jnp.array([1.0, 2.0, 5.0])
    out = many(scales, jnp.zeros(3), jnp.zeros(3))
    out2 = many(scales + 1.0, jnp.full(3, 0.7, jnp.float32), jnp.ones(3))  # new values, no retrace
    assert out.shape == (3, 2, DIM) and not np.allclose(out, out2)
    np.testing.assert_allclose(out[1], one(2.0, 0.0, 0.0), rtol=1e-5, atol=1e-5)
    assert not np.allclose(out[0], out[2])


def test_x0_prediction_is_the_rf_velocity_of_its_x0():
    """An x0-predicting network wrapped by ``x0_prediction``: the rf denoiser returns its output
    unchanged wherever 1 - t >= the clip, and the wrapped ideal x0 network samples the Gaussian
    exactly as the ideal velocity network does."""
    from audiox_jax.diffusion.formulations import X0_CLIP, x0_prediction

    f = get_formulation("rf")
    rng = np.random.default_rng(0)
    x0_net = lambda x, t: jnp.tanh(x) + 0.1 * t[:, None]  # noqa: E731  any x0 predictor
    z = jnp.asarray(rng.standard_normal((6, DIM)), jnp.float32)
    t = jnp.array([0.001, 0.1, 0.5, 0.9, 0.95, 0.99])
    sigma = (1 - t) / t
    got = f.denoiser(x0_prediction(x0_net))(z, sigma)
    want = x0_net(z * t[:, None], t)
    far = np.asarray(1 - t) >= X0_CLIP
    np.testing.assert_allclose(np.asarray(got)[far], np.asarray(want)[far], rtol=1e-4, atol=1e-5)
    assert not np.allclose(np.asarray(got)[~far], np.asarray(want)[~far])  # near t=1: a damped step
    # the ideal network, as an x0 predictor: x0_hat = x_t + (1 - t) v_ideal; the wrapped one is v_ideal again
    ideal_v = ideal_model("rf")
    ideal_x0 = lambda x, t: x + (1 - t)[:, None] * ideal_v(x, t)  # noqa: E731
    x_t = z * 0.7
    tt = jnp.full((6,), 0.6)
    np.testing.assert_allclose(np.asarray(x0_prediction(ideal_x0)(x_t, tt)), np.asarray(ideal_v(x_t, tt)),
                               rtol=1e-4, atol=1e-4)
