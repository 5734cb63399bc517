"""The train state pytree, the optimiser and the random streams.

Conventions (stated once, here):

* ``TrainState.step`` counts *micro-steps* (calls of the train step). With
  ``train.grad_accum = k`` the optimiser updates the params every k micro-steps
  (``optax.MultiSteps``), so the update index is ``step // k``; the loop only stops, logs
  and checkpoints at update boundaries, where ``step = k * updates``.
* Learning rate: linear warm-up from 0 to ``train.lr`` over ``warmup_steps`` updates, then
  cosine decay to ``lr * end_lr_fraction`` at ``train.steps`` updates (or constant).
* Optimiser: global-norm clipping (``grad_clip``; 0 = off), then AdamW (b1, b2,
  ``weight_decay`` on kernels and embedding tables only: leaves with ndim >= 2).
* Randomness: one root key ``jax.random.key(train.seed)`` split into four streams:
  ``init`` (params), ``train`` (kept in the state; the step folds in the update index and
  then each example's global index), ``eval`` (fixed validation noise), ``demo``.
  The key is kept as raw key data u32[2] so checkpoints hold plain arrays.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import optax

from audiox_jax.config import Config, TrainConfig
from audiox_jax.models.dit import DiT
from audiox_jax.training.ema import Ema, EmaState, ema


@flax.struct.dataclass
class TrainState:
    """Everything that changes during training, as one pytree.

    step: i32[] micro-steps done. params: the DiT params (f32). ema: EmaState of the params.
    opt_state: the optax state. key: u32[2] raw data of the ``train`` random stream.
    """

    step: jax.Array
    params: Any
    ema: EmaState
    opt_state: Any
    key: jax.Array

    @property
    def ema_params(self):
        return self.ema.ema


class Streams(NamedTuple):
    """The four independent random streams derived from ``train.seed`` (typed keys)."""

    init: jax.Array
    train: jax.Array
    eval: jax.Array
    demo: jax.Array


def streams(seed: int) -> Streams:
    return Streams(*jax.random.split(jax.random.key(seed), 4))


def learning_rate(tc: TrainConfig) -> optax.Schedule:
    """The schedule ``update index -> lr`` (see the module docstring)."""
    warm = max(int(tc.warmup_steps), 0)
    if tc.lr_schedule == "constant":
        after = optax.constant_schedule(tc.lr)
    else:
        after = optax.cosine_decay_schedule(tc.lr, max(tc.steps - warm, 1), alpha=tc.end_lr_fraction)
    if warm == 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, tc.lr, warm), after], [warm])


def _decay_mask(params):
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(tc: TrainConfig) -> optax.GradientTransformation:
    """Clip + AdamW on the schedule, wrapped in ``optax.MultiSteps`` when ``grad_accum > 1``."""
    parts = [optax.clip_by_global_norm(tc.grad_clip)] if tc.grad_clip > 0 else []
    parts.append(optax.adamw(learning_rate(tc), b1=tc.b1, b2=tc.b2, weight_decay=tc.weight_decay,
                             mask=_decay_mask))
    opt = optax.chain(*parts)
    if tc.grad_accum > 1:
        opt = optax.MultiSteps(opt, every_k_schedule=tc.grad_accum).gradient_transformation()
    return opt


def make_ema(tc: TrainConfig) -> Ema:
    return ema(tc.ema_decay, tc.ema_warmup)


def example_inputs(config: Config, batch: int = 1):
    """Dummy ``(x, t, cond)`` for ``DiT.init``: x f32[batch, n_mels, patch], t f32[batch], labels -1."""
    mc = config.model
    x = jnp.zeros((batch, mc.n_mels, mc.patch), jnp.float32)
    cond = {"labels": jnp.full((batch, len(mc.labels)), -1, jnp.int32)} if mc.labels else None
    return x, jnp.zeros((batch,), jnp.float32), cond


def init_params(config: Config, key: jax.Array):
    """Fresh DiT params (f32) for ``config.model``."""
    return DiT(config.model).init(key, *example_inputs(config))["params"]


def init_state(config: Config, optimizer: optax.GradientTransformation, ema_fn: Ema, params=None) -> TrainState:
    """The state at step 0 (pure in the config: jit it with ``out_shardings`` to build it in place).

    params: start from these (``train.init_from``) instead of fresh ones; the EMA starts there too.
    """
    keys = streams(config.train.seed)
    params = init_params(config, keys.init) if params is None else params
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, ema=ema_fn.init(params),
                      opt_state=optimizer.init(params), key=jax.random.key_data(keys.train))
