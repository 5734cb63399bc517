"""`audiox-jax bench generate`: latency of the one-program generate, against the seed's Python loop.

Rows: ``pipeline.generate`` per sampler x steps x length x batch (with the model's analytic
GFLOPs and achieved GFLOP/s), the vocoder alone, the one program against a Python loop of
jitted Euler steps (interleaved, same machine state), streaming with a shipped model, and the
same DiT and sampler in torch (``bench.torch_ref``, in a fresh subprocess).
``quick`` uses a tiny random DiT and the shortest grid; otherwise the shipped default model.
"""

from __future__ import annotations

import importlib.util
import time

import jax
import jax.numpy as jnp
import numpy as np

from audiox_jax import pipeline
from audiox_jax.audio import frontend
from audiox_jax.audio.mel import MelStats
from audiox_jax.bench.harness import row, skipped, spread, time_jax
from audiox_jax.config import load_config
from audiox_jax.diffusion import guidance, samplers, schedules
from audiox_jax.evaluation.metrics import seam_flux_ratio
from audiox_jax.generator import load_pipeline
from audiox_jax.models.dit import DiT, flops_per_forward, null_cond

TORCH_MISSING = "torch is not installed (pip install 'audiox-jax[torch]')"


def bench_model_config(size: str = "small"):
    """A Config with a ``size`` DiT conditioned on two labels (instrument 8, pitch 49), as the default model."""
    return load_config(None, [f"model.size={size}", "model.labels=[[instrument,8],[pitch,49]]"])


def random_params(config, seed: int = 0):
    """DiT params with small random weights everywhere (adaLN-Zero init is all zeros: unrealistic)."""
    x = jnp.zeros((1, config.model.n_mels, config.model.patch))
    cond = {"labels": jnp.zeros((1, len(config.model.labels)), jnp.int32)}
    params = jax.jit(DiT(config.model).init)(jax.random.key(seed), x, jnp.zeros((1,)), cond)["params"]
    leaves, tree = jax.tree.flatten(params)
    rng = np.random.default_rng(seed)
    return tree.unflatten([p + 0.02 * rng.standard_normal(p.shape).astype(np.float32) for p in leaves])


def python_loop_generate(params, config, stats, labels, *, seconds: float, steps: int, cfg: float):
    """The seed's style: one jitted model call (an Euler step) per step from Python, then a jitted
    vocoder. labels: int[B, n_labels]. Returns ``run(key) -> audio f32[B, samples]``; the jitted
    pieces are compiled on its first call."""
    samples, frames, model_frames = pipeline.shapes(config, seconds)
    form = config.diffusion.make_formulation()
    sig = np.asarray(schedules.sigmas(config.sampling.schedule, steps, sigma_min=form.sigma_min,
                                      sigma_max=form.sigma_max, rho=config.sampling.rho))
    cond = {"labels": labels}

    @jax.jit
    def step(x, sigma, sigma_next):
        both = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), cond, null_cond(cond))
        den = guidance.cfg_denoiser(guidance.batched_pair(pipeline.denoiser(params, config, both)), cfg)
        x0 = den(x, jnp.full((x.shape[0],), sigma))
        return x0 + (sigma_next / sigma) * (x - x0)

    @jax.jit
    def vocode(x, keys):
        lm = pipeline.to_log_mel(x[..., :frames], stats, config.audio)
        return frontend.log_mel_to_audio(lm, config.audio, length=samples, key=keys)

    def run(key):
        keys = pipeline.sample_keys(key, labels.shape[0])
        x = samplers.initial_noise(keys, (config.model.n_mels, model_frames), sig[0])
        for i in range(steps):
            x = step(x, sig[i], sig[i + 1])
        return vocode(x, key)

    return run


def bench_generate(*, quick: bool = False, repeats: int = 3) -> list[dict]:
    """Latency of the one-program generate per sampler x steps x length x batch, and vs a Python loop."""
    if quick:
        config, stats = bench_model_config("tiny"), MelStats(kind="range")
        params, model_name = random_params(config), "tiny random"
    else:  # the shipped default model, real weights
        gm = load_pipeline("default").model
        config, stats, params, model_name = gm.config, gm.stats, gm.params, "default model"
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
    grid = [("euler", 8, 2.0, 1)] if quick else [
        ("euler", 8, 10.0, 1), ("euler", 8, 2.0, 1), ("heun", 8, 10.0, 1), ("dpmpp_2m", 8, 10.0, 1),
        ("euler", 16, 10.0, 1), ("euler", 4, 10.0, 1), ("euler", 8, 2.0, 8), ("euler", 8, 1.0, 64),
    ]
    rows = []
    model, guide = pipeline.ModelSpec.of(config, stats), pipeline.Guidance(np.float32(3.0))
    for sampler, steps, seconds, batch in grid:
        labels = jnp.zeros((batch, len(config.model.labels)), jnp.int32)
        spec = pipeline.sampling_spec(config, seconds=seconds, batch=batch, sampler=sampler, steps=steps)
        fn = lambda p, k, c, spec=spec: pipeline.generate(p, k, c, model=model, spec=spec, guide=guide).audio
        t, _ = time_jax(fn, params, jax.random.key(0), {"labels": labels}, repeats=repeats)
        n = spec.nfe
        flops = n * flops_per_forward(config.model, spec.model_frames, batch=2 * batch)  # cond + uncond rows
        rows.append(row(f"generate {sampler} {steps}st {seconds:g}s b{batch} (cfg, {model_name})", t, audio_s=seconds * batch,
                        nfe=n, params_m=n_params / 1e6, model_gflops=flops / 1e9,
                        model_gflop_per_s=flops / 1e9 / t["median_s"]))
    # vocoder alone, to show where the time goes
    seconds = 2.0 if quick else 10.0
    samples, frames, _ = pipeline.shapes(config, seconds)
    lm = jnp.full((1, config.audio.n_mels, frames), -4.0)
    t, _ = time_jax(lambda lm: frontend.log_mel_to_audio(lm, config.audio, length=samples), lm, repeats=repeats)
    rows.append(row(f"vocoder only (nnls {config.audio.nnls_iters} + gla {config.audio.gla_iters}) {seconds:g}s", t, audio_s=seconds))
    # one program vs the seed's Python loop, same sampler (euler), steps and guidance
    steps = 8
    labels = jnp.zeros((1, len(config.model.labels)), jnp.int32)
    loop = python_loop_generate(params, config, stats, labels, seconds=seconds, steps=steps, cfg=3.0)
    spec = pipeline.sampling_spec(config, seconds=seconds, sampler="euler", steps=steps)
    fn = lambda p, k, c: pipeline.generate(p, k, c, model=model, spec=spec, guide=guide).audio  # noqa: E731
    t_scan, _ = time_jax(fn, params, jax.random.key(0), {"labels": labels}, repeats=1)
    scan = jax.jit(fn)
    # interleaved, so both see the same machine state (one-off stalls would otherwise pick a winner)
    pair = {"loop": lambda: loop(jax.random.key(0)), "scan": lambda: scan(params, jax.random.key(0), {"labels": labels})}
    times = {k: [] for k in pair}
    for name, f in pair.items():
        jax.block_until_ready(f())
    for _ in range(max(5, repeats)):
        for name, f in pair.items():
            t0 = time.perf_counter()
            jax.block_until_ready(f())
            times[name].append(time.perf_counter() - t0)
    t_loop, t_scan = spread(times["loop"]), {**spread(times["scan"]), "compile_s": t_scan["compile_s"]}
    rows.append(row(f"python-loop generate euler {steps}st {seconds:g}s b1", t_loop, audio_s=seconds))
    rows.append(row(f"scan generate euler {steps}st {seconds:g}s b1", t_scan, audio_s=seconds,
                    speedup_vs_python_loop=t_loop["median_s"] / t_scan["median_s"]))
    if not quick:  # streaming with the shipped model: time to first audio and sustained real-time factor
        rows += bench_stream(repeats=repeats)
    if not quick:  # the same DiT and sampler in torch, the seed's Python loop, torch vocoder
        if importlib.util.find_spec("torch") is None:
            rows.append(skipped("torch generate", TORCH_MISSING))
        else:
            from audiox_jax.bench import torch_ref  # optional torch; timed in a fresh subprocess (see there)

            for r in torch_ref.subprocess_rows(seconds=seconds, steps=steps, repeats=max(5, repeats)):
                if r["name"].startswith("torch generate"):
                    r["scan_speedup_vs_this"] = r["median_s"] / t_scan["median_s"]
                rows.append(r)
    return rows


def bench_stream(*, chunks: int = 8, steps: int = 8, repeats: int = 3, model: str = "default") -> list[dict]:
    """Streaming (``Pipeline.generate_stream``) with a shipped model, compiled beforehand:
    time to first audio, total time, sustained RTF, and the seam spectral-flux ratio."""
    pipe = load_pipeline(model)
    sampler = pipe.config.sampling.sampler
    labels = {"instrument": "organ", "pitch": "C4"}
    run = lambda: pipe.generate_stream(labels, chunks=chunks, steps=steps)  # noqa: E731
    for _ in run():  # compile
        pass
    firsts, totals, pieces = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        pieces = []
        for piece in run():
            if not pieces:
                firsts.append(time.perf_counter() - t0)
            pieces.append(piece)
        totals.append(time.perf_counter() - t0)
    y = np.concatenate(pieces, axis=1)[0]
    n, ov = pipe.sr, pipe.sr // 4
    seams = [(k + 1) * (n - ov) + ov // 2 for k in range(chunks - 1)]
    audio_s = len(y) / pipe.sr
    return [row(f"stream time to first audio ({model} model, 1 s chunks, {sampler} {steps}st)", spread(firsts)),
            row(f"stream {chunks} x 1 s chunks, 0.25 s overlap ({model} model, {sampler} {steps}st)", spread(totals),
                audio_s=audio_s, seam_flux_ratio=seam_flux_ratio(y, seams, pipe.config.audio))]
