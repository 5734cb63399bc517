"""The training run, top to bottom: data, mesh, state, step, restore, loop, evaluate, export.

``train(config, workdir)`` trains ``train.steps`` optimiser updates and leaves in ``workdir``:

* ``config.json``: the resolved config (model labels filled in from the data);
* ``checkpoints/<step>/``: Orbax checkpoints (:mod:`audiox_jax.training.checkpoint`);
* ``metrics.jsonl`` and ``tb/``: logs (:mod:`audiox_jax.training.metrics`);
* ``demos/step_<step>/``: a wav and a mel PNG per label class, every ``train.demo_every``;
* ``model/``: the generation-only export of the final EMA params (:mod:`audiox_jax.modelio`).

Running it again on the same workdir resumes from the latest checkpoint and continues
with exactly the losses an uninterrupted run would have had (same config, same devices
kind): the state, the data position and the random streams are all in the checkpoint.

Periodic actions use :func:`is_time` and happen after the update they follow, in this
order: finiteness check and log row, validation loss, demos, checkpoint. The final update
always logs, and checkpoints / evaluates / writes demos when those are enabled (``*_every > 0``).

NaN/Inf guard: the per-micro-step loss and gradient norm are fetched to the host at every
log and checkpoint step; a non-finite value raises :class:`AudioxError` naming the step,
the micro-batch and its items, after waiting for in-flight saves. Checkpoints are only
written after the check, so the last checkpoint is always finite.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
import warnings
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental import multihost_utils
from jax.sharding import Mesh, SingleDeviceSharding

from audiox_jax import pipeline
from audiox_jax.audio import save
from audiox_jax.config import Config
from audiox_jax.data.cache import write_json
from audiox_jax.data.iterator import BatchIterator, process_slice
from audiox_jax.errors import AudioxError, ParamError
from audiox_jax.modelio import save_for_generation
from audiox_jax.plot import save_mel_png
from audiox_jax.training import checkpoint as ckpt
from audiox_jax.training.data import TrainData, length_table, load_train_data, model_batch
from audiox_jax.training.ema import Ema
from audiox_jax.training.metrics import MetricsLog, Progress
from audiox_jax.training.sharding import (batch_sharding, check_batch, make_mesh, put_batch, replicate,
                                          split_for_pmap, state_shardings, unreplicate)
from audiox_jax.training.state import TrainState, init_params, init_state, make_ema, make_optimizer, streams
from audiox_jax.training.step import make_eval_fn, make_jit_step, make_pmap_eval_fn, make_pmap_step

CONFIG_JSON = "config.json"
MODEL_DIR = "model"
DEMOS = "demos"
MAX_DEMO_CLASSES = 8  # demos per label: its first classes


def is_time(step: int, every: int) -> bool:
    """True every ``every`` steps (step > 0); never when ``every`` is 0."""
    return every > 0 and step > 0 and step % every == 0


class TrainResult(NamedTuple):
    """state: the final TrainState (one copy, on the step's devices); config: the resolved config;
    data: the TrainData trained on (its stats are the checkpoint's on resume); workdir;
    start: the step this run started from (0, or the checkpoint it resumed)."""

    state: TrainState
    config: Config
    data: TrainData
    workdir: str
    start: int


class Layout(NamedTuple):
    """How state and batches sit on the devices for one ``train.parallel`` mode.

    shardings: per state leaf, the layout of one copy (saved and restored like this).
    place / single: one copy -> the step's layout and back (identity under jit; pmap: replicate /
      device 0's copy, also of the step's metrics).
    put: a host model batch -> the step's input. step / eval_sum: the compiled functions.
    """

    mesh: Mesh
    shardings: Any
    place: Callable[[Any], Any]
    single: Callable[[Any], Any]
    put: Callable[[dict], Any]
    step: Callable
    eval_sum: Callable


def train(config: Config, workdir: str, *, data: TrainData | None = None, progress: bool = True) -> TrainResult:
    """Train (or resume) a DiT in ``workdir`` (see the module docstring).

    Args:
      config: the run's config (``load_config``). Its labels are resolved against the data.
      workdir: output folder; created. Holding a checkpoint means: resume from it.
      data: train on this instead of ``config.data`` (tests inject data here).
      progress: draw the progress bar on stderr.
    Raises:
      ParamError: an inconsistent config, or a workdir checkpoint of another model.
      AudioxError: a non-finite loss or gradient (the message names the step and batch).
    """
    check_workdir(workdir)                                                   # 0. before any work
    data = load_train_data(config) if data is None else data                  # 1. data
    config = data.config
    mesh = make_mesh()                                                       # 2. mesh
    micro = _micro_batch(config, mesh)
    _check_batch_fits(config, data, micro)
    optimizer, ema_fn = make_optimizer(config.train), make_ema(config.train)  # 3. state
    teacher = load_teacher(config, data) if config.diffusion.teacher else None
    layout = make_layout(config, optimizer, ema_fn, mesh, teacher)           # 4. step
    it = BatchIterator({"mel": data.mels, "labels": data.labels, "frames": data.frames,
                        "item": np.arange(len(data.labels))}, micro,
                       seed=config.train.seed, indices=data.train_idx, process_index=jax.process_index(),
                       process_count=jax.process_count())
    os.makedirs(workdir, exist_ok=True)
    manager = ckpt.make_manager(workdir, config.train)
    state, start, data = restore_or_init(config, layout, optimizer, ema_fn, manager, it, data)  # 5. restore
    if teacher is not None and teacher.stats != data.stats:
        raise ParamError(f"diffusion.teacher={config.diffusion.teacher!r} normalises log-mels with {teacher.stats}, "
                         f"this run with {data.stats}; set train.init_from to the same model (its stats are kept)")
    lead = jax.process_index() == 0
    if lead:
        write_json(os.path.join(workdir, CONFIG_JSON), config.to_dict())
    log = MetricsLog(workdir, resume_step=start) if lead else None
    bar = Progress(config.train.steps, start, enabled=progress and lead)
    try:
        state = run_loop(config, data, layout, state, it, manager, log, bar, start, workdir)  # 6. loop
    finally:
        bar.close()
        manager.wait_until_finished()  # in-flight async saves land even when the loop raised
        manager.close()
        if log is not None:
            log.close()
    final = layout.single(state)
    ema_params = host_tree(final.ema_params)                                 # 7. export
    if lead:
        save_for_generation(os.path.join(workdir, MODEL_DIR), ema_params, config, data.stats, data.vocab,
                            step=config.train.steps, lengths=length_table(data))
    return TrainResult(final, config, data, workdir, start)


def check_workdir(workdir: str) -> None:
    """Create ``workdir`` or fail with one line when it cannot hold a run (a file, an unwritable place)."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ParamError(f"workdir={workdir!r} is a file, not a folder; pass a folder for the run's checkpoints "
                         f"and metrics, e.g. --workdir {workdir}.run")
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as err:
        raise ParamError(f"workdir={workdir!r} cannot be created ({err.strerror}); pass a writable folder") from None
    if not os.access(workdir, os.W_OK | os.X_OK):
        raise ParamError(f"workdir={workdir!r} is not writable; pass a writable folder")


def _check_batch_fits(config: Config, data: TrainData, micro: int) -> None:
    """One (micro-)batch must fit in the training items: an epoch drops its last partial batch."""
    n, b, accum = len(data.train_idx), config.data.batch_size, config.train.grad_accum
    if micro <= n:
        return
    held = (f" (data.val_fraction={config.data.val_fraction} holds out {len(data.val_idx)} more)"
            if len(data.val_idx) else "")
    if accum == 1:
        raise ParamError(f"data.batch_size={b} is more than the {n} training items{held}; "
                         f"set data.batch_size={n} or less, or add data")
    raise ParamError(f"data.batch_size={b} / train.grad_accum={accum} = {micro} examples per micro-batch is more "
                     f"than the {n} training items{held}; lower data.batch_size or raise train.grad_accum")


def _micro_batch(config: Config, mesh: Mesh) -> int:
    tc, b = config.train, config.data.batch_size
    if b % tc.grad_accum:
        raise ParamError(f"data.batch_size={b} must be divisible by train.grad_accum={tc.grad_accum}; "
                         f"try data.batch_size={b - b % tc.grad_accum or tc.grad_accum}")
    if tc.fsdp and tc.parallel != "jit":
        raise ParamError("train.fsdp=true needs train.parallel=jit (pmap keeps a full copy per device)")
    micro = b // tc.grad_accum
    check_batch(micro, mesh, tc.parallel)
    return micro


def make_layout(config: Config, optimizer: optax.GradientTransformation, ema_fn: Ema, mesh: Mesh,
                teacher=None) -> Layout:
    """The jit (Mesh + NamedSharding, optional FSDP) or pmap layout and compiled step.
    ``teacher``: ``(DiTConfig, params)`` for distillation (:func:`load_teacher`)."""
    shapes = jax.eval_shape(lambda: init_state(config, optimizer, ema_fn))
    if config.train.parallel == "jit":
        shardings = state_shardings(shapes, mesh, config.train.fsdp)
        data_sharding = batch_sharding(mesh)
        return Layout(mesh, shardings, lambda s: s, lambda s: s, lambda b: put_batch(b, data_sharding),
                      make_jit_step(config, optimizer, ema_fn, mesh, shardings, teacher),
                      make_eval_fn(config, mesh, teacher))
    first = SingleDeviceSharding(jax.local_devices()[0])
    n_local = jax.local_device_count()
    return Layout(mesh, jax.tree.map(lambda _: first, shapes), replicate, unreplicate,
                  lambda b: split_for_pmap(b, n_local), make_pmap_step(config, optimizer, ema_fn, teacher),
                  make_pmap_eval_fn(config, teacher))


def fresh_state(config: Config, layout: Layout, optimizer, ema_fn: Ema, params=None) -> TrainState:
    """The step-0 state, built in place: ``jit(init, out_shardings=layout.shardings)``, then placed.
    ``params``: start from these (host arrays, ``init_from_model``) instead of fresh ones."""
    if params is None:
        state = jax.jit(lambda: init_state(config, optimizer, ema_fn), out_shardings=layout.shardings)()
    else:
        state = jax.jit(lambda p: init_state(config, optimizer, ema_fn, p), out_shardings=layout.shardings)(params)
    return layout.place(state)


def _source(config: Config, data: TrainData, source: str, what: str):
    """Load a trained model for ``train.init_from`` / ``diffusion.teacher``; check it fits this run
    (audio front end, label vocabulary, DiT up to ``interval``)."""
    src = ckpt.load_model(source)
    what = f"{what}={source!r}"
    if src.config.audio.features() != config.audio.features():
        raise ParamError(f"{what} has another audio front end ({src.config.audio}); use its audio config")
    if dataclasses.replace(src.config.model, interval=config.model.interval) != config.model:
        raise ParamError(f"{what} has model config {src.config.model}, this run {config.model}; "
                         "only model.interval may differ")
    if src.vocab != data.vocab:
        raise ParamError(f"{what} was trained with labels {src.vocab}, the data has {data.vocab}; "
                         "prepare the data with the same labels")
    return src


class Teacher(NamedTuple):
    """A frozen flow model to distil from (``diffusion.teacher``); unpacks as ``(model, params)``."""

    model: Any  # DiTConfig
    params: Any
    stats: Any  # MelStats: must be the run's (checked after restore)
    prediction: str = "v"  # what its network outputs (diffusion.prediction)


def load_teacher(config: Config, data: TrainData) -> Teacher:
    """The :class:`Teacher` of ``diffusion.teacher`` (checked against the run like ``init_from``)."""
    src = _source(config, data, config.diffusion.teacher, "diffusion.teacher")
    return Teacher(src.config.model, jax.tree.map(jnp.asarray, src.params), src.stats, src.config.diffusion.prediction)


def init_from_model(config: Config, data: TrainData, source: str) -> tuple[Any, TrainData]:
    """Params to start a run from (``train.init_from``) and the data with the source's stats.

    The source model (built-in name, model folder or workdir) must have this run's audio
    config, label vocabulary and model config up to ``interval``. Its params fill the fresh
    params' tree; leaves it lacks (the interval embedding) keep their fresh initialisation.
    """
    src = _source(config, data, source, "train.init_from")
    what = f"train.init_from={source!r}"
    fresh = jax.device_get(jax.jit(lambda: init_params(config, streams(config.train.seed).init))())
    flat_src = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(src.params)}
    unused = set(flat_src)

    def take(path, leaf):
        name = jax.tree_util.keystr(path)
        if name in flat_src and np.shape(flat_src[name]) == np.shape(leaf):
            unused.discard(name)
            return np.asarray(flat_src[name], np.float32)
        return leaf

    params = jax.tree_util.tree_map_with_path(take, fresh)
    if unused:
        raise ParamError(f"{what}: its params {sorted(unused)[:4]} have no place in this model; use a matching config")
    return params, data._replace(stats=src.stats)


def restore_or_init(config: Config, layout: Layout, optimizer, ema_fn: Ema, manager, it: BatchIterator,
                    data: TrainData) -> tuple[TrainState, int, TrainData]:
    """The state to start from, its step (updates done), and the data with the run's stats.

    Restore order: 1. the latest complete checkpoint in the workdir (a resumed run: state, data
    position, normalisation stats; newer damaged ones are named in a warning and moved to
    ``checkpoints.damaged/``, :func:`ckpt.newest_intact`); 2. ``train.init_from`` (params, EMA and stats of a trained
    model, :func:`init_from_model`); 3. scratch (fresh params, built in place with
    ``jit(init, out_shardings=...)`` from the shapes).
    """
    step = manager.latest_step()
    if step is None and config.train.init_from:
        params, data = init_from_model(config, data, config.train.init_from)
        return fresh_state(config, layout, optimizer, ema_fn, params), 0, data
    if step is None:
        return fresh_state(config, layout, optimizer, ema_fn), 0, data
    shapes = jax.eval_shape(lambda: init_state(config, optimizer, ema_fn))

    def load(at: int) -> ckpt.Restored:
        _check_resumable(ckpt.restore_config(manager, at), config, manager.directory)
        return ckpt.restore(manager, ckpt.abstract_like(shapes, layout.shardings), at)

    got = ckpt.newest_intact(manager, load, set_aside=True)
    step = got.step
    if got.vocab != data.vocab:
        raise ParamError(f"the checkpoint in {manager.directory} was trained with label vocabulary {got.vocab}, "
                         f"the data now has {data.vocab}; use a new workdir")
    it.restore(got.data_state)
    return layout.place(got.state), step, data._replace(stats=got.stats)


def _check_resumable(saved: Config, config: Config, where) -> None:
    for section in ("model", "audio"):
        a, b = getattr(saved, section), getattr(config, section)
        if a != b:
            diffs = [f"{section}.{f.name}: checkpoint {getattr(a, f.name)!r}, now {getattr(b, f.name)!r}"
                     for f in dataclasses.fields(a) if getattr(a, f.name) != getattr(b, f.name)]
            raise ParamError(f"the checkpoint in {where} is of another model ({'; '.join(diffs)}); "
                             "use a new --workdir or the checkpoint's config")
    changed = []
    for section in ("diffusion", "data", "train"):
        before, now = dataclasses.asdict(getattr(saved, section)), dataclasses.asdict(getattr(config, section))
        changed += [f"{section}.{k}" for k in now if before[k] != now[k]]
    if changed:
        warnings.warn(f"resuming from {where} with changed settings {changed}: the run will not match "
                      "an uninterrupted one", stacklevel=3)


# ---------------------------------------------------------------------- the loop


class _Pending(NamedTuple):
    step: int
    micro: int
    metrics: Any  # device arrays
    items: np.ndarray


def run_loop(config: Config, data: TrainData, layout: Layout, state: TrainState, it: BatchIterator, manager,
             log: MetricsLog | None, bar: Progress, start: int, workdir: str) -> TrainState:
    """Updates ``start + 1 .. train.steps``; each update is ``grad_accum`` micro-steps."""
    tc, patch = config.train, config.model.patch
    pending: list[_Pending] = []  # micro-steps whose metrics are still on the device
    window: list[dict] = []  # per-update host metrics since the last log row
    t0, n0 = time.perf_counter(), start
    for step in range(start + 1, tc.steps + 1):
        for micro in range(tc.grad_accum):
            raw = next(it)
            batch = model_batch(raw["mel"], raw["labels"], data.stats, patch, raw["frames"])
            state, metrics = layout.step(state, layout.put(batch))
            pending.append(_Pending(step, micro, metrics, raw["item"]))
        bar.advance(step)
        last = step == tc.steps
        log_now = is_time(step, tc.log_every) or last
        save_now = tc.ckpt_every > 0 and (is_time(step, tc.ckpt_every) or last)
        val_now = tc.eval_every > 0 and (is_time(step, tc.eval_every) or last)
        demo_now = tc.demo_every > 0 and (is_time(step, tc.demo_every) or last)
        if log_now or save_now:
            window += _checked_metrics(pending, layout, data, manager)
            pending = []
        if log_now:
            rate = (step - n0) / max(time.perf_counter() - t0, 1e-9)
            row = _summary(step, window, rate)
            if log is not None:
                log.write(row)
            bar.log(step, row["loss"], rate)
            window = []
        val_loss = None
        if val_now or demo_now:
            val_loss = evaluate(config, data, layout, state, step, workdir, log, val=val_now, demos=demo_now)
        if save_now:
            ckpt.save(manager, step, layout.single(state), data_state=it.state(), config=config, stats=data.stats,
                      vocab=data.vocab, val_loss=val_loss, lengths=length_table(data))
        if log_now or val_now or demo_now or save_now:
            t0, n0 = time.perf_counter(), step  # steps/s: training time since the last row only
    return state


def _checked_metrics(pending: list[_Pending], layout: Layout, data: TrainData, manager) -> list[dict]:
    """Host metrics per update (loss/grad_norm averaged over its micro-steps); raises on a non-finite one."""
    host = jax.device_get([layout.single(p.metrics) for p in pending])
    for p, m in zip(pending, host):
        if not (np.isfinite(m["loss"]) and np.isfinite(m["grad_norm"])):
            manager.wait_until_finished()
            raise AudioxError(_non_finite_message(p, m, data, manager))
    per_update: dict[int, list[dict]] = {}
    for p, m in zip(pending, host):
        per_update.setdefault(p.step, []).append(m)
    means = ["loss", "grad_norm"] + sorted(k for k in host[0] if k.startswith("loss_"))  # + few-step parts
    return [{"step": s, **{k: float(np.mean([m[k] for m in ms])) for k in means},
             **{k: float(ms[-1][k]) for k in ("param_norm", "update_norm", "lr")}}
            for s, ms in per_update.items()]


def _non_finite_message(p: _Pending, m: dict, data: TrainData, manager) -> str:
    items = [int(i) for i in p.items]
    sources = "; ".join(data.source(i) for i in items[:4]) + ("; ..." if len(items) > 4 else "")
    last = manager.latest_step()
    kept = (f"the last good checkpoint is step {last} in {manager.directory}" if last is not None
            else "no checkpoint was saved before it")
    return (f"non-finite training value at step {p.step} (micro-batch {p.micro + 1}): loss={float(m['loss'])}, "
            f"grad_norm={float(m['grad_norm'])}; the batch held items {items} ({sources}); training stopped and "
            f"{kept}; check those inputs, or lower train.lr")


def _summary(step: int, window: list[dict], rate: float) -> dict:
    means = ["loss", "grad_norm"] + sorted(k for k in window[0] if k.startswith("loss_"))
    return {"step": step, **{k: float(np.mean([w[k] for w in window])) for k in means},
            **{k: window[-1][k] for k in ("param_norm", "update_norm", "lr")}, "steps_per_s": rate}


# ---------------------------------------------------------------------- evaluate


def evaluate(config: Config, data: TrainData, layout: Layout, state: TrainState, step: int, workdir: str,
             log: MetricsLog | None, *, val: bool, demos: bool) -> float | None:
    """Validation loss of the EMA params (logged; returned for best-checkpoint keeping) and demos."""
    val_loss = None
    if val:
        val_loss = validation_loss(config, data, layout, state.ema_params)
        if val_loss is not None and log is not None:
            log.write({"step": step, "val_loss": val_loss})
    if demos:
        params = host_tree(layout.single(state).ema_params)  # a collective on multi-host FSDP: every process
        if jax.process_index() == 0:
            write_demos(params, config, data, os.path.join(workdir, DEMOS, f"step_{step:07d}"),
                        jax.random.fold_in(streams(config.train.seed).demo, step))
    return val_loss


def validation_loss(config: Config, data: TrainData, layout: Layout, params) -> float | None:
    """Mean per-example loss over the validation split with fixed noise; None if the split is empty.

    ``params`` are in the step's layout. Batches of the micro-batch size; the last is padded
    with weight-0 copies.
    """
    idx = data.val_idx
    if len(idx) == 0:
        return None
    b = config.data.batch_size // config.train.grad_accum
    key_data = jax.random.key_data(streams(config.train.seed).eval)
    total = 0.0
    for first in range(0, len(idx), b):
        rows = idx[first:first + b]
        weight = np.zeros(b, np.float32)
        weight[:len(rows)] = 1.0
        rows = np.concatenate([rows, np.full(b - len(rows), rows[-1])])
        local = process_slice(np.arange(b), jax.process_index(), jax.process_count())
        batch = model_batch(data.mels[rows[local]], data.labels[rows[local]], data.stats, config.model.patch,
                            data.frames[rows[local]])
        batch["weight"] = weight[local]
        out = layout.eval_sum(params, layout.put(batch), key_data, jnp.int32(first))
        total += float(np.asarray(jax.device_get(out)).reshape(-1)[0])
    return total / len(idx)


def demo_conditions(config: Config, vocab: dict[str, tuple[str, ...]]) -> tuple[np.ndarray | None, list[str]]:
    """Labels i32[n, n_labels] and names for the demos: per label, one sample for each of its
    first ``MAX_DEMO_CLASSES`` classes with the other labels null (-1). Unconditional: (None, 2 names)."""
    names = [n for n, _ in config.model.labels]
    if not names:
        return None, ["uncond_0", "uncond_1"]
    rows, titles = [], []
    for j, name in enumerate(names):
        for c, cls in enumerate(vocab[name][:MAX_DEMO_CLASSES]):
            row = np.full(len(names), -1, np.int32)
            row[j] = c
            rows.append(row)
            titles.append(f"{name}={cls}")
    return np.stack(rows), titles


def write_demos(params, config: Config, data: TrainData, out_dir: str, key: jax.Array) -> list[str]:
    """Generate one demo per :func:`demo_conditions` entry with ``pipeline.generate_jit``; write
    ``<name>.wav`` and ``<name>.png`` (the generated log-mel) into ``out_dir``. Returns the wav paths."""
    labels, names = demo_conditions(config, data.vocab)
    cond = None if labels is None else {"labels": jnp.asarray(labels)}
    if config.model.length_cond:  # each demo is as long as the typical training sound
        table = length_table(data) or {"frames": int(np.median(data.frames))}
        cond = {**(cond or {}), "length": jnp.full((len(names),), table["frames"], jnp.float32)}
    spec = pipeline.sampling_spec(config, batch=len(names))
    out = pipeline.generate_jit(params, key, cond, model=pipeline.ModelSpec.of(config, data.stats), spec=spec,
                                guide=pipeline.guidance(config), eta=config.sampling.eta_for(spec.sampler))
    audio, log_mel = np.asarray(out.audio), np.asarray(out.log_mel)
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for i, name in enumerate(names):
        base = os.path.join(out_dir, re.sub(r"[^A-Za-z0-9_.=#+-]", "_", name))
        paths.append(save(base + ".wav", audio[i], config.audio.sr))
        save_mel_png(log_mel[i], base + ".png", sr=config.audio.sr, hop_length=config.audio.hop_length,
                     title=f"demo {name}")
    return paths


def host_tree(tree: Any) -> Any:
    """NumPy copy of a pytree of (possibly sharded, possibly multi-host) arrays."""
    if all(getattr(x, "is_fully_addressable", True) for x in jax.tree.leaves(tree)):
        return jax.tree.map(np.asarray, jax.device_get(tree))
    return multihost_utils.process_allgather(tree, tiled=True)
