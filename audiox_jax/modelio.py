"""A trained model for generation: EMA params + config + normalisation stats + label vocabulary.

Layout of a model folder (written by :func:`save_for_generation`, e.g. by
``training.checkpoint.export_for_generation`` or at the end of ``audiox-jax train``)::

    params.msgpack   the DiT params (flax.serialization msgpack of the nested dict, float32)
    model.json       {"format": 1, "step": int, "config": Config.to_dict(),
                      "stats": MelStats.to_dict(), "vocab": {label: [class names]},
                      "lengths": {"frames": median content frames, "by_labels": {"i,j": frames}} or null}

``lengths`` (whole-file models, ``model.length_cond``): the median content length in frames
of the training items, overall and per label combination (class ids joined by ","), the
default sound length at generation.

``config.model.labels`` lists the labels in conditioning order; ``vocab[name][i]`` is the
class with id ``i``. Loading needs flax and the model code only: no optax, no Orbax.
"""

from __future__ import annotations

import json
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from audiox_jax import files
from audiox_jax.audio import MelStats
from audiox_jax.config import Config, from_dict
from audiox_jax.errors import AudioxError, ParamError
from audiox_jax.models.dit import DiT

PARAMS = "params.msgpack"
MODEL = "model.json"
FORMAT = 1


class GenerationModel(NamedTuple):
    """params: DiT params pytree; config: its Config; stats: MelStats; vocab: {label: class names};
    lengths: typical content lengths (see the module docstring) or None."""

    params: Any
    config: Config
    stats: MelStats
    vocab: dict[str, tuple[str, ...]]
    lengths: dict | None = None


def save_for_generation(out_dir: str, params: Any, config: Config, stats: MelStats,
                        vocab: dict[str, tuple[str, ...]], *, step: int = 0, lengths: dict | None = None) -> str:
    """Write ``params.msgpack`` and ``model.json`` into ``out_dir`` (atomically each); returns ``out_dir``."""
    names = [n for n, _ in config.model.labels]
    if sorted(vocab) != sorted(names):
        raise ParamError(f"vocab labels {sorted(vocab)} must be the model's labels {names}")
    os.makedirs(out_dir, exist_ok=True)
    host = jax.tree.map(lambda p: np.asarray(jax.device_get(p), np.float32), params)
    files.write_bytes(os.path.join(out_dir, PARAMS), serialization.msgpack_serialize(host))
    meta = {"format": FORMAT, "step": int(step), "config": config.to_dict(), "stats": stats.to_dict(),
            "vocab": {n: list(vocab[n]) for n in names}, "lengths": lengths}
    files.write_json(os.path.join(out_dir, MODEL), meta)
    return out_dir


_REPAIR = ("export the model again (training.checkpoint.export_for_generation or `audiox-jax train`), or restore "
           "the folder from a copy (a built-in model: reinstall audiox-jax)")


def load_for_generation(path: str) -> GenerationModel:
    """Read a model folder written by :func:`save_for_generation`.

    Raises:
      AudioxError: not a model folder, an unknown format, a damaged (truncated) file, or params that
        do not fit the config.
    """
    paths = [os.path.join(path, PARAMS), os.path.join(path, MODEL)]
    missing = [f for f in paths if not os.path.isfile(f)]
    if missing:
        names = ", ".join(os.path.basename(m) for m in missing)
        raise AudioxError(f"{path!r} is not an exported model: missing {names}; export one with "
                          "audiox_jax.training.checkpoint.export_for_generation(workdir, out_dir)")
    try:
        with open(paths[1], encoding="utf-8") as f:
            meta = json.load(f)
    except ValueError as err:  # truncated or not JSON (JSONDecodeError, UnicodeDecodeError)
        raise AudioxError(f"{paths[1]} is damaged ({err}); {_REPAIR}") from None
    if meta.get("format") != FORMAT:
        raise AudioxError(f"{paths[1]} has format {meta.get('format')!r}; this audiox-jax reads format {FORMAT}")
    config = from_dict(meta["config"])
    stats = MelStats.from_dict(meta["stats"])
    vocab = {n: tuple(v) for n, v in meta["vocab"].items()}
    with open(paths[0], "rb") as f:
        try:
            params = serialization.msgpack_restore(f.read())
        except ValueError as err:  # msgpack: "Unpack failed: incomplete input" for a truncated file
            raise AudioxError(f"{paths[0]} is damaged or truncated (msgpack: {err}); {_REPAIR}") from None
    _check_params(params, config, paths[0])
    return GenerationModel(jax.tree.map(jnp.asarray, params), config, stats, vocab, meta.get("lengths"))


def _check_params(params: Any, config: Config, where: str) -> None:
    mc = config.model
    x = jnp.zeros((1, mc.n_mels, mc.patch), jnp.float32)
    cond = {"labels": jnp.zeros((1, len(mc.labels)), jnp.int32)} if mc.labels else None
    want = jax.eval_shape(lambda: DiT(mc).init(jax.random.key(0), x, jnp.zeros((1,)), cond)["params"])
    got_paths = {jax.tree_util.keystr(p): np.shape(v) for p, v in jax.tree_util.tree_leaves_with_path(params)}
    want_paths = {jax.tree_util.keystr(p): tuple(v.shape) for p, v in jax.tree_util.tree_leaves_with_path(want)}
    if got_paths != want_paths:
        bad = sorted(set(got_paths.items()) ^ set(want_paths.items()))[:4]
        raise AudioxError(f"{where}: params do not fit the saved model config (first differences: {bad}); "
                          "the export is corrupt or from another model")


# ---------------------------------------------------------------------------- names and lengths

ASSETS = os.path.join(os.path.dirname(__file__), "assets")
BUILTIN = {"default": os.path.join(ASSETS, "default"), "fast": os.path.join(ASSETS, "fast")}


def resolve_model(model: str) -> str:
    """A model name or path -> a model folder, or a training workdir (holding ``checkpoints/``,
    read by ``training.checkpoint.load_model``); raises naming the choices."""
    if model in BUILTIN:
        path = BUILTIN[model]
        if not os.path.isfile(os.path.join(path, MODEL)):
            raise ParamError(
                f"the built-in model {model!r} is not in this installation ({path} is missing); "
                "train one with `audiox-jax train` and pass --checkpoint WORKDIR_OR_MODEL_DIR"
            )
        return path
    if not os.path.exists(model):
        raise ParamError(f"model {model!r} is neither a built-in model {sorted(BUILTIN)} nor an existing path; "
                         "pass a model folder or a training --workdir")
    if os.path.isfile(os.path.join(model, MODEL)) or os.path.isdir(os.path.join(model, "checkpoints")):
        return model
    raise ParamError(f"{model!r} holds neither {MODEL} (an exported model) nor checkpoints/ (a training workdir)")


def default_length(model: GenerationModel, ids: np.ndarray, frames: int, seconds: float | None = None) -> np.ndarray:
    """Content length f32[B] in frames for a length-conditioned model, at most ``frames``.

    ``seconds`` given: that many seconds. Else the median length of the training sounds with the
    same labels (``model.lengths["by_labels"]``), falling back to the median over all of them,
    and to ``frames`` for a model saved without lengths.
    """
    ac = model.config.audio
    if seconds is not None:
        if not seconds > 0:
            raise ParamError(f"length={seconds} must be > 0 seconds")
        want = np.full(len(ids), ac.frames(int(round(seconds * ac.sr))), np.float32)
    else:
        table = model.lengths or {}
        by, overall = table.get("by_labels", {}), table.get("frames", frames)
        want = np.array([by.get(",".join(str(int(v)) for v in row), overall) for row in ids], np.float32)
    return np.clip(want, 1, frames)
