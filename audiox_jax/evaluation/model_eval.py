"""Evaluate a trained model on a rendered note set or a prepared cache (``audiox-jax eval``).

Glue between a loaded model (``modelio.GenerationModel``; the CLI loads it by name) and
:func:`report.evaluate` (the measurements): it prepares the data if needed, loads or trains
the probes, maps the cache's label ids to the model's by class *name*, and generates in
fixed-size batches with ``pipeline.generate``.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from typing import NamedTuple

import numpy as np
import jax
import jax.numpy as jnp

from audiox_jax import pipeline
from audiox_jax.audio.mel import denormalize
from audiox_jax.data import notes, render
from audiox_jax.data.cache import load_cache
from audiox_jax.diffusion import samplers, schedules
from audiox_jax.errors import ParamError
from audiox_jax.evaluation import judge as judge_mod
from audiox_jax.evaluation.probe import load_or_train_probes
from audiox_jax.evaluation.report import evaluate, label_combos
from audiox_jax.modelio import GenerationModel, default_length


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
    if os.path.isfile(os.path.join(data, "manifest.json")):
        return load_cache(data), data
    if os.path.isfile(os.path.join(data, "labels.csv")):
        cache_dir = os.path.join(data, ".cache")
        notes.prepare_note_cache(data, cache_dir, audio_cfg=audio_cfg, seconds=seconds, progress=progress)
        return load_cache(cache_dir), cache_dir
    raise ParamError(f"--data {data!r} is neither a prepared cache (manifest.json) nor a rendered note set "
                     "(labels.csv); make one with `audiox-jax render-notes --out DIR`")


class _Setup(NamedTuple):
    gm: GenerationModel
    cache: object
    probes: dict
    maps: list
    order: list
    item_seconds: float
    judge: object = None
    judge_skipped: str = ""


def build_data_judge(cache, *, progress: bool = True):
    """``(judge, "")`` for a note data set's "instrument" label, or ``(None, why)``.

    The judge (:mod:`.judge`) is trained on the data's instruments at every MIDI pitch of
    its recipe's 48..84 within the data's pitch range (the whole recipe for the note data
    set; the data's own pitches when none is in 48..84), with the data's front end as its
    vocoder. Its features are cached, so only the first run pays (~3.5 min for the full
    6-instrument set on 2 CPU cores).
    """
    man = cache.manifest
    if "instrument" not in man.label_names or "pitch" not in man.label_names:
        return None, "the data has no 'instrument' and 'pitch' labels"
    unknown = [c for c in man.vocab["instrument"] if c not in notes.INSTRUMENTS]
    if unknown:
        return None, f"instruments {unknown} are not General MIDI instruments of data.notes.INSTRUMENTS"
    try:
        midis = sorted({notes.label_midi(p) for p in man.vocab["pitch"]})
    except ParamError as err:
        return None, f"pitch classes are not MIDI numbers or note names ({err})"
    pitches = tuple(p for p in judge_mod.JudgeRecipe().pitches if midis[0] <= p <= midis[-1]) or tuple(midis)
    recipe = judge_mod.JudgeRecipe(instruments=tuple(man.vocab["instrument"]), pitches=pitches,
                               sr=man.audio_config.sr, vocoder=man.audio_config)
    try:
        return judge_mod.build_judge(recipe, progress=progress), ""
    except render.ToolMissingError as err:
        warnings.warn(f"instrument judge skipped: {err}", stacklevel=2)
        return None, str(err)


def _setup(gm: GenerationModel, data: str, probes_dir: str | None, progress: bool, with_judge: bool = True) -> _Setup:
    """Open (or prepare) the data, load or train the probes, map label ids, build the judge."""
    config = gm.config
    cache, cache_dir = open_data(data, config.audio, config.data.clip_seconds, progress=progress)
    man = cache.manifest
    if man.audio_config.features() != config.audio.features():
        raise ParamError(f"the data was prepared with other audio settings than the model's; re-prepare {data} "
                         "with the model's config")
    names = tuple(man.label_names)
    maps = label_id_map(gm.vocab, man.vocab, names)
    order = [names.index(n) for n, _ in config.model.labels]  # model label order -> cache column
    probes = load_or_train_probes(cache, probes_dir or os.path.join(cache_dir, "probes"))
    judge, why = build_data_judge(cache, progress=progress) if with_judge else (None, "not asked for")
    return _Setup(gm, cache, probes, maps, order, man.item_samples / config.audio.sr, judge, why)


def _generate_fn(s: _Setup, sampler: str | None, steps: int | None, cfg: float, schedule: str | None = None,
                 seconds: float | None = None):
    """``(cache label ids i32[B, n_labels], seed) -> audio f32[B, samples]`` for report.evaluate: ``seconds``
    of audio (None: the data's item length); a length-conditioned model gets the typical length of a
    training sound with those labels (``modelio.default_length``), then silence."""
    gm = s.gm
    config = gm.config
    model = pipeline.ModelSpec.of(config, gm.stats)
    spec = pipeline.sampling_spec(config, seconds=s.item_seconds if seconds is None else seconds,
                                  sampler=sampler, steps=steps, schedule=schedule)
    guide, eta = pipeline.guidance(config, cfg), config.sampling.eta_for(spec.sampler)

    def generate_fn(ids: np.ndarray, seed: int) -> np.ndarray:
        model_ids = np.stack([s.maps[c][ids[:, c]] for c in s.order], axis=1)
        cond = {"labels": jnp.asarray(model_ids)}
        if config.model.length_cond:
            cond["length"] = jnp.asarray(default_length(gm, model_ids, spec.frames), jnp.float32)
        out = pipeline.generate_jit(gm.params, jax.random.key(seed), cond, model=model,
                                    spec=dataclasses.replace(spec, batch=len(ids)), guide=guide, eta=eta)
        return np.asarray(out.audio)

    return generate_fn, spec


def evaluate_model(
    model: GenerationModel,
    data: str,
    *,
    name: str = "model",
    probes_dir: str | None = None,
    samples_per_combo: int = 1,
    batch_size: int = 32,
    seed: int = 0,
    sampler: str | None = None,
    steps: int | None = None,
    cfg: float | None = None,
    schedule: str | None = None,
    judge: bool = True,
    progress: bool = True,
    seconds: float | None = None,
) -> dict:
    """Generate one note per (instrument, pitch) pair of ``data`` with ``model`` and measure it.

    name: what the report calls the model (its path or built-in name).
    judge: also score the notes with the instrument judge (:func:`build_data_judge`).
    seconds: generate this long (None: the data's item length); the probes and FD see the first
      item length of each note, the judge and the silence floor all of it.
    """
    s = _setup(model, data, probes_dir, progress, judge)
    config = model.config
    cfg = config.sampling.cfg if cfg is None else cfg
    fn, spec = _generate_fn(s, sampler, steps, cfg, schedule, seconds)
    report = evaluate(fn, label_combos(s.cache), s.cache, s.probes, samples_per_combo=samples_per_combo,
                      batch_size=batch_size, seed=seed, judge=s.judge, progress=progress)
    if s.judge is None:
        report["judge"] = {"skipped": s.judge_skipped}
    report["model"] = {"path": name, "sampler": spec.sampler, "steps": spec.steps, "cfg": cfg,
                       "schedule": spec.schedule, "nfe": spec.nfe}
    return report


def sweep_model(
    model: GenerationModel,
    data: str,
    *,
    name: str = "model",
    samplers: tuple[str, ...] = ("euler", "heun", "dpmpp_2m"),
    steps: tuple[int, ...] = (1, 2, 4, 8, 16, 32),
    max_combos: int | None = 42,
    probes_dir: str | None = None,
    batch_size: int = 42,
    seed: int = 0,
    cfg: float | None = None,
    judge: bool = True,
    progress: bool = True,
    seconds: float | None = None,
) -> dict:
    """Quality against steps: evaluate ``model`` for every sampler x steps.

    samplers: names from ``diffusion.SAMPLERS``, each optionally with its own schedule as
      ``"sampler@schedule"`` (e.g. "euler@uniform_t_end"); otherwise the model's schedule.
    Uses ``max_combos`` evenly spaced label combinations of the data (None: all). Wall time
    per clip excludes compilation (each setting is compiled and run once before timing).
    Returns {"settings": [{"name" (the entry as given), "sampler", "schedule", "steps", "nfe", "fd_ratio":
    {label: FD / FD of vocoded real}, "pitch_accuracy", "probe_accuracy": {label: acc}, "frechet": {label: fd},
    "silence_floor_db_difference", "judge_accuracy" (None without a judge), "wall_s_per_clip"}], ...}.
    """
    s = _setup(model, data, probes_dir, progress, judge)
    config = model.config
    cfg = config.sampling.cfg if cfg is None else cfg
    combos = label_combos(s.cache)
    if max_combos is not None and len(combos) > max_combos:
        combos = combos[np.linspace(0, len(combos) - 1, max_combos).round().astype(int)]
    settings = []
    for entry in samplers:
        sampler, _, schedule = entry.partition("@")
        schedule = schedule or config.sampling.schedule
        for n in steps:
            fn, spec = _generate_fn(s, sampler, n, cfg, schedule, seconds)
            fn(np.repeat(combos[:1], batch_size, axis=0), seed)  # compile outside the timing
            r = evaluate(fn, combos, s.cache, s.probes, batch_size=batch_size, seed=seed, judge=s.judge,
                         progress=False)
            settings.append({
                "name": entry, "sampler": sampler, "schedule": schedule, "steps": n, "nfe": spec.nfe,
                "fd_ratio": r["fd_ratio"],
                "pitch_accuracy": r.get("pitch", {}).get("accuracy"),
                "probe_accuracy": {k: v["accuracy_generated"] for k, v in r["probe"].items()},
                "frechet": {k: v["generated"] for k, v in r["frechet"].items()},
                "silence_floor_db_difference": r["silence_floor"].get("silence_floor_db_difference"),
                "judge_accuracy": r.get("judge", {}).get("accuracy_generated"),
                "wall_s_per_clip": r["generation_wall_s"] / r["generated"],
            })
            if progress:
                print(f"sweep {entry:>9} {n:>3} steps: pitch {settings[-1]['pitch_accuracy']}, "
                      f"probe {settings[-1]['probe_accuracy']}", flush=True)
    return {"model": name, "cfg": cfg, "combinations": len(combos), "seed": seed, "settings": settings,
            "judge": ({"skipped": s.judge_skipped} if s.judge is None
                      else {"soundfonts": list(s.judge.recipe.soundfonts)})}


def plot_sweep(result: dict, path: str) -> str:
    """PNG: each metric against NFE (top row) and against wall time per clip (bottom), a line per sampler."""
    from matplotlib.figure import Figure  # optional dependency; no pyplot, no global backend

    rows = result["settings"]
    labels = sorted(rows[0]["probe_accuracy"]) if rows else []
    metrics = [(f"FD ratio ({k} probe)", lambda r, k=k: r.get("fd_ratio", {}).get(k)) for k in labels]
    metrics += [("pitch accuracy", lambda r: r["pitch_accuracy"])]
    metrics += [(f"{k} probe accuracy", lambda r, k=k: r["probe_accuracy"][k]) for k in labels]
    metrics += [(f"FD ({k} probe)", lambda r, k=k: r["frechet"][k]) for k in labels]
    metrics += [("silence floor - real (dB)", lambda r: r.get("silence_floor_db_difference"))]
    if rows and rows[0].get("judge_accuracy") is not None:
        metrics += [("instrument judge accuracy", lambda r: r["judge_accuracy"])]
    fig = Figure(figsize=(3.6 * len(metrics), 6.4))
    axes = fig.subplots(2, len(metrics), squeeze=False)
    for sampler in dict.fromkeys(r.get("name", r["sampler"]) for r in rows):
        rs = [r for r in rows if r.get("name", r["sampler"]) == sampler]
        for j, (name, get) in enumerate(metrics):
            ys = [np.nan if get(r) is None else get(r) for r in rs]
            axes[0, j].plot([r["nfe"] for r in rs], ys, "o-", label=sampler)
            axes[1, j].plot([1000 * r["wall_s_per_clip"] for r in rs], ys, "o-", label=sampler)
            axes[0, j].set_title(name, fontsize=9)
            axes[0, j].set_xlabel("network evaluations")
            axes[1, j].set_xlabel("ms per clip")
            for ax in axes[:, j]:
                ax.set_xscale("log")
                if name.startswith("FD") and all(y > 0 for y in ys if np.isfinite(y)):
                    ax.set_yscale("log")
                if name.startswith(("FD ratio", "silence floor")):  # 1: the vocoded real data; 0 dB: the real data
                    ax.axhline(1.0 if name.startswith("FD") else 0.0, color="gray", linestyle=":", linewidth=1)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"quality against steps: {result['model']} (cfg {result['cfg']}, {result['combinations']} label combinations)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return path


def flow_map_error(model: GenerationModel, reference: GenerationModel, *, names: tuple[str, str] = ("model", "default"),
                   steps: tuple[int, ...] = (1, 2, 4), reference_steps: int = 64, batch: int = 32, seed: int = 0,
                   sampler: str | None = None) -> dict:
    """How far ``model``'s few-step samples land from ``reference``'s ODE solution, from the same noise.

    Both start from the same initial noise (seed), with the same labels (``batch`` pairs spread
    over the vocabulary) and no guidance; the reference integrates its flow with ``euler`` over
    ``reference_steps`` equal steps in t (``uniform_t_end``), the model uses ``sampler`` (its own
    default) on the same schedule with each step count. ``names``: what the result calls the two.
    Returns ``{"rms": {steps: RMS of the log-mel difference (natural-log power units)}, ...}``: 0 for a
    perfect flow map of the reference. A direct measure of few-step distillation, free of the
    vocoder and of the probes.
    """
    def final_mel(gm, params, sampler_name, n, keys, labels):  # params traced, not baked in as constants
        config = gm.config
        form = config.diffusion.make_formulation()
        sig = schedules.sigmas("uniform_t_end", n, sigma_min=form.sigma_min, sigma_max=form.sigma_max, formulation=form)
        _, frames, model_frames = pipeline.shapes(config, config.data.clip_seconds)
        x = samplers.initial_noise(keys, (config.model.n_mels, model_frames), sig[0])
        den = pipeline.denoiser(params, config, {"labels": labels})
        out = samplers.sample(den, x, sig, keys, sampler=sampler_name)
        return denormalize(out.x[..., :frames], gm.stats)

    ref, gm = reference, model
    if ref.vocab != gm.vocab or ref.config.audio.features() != gm.config.audio.features():
        raise ParamError(f"{names[0]!r} and {names[1]!r} must share labels and audio settings to compare samples")
    sizes = [len(gm.vocab[n]) for n, _ in gm.config.model.labels]
    labels = jnp.asarray(np.stack([(np.arange(batch) * (7 ** j)) % k for j, k in enumerate(sizes)], 1), jnp.int32)
    keys = pipeline.sample_keys(jax.random.key(seed), batch)
    target = jax.jit(lambda p: final_mel(ref, p, "euler", reference_steps, keys, labels))(ref.params)
    sampler = sampler or gm.config.sampling.sampler
    rms = {}
    for n in steps:
        got = jax.jit(lambda p, n=n: final_mel(gm, p, sampler, n, keys, labels))(gm.params)
        rms[n] = float(jnp.sqrt(jnp.mean((got - target) ** 2)))
    return {"model": names[0], "reference": names[1], "sampler": sampler, "reference_steps": reference_steps,
            "batch": batch, "seed": seed, "rms": rms}
