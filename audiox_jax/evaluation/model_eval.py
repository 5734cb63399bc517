"""Evaluate a trained model on a rendered note set or a prepared cache (``audiox-jax eval``).

Glue between :mod:`audiox_jax.generator` (the model) and :func:`report.evaluate` (the
measurements): it prepares the data if needed, loads or trains the probes, maps the
cache's label ids to the model's by class *name*, and generates in fixed-size batches.
"""

from __future__ import annotations

import os

import numpy as np
import jax
import jax.numpy as jnp

from audiox_jax.errors import ParamError


def label_id_map(model_vocab: dict, cache_vocab: dict, names: tuple[str, ...]) -> list[np.ndarray]:
    """Per cache label (in cache order): i32[n_classes_cache] cache id -> model id, by class name."""
    maps = []
    for name in names:
        if name not in model_vocab:
            raise ParamError(f"the data's label {name!r} is not one of the model's labels {sorted(model_vocab)}")
        missing = [c for c in cache_vocab[name] if c not in model_vocab[name]]
        if missing:
            raise ParamError(f"the data has {name} classes the model was not trained on: {missing[:10]}")
        maps.append(np.array([model_vocab[name].index(c) for c in cache_vocab[name]], np.int32))
    return maps


def open_data(data: str, audio_cfg, seconds: float, *, progress: bool = True):
    """``(cache, cache_dir)`` for a cache folder (manifest.json) or a rendered notes folder
    (labels.csv; prepared, incrementally, into ``data/.cache``)."""
    from audiox_jax.data.cache import load_cache

    if os.path.isfile(os.path.join(data, "manifest.json")):
        return load_cache(data), data
    if os.path.isfile(os.path.join(data, "labels.csv")):
        from audiox_jax.data import notes

        cache_dir = os.path.join(data, ".cache")
        notes.prepare_note_cache(data, cache_dir, audio_cfg=audio_cfg, seconds=seconds, progress=progress)
        return load_cache(cache_dir), cache_dir
    raise ParamError(f"--data {data!r} is neither a prepared cache (manifest.json) nor a rendered note set "
                     "(labels.csv); make one with `audiox-jax render-notes --out DIR`")


def evaluate_model(
    model: str,
    data: str,
    *,
    probes_dir: str | None = None,
    samples_per_combo: int = 1,
    batch_size: int = 32,
    seed: int = 0,
    sampler: str | None = None,
    steps: int | None = None,
    cfg: float | None = None,
    progress: bool = True,
) -> dict:
    """Generate one note per (instrument, pitch) pair of ``data`` with ``model`` and measure it."""
    from audiox_jax import pipeline
    from audiox_jax.evaluation.probe import load_or_train_probes
    from audiox_jax.evaluation.report import evaluate, label_combos
    from audiox_jax.generator import load_pipeline

    pipe = load_pipeline(model)
    config, gm = pipe.config, pipe.model
    seconds = config.data.clip_seconds
    cache, cache_dir = open_data(data, config.audio, seconds, progress=progress)
    man = cache.manifest
    if man.audio_config != config.audio:
        raise ParamError(f"the data was prepared with other audio settings than the model's; re-prepare {data} "
                         "with the model's config")
    names = tuple(man.label_names)
    maps = label_id_map(gm.vocab, man.vocab, names)
    order = [names.index(n) for n, _ in config.model.labels]  # model label order -> cache column
    probes = load_or_train_probes(cache, probes_dir or os.path.join(cache_dir, "probes"))
    cfg = config.sampling.cfg if cfg is None else cfg
    item_seconds = man.item_samples / config.audio.sr

    def generate_fn(ids: np.ndarray, s: int) -> np.ndarray:
        model_ids = np.stack([maps[c][ids[:, c]] for c in order], axis=1)
        out = pipeline.generate_jit(gm.params, jax.random.key(s), {"labels": jnp.asarray(model_ids)}, config=config,
                                    stats=gm.stats, seconds=item_seconds, sampler=sampler, steps=steps,
                                    cfg=None if cfg == 1.0 else jnp.float32(cfg))
        return np.asarray(out.audio)

    report = evaluate(generate_fn, label_combos(cache), cache, probes, samples_per_combo=samples_per_combo,
                      batch_size=batch_size, seed=seed, progress=progress)
    report["model"] = {"path": model, "sampler": sampler or config.sampling.sampler,
                       "steps": steps or config.sampling.steps, "cfg": cfg,
                       "nfe": pipeline.nfe(config, sampler, steps)}
    return report

