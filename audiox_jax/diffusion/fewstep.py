"""Few-step objectives: train a rectified-flow model to take whole steps at once.

Convention (rf, `formulations.py`): ``x_t = t x0 + (1 - t) eps``, t=0 noise, t=1 data, and
the flow's velocity ``v = dx_t/dt``. A few-step model ``u(x_t, t, h)`` (a DiT with
``interval=True``) predicts the *average* velocity over the step of length h >= 0::

    u(x_t, t, h) = (x_{t+h} - x_t) / h = (1/h) int_t^{t+h} v(x_s, s) ds,   u(x_t, t, 0) = v(x_t, t)

so the sampler's step is exact whatever its length: ``x_{t+h} = x_t + h u`` (the "fewstep"
sampler, with the "uniform_t_end" schedule). h=0 is the ordinary flow-matching model, so a
few-step model is trained by fine-tuning a flow checkpoint (its h-embedding starts at zero,
`models.dit`) or from scratch, with two kinds of examples in every batch:

* flow matching (a fraction ``1 - consistency_fraction``): the usual rf loss at h=0;
* consistency (the first ``round(consistency_fraction * B)`` examples): a step length h,
  log-uniform in [min_interval, 1], and a start t ~ U(0, 1 - h); then one of

  ``"shortcut"`` (Frans et al. 2024, "One Step Diffusion via Shortcut Models"): one step of
      length h must equal two of length h/2 taken by the model itself,
      ``target = sg((u(x_t, t, h/2) + u(x_t + (h/2) u1, t + h/2, h/2)) / 2)``; below
      ``min_interval`` the half steps ask for the instantaneous velocity (h=0).
      2 extra forward passes per consistency example.
  ``"meanflow"`` (Geng et al. 2025, "Mean Flows for One-step Generative Modeling"): the
      MeanFlow identity for a step ending at a fixed T = t + h,
      ``u = v + h du/dt``, with ``du/dt = v d_x u + d_t u - d_h u`` along the trajectory,
      computed by one ``jax.jvp`` with tangents (v, 1, -1) on (x_t, t, h); v is the
      conditional velocity x0 - eps; ``target = sg(v + h du/dt)``.

Loss per example: mean squared error between ``u_theta`` and the target (f32[]), like the
rf loss, so the two kinds of examples share one scale. The consistency examples are the
first ones of the (micro-)batch; batches are shuffled, so they are a random subset.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from audiox_jax.diffusion.formulations import _bcast, _per_example_mean
from audiox_jax.errors import ParamError

OBJECTIVES = ("diffusion", "shortcut", "meanflow")
VELOCITIES = ("model", "data")
IntervalFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]  # u(x_t f32[B,...], t f32[B], h f32[B])


def intervals(key: jax.Array, batch: int, min_interval: float) -> tuple[jax.Array, jax.Array]:
    """``(t, h): f32[batch]`` each: h log-uniform in [min_interval, 1], t ~ U(0, 1 - h).

    Log-uniform gives every octave of step length the same weight: 1/7 of the examples
    train steps longer than 1/2 (the 1- and 2-step samplers) at min_interval = 1/128.
    """
    if not 0.0 < min_interval < 1.0:
        raise ParamError(f"min_interval={min_interval} must be in (0, 1); 1/128 is usual")
    k_h, k_t = jax.random.split(key)
    h = min_interval ** jax.random.uniform(k_h, (batch,))
    t = jax.random.uniform(k_t, (batch,)) * (1.0 - h)
    return t, h


def _noised(x0, key, min_interval):
    k_i, k_n = jax.random.split(key)
    t, h = intervals(k_i, x0.shape[0], min_interval)
    eps = jax.random.normal(k_n, x0.shape, x0.dtype)
    return _bcast(t, x0) * x0 + _bcast(1.0 - t, x0) * eps, t, h, x0 - eps


def shortcut_target(model_fn: IntervalFn, x_t, t, h, *, min_interval: float = 1 / 128, substeps: int = 2,
                    flow_fn=None) -> jax.Array:
    """``substeps`` steps of length s = h / substeps taken by the model itself, as one average
    velocity: ``mean_k u(x_k, t + k s, s)`` with ``x_{k+1} = x_k + s u_k``. A sub-step shorter
    than ``min_interval`` asks for h=0 (Euler on the flow itself). substeps=2 is the shortcut
    model's rule; more sub-steps reach the flow's own Euler steps in fewer levels (fewer
    bootstraps to propagate through) at one forward pass each. Equals ``u(x_t, t, h)`` for an
    exact flow map. ``flow_fn(x, t) -> v``: a frozen teacher's velocity for those short
    sub-steps instead of the model's own h=0 answer (distillation; both are evaluated)."""
    s = h / substeps
    short = s < min_interval  # below the shortest trained step: the flow itself
    s_in = jnp.where(short, 0.0, s)
    x, total = x_t, jnp.zeros_like(x_t)
    for k in range(substeps):
        u = model_fn(x, t + k * s, s_in)
        if flow_fn is not None:
            u = jnp.where(_bcast(short, x_t), flow_fn(x, t + k * s), u)
        x, total = x + _bcast(s, x_t) * u, total + u
    return jax.lax.stop_gradient(total / substeps)


def meanflow_target(model_fn: IntervalFn, x_t, t, h, v) -> tuple[jax.Array, jax.Array]:
    """``(u, target)``: ``u = u(x_t, t, h)`` (differentiable) and ``sg(v + h du/dt)`` with du/dt
    along the flow of v (one ``jax.jvp``, tangents (v, 1, -1) on (x_t, t, h)). With the true
    velocity field v and the exact average velocity u, target == u (the MeanFlow identity)."""
    ones = jnp.ones_like(t)
    u, dudt = jax.jvp(model_fn, (x_t, t, h), (v, ones, -ones))
    return u, jax.lax.stop_gradient(v + _bcast(h, x_t) * dudt)


def _adaptive(mse: jax.Array, p: float, c: float) -> jax.Array:
    """MeanFlow's adaptive weighting: ``mse * sg(1 / (mse + c)^p)`` (p=0: plain MSE). Every
    consistency example then pulls with about unit strength, instead of being drowned by the
    flow-matching examples' irreducible noise (their MSE is ~0.25, a consistency error ~0.01)."""
    return mse * jax.lax.stop_gradient(1.0 / (mse + c) ** p) if p else mse


def shortcut_loss(model_fn: IntervalFn, x0: jax.Array, key: jax.Array, *, min_interval: float = 1 / 128,
                  adaptive_p: float = 0.0, adaptive_c: float = 1e-3, substeps: int = 2, flow_fn=None,
                  mask=None) -> jax.Array:
    """Shortcut self-consistency: f32[B] per-example (adaptively weighted) MSE of ``u(x_t, t, h)``
    against ``substeps`` sub-steps of the model itself (short ones from ``flow_fn`` when given);
    ``mask`` f32[B, T] keeps padding frames out (as in ``formulations``)."""
    x_t, t, h, _ = _noised(x0, key, min_interval)
    target = shortcut_target(model_fn, x_t, t, h, min_interval=min_interval, substeps=substeps, flow_fn=flow_fn)
    return _adaptive(_per_example_mean((model_fn(x_t, t, h) - target) ** 2, mask), adaptive_p, adaptive_c)


def meanflow_loss(model_fn: IntervalFn, x0: jax.Array, key: jax.Array, *, min_interval: float = 1 / 128,
                  adaptive_p: float = 1.0, adaptive_c: float = 1e-3, velocity: str = "data",
                  flow_fn=None, mask=None) -> jax.Array:
    """MeanFlow: f32[B] per-example (adaptively weighted) MSE of ``u(x_t, t, h)`` against
    ``sg(v + h du/dt)``. velocity "data": v = x0 - eps, the conditional velocity (the paper,
    unbiased but noisy); "model": v = sg(u(x_t, t, 0)), the model's own flow (one more forward
    pass; a flow-map distillation of the model into itself, far less noisy when fine-tuning a
    trained flow). Without the adaptive weight (p=0) fine-tuning the default model diverged
    here (loss 4 -> 950 in 700 updates): the target feeds on the model's own derivative.
    ``flow_fn(x, t) -> v``: a frozen teacher's velocity replaces v (distillation; overrides
    ``velocity``)."""
    x_t, t, h, v = _noised(x0, key, min_interval)
    if flow_fn is not None:
        v = jax.lax.stop_gradient(flow_fn(x_t, t))
    elif velocity == "model":
        v = jax.lax.stop_gradient(model_fn(x_t, t, jnp.zeros_like(h)))
    u, target = meanflow_target(model_fn, x_t, t, h, v)
    return _adaptive(_per_example_mean((u - target) ** 2, mask), adaptive_p, adaptive_c)


CONSISTENCY_LOSSES = {"shortcut": shortcut_loss, "meanflow": meanflow_loss}


def consistency_count(batch: int, fraction: float) -> int:
    """How many of a (micro-)batch of ``batch`` examples are consistency examples (static):
    ``round(batch * fraction)`` clipped to [1, batch - 1], so both kinds are always present
    (a batch of one is flow matching only); fraction 1 (distillation from a teacher): all of it."""
    if fraction >= 1.0:
        return batch
    return 0 if batch < 2 else min(batch - 1, max(1, int(round(batch * fraction))))
