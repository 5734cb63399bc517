"""Diffusion formulations: how data and noise mix, what the network predicts, and the loss.

Conventions, shared by the whole `audiox_jax.diffusion` package:

* Data ``x0: f32[B, ...]``, any float array with a leading batch axis (in practice
  normalised log-mel ``f32[B, n_mels, frames]``); noise ``eps ~ N(0, I)`` of the same shape.
* The network, as this package sees it: ``model_fn(x_t: f32[B, ...], t: f32[B]) -> f32[B, ...]``
  with conditioning closed over by the caller. ``t`` is the formulation's own model time.
* Canonical sampler space ("VE" coordinates, Karras et al. 2022): ``z = x_t / alpha_t =
  x0 + sigma * eps`` with ``sigma`` in ``[0, sigma_max]``. Every formulation turns its network
  into a denoiser ``D(z: f32[B, ...], sigma: f32[B]) -> x0_hat: f32[B, ...]``, so every sampler
  in `samplers.py` runs with every formulation.

The formulations (``get_formulation(name, **opts)``):

``"rf"`` (default) rectified flow / flow matching (Liu et al. 2022; Lipman et al. 2022) with
    ``x_t = t * x0 + (1 - t) * eps``: t=1 is data, t=0 is noise. The network predicts the
    velocity ``v = x0 - eps``; model time = t. In VE terms ``alpha = t``, ``sigma = (1 - t) / t``,
    ``x0 = x_t + (1 - t) v``. t=0 is sigma=inf, so sampling clips t to ``[t_eps, 1 - t_eps]``:
    ``sigma_max = (1 - t_eps) / t_eps`` (999 for t_eps=1e-3). The sampler starts from
    ``z = sigma_max * eps``, i.e. ``x_t = t_eps * z = (1 - t_eps) * eps``: the exact marginal at
    t_eps minus its ``t_eps * x0`` term, an error of 0.1 % of the data scale at the default.
``"vp_eps"``, ``"vp_v"`` variance preserving (Ho et al. 2020) with ``x_t = sqrt(a_t) x0 +
    sqrt(1 - a_t) eps``, t in [0, 1], t=0 clean; eps-prediction, or v-prediction
    ``v = sqrt(a_t) eps - sqrt(1 - a_t) x0`` (Salimans & Ho 2022). Model time = t. In VE terms
    ``sigma = sqrt((1 - a_t) / a_t)``. Schedules: ``"cosine"`` (Nichol & Dhariwal 2021,
    ``a_t = f(t) / f(0)``, ``f(t) = cos^2(pi/2 (t + 0.008) / 1.008)``) and ``"linear"``
    (the continuous version of betas 1e-4..0.02 over 1000 steps, Song et al. 2021:
    ``a_t = exp(-(0.1 t + 9.95 t^2))``). Sampling range t in ``[t_eps, 1 - t_eps]``.
``"edm"`` Karras et al. 2022 preconditioning: ``D = c_skip z + c_out F(c_in z, c_noise)`` with
    ``c_skip = sd^2 / (sigma^2 + sd^2)``, ``c_out = sigma sd / sqrt(sigma^2 + sd^2)``,
    ``c_in = 1 / sqrt(sigma^2 + sd^2)``, ``c_noise = log(sigma) / 4``; sd = sigma_data (0.5).
    Here x_t = c_in z and the model time is c_noise; the formulation's own "t" is sigma.

Training noise levels: every loss draws a noise level ``u`` in (0, 1), 1 = pure noise, from
`noise_level` ("uniform", "logit_normal", "shift") and maps it to its own time: rf ``t = 1 - u``,
vp ``t = u``, edm ``sigma = u / (1 - u)``. Then logit_normal(mean, std) on u is exactly the EDM
log-normal sigma (P_mean=mean, P_std=std), which is the EDM default (-1.2, 1.2).
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from audiox_jax.errors import ParamError

ModelFn = Callable[[jax.Array, jax.Array], jax.Array]
Denoiser = Callable[[jax.Array, jax.Array], jax.Array]

T_SAMPLERS = ("uniform", "logit_normal", "shift")
U_EPS = 1e-5  # training noise levels are kept in [U_EPS, 1 - U_EPS] so sigma stays finite


class Formulation(NamedTuple):
    """One diffusion formulation: a bundle of pure functions and its sampling range.

    name: the registry name, e.g. "rf".
    denoiser: ``model_fn -> D(z: f32[B, ...], sigma: f32[B]) -> x0_hat: f32[B, ...]``.
    loss: ``(model_fn, x0, key, *, t_sampler, mean, std, shift, mask) -> f32[B]``, the per-example
        mean squared error in the formulation's natural target; ``mask`` f32[B, T] (optional)
        restricts it to content frames (padding out of the loss).
    t_to_sigma, sigma_to_t: elementwise maps between the formulation's time and VE sigma.
    sigma_min, sigma_max: the natural sampling range in VE sigma (Python floats).
    """

    name: str
    denoiser: Callable[[ModelFn], Denoiser]
    loss: Callable[..., jax.Array]
    t_to_sigma: Callable[[jax.Array], jax.Array]
    sigma_to_t: Callable[[jax.Array], jax.Array]
    sigma_min: float
    sigma_max: float


def _bcast(v: jax.Array, x: jax.Array) -> jax.Array:
    """Per-example ``v: f32[B]`` reshaped to ``[B, 1, ..., 1]`` to broadcast against x."""
    return jnp.reshape(v, v.shape + (1,) * (x.ndim - v.ndim))


def _per_example_mean(sq: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """f32[B, ..., T] -> f32[B]: mean over every axis but the batch axis.

    mask: optional f32/bool[B, T] frame weights (1 = content, 0 = padding) over the last
    axis; the mean is then over the content frames only, so padding never reaches the loss.
    """
    if mask is None:
        return jnp.mean(sq.reshape(sq.shape[0], -1), axis=1)
    m = jnp.broadcast_to(jnp.asarray(mask, sq.dtype).reshape(sq.shape[0], *(1,) * (sq.ndim - 2), sq.shape[-1]),
                         sq.shape)
    total = jnp.sum((sq * m).reshape(sq.shape[0], -1), axis=1)
    return total / jnp.maximum(jnp.sum(m.reshape(sq.shape[0], -1), axis=1), 1.0)


def noise_level(key: jax.Array, batch: int, t_sampler: str = "uniform", *,
                mean: float = 0.0, std: float = 1.0, shift: float = 1.0) -> jax.Array:
    """Training noise levels ``u: f32[batch]`` in [U_EPS, 1 - U_EPS]; u=1 is pure noise.

    "uniform": u ~ U(0, 1). "logit_normal": u = sigmoid(mean + std * n), n ~ N(0, 1)
    (Esser et al. 2024, SD3). "shift": uniform u mapped by the SD3 time shift
    ``u' = shift u / (1 + (shift - 1) u)``; shift > 1 spends more steps at high noise
    (in VE terms it multiplies the rf sigma = u / (1 - u) by ``shift``).
    """
    if t_sampler not in T_SAMPLERS:
        raise ParamError(f"t_sampler={t_sampler!r} is not known; use one of {T_SAMPLERS}")
    for arg, value in (("std", std), ("shift", shift)):
        if isinstance(value, numbers.Real) and not value > 0:
            raise ParamError(f"{arg}={value} must be > 0; try {arg}=1.0")
    if t_sampler == "uniform":
        u = jax.random.uniform(key, (batch,))
    elif t_sampler == "logit_normal":
        u = jax.nn.sigmoid(mean + std * jax.random.normal(key, (batch,)))
    else:
        u = jax.random.uniform(key, (batch,))
        u = shift * u / (1.0 + (shift - 1.0) * u)
    return jnp.clip(u, U_EPS, 1.0 - U_EPS)


# ---------------------------------------------------------------- rectified flow


def _rf_t_to_sigma(t):
    return (1.0 - t) / t


def _rf_sigma_to_t(sigma):
    return 1.0 / (1.0 + sigma)


def _rf_denoiser(model_fn: ModelFn) -> Denoiser:
    def denoise(z, sigma, sigma_next=None):
        """sigma_next (few-step models only, `fewstep.py`): the model is asked for its average
        velocity over the step, ``model_fn(x_t, t, h)`` with ``h = t(sigma_next) - t``, so the
        Euler step of `samplers` to sigma_next lands on ``x_t + h u`` exactly."""
        t = _rf_sigma_to_t(sigma)
        x_t = z * _bcast(t, z)
        v = model_fn(x_t, t) if sigma_next is None else model_fn(x_t, t, _rf_sigma_to_t(sigma_next) - t)
        return x_t + _bcast(1.0 - t, z) * v  # x0 = x_t + (1 - t) v

    return denoise


def _rf_loss(model_fn, x0, key, *, t_sampler="uniform", mean=0.0, std=1.0, shift=1.0, mask=None):
    """Flow matching: || v_theta(x_t, t) - (x0 - eps) ||^2, t = 1 - u (over ``mask``'s frames)."""
    k_t, k_n = jax.random.split(key)
    t = 1.0 - noise_level(k_t, x0.shape[0], t_sampler, mean=mean, std=std, shift=shift)
    eps = jax.random.normal(k_n, x0.shape, x0.dtype)
    x_t = _bcast(t, x0) * x0 + _bcast(1.0 - t, x0) * eps
    return _per_example_mean((model_fn(x_t, t) - (x0 - eps)) ** 2, mask)


X0_CLIP = 0.05  # x0-prediction: 1 - t is floored here when turning x0 into a velocity (Li & He 2025)


def x0_prediction(model_fn: ModelFn, clip: float = X0_CLIP) -> ModelFn:
    """An rf network that predicts the clean data, as the velocity model_fn rf expects.

    ``v = (x0_hat - x_t) / max(1 - t, clip)``; so the rf denoiser returns ``x0_hat`` itself
    for t <= 1 - clip, and the rf loss on this v is the "x-prediction, v-loss" of Li & He
    2025 ("Back to Basics: Let Denoising Generative Models Denoise"). Why: a v- or
    eps-predicting network must copy its input noise to its output exactly (x0 = x_t + (1-t) v
    cancels the noise only if v does), which a DiT whose patch (patch * n_mels values) is
    wider than its width cannot do: the lost noise stays in every x0 estimate as speckle.
    Clean data lies on a low-dimensional manifold and passes the bottleneck. Extra
    arguments (the few-step step length h) pass through; the step is then ``x_t + h v``.
    """
    def velocity(x_t, t, *h):
        return (model_fn(x_t, t, *h) - x_t) / _bcast(jnp.maximum(1.0 - t, clip), x_t)

    return velocity


# ---------------------------------------------------------------- variance preserving

_COS_S = 0.008
_PHI0 = 0.5 * math.pi * _COS_S / (1.0 + _COS_S)
_B0, _B1 = 0.1, 20.0  # continuous betas: 1000 * (1e-4, 0.02)


def _cosine_t_to_sigma(t):
    # sigma^2 = f(0) / f(t) - 1 = (cos(phi0) tan(phi))^2 - sin(phi0)^2, phi = pi/2 (t+s)/(1+s)
    phi = 0.5 * math.pi * (t + _COS_S) / (1.0 + _COS_S)
    s2 = (math.cos(_PHI0) * jnp.tan(phi)) ** 2 - math.sin(_PHI0) ** 2
    return jnp.sqrt(jnp.maximum(s2, 0.0))


def _cosine_sigma_to_t(sigma):
    phi = jnp.arctan(jnp.sqrt(sigma**2 + math.sin(_PHI0) ** 2) / math.cos(_PHI0))
    return phi * (1.0 + _COS_S) / (0.5 * math.pi) - _COS_S


def _linear_t_to_sigma(t):
    # -log a_t = b0 t + (b1 - b0) t^2 / 2 and sigma^2 = 1 / a_t - 1
    return jnp.sqrt(jnp.expm1(_B0 * t + 0.5 * (_B1 - _B0) * t**2))


def _linear_sigma_to_t(sigma):
    lam = jnp.log1p(sigma**2)  # solve b0 t + (b1 - b0) t^2 / 2 = lam, cancellation-free
    return 2.0 * lam / (_B0 + jnp.sqrt(_B0**2 + 2.0 * (_B1 - _B0) * lam))


_VP_SCHEDULES = {"cosine": (_cosine_t_to_sigma, _cosine_sigma_to_t),
                 "linear": (_linear_t_to_sigma, _linear_sigma_to_t)}


def _vp_coefs(sigma, x):
    """VE sigma -> (sqrt(a_t), sqrt(1 - a_t)), each broadcast against x."""
    r = jax.lax.rsqrt(1.0 + _bcast(sigma, x) ** 2)
    return r, _bcast(sigma, x) * r


def _vp_denoiser(model_fn, *, sigma_to_t, prediction):
    def denoise(z, sigma):
        alpha, sig = _vp_coefs(sigma, z)
        x_t = alpha * z
        out = model_fn(x_t, sigma_to_t(sigma))
        if prediction == "eps":
            return z - _bcast(sigma, z) * out  # x0 = (x_t - sqrt(1-a) eps) / sqrt(a)
        return alpha * x_t - sig * out  # x0 = sqrt(a) x_t - sqrt(1-a) v

    return denoise


def _vp_loss(model_fn, x0, key, *, t_to_sigma, prediction,
             t_sampler="uniform", mean=0.0, std=1.0, shift=1.0, mask=None):
    """|| eps_theta - eps ||^2 or || v_theta - v ||^2 at t = u."""
    k_t, k_n = jax.random.split(key)
    t = noise_level(k_t, x0.shape[0], t_sampler, mean=mean, std=std, shift=shift)
    eps = jax.random.normal(k_n, x0.shape, x0.dtype)
    alpha, sig = _vp_coefs(t_to_sigma(t), x0)
    target = eps if prediction == "eps" else alpha * eps - sig * x0
    return _per_example_mean((model_fn(alpha * x0 + sig * eps, t) - target) ** 2, mask)


# ---------------------------------------------------------------- EDM


def _edm_coefs(sigma, x, sigma_data):
    """(c_skip, c_out, c_in) broadcast against x, Karras et al. 2022 Table 1."""
    s = _bcast(sigma, x)
    r = jax.lax.rsqrt(s**2 + sigma_data**2)
    return sigma_data**2 * r**2, s * sigma_data * r, r


def _edm_denoiser(model_fn, *, sigma_data):
    def denoise(z, sigma):
        c_skip, c_out, c_in = _edm_coefs(sigma, z, sigma_data)
        return c_skip * z + c_out * model_fn(c_in * z, 0.25 * jnp.log(sigma))

    return denoise


def _edm_loss(model_fn, x0, key, *, sigma_data, t_sampler="logit_normal", mean=-1.2, std=1.2,
              shift=1.0, mask=None):
    """lambda(sigma) || D(x0 + sigma eps, sigma) - x0 ||^2, lambda = 1 / c_out^2.

    sigma = u / (1 - u); the default logit_normal(-1.2, 1.2) is ln(sigma) ~ N(-1.2, 1.2^2).
    """
    k_t, k_n = jax.random.split(key)
    u = noise_level(k_t, x0.shape[0], t_sampler, mean=mean, std=std, shift=shift)
    sigma = u / (1.0 - u)
    z = x0 + _bcast(sigma, x0) * jax.random.normal(k_n, x0.shape, x0.dtype)
    weight = (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
    x0_hat = _edm_denoiser(model_fn, sigma_data=sigma_data)(z, sigma)
    return weight * _per_example_mean((x0_hat - x0) ** 2, mask)


# ---------------------------------------------------------------- registry

FORMULATIONS = ("rf", "vp_eps", "vp_v", "edm")
_DEFAULTS = {"t_eps": 1e-3, "schedule": "cosine", "sigma_data": 0.5, "sigma_min": 0.002,
             "sigma_max": 80.0}
_OPTIONS = {"rf": ("t_eps",), "vp_eps": ("t_eps", "schedule"), "vp_v": ("t_eps", "schedule"),
            "edm": ("sigma_data", "sigma_min", "sigma_max")}


def _options(name, given):
    """Validate which options ``name`` takes and fill in the defaults."""
    if name not in _OPTIONS:
        raise ParamError(f"formulation name={name!r} is not known; use one of {FORMULATIONS}")
    for key, value in given.items():
        if value is not None and key not in _OPTIONS[name]:
            raise ParamError(f"{key}={value!r} does not apply to formulation {name!r}; it takes "
                             f"{_OPTIONS[name]}")
    opts = {k: _DEFAULTS[k] if given[k] is None else given[k] for k in _OPTIONS[name]}
    if "t_eps" in opts and not 0.0 < opts["t_eps"] < 0.5:
        raise ParamError(f"t_eps={opts['t_eps']} must be in (0, 0.5); try t_eps=1e-3")
    if opts.get("schedule", "cosine") not in _VP_SCHEDULES:
        raise ParamError(f"schedule={opts['schedule']!r} is not a VP schedule; use one of "
                         f"{tuple(_VP_SCHEDULES)}")
    if opts.get("sigma_data", 1.0) <= 0:
        raise ParamError(f"sigma_data={opts['sigma_data']} must be > 0; try sigma_data=0.5")
    if name == "edm" and not 0.0 < opts["sigma_min"] < opts["sigma_max"]:
        raise ParamError(f"sigma_min={opts['sigma_min']}, sigma_max={opts['sigma_max']} must "
                         "satisfy 0 < sigma_min < sigma_max; try 0.002 and 80")
    return opts


def get_formulation(name: str = "rf", *, t_eps: float | None = None,
                    schedule: str | None = None, sigma_data: float | None = None,
                    sigma_min: float | None = None, sigma_max: float | None = None) -> Formulation:
    """The formulation ``name`` (one of FORMULATIONS) with its options bound.

    t_eps: rf/vp, sampling clips the time to [t_eps, 1 - t_eps] (default 1e-3: rf sigma in
        [1e-3, 999]; vp cosine sigma in [6.4e-3, 642], vp linear [1.0e-2, 151]).
    schedule: vp, "cosine" (default) or "linear".
    sigma_data, sigma_min, sigma_max: edm, the data std (default 0.5, right for normalised
        log-mel) and the sampling range in sigma (Karras et al. defaults 0.002 and 80).
    An option that does not apply to ``name`` raises ParamError; None means the default.
    """
    o = _options(name, dict(t_eps=t_eps, schedule=schedule, sigma_data=sigma_data,
                            sigma_min=sigma_min, sigma_max=sigma_max))
    if name == "rf":
        return Formulation("rf", _rf_denoiser, _rf_loss, _rf_t_to_sigma, _rf_sigma_to_t,
                           float(_rf_t_to_sigma(1.0 - o["t_eps"])),
                           float(_rf_t_to_sigma(o["t_eps"])))
    if name in ("vp_eps", "vp_v"):
        t_to_sigma, sigma_to_t = _VP_SCHEDULES[o["schedule"]]
        pred = name[3:]
        return Formulation(
            name, functools.partial(_vp_denoiser, sigma_to_t=sigma_to_t, prediction=pred),
            functools.partial(_vp_loss, t_to_sigma=t_to_sigma, prediction=pred), t_to_sigma,
            sigma_to_t, float(t_to_sigma(o["t_eps"])), float(t_to_sigma(1.0 - o["t_eps"])))
    identity = lambda s: s  # noqa: E731  (EDM's own time is sigma)
    return Formulation("edm", functools.partial(_edm_denoiser, sigma_data=o["sigma_data"]),
                       functools.partial(_edm_loss, sigma_data=o["sigma_data"]),
                       identity, identity, float(o["sigma_min"]), float(o["sigma_max"]))
