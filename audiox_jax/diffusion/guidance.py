"""Classifier-free guidance in x0 space, the same for every formulation (Ho & Salimans 2022).

Because every formulation exposes a denoiser ``D(z, sigma) -> x0_hat`` (`formulations.py`),
guidance combines x0 estimates and is independent of what the network predicts:

    x0_cfg = x0_c + (w - 1) (x0_c - x0_u)          (= x0_u + w (x0_c - x0_u))

w=1 returns x0_c exactly, w=0 returns x0_u (up to rounding). Since D is affine in the
network output for every formulation, this equals CFG on eps, v or F with the same w.

* Guidance rescale (Lin et al. 2023, "Common diffusion noise schedules and sample steps are
  flawed", Alg. 2): x0_r = x0_cfg * std(x0_c) / std(x0_cfg), stds per example over all
  non-batch axes; output phi x0_r + (1 - phi) x0_cfg.
* Guidance interval (Kynkaanniemi et al. 2024): guidance only where lo <= sigma <= hi,
  elsewhere x0_c, chosen with jnp.where so the bounds stay traced.
* Negative conditioning: put the negative condition where the unconditional one would be;
  x0_u is then the estimate under the negative prompt and w > 1 pushes away from it.

``scale``, ``rescale`` and the interval bounds are traced arrays: scalars, or f32[B] per
example, so one compiled sampler serves any guidance and vmaps over a vector of scales.
"""

from __future__ import annotations

import jax.numpy as jnp


def _per_example(v, x):
    """Scalar or f32[B] -> broadcastable against x: f32[B, ...]."""
    v = jnp.asarray(v, x.dtype)
    return v if v.ndim == 0 else v.reshape(v.shape + (1,) * (x.ndim - v.ndim))


def _std(x):
    """f32[B, ...] -> f32[B, 1, ..., 1], per-example std over the non-batch axes."""
    return jnp.std(x.reshape(x.shape[0], -1), axis=1).reshape((-1,) + (1,) * (x.ndim - 1))


def batched_pair(denoise_batched):
    """One network call for both branches.

    denoise_batched: ``(z2: f32[2B, ...], sigma2: f32[2B]) -> x0: f32[2B, ...]`` whose
        first B rows are conditional and last B unconditional (the caller closes over the
        conditioning stacked as [cond; uncond] along the batch axis).
    Returns ``denoise_pair(z: f32[B, ...], sigma: f32[B]) -> (x0_c, x0_u)``.
    """

    def denoise_pair(z, sigma, *per_example):  # per_example: e.g. sigma_next f32[B] (fewstep)
        doubled = [jnp.concatenate([a, a]) for a in (z, sigma, *per_example)]
        out = denoise_batched(*doubled)
        return out[: z.shape[0]], out[z.shape[0]:]

    return denoise_pair


def cfg_denoiser(denoise_pair, scale, *, rescale=0.0, interval=(0.0, jnp.inf)):
    """A guided denoiser ``(z: f32[B, ...], sigma: f32[B]) -> x0: f32[B, ...]`` for `sample`.

    Extra per-example arguments (the "fewstep" sampler's sigma_next f32[B]) pass through to
    both branches.

    denoise_pair: ``(z, sigma) -> (x0_c, x0_u)``, e.g. from `batched_pair`.
    scale: guidance weight w (1 = no guidance, 0 = unconditional; 3..7 typical), [] or [B].
    rescale: phi in [0, 1] (0 = off; 0.7 in Lin et al.), [] or [B].
    interval: (lo, hi) in VE sigma; guidance applies where lo <= sigma <= hi
        (default everywhere), each [] or [B].
    """
    lo, hi = interval

    def denoise(z, sigma, *per_example):
        x0_c, x0_u = denoise_pair(z, sigma, *per_example)
        guided = x0_c + (_per_example(scale, z) - 1.0) * (x0_c - x0_u)
        phi = _per_example(rescale, z)
        ratio = _std(x0_c) / jnp.maximum(_std(guided), jnp.finfo(z.dtype).tiny)
        guided = phi * (guided * ratio) + (1.0 - phi) * guided
        inside = (sigma >= lo) & (sigma <= hi)  # bool[B]
        return jnp.where(inside.reshape((-1,) + (1,) * (z.ndim - 1)), guided, x0_c)

    return denoise
