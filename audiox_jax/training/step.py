"""The train step ``(state, batch) -> (state, metrics)``, compiled two ways with the same maths.

One micro-step: per-example diffusion losses -> mean -> gradients -> (pmean) -> optimiser
(``optax.MultiSteps`` when accumulating) -> EMA -> ``step + 1``. Metrics: loss (mean over
the global micro-batch), grad_norm (of the mean gradient, before clipping), update_norm
(of the applied update; 0 between accumulation boundaries), param_norm (after the update)
and lr (the schedule at this update).

Batches (made on the host by :func:`audiox_jax.training.data.model_batch`):
``{"x0": f32[B, n_mels, T] normalised log-mel, T a multiple of the patch;
"labels": i32[B, n_labels] class ids; "length": i32[B] content frames}``. Frames at or past
``length`` are padding: they are kept out of the loss (a frame mask), and a
``model.length_cond`` model is also told the length (``cond["length"]``).

Per-example randomness does not depend on the device layout. Example ``i`` of the
global micro-batch gets ``fold_in(fold_in(train_key, update), first + i)`` with
``update = step // grad_accum`` and ``first = (step % grad_accum) * B``: its global index
within the update's whole batch. From that key it draws its condition dropout
(``models.dit.drop_cond``) and its noise level and noise (``Formulation.loss``). So the
single-device, jit-sharded and pmap steps see the same noise (same loss trajectory up to
float summation order), and k micro-batches of B/k accumulate to the step on the whole
batch B.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from audiox_jax.config import Config
from audiox_jax.diffusion import fewstep
from audiox_jax.diffusion.formulations import x0_prediction
from audiox_jax.models.dit import DiT, drop_cond, null_cond
from audiox_jax.training.ema import Ema
from audiox_jax.training.sharding import AXIS, batch_sharding
from audiox_jax.training.state import TrainState, learning_rate

ExampleLoss = Callable[[object, jax.Array, jax.Array, jax.Array], jax.Array]


def make_example_loss(config: Config, teacher=None) -> ExampleLoss:
    """``losses(params, x0 f32[B, n_mels, T], labels i32[B, n_labels], length i32[B], keys key[B]) -> f32[B]``.

    Each example is its own batch of one under ``vmap``, so its noise comes from its key alone.
    Few-step objectives (``diffusion.objective``, `diffusion.fewstep`): the first
    ``consistency_count(B)`` examples of the micro-batch are consistency examples, the rest
    flow matching (under pmap: of each device's share). ``teacher``: ``(DiTConfig, params)`` of a
    frozen flow model (``diffusion.teacher``), closed over as constants.
    """
    model = DiT(config.model)
    dc = config.diffusion
    form, options = dc.make_formulation(), dc.loss_options()
    labelled = bool(config.model.labels)

    def example(loss_fn, distil, params, x0, labels, length, key):  # x0 f32[n_mels, T], labels i32[n_labels]
        k_drop, k_loss = jax.random.split(key)
        cond = drop_cond({"labels": labels[None]}, k_drop, dc.cond_dropout) if labelled else None
        if config.model.length_cond:  # structure, not content: never dropped
            cond = {**(cond or {}), "length": jnp.asarray(length, jnp.float32)[None]}
        mask = (jnp.arange(x0.shape[-1]) < length)[None]  # [1, T]: content frames

        # h: the step length, few-step consistency examples only; x0-prediction becomes a velocity
        model_fn = dc.velocity_fn(lambda x, t, *h: model.apply({"params": params}, x, t, cond, *h))

        if distil:  # the frozen teacher's velocity, under the same condition
            t_model, t_params = DiT(teacher[0]), teacher[1]  # (DiTConfig, params, ...)
            t_cond = cond if teacher[0].length_cond or cond is None else {k: v for k, v in cond.items() if k != "length"}
            flow_fn = teacher_flow(t_model, t_params, t_cond, getattr(teacher, "prediction", "v"), dc.teacher_cfg)
            loss_fn = functools.partial(loss_fn, flow_fn=flow_fn)
        return loss_fn(model_fn, x0[None], k_loss, mask=mask)[0]

    per_example = lambda loss_fn, distil: jax.vmap(functools.partial(example, loss_fn, distil),  # noqa: E731
                                                   in_axes=(None, 0, 0, 0, 0))
    diffusion = per_example(functools.partial(form.loss, **options), False)
    if dc.objective == "diffusion":
        return diffusion
    consistency = per_example(functools.partial(fewstep.CONSISTENCY_LOSSES[dc.objective], **dc.consistency_options()),
                              teacher is not None)

    def losses(params, x0, labels, length, keys):
        n = fewstep.consistency_count(x0.shape[0], dc.consistency_fraction)
        parts = [consistency(params, x0[:n], labels[:n], length[:n], keys[:n])] if n else []
        if n < x0.shape[0]:
            parts.append(diffusion(params, x0[n:], labels[n:], length[n:], keys[n:]))
        return jnp.concatenate(parts)

    return losses


def teacher_flow(t_model, t_params, cond, prediction: str, cfg: float):
    """A frozen teacher's velocity ``flow(x f32[B, ...], t f32[B])`` under ``cond``; with ``cfg != 1`` the
    classifier-free guided velocity ``v_u + cfg (v_c - v_u)`` (one batched call of both branches), so a
    few-step student learns the guided flow the teacher is sampled with. An example whose condition was
    dropped has v_c = v_u: it distils the unguided flow."""
    def raw(x, t, c):
        fn = lambda x, t: t_model.apply({"params": t_params}, x, t, c)  # noqa: E731
        return (x0_prediction(fn) if prediction == "x0" else fn)(x, t)

    if cfg == 1.0 or cond is None or "labels" not in cond:
        return lambda x, t: raw(x, t, cond)
    both = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), cond, null_cond(cond))

    def guided(x, t):
        v_c, v_u = jnp.split(raw(jnp.concatenate([x, x]), jnp.concatenate([t, t]), both), 2)
        return v_u + cfg * (v_c - v_u)

    return guided


def _length(batch: dict) -> jax.Array:
    """The batch's content frames i32[B]; a batch without "length" is all content."""
    if "length" in batch:
        return batch["length"]
    return jnp.full(batch["x0"].shape[:1], batch["x0"].shape[-1], jnp.int32)


def example_keys(key_data: jax.Array, update: jax.Array, first: jax.Array, batch: int) -> jax.Array:
    """key[batch]: example i gets ``fold_in(fold_in(wrap(key_data), update), first + i)``."""
    step_key = jax.random.fold_in(jax.random.wrap_key_data(key_data), update)
    return jax.vmap(lambda i: jax.random.fold_in(step_key, i))(first + jnp.arange(batch))


def _loss_and_grads(losses: ExampleLoss, state: TrainState, batch: dict, first, grad_accum: int, n_consistency: int = 0):
    """``({"loss": mean loss[, "loss_consistency", "loss_flow"]}, grads)``: the few-step objectives
    also report their two kinds of examples apart (the first ``n_consistency`` of the batch)."""
    keys = example_keys(state.key, state.step // grad_accum, first, batch["x0"].shape[0])

    def mean_loss(params):
        per = losses(params, batch["x0"], batch["labels"], _length(batch), keys)
        parts = {"loss_consistency": jnp.mean(per[:n_consistency])} if n_consistency else {}
        if 0 < n_consistency < per.shape[0]:
            parts["loss_flow"] = jnp.mean(per[n_consistency:])
        return jnp.mean(per), parts

    (loss, parts), grads = jax.value_and_grad(mean_loss, has_aux=True)(state.params)
    return {"loss": loss, **parts}, grads


def _consistency_count(config: Config, micro_batch: int) -> int:
    dc = config.diffusion
    return 0 if dc.objective == "diffusion" else fewstep.consistency_count(micro_batch, dc.consistency_fraction)


def _apply(state: TrainState, loss: dict, grads, *, optimizer: optax.GradientTransformation, ema_fn: Ema,
           schedule: optax.Schedule, grad_accum: int) -> tuple[TrainState, dict]:
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = ema_fn.update(params, state.ema)
    if grad_accum > 1:  # MultiSteps only changes the params on every grad_accum-th micro-step
        updated = (state.step + 1) % grad_accum == 0
        ema = jax.tree.map(lambda new, old: jnp.where(updated, new, old), ema, state.ema)
    metrics = {
        **loss,  # "loss" (and the few-step objectives' parts)
        "grad_norm": optax.tree.norm(grads),
        "update_norm": optax.tree.norm(updates),
        "param_norm": optax.tree.norm(params),
        "lr": jnp.asarray(schedule(state.step // grad_accum), jnp.float32),
    }
    return state.replace(step=state.step + 1, params=params, ema=ema, opt_state=opt_state), metrics


def make_jit_step(config: Config, optimizer: optax.GradientTransformation, ema_fn: Ema, mesh: Mesh,
                  state_shardings, teacher=None) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
    """The step under ``jax.jit`` on ``mesh``: batch sharded on ``"data"``, state donated.

    Takes global jax.Arrays (:func:`audiox_jax.training.sharding.put_batch`).
    """
    losses, k, schedule = make_example_loss(config, teacher), config.train.grad_accum, learning_rate(config.train)

    def step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        first = (state.step % k) * batch["x0"].shape[0]
        loss, grads = _loss_and_grads(losses, state, batch, first, k, _consistency_count(config, batch["x0"].shape[0]))
        return _apply(state, loss, grads, optimizer=optimizer, ema_fn=ema_fn, schedule=schedule, grad_accum=k)

    replicated = NamedSharding(mesh, P())
    return jax.jit(step, in_shardings=(state_shardings, batch_sharding(mesh)),
                   out_shardings=(state_shardings, replicated), donate_argnums=0)


def make_pmap_step(config: Config, optimizer: optax.GradientTransformation, ema_fn: Ema, teacher=None,
                   ) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
    """The step under ``jax.pmap``: replicated state, batch ``[local_devices, per_device, ...]``,
    gradients and metrics averaged with ``lax.pmean``, state donated. Metrics come back
    replicated (one copy per local device)."""
    losses, k, schedule = make_example_loss(config, teacher), config.train.grad_accum, learning_rate(config.train)
    n_devices = jax.device_count()

    def step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        per_device = batch["x0"].shape[0]
        first = (state.step % k) * per_device * n_devices + jax.lax.axis_index(AXIS) * per_device
        loss, grads = _loss_and_grads(losses, state, batch, first, k, _consistency_count(config, per_device))
        loss, grads = jax.lax.pmean((loss, grads), AXIS)
        return _apply(state, loss, grads, optimizer=optimizer, ema_fn=ema_fn, schedule=schedule, grad_accum=k)

    return jax.pmap(step, axis_name=AXIS, donate_argnums=0)


def _weighted_sum(losses: ExampleLoss, params, batch: dict, key_data, first):
    keys = example_keys(key_data, jnp.zeros((), jnp.int32), first, batch["x0"].shape[0])
    return jnp.sum(losses(params, batch["x0"], batch["labels"], _length(batch), keys) * batch["weight"])


def make_eval_fn(config: Config, mesh: Mesh, teacher=None) -> Callable[[object, dict, jax.Array, jax.Array], jax.Array]:
    """``eval_sum(params, batch, key_data u32[2], first i32[]) -> f32[]`` under jit on ``mesh``.

    ``batch`` is a model batch plus ``"weight": f32[B]`` (1 = a validation item, 0 = padding);
    the result is ``sum_i weight_i * loss_i``. Same loss as training (condition dropout
    included) with keys from the fixed ``eval`` stream at update 0 and index ``first + i``
    in the validation set, so an item sees the same noise at every evaluation.
    """
    losses = make_example_loss(config, teacher)
    replicated = NamedSharding(mesh, P())  # params keep the sharding they come with (None)
    return jax.jit(functools.partial(_weighted_sum, losses),
                   in_shardings=(None, batch_sharding(mesh), replicated, replicated), out_shardings=replicated)


def make_pmap_eval_fn(config: Config, teacher=None) -> Callable[[object, dict, jax.Array, jax.Array], jax.Array]:
    """:func:`make_eval_fn` under pmap: replicated params, batch ``[local_devices, per_device, ...]``,
    ``key_data`` and ``first`` unreplicated; returns the psum, one copy per local device."""
    losses = make_example_loss(config, teacher)

    def eval_sum(params, batch, key_data, first):
        first = first + jax.lax.axis_index(AXIS) * batch["x0"].shape[0]
        return jax.lax.psum(_weighted_sum(losses, params, batch, key_data, first), AXIS)

    return jax.pmap(eval_sum, axis_name=AXIS, in_axes=(0, 0, None, None))
