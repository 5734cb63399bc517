"""Diffusion maths in pure JAX: formulations, schedules, samplers and guidance.

The network is abstracted as ``model_fn(x_t: f32[B, ...], t: f32[B]) -> f32[B, ...]``; a
formulation turns it into a VE denoiser ``D(z, sigma) -> x0_hat`` that every sampler and the
guidance share. Typical use::

    f = get_formulation("rf")
    s = sigmas("karras", 32, sigma_min=f.sigma_min, sigma_max=f.sigma_max)
    keys = jax.random.split(key, batch)
    x = initial_noise(keys, (n_mels, frames), s[0])
    out = sample(cfg_denoiser(batched_pair(f.denoiser(model_fn)), 4.0), x, s, keys,
                 sampler="dpmpp_2m")

See each module's docstring for its conventions.
"""

from audiox_jax.diffusion.formulations import (FORMULATIONS, T_SAMPLERS, Formulation,
                                               get_formulation, noise_level)
from audiox_jax.diffusion.guidance import batched_pair, cfg_denoiser
from audiox_jax.diffusion.samplers import (SAMPLERS, SampleOutput, initial_noise, nfe, sample,
                                           variation_start)
from audiox_jax.diffusion.schedules import SCHEDULES, sigmas

__all__ = [
    "FORMULATIONS", "SAMPLERS", "SCHEDULES", "T_SAMPLERS", "Formulation", "SampleOutput",
    "batched_pair", "cfg_denoiser", "get_formulation", "initial_noise", "nfe", "noise_level",
    "sample", "sigmas", "variation_start",
]
