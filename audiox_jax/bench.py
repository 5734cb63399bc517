"""`audiox-jax bench`: honest timings of every stage, with comparisons run in the same process.

Method (the same for every row):
* JAX functions are compiled ahead of time (``jit(f).lower(*args).compile()``); that
  wall time is reported as ``compile_s`` and never mixed into the steady state.
* Steady state: ``warmup`` untimed calls, then ``repeats`` timed calls, each ended by
  ``jax.block_until_ready``; we report the median and the spread (min, max).
* Real-time factor (RTF) = wall time / seconds of audio produced (< 1 is faster than
  real time); ``x_realtime`` = 1 / RTF.
* Quality columns (spectral convergence, residuals) are computed on the benchmarked
  outputs, so a faster row can not hide a worse result.

Results print as a table and are written as JSON (``--json``); ``--compare A B``
prints two JSON runs side by side.
"""

from __future__ import annotations

import datetime
import json
import platform
import statistics
import time
from typing import Callable

import numpy as np
import jax
import jax.numpy as jnp


def environment() -> dict:
    """Backend, device and versions, recorded with every run."""
    import flax
    import librosa

    dev = jax.devices()[0]
    env = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "backend": jax.default_backend(),
        "device": getattr(dev, "device_kind", str(dev)),
        "device_count": jax.device_count(),
        "jax": jax.__version__,
        "jaxlib": getattr(jax.lib, "__version__", None) or _jaxlib_version(),
        "flax": flax.__version__,
        "librosa": librosa.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
    }
    try:
        import os

        env["cpu_count"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    return env


def _jaxlib_version() -> str:
    import jaxlib

    return jaxlib.__version__


def time_calls(fn: Callable[[], object], *, repeats: int, warmup: int = 1) -> dict:
    """Median/min/max wall seconds of ``fn()`` (its result is block_until_ready'd)."""
    for _ in range(warmup):
        jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "repeats": repeats}


def time_jax(fn: Callable, *args, repeats: int, warmup: int = 1) -> tuple[dict, object]:
    """Compile ``jit(fn)`` for ``args`` ahead of time, then time the compiled call.

    Returns ``(timing, output)``; timing has ``compile_s`` besides the steady state.
    """
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    out = jax.block_until_ready(compiled(*args))
    timing = time_calls(lambda: compiled(*args), repeats=repeats, warmup=warmup)
    timing["compile_s"] = compile_s
    timing.update(_xla_cost(compiled, timing["median_s"]))
    return timing, out


def _xla_cost(compiled, seconds: float) -> dict:
    """XLA's own count of bytes accessed -> achieved GB/s, for programs without loops (XLA's
    cost analysis counts a while-loop body once, so looped programs are left out)."""
    try:
        if "while" in compiled.as_text():
            return {}
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        nbytes = float(cost.get("bytes accessed", 0.0))
    except Exception:  # noqa: BLE001 - cost analysis is optional and backend-dependent
        return {}
    return {"gb_per_s": nbytes / seconds / 1e9} if nbytes > 0 else {}


def row(name: str, timing: dict, *, audio_s: float | None = None, **extra) -> dict:
    r = {"name": name, **timing, **extra}
    if audio_s:
        r["audio_s"] = audio_s
        r["rtf"] = timing["median_s"] / audio_s
        r["x_realtime"] = audio_s / timing["median_s"]
    return r


# ---------------------------------------------------------------------- dsp


def torch_gla_row(S, phase, *, n_fft, hop, length, repeats, audio_s, sc) -> dict:
    """Time torch GLA in a fresh subprocess: in-process, XLA's CPU thread pool slows torch ~10x."""
    import importlib.util
    import subprocess
    import sys
    import tempfile

    if importlib.util.find_spec("torch") is None:
        return {"name": "griffin-lim torch", "skipped": "torch is not installed (pip install 'audiox-jax[torch]')"}
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/io.npz"
        np.savez(path, S=S, phase=phase, cfg=np.array([n_fft, hop, length, repeats]))
        code = "import sys; from audiox_jax.bench import _torch_worker; _torch_worker(sys.argv[1])"
        subprocess.run([sys.executable, "-c", code, path], check=True, timeout=600)
        res = np.load(path + ".out.npz")
        timing = {k: float(res[k]) for k in ("median_s", "min_s", "max_s")}
        timing["repeats"] = repeats
        return row(f"griffin-lim torch {res['version']} {res['device']} 32it", timing, audio_s=audio_s,
                   spectral_convergence=sc(res["y"]))


def _torch_worker(path: str) -> None:
    """Time ``torch_ref.griffin_lim`` (librosa's fast GLA with torch.stft/istft; CUDA when available)."""
    import torch

    from audiox_jax.torch_ref import griffin_lim

    d = np.load(path)
    n_fft, hop, length, repeats = (int(v) for v in d["cfg"])
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    S, phase = (torch.as_tensor(d[k], device=dev)[None] for k in ("S", "phase"))

    def fn():
        with torch.inference_mode():
            y = griffin_lim(S, phase, n_fft=n_fft, hop_length=hop, win_length=None, n_iter=32, momentum=0.99,
                            length=length)
        if dev == "cuda":
            torch.cuda.synchronize()
        return y

    t = time_calls(fn, repeats=repeats, warmup=3)
    np.savez(path + ".out.npz", y=fn()[0].cpu().numpy(), version=torch.__version__, device=dev,
             **{k: t[k] for k in ("median_s", "min_s", "max_s")})


def bench_dsp(*, seconds: float = 10.0, repeats: int = 5, batch: int = 16, quick: bool = False) -> list[dict]:
    """Log-mel, mel inversion and Griffin-Lim: JAX vs librosa (and torch GLA when installed)."""
    import inspect

    import librosa

    from audiox_jax import audio
    from audiox_jax.data.synthetic import music_like

    if quick:
        seconds, repeats, batch = 2.0, 2, 4
    cfg = audio.AudioConfig()
    sr, n_fft, hop = cfg.sr, cfg.n_fft, cfg.hop_length
    y = music_like(seconds, sr)
    ys = np.stack([np.roll(y, 997 * i) for i in range(batch)])
    rows = []

    # log-mel: one clip and a batch
    lm_ref = lambda x: librosa.power_to_db(
        librosa.feature.melspectrogram(y=x, sr=sr, n_fft=n_fft, hop_length=hop, n_mels=cfg.n_mels)
    )
    ours_lm = lambda x: audio.power_to_db(audio.mel(x, cfg))
    t_lib1 = time_calls(lambda: lm_ref(y), repeats=repeats)
    t_jax1, _ = time_jax(ours_lm, jnp.asarray(y), repeats=repeats)
    t_libB = time_calls(lambda: [lm_ref(x) for x in ys], repeats=repeats)
    t_jaxB, outB = time_jax(ours_lm, jnp.asarray(ys), repeats=repeats)
    err = float(np.max(np.abs(np.asarray(outB[0]) - lm_ref(ys[0]))))
    rows += [
        row("log-mel librosa b1", t_lib1, audio_s=seconds),
        row("log-mel jax b1", t_jax1, audio_s=seconds, speedup_vs_librosa=t_lib1["median_s"] / t_jax1["median_s"]),
        row(f"log-mel librosa b{batch}", t_libB, audio_s=seconds * batch),
        row(f"log-mel jax b{batch}", t_jaxB, audio_s=seconds * batch, max_abs_db_err=err,
            speedup_vs_librosa=t_libB["median_s"] / t_jaxB["median_s"]),
    ]

    # mel -> linear inversion (one clip)
    mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=n_fft, hop_length=hop, n_mels=cfg.n_mels)
    fb = cfg.mel_basis
    t_lib = time_calls(lambda: librosa.feature.inverse.mel_to_stft(mel, sr=sr, n_fft=n_fft), repeats=max(1, repeats // 2), warmup=0)
    S_lib = librosa.feature.inverse.mel_to_stft(mel, sr=sr, n_fft=n_fft)
    res = lambda S: float(np.linalg.norm(fb @ np.asarray(S) ** 2 - mel) / np.linalg.norm(mel))
    rows.append(row("mel-inversion librosa (L-BFGS-B NNLS)", t_lib, audio_s=seconds, rel_residual=res(S_lib)))
    for iters in (16, 32):
        t, S = time_jax(lambda m, it=iters: audio.mel_to_linear(m, fb, n_iter=it), jnp.asarray(mel), repeats=repeats)
        rows.append(row(f"mel-inversion jax FISTA {iters}it", t, audio_s=seconds, rel_residual=res(S),
                        speedup_vs_librosa=t_lib["median_s"] / t["median_s"]))

    # Griffin-Lim, 32 iterations, same magnitude and same initial phase for all
    S = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop))
    phase = (2 * np.pi * np.random.default_rng(0).random(S.shape)).astype(np.float32)
    sc = lambda out: float(audio.spectral_convergence(S, jnp.asarray(out), n_fft=n_fft, hop_length=hop))
    rng_kw = "rng" if "rng" in inspect.signature(librosa.griffinlim).parameters else "random_state"
    lib_gla = lambda: librosa.griffinlim(S, n_iter=32, hop_length=hop, n_fft=n_fft, length=len(y),
                                         **{rng_kw: np.random.default_rng(0)})
    t_lib = time_calls(lib_gla, repeats=repeats)
    rows.append(row("griffin-lim librosa 32it", t_lib, audio_s=seconds, spectral_convergence=sc(lib_gla())))
    for method in ("fast", "accelerated"):
        fn = lambda S, p, m=method: audio.griffin_lim(S, n_fft=n_fft, hop_length=hop, n_iter=32, init_phase=p,
                                                      length=len(y), method=m)
        t, out = time_jax(fn, jnp.asarray(S), jnp.asarray(phase), repeats=repeats)
        rows.append(row(f"griffin-lim jax {method} 32it", t, audio_s=seconds, spectral_convergence=sc(out),
                        speedup_vs_librosa=t_lib["median_s"] / t["median_s"]))
    tB, _ = time_jax(lambda S, p: audio.griffin_lim(S, n_fft=n_fft, hop_length=hop, n_iter=32, init_phase=p),
                     jnp.asarray(np.stack([S] * batch)), jnp.asarray(np.stack([phase] * batch)), repeats=max(1, repeats // 2))
    rows.append(row(f"griffin-lim jax fast 32it b{batch}", tB, audio_s=seconds * batch))
    # the floor: 32 rfft+irfft pairs over the same frames, nothing else
    X = jnp.ones((S.shape[1], S.shape[0]), jnp.complex64)
    floor = lambda X: jax.lax.scan(lambda c, _: (jnp.fft.rfft(jnp.fft.irfft(c, n=n_fft)), None), X, None, length=32)[0]
    t_floor, _ = time_jax(floor, X, repeats=repeats)
    rows.append(row("fft floor: 32 irfft+rfft pairs", t_floor, audio_s=seconds))
    for r in rows:
        if r["name"].startswith("griffin-lim jax") and f"b{batch}" not in r["name"]:
            r["x_fft_floor"] = r["median_s"] / t_floor["median_s"]
    rows.append(torch_gla_row(S, phase, n_fft=n_fft, hop=hop, length=len(y), repeats=repeats, audio_s=seconds, sc=sc))
    return rows


# ---------------------------------------------------------------------- generate


def bench_model_config(size: str = "small"):
    """A Config with a ``size`` DiT conditioned on two labels (instrument 8, pitch 49), as the default model."""
    from audiox_jax.config import load_config

    return load_config(None, [f"model.size={size}", "model.labels=[[instrument,8],[pitch,49]]"])


def random_params(config, seed: int = 0):
    """DiT params with small random weights everywhere (adaLN-Zero init is all zeros: unrealistic)."""
    from audiox_jax.models.dit import DiT

    x = jnp.zeros((1, config.model.n_mels, config.model.patch))
    cond = {"labels": jnp.zeros((1, len(config.model.labels)), jnp.int32)}
    params = jax.jit(DiT(config.model).init)(jax.random.key(seed), x, jnp.zeros((1,)), cond)["params"]
    leaves, tree = jax.tree.flatten(params)
    rng = np.random.default_rng(seed)
    return tree.unflatten([p + 0.02 * rng.standard_normal(p.shape).astype(np.float32) for p in leaves])


def python_loop_generate(params, config, stats, labels, *, seconds: float, steps: int, cfg: float):
    """The seed's style: one jitted model call (an Euler step) per step from Python, then a jitted
    vocoder. Returns ``run(key) -> audio``; the jitted pieces are compiled on its first call."""
    from audiox_jax import pipeline
    from audiox_jax.audio import frontend
    from audiox_jax.diffusion import guidance, samplers, schedules
    from audiox_jax.models.dit import null_cond

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
    from audiox_jax import pipeline
    from audiox_jax.audio.mel import MelStats
    from audiox_jax.models.dit import flops_per_forward

    if quick:
        config, stats = bench_model_config("tiny"), MelStats(kind="range")
        params, model_name = random_params(config), "tiny random"
    else:  # the shipped default model, real weights
        from audiox_jax.generator import load_pipeline

        gm = load_pipeline("default").model
        config, stats, params, model_name = gm.config, gm.stats, gm.params, "default model"
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
    grid = [("euler", 8, 2.0, 1)] if quick else [
        ("euler", 8, 10.0, 1), ("euler", 8, 2.0, 1), ("heun", 8, 10.0, 1), ("dpmpp_2m", 8, 10.0, 1),
        ("euler", 16, 10.0, 1), ("euler", 4, 10.0, 1), ("euler", 8, 2.0, 8), ("euler", 8, 1.0, 64),
    ]
    rows = []
    for sampler, steps, seconds, batch in grid:
        labels = jnp.zeros((batch, len(config.model.labels)), jnp.int32)
        fn = lambda p, k, c: pipeline.generate(p, k, c, config=config, stats=stats, seconds=seconds,
                                               sampler=sampler, steps=steps, cfg=jnp.float32(3.0)).audio
        t, _ = time_jax(fn, params, jax.random.key(0), {"labels": labels}, repeats=repeats)
        _, _, model_frames = pipeline.shapes(config, seconds)
        n = pipeline.nfe(config, sampler, steps)
        flops = n * flops_per_forward(config.model, model_frames, batch=2 * batch)  # cond + uncond rows
        rows.append(row(f"generate {sampler} {steps}st {seconds:g}s b{batch} (cfg, {model_name})", t, audio_s=seconds * batch,
                        nfe=n, params_m=n_params / 1e6, model_gflops=flops / 1e9,
                        model_gflop_per_s=flops / 1e9 / t["median_s"]))
    # vocoder alone, to show where the time goes
    seconds = 2.0 if quick else 10.0
    samples, frames, _ = pipeline.shapes(config, seconds)
    lm = jnp.full((1, config.audio.n_mels, frames), -4.0)
    from audiox_jax.audio import frontend

    t, _ = time_jax(lambda lm: frontend.log_mel_to_audio(lm, config.audio, length=samples), lm, repeats=repeats)
    rows.append(row(f"vocoder only (nnls {config.audio.nnls_iters} + gla {config.audio.gla_iters}) {seconds:g}s", t, audio_s=seconds))
    # one program vs the seed's Python loop, same sampler (euler), steps and guidance
    steps = 8
    labels = jnp.zeros((1, len(config.model.labels)), jnp.int32)
    loop = python_loop_generate(params, config, stats, labels, seconds=seconds, steps=steps, cfg=3.0)
    fn = lambda p, k, c: pipeline.generate(p, k, c, config=config, stats=stats, seconds=seconds, sampler="euler",
                                           steps=steps, cfg=jnp.float32(3.0)).audio
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
    stat = lambda ts: {"median_s": statistics.median(ts), "min_s": min(ts), "max_s": max(ts), "repeats": len(ts)}
    t_loop, t_scan = stat(times["loop"]), {**stat(times["scan"]), "compile_s": t_scan["compile_s"]}
    rows.append(row(f"python-loop generate euler {steps}st {seconds:g}s b1", t_loop, audio_s=seconds))
    rows.append(row(f"scan generate euler {steps}st {seconds:g}s b1", t_scan, audio_s=seconds,
                    speedup_vs_python_loop=t_loop["median_s"] / t_scan["median_s"]))
    if not quick:  # streaming with the shipped model: time to first audio and sustained real-time factor
        rows += bench_stream(repeats=repeats)
    if not quick:  # the same DiT and sampler in torch, the seed's Python loop, torch vocoder
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            rows.append({"name": "torch generate", "skipped": "torch is not installed (pip install 'audiox-jax[torch]')"})
        else:
            from audiox_jax import torch_ref  # timed in a fresh subprocess: XLA's thread pool slows torch in-process

            for r in torch_ref.subprocess_rows(seconds=seconds, steps=steps, repeats=max(5, repeats)):
                if r["name"].startswith("torch generate"):
                    r["scan_speedup_vs_this"] = r["median_s"] / t_scan["median_s"]
                rows.append(r)
    return rows


def bench_stream(*, chunks: int = 8, steps: int = 8, repeats: int = 3, model: str = "default") -> list[dict]:
    """Streaming (``Pipeline.generate_stream``) with a shipped model, compiled beforehand:
    time to first audio, total time, sustained RTF, and the seam spectral-flux ratio."""
    from audiox_jax.evaluation.metrics import seam_flux_ratio
    from audiox_jax.generator import load_pipeline

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
    stat = lambda ts: {"median_s": statistics.median(ts), "min_s": min(ts), "max_s": max(ts), "repeats": len(ts)}  # noqa: E731
    return [row(f"stream time to first audio ({model} model, 1 s chunks, {sampler} {steps}st)", stat(firsts)),
            row(f"stream {chunks} x 1 s chunks, 0.25 s overlap ({model} model, {sampler} {steps}st)", stat(totals),
                audio_s=audio_s, seam_flux_ratio=seam_flux_ratio(y, seams, pipe.config.audio))]


def bench_realtime(*, quick: bool = False, repeats: int = 5) -> list[dict]:
    """Few-step latency: a 2 s note (batch 1, guided) from the fast model (and the default model for
    comparison) per step count, split into the model's share (``generate(vocode=False)``: the
    sampler up to the log-mel) and the rest (vocoder: mel inversion + Griffin-Lim); then
    streaming with the fast model (time to first audio, sustained RTF)."""
    from audiox_jax import pipeline
    from audiox_jax.generator import load_pipeline, resolve_model

    rows = []
    models = ["fast", "default"] if not quick else ["fast"]
    for name in models:
        try:
            resolve_model(name)
        except Exception as err:  # noqa: BLE001 - a missing built-in model is reported as a row
            rows.append({"name": f"realtime {name} model", "skipped": str(err)})
            continue
        gm = load_pipeline(name).model
        config, sampler = gm.config, gm.config.sampling.sampler
        labels = {"labels": jnp.zeros((1, len(config.model.labels)), jnp.int32)}
        seconds, cfg = 2.0, config.sampling.cfg  # the model's own guidance setting (the fast model: none)
        guide = "no cfg" if pipeline.guidance_scale(cfg, config) is None else f"cfg {cfg:g}"
        for steps in ((1, 2) if quick else (1, 2, 4, 8)):
            def fn(p, k, c, vocode):
                out = pipeline.generate(p, k, c, config=config, stats=gm.stats, seconds=seconds, sampler=sampler,
                                        steps=steps, cfg=pipeline.guidance_scale(cfg, config), vocode=vocode)
                return out.audio if vocode else out.log_mel
            t_all, _ = time_jax(lambda p, k, c: fn(p, k, c, True), gm.params, jax.random.key(0), labels, repeats=repeats)
            t_model, _ = time_jax(lambda p, k, c: fn(p, k, c, False), gm.params, jax.random.key(0), labels,
                                  repeats=repeats)
            rows.append(row(f"{name} model {sampler} {steps}st {seconds:g}s note b1 ({guide}), total", t_all, audio_s=seconds,
                            nfe=pipeline.nfe(config, sampler, steps), model_ms=1e3 * t_model["median_s"],
                            vocoder_ms=1e3 * (t_all["median_s"] - t_model["median_s"]),
                            model_share=t_model["median_s"] / t_all["median_s"]))
        if name == "fast" and not quick:
            rows += bench_stream(steps=config.sampling.steps, repeats=3, model="fast")
    return rows


# ---------------------------------------------------------------------- train

# Dense peak FLOP/s per device and compute dtype, from vendor data sheets (no sparsity).
PEAK_FLOPS = {
    "H100": {"bfloat16": 989e12, "float32": 494e12},  # SXM; float32 matmuls run as TF32
    "H200": {"bfloat16": 989e12, "float32": 494e12},
    "A100": {"bfloat16": 312e12, "float32": 156e12},
}


def measured_matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of a large float32 matmul on the default device: the peak used for MFU on CPUs."""
    a = jnp.ones((n, n), jnp.float32)
    t, _ = time_jax(lambda a: a @ a, a, repeats=repeats)
    return 2 * n**3 / t["median_s"]


def device_peak(dtype: str) -> tuple[float, str]:
    kind = getattr(jax.devices()[0], "device_kind", "")
    for name, peaks in PEAK_FLOPS.items():
        if name.lower() in kind.lower():
            return peaks[dtype], f"{name} data sheet"
    return measured_matmul_peak(), "measured f32 matmul"


def bench_train(*, quick: bool = False, repeats: int = 5) -> list[dict]:
    """Train-step time, examples/s, tokens/s, achieved FLOP/s and MFU (analytic DiT FLOPs x 3)."""
    from audiox_jax.config import load_config
    from audiox_jax.models.dit import flops_per_forward
    from audiox_jax.training.loop import fresh_state, make_layout
    from audiox_jax.training.sharding import make_mesh
    from audiox_jax.training.state import make_ema, make_optimizer

    on_gpu = jax.default_backend() == "gpu"
    if quick:
        grid = [("tiny", ["model.size=tiny"], 8)]
    elif on_gpu:
        grid = [("base bf16", ["model.size=base", "model.dtype=bfloat16"], 64),
                ("base bf16 cudnn", ["model.size=base", "model.dtype=bfloat16", "model.attn_impl=cudnn"], 64),
                ("small f32", ["model.size=small"], 64)]
    else:
        grid = [("default (dim 192, 6 blocks)", ["model.dim=192", "model.depth=6", "model.heads=3"], 32),
                ("small", ["model.size=small"], 32)]
    rows = []
    for name, overrides, batch in grid:
        config = load_config(None, overrides + [f"data.batch_size={batch}", "model.labels=[[instrument,6],[pitch,37]]",
                                                "train.warmup_steps=1", "train.ema_warmup=1"])
        mesh = make_mesh()
        optimizer, ema_fn = make_optimizer(config.train), make_ema(config.train)
        layout = make_layout(config, optimizer, ema_fn, mesh)
        frames = 88  # 1 s at 22.05 kHz, hop 256, rounded up to the patch
        rng = np.random.default_rng(0)
        host = {"x0": rng.standard_normal((batch, config.model.n_mels, frames)).astype(np.float32),
                "labels": np.zeros((batch, 2), np.int32)}
        b = layout.put(host)
        state = fresh_state(config, layout, optimizer, ema_fn)
        t0 = time.perf_counter()
        state, metrics = layout.step(state, b)
        jax.block_until_ready(metrics)
        compile_s = time.perf_counter() - t0
        holder = {"state": state}

        def one():
            holder["state"], m = layout.step(holder["state"], b)
            return m

        t = time_calls(one, repeats=repeats, warmup=2)
        t["compile_s"] = compile_s
        flops = 3 * flops_per_forward(config.model, frames, batch=batch)
        peak, source = device_peak(config.model.dtype)
        tokens = batch * frames // config.model.patch
        n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(holder["state"].params))
        rows.append(row(f"train step {name} b{batch} 1s clips", t, params_m=n_params / 1e6,
                        examples_per_s=batch / t["median_s"], tokens_per_s=tokens / t["median_s"],
                        tflop_per_s=flops / t["median_s"] / 1e12, mfu=flops / t["median_s"] / peak, peak_source=source))
    return rows


# ---------------------------------------------------------------------- output


COLUMNS = ("median_s", "min_s", "max_s", "compile_s", "rtf", "x_realtime", "speedup_vs_librosa", "gb_per_s")


def format_table(rows: list[dict]) -> str:
    extra_keys = []
    for r in rows:
        for k in r:
            if k not in ("name", "repeats", "audio_s", "skipped", "suite", *COLUMNS) and k not in extra_keys:
                extra_keys.append(k)
    cols = [c for c in COLUMNS if any(c in r for r in rows)] + extra_keys
    width = max(len(r["name"]) for r in rows) + 2
    cw = {c: max([len(c) + 2, 11] + [len(_fmt(r.get(c))) + 2 for r in rows]) for c in cols}
    lines = ["".ljust(width) + "".join(c.rjust(cw[c]) for c in cols)]
    for r in rows:
        if "skipped" in r:
            lines.append(r["name"].ljust(width) + "skipped: " + r["skipped"])
            continue
        lines.append(r["name"].ljust(width) + "".join(_fmt(r.get(c)).rjust(cw[c]) for c in cols))
    return "\n".join(lines)


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    return str(v)


def compare(path_a: str, path_b: str) -> str:
    """Two JSON runs side by side: median seconds of each row and the ratio B/A."""
    a, b = (json.load(open(p)) for p in (path_a, path_b))
    out = [f"A: {path_a}  [{a['env']['device']}, {a['env']['backend']}, jax {a['env']['jax']}, {a['env']['date']}]",
           f"B: {path_b}  [{b['env']['device']}, {b['env']['backend']}, jax {b['env']['jax']}, {b['env']['date']}]"]
    rows_b = {r["name"]: r for r in b["rows"]}
    width = max(len(r["name"]) for r in a["rows"]) + 2
    out.append("".ljust(width) + "A median_s".rjust(14) + "B median_s".rjust(14) + "B/A".rjust(10))
    for r in a["rows"]:
        rb = rows_b.get(r["name"])
        if "median_s" not in r or rb is None or "median_s" not in rb:
            continue
        out.append(r["name"].ljust(width) + _fmt(r["median_s"]).rjust(14) + _fmt(rb["median_s"]).rjust(14)
                   + _fmt(rb["median_s"] / r["median_s"]).rjust(10))
    return "\n".join(out)


SUITES = {"dsp": bench_dsp, "generate": bench_generate, "train": bench_train, "realtime": bench_realtime}


def run(suites: list[str], *, quick: bool = False, json_path: str | None = None, **kwargs) -> dict:
    env = environment()
    rows = []
    for name in suites:
        rows += [{**r, "suite": name} for r in SUITES[name](quick=quick, **kwargs)]
    result = {"env": env, "quick": quick, "rows": rows}
    print(f"# {env['date']}  {env['backend']} / {env['device']}  jax {env['jax']}  librosa {env['librosa']}")
    print(format_table(rows))
    if json_path:
        with open(json_path, "w") as f:
            json.dump(result, f, indent=1)
        print(f"wrote {json_path}")
    return result
