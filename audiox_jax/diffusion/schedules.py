"""Sampling schedules: descending noise levels in VE sigma, ``f32[steps + 1]`` ending in 0.

Every schedule places ``steps`` noise levels from ``sigmas[0] = sigma_max`` down to
``sigmas[steps - 1] = sigma_min`` (both exact; with steps=1 only sigma_max) and appends
``sigmas[steps] = 0``, the clean end. A sampler takes one step per consecutive pair, so
`samplers.nfe` gives the cost. Pass a formulation's own range, e.g.
``sigmas("karras", 32, sigma_min=f.sigma_min, sigma_max=f.sigma_max)``.

Schedules:
  "karras"        (Karras et al. 2022, eq. 5) uniform in sigma^(1/rho); rho=7 crowds steps
                  near sigma_min, rho=1 is uniform in sigma.
  "exponential"   uniform in log sigma.
  "logsnr_linear" linear in log SNR = -2 log sigma (Lu et al. 2022 "logSNR" steps): in VE
                  coordinates the same grid as "exponential", kept as its own name because
                  the VP literature specifies it that way.
  "uniform_t"     uniform in the formulation's own time t between t(sigma_max) and
                  t(sigma_min); needs ``formulation`` for the t <-> sigma maps. For "rf"
                  this is the usual flow-matching Euler grid.
  "uniform_t_end" uniform in t from t(sigma_max) to the clean end t(0): ``steps`` equal steps,
                  the last one landing on the data. The one schedule that ignores sigma_min
                  (its last non-zero level is one step before the data). Made for the
                  "fewstep" sampler: 2 steps of an rf model go t = 0.001 -> 0.5005 -> 1.
                  Needs ``formulation``.
  "shifted"       the SD3 time shift (Esser et al. 2024) of a uniform grid in the rf noise
                  level u = sigma / (1 + sigma): u' = shift u / (1 + (shift - 1) u), which in
                  VE terms multiplies sigma by ``shift``. The grid is placed so that the
                  shifted end points land on sigma_max and sigma_min; shift > 1 spends more
                  steps at high noise. The same grid for every formulation.
Computed with jnp, so rho, shift and the range may be traced; ``steps`` is static.
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp

from audiox_jax.errors import ParamError

SCHEDULES = ("karras", "exponential", "logsnr_linear", "uniform_t", "uniform_t_end", "shifted")


def _positive(name, value, fix):
    if isinstance(value, numbers.Real) and not value > 0:
        raise ParamError(f"{name}={value} must be > 0; {fix}")


def _check(schedule, steps, sigma_min, sigma_max, rho, shift, formulation):
    if schedule not in SCHEDULES:
        raise ParamError(f"schedule={schedule!r} is not known; use one of {SCHEDULES}")
    if not isinstance(steps, numbers.Integral) or steps < 1:
        raise ParamError(f"steps={steps!r} must be an int >= 1; try steps=32")
    _positive("sigma_min", sigma_min, "pass the formulation's sigma_min")
    _positive("rho", rho, "try rho=7.0")
    _positive("shift", shift, "try shift=1.0 (no shift) or 3.0 (SD3)")
    if (isinstance(sigma_min, numbers.Real) and isinstance(sigma_max, numbers.Real)
            and not sigma_max > sigma_min):
        raise ParamError(f"sigma_max={sigma_max} must be > sigma_min={sigma_min}; pass the "
                         "formulation's sigma_min and sigma_max")
    if schedule in ("uniform_t", "uniform_t_end") and formulation is None:
        raise ParamError(f"schedule={schedule!r} needs formulation=<Formulation> for its "
                         "t <-> sigma maps; pass formulation=get_formulation(name)")


def sigmas(schedule: str, steps: int, *, sigma_min, sigma_max, rho=7.0, shift=1.0,
           formulation=None) -> jax.Array:
    """Noise levels ``f32[steps + 1]``: descending, sigma_max first, exactly 0 last.

    schedule: one of SCHEDULES (see the module docstring).
    steps: number of sampler steps (static), >= 1.
    sigma_min, sigma_max: VE noise range, 0 < sigma_min < sigma_max.
    rho: "karras" only, the warping exponent (7.0 as in Karras et al.).
    shift: "shifted" only, the SD3 shift (1.0 = none, 3.0 as in SD3).
    formulation: "uniform_t" and "uniform_t_end" only, a `formulations.Formulation`.
    """
    _check(schedule, steps, sigma_min, sigma_max, rho, shift, formulation)
    ramp = jnp.linspace(0.0, 1.0, steps)  # [steps], 0 at sigma_max
    lo, hi = jnp.float32(sigma_min), jnp.float32(sigma_max)
    if schedule == "karras":
        a, b = hi ** (1.0 / rho), lo ** (1.0 / rho)
        s = (a + ramp * (b - a)) ** rho
    elif schedule in ("exponential", "logsnr_linear"):
        s = jnp.exp(jnp.log(hi) + ramp * (jnp.log(lo) - jnp.log(hi)))
    elif schedule == "uniform_t":
        t_hi, t_lo = formulation.sigma_to_t(hi), formulation.sigma_to_t(lo)
        s = formulation.t_to_sigma(t_hi + ramp * (t_lo - t_hi))
    elif schedule == "uniform_t_end":
        t_hi, t_end = formulation.sigma_to_t(hi), formulation.sigma_to_t(jnp.float32(0.0))
        s = formulation.t_to_sigma(t_hi + jnp.arange(steps) / steps * (t_end - t_hi))
        return jnp.concatenate([s.at[0].set(hi), jnp.zeros((1,), s.dtype)]).astype(jnp.float32)
    else:  # shifted: unshift the end points, uniform grid in g, then shift back.
        g_hi, g_lo = hi / (hi + shift), lo / (lo + shift)  # g = unshift(u(sigma))
        g = g_hi + ramp * (g_lo - g_hi)
        s = shift * g / (1.0 - g)  # sigma of u' = shift(g)
    s = s.at[0].set(hi)
    if steps > 1:
        s = s.at[-1].set(lo)
    return jnp.concatenate([s, jnp.zeros((1,), s.dtype)]).astype(jnp.float32)
