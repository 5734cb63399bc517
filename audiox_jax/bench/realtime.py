"""`audiox-jax bench realtime`: few-step latency of a 2 s note, split into model and vocoder.

For the fast model (and the default model, for comparison) at each step count: the whole
guided generate, and ``generate(vocode=False)`` (the sampler up to the log-mel), so the
vocoder's share (mel inversion + Griffin-Lim) is the difference of the two medians; then
streaming with the fast model (time to first audio, sustained RTF).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from audiox_jax import pipeline
from audiox_jax.bench.generate import bench_stream
from audiox_jax.bench.harness import row, skipped, time_jax
from audiox_jax.generator import load_pipeline
from audiox_jax.modelio import resolve_model


def bench_realtime(*, quick: bool = False, repeats: int = 5) -> list[dict]:
    """Few-step latency: a 2 s note (batch 1, guided) from the fast model (and the default model for
    comparison) per step count, split into the model's share (``generate(vocode=False)``: the
    sampler up to the log-mel) and the rest (vocoder: mel inversion + Griffin-Lim); then
    streaming with the fast model (time to first audio, sustained RTF)."""
    rows = []
    models = ["fast", "default"] if not quick else ["fast"]
    for name in models:
        try:
            resolve_model(name)
        except Exception as err:  # noqa: BLE001 - a missing built-in model is reported as a row
            rows.append(skipped(f"realtime {name} model", str(err)))
            continue
        gm = load_pipeline(name).model
        config, sampler = gm.config, gm.config.sampling.sampler
        labels = {"labels": jnp.zeros((1, len(config.model.labels)), jnp.int32)}
        seconds, cfg = 2.0, config.sampling.cfg  # the model's own guidance setting (the fast model: none)
        guidance, model = pipeline.guidance(config, cfg), pipeline.ModelSpec.of(config, gm.stats)
        guide = "no cfg" if guidance is None else f"cfg {cfg:g}"
        for steps in ((1, 2) if quick else (1, 2, 4, 8)):
            def fn(p, k, c, vocode, steps=steps):
                spec = pipeline.sampling_spec(config, seconds=seconds, sampler=sampler, steps=steps, vocode=vocode)
                out = pipeline.generate(p, k, c, model=model, spec=spec, guide=guidance)
                return out.audio if vocode else out.log_mel
            t_all, _ = time_jax(lambda p, k, c: fn(p, k, c, True), gm.params, jax.random.key(0), labels, repeats=repeats)
            t_model, _ = time_jax(lambda p, k, c: fn(p, k, c, False), gm.params, jax.random.key(0), labels,
                                  repeats=repeats)
            rows.append(row(f"{name} model {sampler} {steps}st {seconds:g}s note b1 ({guide}), total", t_all, audio_s=seconds,
                            nfe=pipeline.sampling_spec(config, sampler=sampler, steps=steps).nfe, model_ms=1e3 * t_model["median_s"],
                            vocoder_ms=1e3 * (t_all["median_s"] - t_model["median_s"]),
                            model_share=t_model["median_s"] / t_all["median_s"]))
        if name == "fast" and not quick:
            rows += bench_stream(steps=config.sampling.steps, repeats=3, model="fast")
    return rows
