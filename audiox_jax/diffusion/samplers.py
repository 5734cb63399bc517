"""Samplers in VE coordinates: one `lax.scan` over a precomputed sigma schedule.

Every sampler integrates from ``x_init = sigmas[0] * noise`` down to sigma=0 with a denoiser
``denoise(z: f32[B, ...], sigma: f32[B]) -> x0_hat: f32[B, ...]`` (see `formulations.py`; the
same for every formulation). ``sigmas: f32[steps + 1]`` is descending and ends in 0
(`schedules.sigmas`). The scan runs over ``(sigma_i, sigma_{i+1}, i)`` with carry
``(x, solver_state)``; nothing branches in Python on a traced value.

Samplers (``d = (x - D(x, sigma)) / sigma`` is the probability-flow ODE slope dx/dsigma):
  "euler"        x' = x + (sigma' - sigma) d = D + (sigma'/sigma)(x - D). 1 call/step.
  "heun"         Karras et al. 2022 Alg. 1 (no churn): Euler then a trapezoidal correction
                 with D(x_euler, sigma'); the step to sigma'=0 stays Euler (lax.cond), so
                 nfe = 2 steps - 1.
  "ddim"         Song et al. 2021 with ``eta`` (default 0.0). In VE terms
                 r = min(1, eta sqrt(1 - sigma'^2/sigma^2)), sigma_up = r sigma',
                 sigma_down = sqrt(1 - r^2) sigma', x' = D + (sigma_down/sigma)(x - D)
                 + sigma_up n; eta=0 is Euler, eta=1 is the DDPM posterior (Ho et al. 2020);
                 eta > 1 is capped at r=1.
  "ddpm"         ancestral sampling, "ddim" with eta=1 fixed. 1 call/step.
  "dpmpp_2m"     DPM-Solver++(2M) (Lu et al. 2022, Alg. 2) in h = log(sigma/sigma'):
                 x' = (sigma'/sigma) x + (1 - e^-h) D_d, D_d = D + (h / 2 h_prev)(D - D_prev);
                 first order on the first step and on the step to 0. 1 call/step.
  "dpmpp_2m_sde" its SDE variant (Lu et al. 2022; k-diffusion "midpoint"), eta default 1.0:
                 x' = (sigma'/sigma) e^(-eta h) x + (1 - e^(-(1+eta) h)) D_d
                 + sigma' sqrt(1 - e^(-2 eta h)) n. eta=0 is "dpmpp_2m".
  "fewstep"      for few-step models (`fewstep.py`, DiT ``interval=True``): the denoiser also
                 gets sigma' and returns the x0 whose Euler step lands where the model's
                 average velocity over the whole step goes, x' = x_t + h u(x_t, t, h)
                 (``denoise(z, sigma, sigma_next)``). 1 call/step. With an h=0 model it is
                 "euler". Use it with schedule "uniform_t_end" (equal steps in t up to the data).
The second-order history is used only when the previous step moved (h_prev > 0), so the
no-op steps of `variation_start` keep the solvers exact.

Randomness: ``keys`` holds one PRNG key per sample (``key[B]`` typed keys, or raw
``uint32[B, 2]``). Step i of a stochastic sampler draws
``normal(fold_in(keys[b], i), x.shape[1:])`` for each b, so a sample does not depend on the
batch size or its position in the batch. Other streams fold in a second index after the
step: 1 for inpainting noise, 2 for the initial noise (`initial_noise`, `variation_start`).
"""

from __future__ import annotations

import numbers
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from audiox_jax.errors import ParamError

_INPAINT, _INITIAL = 1, 2  # noise streams beside the solver's own


class SampleOutput(NamedTuple):
    """x: f32[B, ...] the samples at sigma=0. trajectory_x, trajectory_x0: f32[steps, B, ...]
    x after each step and the step's (first) x0 estimate, or None unless requested."""

    x: jax.Array
    trajectory_x: Optional[jax.Array]
    trajectory_x0: Optional[jax.Array]


def _normal(keys, index, shape, stream=None):
    """Per-sample noise f32[B, *shape]: ``normal(fold_in(keys[b], index)[, stream])``."""

    def one(key):
        key = jax.random.fold_in(key, index)
        return jax.random.normal(key if stream is None else jax.random.fold_in(key, stream), shape)

    return jax.vmap(one)(keys)


def _sigma_vec(sigma, x):
    return jnp.full((x.shape[0],), sigma, x.dtype)


# ---------------------------------------------------------------- step functions
# step(denoise, x, state, sigma, sigma_next, noise, eta) -> (x_next, state, x0_hat)


def _ddim_step(denoise, x, state, sigma, sigma_next, noise, eta):
    x0 = denoise(x, _sigma_vec(sigma, x))
    r = jnp.minimum(1.0, eta * jnp.sqrt(jnp.maximum(0.0, 1.0 - (sigma_next / sigma) ** 2)))
    x_next = x0 + (sigma_next * jnp.sqrt(1.0 - r**2) / sigma) * (x - x0)
    return x_next + (sigma_next * r) * noise, state, x0


def _euler_step(denoise, x, state, sigma, sigma_next, noise, eta):
    x0 = denoise(x, _sigma_vec(sigma, x))
    return x0 + (sigma_next / sigma) * (x - x0), state, x0


def _fewstep_step(denoise, x, state, sigma, sigma_next, noise, eta):
    x0 = denoise(x, _sigma_vec(sigma, x), _sigma_vec(sigma_next, x))
    return x0 + (sigma_next / sigma) * (x - x0), state, x0


def _heun_step(denoise, x, state, sigma, sigma_next, noise, eta):
    x0 = denoise(x, _sigma_vec(sigma, x))
    d = (x - x0) / sigma
    x_euler = x0 + (sigma_next / sigma) * (x - x0)

    def correct():
        d_next = (x_euler - denoise(x_euler, _sigma_vec(sigma_next, x))) / sigma_next
        return x + (sigma_next - sigma) * 0.5 * (d + d_next)

    return jax.lax.cond(sigma_next > 0, correct, lambda: x_euler), state, x0


def _dpmpp_step(denoise, x, state, sigma, sigma_next, noise, eta):
    """DPM-Solver++(2M) and, with noise, its SDE variant; state = (x0_prev, h_prev)."""
    x0_prev, h_prev = state
    x0 = denoise(x, _sigma_vec(sigma, x))
    last = sigma_next <= 0
    h = jnp.log(sigma / jnp.where(last, sigma, sigma_next))  # 0 on the last step, unused
    eta_h = eta * h if noise is not None else 0.0
    gain = jnp.where(last, 1.0, -jnp.expm1(-h - eta_h))  # 1 - e^-(1+eta)h
    second = (h_prev > 0) & ~last
    ratio = jnp.where(second, h / jnp.where(second, h_prev, 1.0), 0.0)  # 1 / r = h / h_prev
    x_next = (sigma_next / sigma) * jnp.exp(-eta_h) * x + gain * (x0 + 0.5 * ratio * (x0 - x0_prev))
    if noise is not None:
        x_next = x_next + sigma_next * jnp.sqrt(-jnp.expm1(-2.0 * eta_h)) * noise
    return x_next, (x0, jnp.where(last, 0.0, h)), x0


def _no_state(x):
    return ()


def _dpmpp_state(x):
    return jnp.zeros_like(x), jnp.zeros((), x.dtype)


class _Solver(NamedTuple):
    step: Callable
    init: Callable
    calls: Callable[[int], int]  # steps -> exact number of denoiser calls
    noisy: bool  # draws per-step noise
    eta: float  # the eta it runs with by default
    takes_eta: bool  # whether a caller may set eta


def _one_per_step(steps):
    return steps


_SOLVERS = {
    "euler": _Solver(_euler_step, _no_state, _one_per_step, False, 0.0, False),
    "fewstep": _Solver(_fewstep_step, _no_state, _one_per_step, False, 0.0, False),
    "heun": _Solver(_heun_step, _no_state, lambda steps: 2 * steps - 1, False, 0.0, False),
    "ddim": _Solver(_ddim_step, _no_state, _one_per_step, True, 0.0, True),
    "ddpm": _Solver(_ddim_step, _no_state, _one_per_step, True, 1.0, False),
    "dpmpp_2m": _Solver(_dpmpp_step, _dpmpp_state, _one_per_step, False, 0.0, False),
    "dpmpp_2m_sde": _Solver(_dpmpp_step, _dpmpp_state, _one_per_step, True, 1.0, True),
}
SAMPLERS = tuple(_SOLVERS)


def takes_eta(sampler: str) -> bool:
    """Whether ``sample(..., sampler=sampler)`` accepts an ``eta`` ("ddim", "dpmpp_2m_sde")."""
    return _solver(sampler).takes_eta


def _solver(sampler: str) -> _Solver:
    if sampler not in _SOLVERS:
        raise ParamError(f"sampler={sampler!r} is not known; use one of {SAMPLERS}")
    return _SOLVERS[sampler]


def nfe(sampler: str, steps: int) -> int:
    """Exact number of denoiser calls of ``sample`` with ``steps`` steps ending at sigma=0.

    "heun": 2 steps - 1; every other sampler: steps. With CFG each call is one batched
    network evaluation of size 2B (`guidance.py`).
    """
    if not isinstance(steps, numbers.Integral) or steps < 1:
        raise ParamError(f"steps={steps!r} must be an int >= 1; try steps=32")
    return _solver(sampler).calls(steps)


def _check(x, sigmas, keys, inpaint):
    if sigmas.ndim != 1 or sigmas.shape[0] < 2:
        raise ParamError(f"sigmas.shape={sigmas.shape} must be (steps + 1,) with steps >= 1; "
                         "build it with schedules.sigmas")
    typed = jnp.issubdtype(keys.dtype, jax.dtypes.prng_key)
    if keys.shape != ((x.shape[0],) if typed else (x.shape[0], 2)):
        raise ParamError(f"keys.shape={keys.shape} must hold one key per sample of "
                         f"x_init.shape={x.shape}; try jax.random.split(key, {x.shape[0]})")
    if inpaint is not None and any(a.shape != x.shape for a in inpaint):
        raise ParamError(f"inpaint shapes {[a.shape for a in inpaint]} must both equal "
                         f"x_init.shape={x.shape}; pass (known, mask) of the sample shape")


def _impose(x, inpaint, sigma, keys, index):
    """Replace the known part of x by ``known + sigma * fresh noise`` (mask 1 = known)."""
    known, mask = inpaint
    noisy = known + sigma * _normal(keys, index, x.shape[1:], _INPAINT).astype(x.dtype)
    return mask * noisy + (1.0 - mask) * x


def sample(denoise, x_init, sigmas, keys, *, sampler: str = "euler", eta=None,
           inpaint=None, return_trajectory: bool = False) -> SampleOutput:
    """Integrate from ``x_init`` at sigmas[0] down to sigmas[-1] (= 0).

    denoise: ``(z: f32[B, ...], sigma: f32[B]) -> x0_hat: f32[B, ...]`` ("fewstep": also
        ``sigma_next: f32[B]``).
    x_init: f32[B, ...], noise already scaled by sigmas[0] (`initial_noise`).
    sigmas: f32[steps + 1] descending, last 0 (`schedules.sigmas`); may be traced.
    keys: key[B] (or uint32[B, 2]), one per sample; see the module docstring.
    sampler: one of SAMPLERS (static).
    eta: traced scalar for "ddim" (default 0.0) and "dpmpp_2m_sde" (default 1.0); must be
        None for the other samplers.
    inpaint: optional ``(known: f32[B, ...], mask: f32[B, ...])``, mask 1 where known. x
        starts and ends every step with ``known + sigma * noise`` there, so the output
        equals ``known`` exactly where mask == 1.
    return_trajectory: static; stack x and x0_hat per step into f32[steps, B, ...].
    Jit with ``sampler`` and ``return_trajectory`` static; steps is sigmas' static shape.
    """
    solver = _solver(sampler)
    if eta is not None and not solver.takes_eta:
        raise ParamError(f"eta={eta} is not used by sampler={sampler!r}; pass eta=None or "
                         "choose 'ddim' or 'dpmpp_2m_sde'")
    sigmas = jnp.asarray(sigmas, x_init.dtype)
    _check(x_init, sigmas, keys, inpaint)
    eta = jnp.asarray(solver.eta if eta is None else eta, x_init.dtype)
    steps = sigmas.shape[0] - 1
    den = lambda z, *args: denoise(z, *args).astype(z.dtype)  # noqa: E731  (x_init's dtype rules)

    def body(carry, xs):
        x, state = carry
        sigma, sigma_next, i = xs
        noise = _normal(keys, i, x.shape[1:]).astype(x.dtype) if solver.noisy else None
        x, state, x0 = solver.step(den, x, state, sigma, sigma_next, noise, eta)
        if inpaint is not None:
            x = _impose(x, inpaint, sigma_next, keys, i + 1)
        return (x, state), ((x, x0) if return_trajectory else None)

    x = x_init if inpaint is None else _impose(x_init, inpaint, sigmas[0], keys, 0)
    (x, _), traj = jax.lax.scan(body, (x, solver.init(x)),
                                (sigmas[:-1], sigmas[1:], jnp.arange(steps)))
    return SampleOutput(x, *(traj if return_trajectory else (None, None)))


def initial_noise(keys, sample_shape, sigma_max, dtype=jnp.float32) -> jax.Array:
    """``sigma_max * eps: f32[B, *sample_shape]``, eps per sample from its own key."""
    return sigma_max * _normal(keys, 0, tuple(sample_shape), _INITIAL).astype(dtype)


def variation_start(init_x0, sigmas, strength, keys):
    """Audio-to-audio: start from ``init_x0`` noised part way, keeping strength traced.

    init_x0: f32[B, ...] the clean input (e.g. a normalised log-mel).
    sigmas: f32[steps + 1] the full schedule.
    strength: traced scalar in [0, 1], the fraction of the steps to run:
        n = clip(round(strength * steps), 1, steps), start = steps - n. strength=1 starts at
        sigma_max (the input's content is all but lost); strength=0 still runs the last step.
    keys: key[B], the same per-sample keys as `sample`.
    Returns ``(x_init, sigmas_eff)``: ``x_init = init_x0 + sigmas[start] * eps`` and
    ``sigmas_eff = min(sigmas, sigmas[start])``. Steps before ``start`` then go from sigma to
    the same sigma, a no-op (up to float rounding) for every sampler that still costs its
    denoiser calls, so shapes and the compiled program do not depend on strength and it can
    be vmapped. Pass both to `sample` with the same keys.
    """
    steps = sigmas.shape[0] - 1
    n = jnp.clip(jnp.round(strength * steps), 1, steps).astype(jnp.int32)
    sigma_start = sigmas[steps - n]
    x_init = init_x0 + initial_noise(keys, init_x0.shape[1:], sigma_start, init_x0.dtype)
    return x_init, jnp.minimum(sigmas, sigma_start)
