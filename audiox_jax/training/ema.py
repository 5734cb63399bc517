"""Exponential moving average of parameters, the optax way: a NamedTuple state and a pure (init, update) pair.

Update rule, for the ``n``-th update (``n = count + 1``, ``count`` updates done before it)::

    d_n   = decay * min(1, count / warmup)        (d_n = decay when warmup = 0)
    ema_n = d_n * ema_{n-1} + (1 - d_n) * params_n

So with ``warmup > 0`` the first update copies the params (d = 0) and the decay ramps
linearly to ``decay`` over ``warmup`` updates: early in training the average follows the
fast-moving weights instead of remembering the random init. With a constant decay the
average of a constant ``p`` from ``ema_0`` is ``decay**n * ema_0 + (1 - decay**n) * p``.
``decay = 0.999`` averages over about ``1 / (1 - decay) = 1000`` updates. The average is
kept in float32 whatever the params' dtype.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from audiox_jax.errors import ParamError


class EmaState(NamedTuple):
    """count: i32[] updates done; ema: the averaged params (same tree as the params, float32)."""

    count: jax.Array
    ema: Any


class Ema(NamedTuple):
    """``init(params) -> EmaState``; ``update(params, state) -> EmaState``."""

    init: Callable[[Any], EmaState]
    update: Callable[[Any, EmaState], EmaState]


def ema_decay(count: jax.Array, decay: float, warmup: int) -> jax.Array:
    """The decay d used by the update after ``count`` updates (f32[], see the module docstring)."""
    if warmup <= 0:
        return jnp.asarray(decay, jnp.float32)
    return decay * jnp.minimum(1.0, jnp.asarray(count, jnp.float32) / warmup)


def ema(decay: float, warmup: int = 0) -> Ema:
    """An EMA of params with ``decay`` in [0, 1) and a linear decay warm-up of ``warmup`` updates."""
    if not 0.0 <= decay < 1.0:
        raise ParamError(f"ema decay={decay} must be in [0, 1); 0.999 averages over ~1000 updates")
    if warmup < 0:
        raise ParamError(f"ema warmup={warmup} must be >= 0 updates; 0 means a constant decay")

    def init(params) -> EmaState:
        return EmaState(jnp.zeros((), jnp.int32), jax.tree.map(lambda p: jnp.asarray(p, jnp.float32), params))

    def update(params, state: EmaState) -> EmaState:
        d = ema_decay(state.count, decay, warmup)
        new = jax.tree.map(lambda e, p: d * e + (1.0 - d) * p.astype(jnp.float32), state.ema, params)
        return EmaState(state.count + 1, new)

    return Ema(init, update)
