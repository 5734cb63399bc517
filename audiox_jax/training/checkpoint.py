"""Checkpoints: one Orbax ``CheckpointManager`` per run, and the generation-only export.

A checkpoint is ``workdir/checkpoints/<step>/`` (``step`` = optimiser updates done), written
asynchronously and atomically (Orbax writes a temporary folder and renames it when
complete; a run killed mid-save leaves no partial checkpoint behind). Items:

* ``state``: the :class:`~audiox_jax.training.state.TrainState` (params, EMA, optimiser
  state, micro-step, train key data), saved with its shardings.
* ``data``: the batch iterator's position (``BatchIterator.state()``, JSON).
* ``config``: the full resolved config (JSON; model labels filled in from the data).
* ``meta``: normalisation stats and label vocabulary (JSON).

So a checkpoint alone is enough to resume exactly or to generate. Kept: the latest
``train.keep`` checkpoints, plus the ``train.keep_best`` with the lowest validation loss
(when > 0; only checkpoints saved at an evaluation step carry a validation loss).
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Callable, NamedTuple, TypeVar

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import SingleDeviceSharding

from audiox_jax.audio import MelStats
from audiox_jax.config import Config, TrainConfig, from_dict
from audiox_jax.errors import AudioxError
from audiox_jax.modelio import MODEL, GenerationModel, load_for_generation, resolve_model, save_for_generation
from audiox_jax.training.state import init_state, make_ema, make_optimizer

CHECKPOINTS = "checkpoints"


class Restored(NamedTuple):
    """What a checkpoint holds: state (TrainState), step (updates), data_state, config, stats, vocab,
    and lengths (typical content lengths, ``training.data.length_table``; None for fixed clips)."""

    state: Any
    step: int
    data_state: dict
    config: Config
    stats: MelStats
    vocab: dict[str, tuple[str, ...]]
    lengths: dict | None = None


def checkpoint_dir(workdir: str) -> str:
    return os.path.abspath(os.path.join(workdir, CHECKPOINTS))


def make_manager(workdir: str, tc: TrainConfig, *, read_only: bool = False) -> ocp.CheckpointManager:
    """The run's CheckpointManager over ``workdir/checkpoints`` (async saves, keep policy above)."""
    policies = [ocp.checkpoint_managers.LatestN(n=tc.keep)]
    if tc.keep_best > 0:
        policies.append(ocp.checkpoint_managers.BestN(
            get_metric_fn=lambda metrics: metrics["val_loss"], reverse=True, n=tc.keep_best,
            keep_checkpoints_without_metrics=False))
    options = ocp.CheckpointManagerOptions(
        preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(policies),
        enable_async_checkpointing=True, create=not read_only, read_only=read_only,
        cleanup_tmp_directories=not read_only)
    return ocp.CheckpointManager(checkpoint_dir(workdir), options=options)


def save(manager: ocp.CheckpointManager, step: int, state: Any, *, data_state: dict, config: Config,
         stats: MelStats, vocab: dict, val_loss: float | None = None, lengths: dict | None = None) -> None:
    """Start an async save of everything at ``step`` (returns once the arrays are copied to the host)."""
    meta = {"stats": stats.to_dict(), "vocab": {k: list(v) for k, v in vocab.items()}, "lengths": lengths}
    manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=ocp.args.JsonSave(data_state),
        config=ocp.args.JsonSave(config.to_dict()),
        meta=ocp.args.JsonSave(meta),
    ), metrics=None if val_loss is None else {"val_loss": float(val_loss)})


def abstract_like(state: Any, shardings: Any) -> Any:
    """ShapeDtypeStructs of ``state`` (arrays or ShapeDtypeStructs) carrying ``shardings``."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings)


def restore(manager: ocp.CheckpointManager, abstract_state: Any, step: int | None = None) -> Restored:
    """Restore ``step`` (None: the latest) onto ``abstract_state``'s shapes and shardings."""
    step = manager.latest_step() if step is None else step
    if step is None:
        raise AudioxError(f"no checkpoint in {manager.directory}; train first")
    out = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        data=ocp.args.JsonRestore(),
        config=ocp.args.JsonRestore(),
        meta=ocp.args.JsonRestore(),
    ))
    meta = out["meta"]
    return Restored(out["state"], int(step), dict(out["data"]), from_dict(out["config"]),
                    MelStats.from_dict(meta["stats"]), {k: tuple(v) for k, v in meta["vocab"].items()},
                    meta.get("lengths"))


def restore_config(manager: ocp.CheckpointManager, step: int | None = None) -> Config:
    """Only the config saved at ``step`` (None: the latest)."""
    step = manager.latest_step() if step is None else step
    if step is None:
        raise AudioxError(f"no checkpoint in {manager.directory}; train first")
    out = manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
    return from_dict(out["config"])


T = TypeVar("T")
DAMAGED = "checkpoints.damaged"  # beside checkpoints/: where a resumed run moves damaged checkpoints


def newest_intact(manager: ocp.CheckpointManager, load: Callable[[int], T], *, steps: list[int] | None = None,
                  set_aside: bool = False) -> T:
    """``load(step)`` of the newest checkpoint that loads, falling back to older ones when it is damaged.

    A checkpoint is damaged when Orbax cannot read it back (a truncated or missing file): each one
    skipped is named in a warning, with the step used. ``steps``: the steps to try (default: all,
    newest first). ``set_aside``: move the damaged checkpoints newer than the one used to
    ``workdir/checkpoints.damaged/`` (a resumed run saves those steps again); nothing is deleted.
    Errors of ours (``AudioxError``, e.g. a checkpoint of another model) are raised as they are.

    Raises:
      AudioxError: no checkpoint, or every one tried is damaged (then nothing is moved).
    """
    where, saved = str(manager.directory), sorted(manager.all_steps(), reverse=True)
    if not saved:
        raise AudioxError(f"no checkpoint in {where}; train first")
    missing = [s for s in steps or () if s not in saved]
    if missing:
        raise AudioxError(f"no checkpoint at step {missing[0]} in {where}; its steps are {sorted(saved)}")
    steps = saved if steps is None else list(steps)
    damaged = []
    for step in steps:
        try:
            got = load(step)
        except AudioxError:
            raise
        except Exception as err:  # noqa: BLE001 - Orbax and TensorStore raise ValueError, JSONDecodeError, Exception
            damaged.append((step, _describe(err)))
            continue
        if damaged:
            said = "; ".join(f"step {s}: {e}" for s, e in damaged)
            moved = _set_aside(manager, [s for s, _ in damaged]) if set_aside else ""
            warnings.warn(f"damaged checkpoint(s) in {where} ({said}); using step {step}, the newest complete one"
                          f"{moved} (nothing was deleted)", stacklevel=2)
        return got
    said = "; ".join(f"step {s}: {e}" for s, e in damaged)
    others = f"; its other steps are {sorted(set(saved) - set(steps))}" if set(saved) - set(steps) else ""
    raise AudioxError(f"every checkpoint tried in {where} is damaged ({said}){others}; nothing was changed: "
                      "move the damaged step folders out of it (a run then starts from scratch) or use a new --workdir")


def _describe(err: BaseException) -> str:
    """The root cause of a restore error in one short line (Orbax wraps TensorStore's precise message)."""
    while err.__cause__ is not None:
        err = err.__cause__
    return " ".join(f"{type(err).__name__}: {err}".split())[:240]


def _set_aside(manager: ocp.CheckpointManager, steps: list[int]) -> str:
    """Move step folders from ``checkpoints/`` to ``checkpoints.damaged/`` (a new name if taken); reload."""
    import shutil

    src_dir = str(manager.directory)
    dst_dir = os.path.join(os.path.dirname(src_dir.rstrip("/")), DAMAGED)
    moved = []
    for step in steps:
        src = os.path.join(src_dir, str(step))
        if not os.path.isdir(src):
            continue
        dst, k = os.path.join(dst_dir, str(step)), 1
        while os.path.exists(dst):
            dst, k = os.path.join(dst_dir, f"{step}-{k}"), k + 1
        try:
            os.makedirs(dst_dir, exist_ok=True)
            shutil.move(src, dst)
        except OSError as err:
            raise AudioxError(f"cannot move the damaged checkpoint {src} aside ({err.strerror}); move it out of "
                              f"{src_dir} yourself and run again") from None
        moved.append(dst)
    manager.reload()
    return f"; moved {', '.join(moved)} out of the way" if moved else ""


def export_for_generation(workdir: str, out_dir: str, *, step: int | None = None) -> str:
    """Write the EMA params, config, stats and vocab of a checkpoint as a model folder
    (:mod:`audiox_jax.modelio`) that ``load_for_generation`` reads.

    Args:
      workdir: a training workdir (holding ``checkpoints/``) or its ``checkpoints`` folder.
      out_dir: the model folder to write.
      step: the checkpoint (updates done); None = the latest complete one (a damaged newer one is
        skipped with a warning, :func:`newest_intact`).
    """
    if os.path.basename(os.path.normpath(workdir)) == CHECKPOINTS:
        workdir = os.path.dirname(os.path.normpath(workdir))
    if not os.path.isdir(checkpoint_dir(workdir)):
        raise AudioxError(f"{workdir!r} holds no {CHECKPOINTS}/ folder; pass the --workdir of a training run")
    cpu = SingleDeviceSharding(jax.local_devices(backend="cpu")[0])

    def load(at: int) -> Restored:
        config = restore_config(manager, at)
        shapes = jax.eval_shape(lambda: init_state(config, make_optimizer(config.train), make_ema(config.train)))
        return restore(manager, abstract_like(shapes, jax.tree.map(lambda _: cpu, shapes)), at)

    with make_manager(workdir, TrainConfig(), read_only=True) as manager:
        got = newest_intact(manager, load, steps=None if step is None else [step])
    params = jax.tree.map(np.asarray, got.state.ema_params)
    return save_for_generation(out_dir, params, got.config, got.stats, got.vocab, step=got.step, lengths=got.lengths)


def load_model(model: str) -> GenerationModel:
    """A model by built-in name ("default", "fast"), model folder, or training workdir (its latest
    checkpoint's EMA params, exported through a temporary folder)."""
    import tempfile

    path = resolve_model(model)
    if os.path.isfile(os.path.join(path, MODEL)):
        return load_for_generation(path)
    with tempfile.TemporaryDirectory() as tmp:
        return load_for_generation(export_for_generation(path, tmp))
