"""The `audiox-jax` command: generate | eval | render-notes | prepare | train | vocode | bench.

Every error audiox-jax raises on purpose (AudioxError) is printed as one line naming
the input and the fix, with exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import NamedTuple

from audiox_jax.errors import AudioxError, ParamError


def cmd_vocode(args) -> None:
    """Front-end demo: audio -> log-mel -> NNLS inversion -> Griffin-Lim -> audio, plus a mel PNG."""
    import jax
    import numpy as np

    from audiox_jax import audio
    from audiox_jax.plot import save_mel_png

    cfg = audio.AudioConfig(gla_iters=args.gla_iters, nnls_iters=args.nnls_iters, gla_method=args.method)
    if args.input:
        y, _ = audio.load(args.input, cfg.sr, max_seconds=args.max_seconds)
        source = args.input
    else:
        from audiox_jax.data.synthetic import music_like

        y, source = music_like(5.0, cfg.sr), "built-in synthetic test signal (5 s)"
    lm = audio.log_mel(y, cfg)
    fn = jax.jit(lambda lm, key: audio.log_mel_to_audio(lm, cfg, key=key, length=len(y)))
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(lm, jax.random.key(args.seed)))
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = np.asarray(jax.block_until_ready(fn(lm, jax.random.key(args.seed))))
    steady = time.perf_counter() - t0
    S = np.abs(np.asarray(audio.stft(y, cfg.n_fft, cfg.hop_length)))
    sc = float(audio.spectral_convergence(S, out, n_fft=cfg.n_fft, hop_length=cfg.hop_length))
    audio.save(args.out, out, cfg.sr)
    png = args.png or args.out.rsplit(".", 1)[0] + ".png"
    save_mel_png(lm, png, sr=cfg.sr, hop_length=cfg.hop_length, title=f"log-mel of {source}")
    seconds = len(y) / cfg.sr
    print(f"input: {source}, {seconds:.2f} s at {cfg.sr} Hz")
    print(f"wrote {args.out} and {png}")
    print(f"mel -> waveform: first call {first:.2f} s (with compile), then {steady * 1000:.1f} ms "
          f"(RTF {steady / seconds:.4f}); spectral convergence vs the input {sc:.3f}")


def cmd_bench(args) -> None:
    from audiox_jax import bench

    if args.compare:
        print(bench.compare(*args.compare))
        return
    suites = list(bench.SUITES) if args.suite == "all" else [args.suite]
    bench.run(suites, quick=args.quick, json_path=args.json)


def cmd_prepare(args) -> None:
    """A folder of audio -> a log-mel cache, with the config's audio settings and clip length."""
    from audiox_jax.config import load_config
    from audiox_jax.data.prepare import prepare

    config = load_config(args.config, args.set or ())
    if args.labels_csv is None and len(config.data.labels) > 1:
        raise ParamError(f"data.labels={list(config.data.labels)} names {len(config.data.labels)} labels, but without "
                         "--labels-csv labels come from sub-folder names (one label); pass --labels-csv "
                         "path,label_a,... or --set data.labels=[NAME]")
    keep_whole = args.keep_whole or config.data.whole_files
    max_seconds = args.max_seconds if args.max_seconds is not None else config.data.max_seconds
    if keep_whole and max_seconds is None:
        raise ParamError("whole files (--keep-whole or data.whole_files) are padded to a common length: "
                         "pass --max-seconds S or set data.max_seconds=S")
    manifest = prepare(
        args.audio, args.out, audio_cfg=config.audio, clip_seconds=config.data.clip_seconds,
        keep_whole=keep_whole, max_seconds=max_seconds, labels_csv=args.labels_csv,
        label_names=tuple(config.data.labels) or None, stats_kind=config.data.stats,
        min_rms_db=args.min_rms_db, progress=not args.no_progress, overwrite=args.overwrite,
    )
    used = sum(f.status == "ok" for f in manifest.files)
    print(f"wrote {args.out}: {manifest.n_items} items of {manifest.frames} frames from {used} of "
          f"{len(manifest.files)} files (decoded {len(manifest.processed)}, reused {len(manifest.reused)}); "
          f"labels {dict((k, len(v)) for k, v in manifest.vocab.items())}; skipped files are listed in "
          f"{args.out}/report.txt")
    sets = "".join(f' --set "{item}"' for item in args.set or ())
    print(f"train on it: audiox-jax train --config {args.config}{sets} --set data.cache={args.out} --workdir WORKDIR")


def cmd_train(args) -> None:
    """Train (or resume, if the workdir holds a checkpoint) on the config's data."""
    from audiox_jax.config import load_config
    from audiox_jax.training.loop import MODEL_DIR, train
    from audiox_jax.training.metrics import METRICS

    config = load_config(args.config, args.set or ())
    result = train(config, args.workdir, progress=not args.no_progress)
    resumed = f" (resumed from the checkpoint at step {result.start})" if result.start else ""
    print(f"trained steps {result.start + 1}..{result.config.train.steps}{resumed} in {args.workdir}: "
          f"metrics in {METRICS}, checkpoints in checkpoints/, model for generation in {MODEL_DIR}/")


def _parse_labels(args) -> dict:
    labels = {}
    for item in args.label or ():
        if "=" not in item:
            raise ParamError(f"--label {item!r} must look like key=value, e.g. --label instrument=piano")
        k, v = item.split("=", 1)
        labels[k.strip()] = v.strip()
    if args.instrument is not None:
        labels["instrument"] = args.instrument
    if args.pitch is not None:
        labels["pitch"] = args.pitch
    return labels


def _keep_mask(text: str, config, spec):
    """'0:1.5,3:4' (seconds to keep from --init-audio) -> f32[model_frames] mask for ``spec``."""
    import numpy as np

    mask = np.zeros(spec.model_frames, np.float32)
    fps = config.audio.sr / config.audio.hop_length
    seconds = spec.samples / config.audio.sr
    for part in text.split(","):
        try:
            a, b = (float(v) for v in part.split(":"))
        except ValueError:
            raise ParamError(f"--keep {text!r}: each range must be START:END in seconds, e.g. --keep 0:1.5") from None
        if not (np.isfinite(a) and np.isfinite(b) and 0 <= a < b):
            raise ParamError(f"--keep {text!r}: range {part!r} must have 0 <= START < END (finite seconds), "
                             "e.g. --keep 0:1.5")
        if a >= seconds:
            raise ParamError(f"--keep {text!r}: range {part!r} starts after the {seconds:g} s generated; "
                             "keep a range inside --seconds")
        mask[int(np.ceil(a * fps)) : int(np.floor(b * fps)) + 1] = 1.0
    return mask


OUT_EXTENSIONS = (".wav", ".flac")
NORMALIZE = ("limit", "peak", "none")
PEAK_DBFS = -1.0


def _check_out(path: str) -> None:
    """Fail before generating when ``--out`` cannot be written (a folder, an unknown extension)."""
    if os.path.isdir(path):
        raise ParamError(f"--out {path!r} is a folder; give a file name, e.g. --out {os.path.join(path, 'note.wav')}")
    ext = os.path.splitext(path)[1].lower()
    if ext not in OUT_EXTENSIONS:
        raise ParamError(f"--out {path!r}: unknown audio extension {ext or '(none)'!r}; use one of {OUT_EXTENSIONS}")
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as err:
        raise ParamError(f"--out {path!r}: cannot create its folder {parent!r} ({err.strerror}); pick a writable path") from None
    if not os.access(parent, os.W_OK):
        raise ParamError(f"--out {path!r}: the folder {parent!r} is not writable; pick a writable path")


MAX_STEPS = 1000  # samplers converge within ~100 steps; the shipped models use 2 and 16
CPU_TFLOP = 2.0  # network work refused on CPU without --force: over a minute at the rates below
CPU_GFLOPS = (20.0, 50.0)  # the default model's forward on 2 busy CPU cores: 20 GFLOP/s at 60 s, 50 at 10 s


class Cost(NamedTuple):
    """Estimated cost of one generate call: ``nfe`` network evaluations of ``rows`` examples
    (2 x batch with guidance) over ``tokens`` tokens each; ``tflop`` their matmul work;
    ``memory`` bytes of the attention matrices, the peak at long lengths."""

    nfe: int
    rows: int
    tokens: int
    tflop: float
    memory: float


def request_cost(config, *, seconds: float, batch: int, steps: int, sampler: str, cfg: float) -> Cost:
    """Estimate a request before compiling it (``config``: the model's :class:`Config`).

    Work: ``models.dit.flops_per_forward`` x the sampler's network evaluations. Memory: XLA
    materialises each attention's scores and probabilities, 2 x rows x heads x tokens^2 float32
    (f32 = 4 bytes); at 600 s the default model's forward needs 8.2 GB by XLA's own memory
    analysis, this estimate 8.0 GB. Everything else (params, activations, the vocoder) is far
    smaller at the lengths where this matters.
    """
    from audiox_jax.diffusion.samplers import nfe
    from audiox_jax.models.dit import flops_per_forward

    mc = config.model
    frames = config.audio.frames(int(round(seconds * config.audio.sr)))
    frames = -(-frames // mc.patch) * mc.patch  # the model pads to whole patches
    rows = batch * (1 if cfg == 1.0 else 2)
    try:
        calls = nfe(sampler, steps)
    except ParamError:  # an unknown sampler: the pipeline names it; count one call per step
        calls = steps
    tokens = frames // mc.patch
    tflop = calls * flops_per_forward(mc, frames, batch=rows) / 1e12
    return Cost(calls, rows, tokens, tflop, 2.0 * rows * mc.heads * tokens**2 * 4)


def _available_memory() -> float | None:
    """Bytes free for a computation on the default JAX device (None when it cannot be told)."""
    import jax

    dev = jax.local_devices()[0]
    if dev.platform != "cpu":
        stats = dev.memory_stats() or {}
        if "bytes_limit" in stats:
            return float(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
        return None
    try:
        with open("/proc/meminfo") as f:
            return next(float(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None


def _check_request(config, args) -> None:
    """Refuse before generating a request that would exhaust memory or, on CPU, take minutes, naming
    the estimate and the fix; ``--force`` runs it anyway. Caps: ``--steps`` <= MAX_STEPS; attention
    memory within the device's free memory; on CPU, at most CPU_TFLOP of network work per call."""
    import math

    import jax

    if args.force or args.seconds is not None and not (math.isfinite(args.seconds) and args.seconds > 0):
        return  # a bad --seconds is named by the pipeline
    steps = args.steps if args.steps is not None else config.sampling.steps
    if steps > MAX_STEPS:
        raise ParamError(f"--steps {steps} is more than {MAX_STEPS}: every step is a network evaluation and the "
                         f"samplers converge within ~100 (this model's default is {config.sampling.steps}); "
                         "lower --steps, or pass --force to run it anyway")
    from audiox_jax.pipeline import default_seconds

    seconds = args.seconds if args.seconds is not None else default_seconds(config)
    batch = 1 if args.stream else args.batch
    cost = request_cost(config, seconds=seconds, batch=batch, steps=steps,
                        sampler=args.sampler or config.sampling.sampler,
                        cfg=args.cfg if args.cfg is not None else config.sampling.cfg)
    what = (f"--seconds {seconds:g} x --batch {batch} ({cost.nfe} network evaluations of {cost.rows} x "
            f"{cost.tokens:,} tokens: ~{cost.tflop:.3g} TFLOP, ~{cost.memory / 1e9:.3g} GB of attention memory)")
    fix = (f"make long audio in pieces with --stream OUT --seconds 10 --chunks {math.ceil(seconds / 10)}, "
           "generate fewer clips per call (--batch), or pass --force to run it anyway")
    free = _available_memory()
    if free is not None and cost.memory > 0.9 * free:
        raise ParamError(f"{what} needs more memory than the {free / 1e9:.3g} GB free on "
                         f"{jax.default_backend().upper()}; {fix}")
    if jax.default_backend() == "cpu" and cost.tflop > CPU_TFLOP:
        lo, hi = (cost.tflop * 1e3 / g / 60 for g in CPU_GFLOPS[::-1])
        raise ParamError(f"{what} would take about {lo:.2g}-{hi:.2g} min on CPU (at {CPU_GFLOPS[0]:g}-"
                         f"{CPU_GFLOPS[1]:g} GFLOP/s; the cap is {CPU_TFLOP:g} TFLOP per call); {fix}")


def loudness_policy(audio, mode: str) -> tuple[object, float, str]:
    """Apply ``--normalize`` to f32[B, samples]: ``(audio, peak before, what was done)``.

    "limit" (default): scale a clip down to -1 dBFS peak only when it would clip (peak > 1);
    "peak": every clip to -1 dBFS peak; "none": as generated (16-bit PCM then clips, with a warning).
    """
    import numpy as np

    peak = np.max(np.abs(audio), axis=-1, keepdims=True)  # [B, 1]
    target = 10 ** (PEAK_DBFS / 20)
    worst = float(peak.max())
    if mode == "peak" or (mode == "limit" and worst > 1.0):
        scale = np.where(peak > 0, target / np.maximum(peak, 1e-12), 1.0)
        if mode == "limit":
            scale = np.where(peak > 1.0, scale, 1.0)
        return (audio * scale).astype(np.float32), worst, f"scaled to {PEAK_DBFS:g} dBFS peak"
    if worst > 1.0:
        clipped = float(np.mean(np.abs(audio) > 1.0))
        print(f"warning: peak {20 * np.log10(worst):+.1f} dBFS: {100 * clipped:.1f} % of the samples clip in the "
              "16-bit file; use --normalize limit or peak", file=sys.stderr)
    return audio, worst, "as generated"


def _stream(pipe, labels, args) -> None:
    """--stream OUT|-: chunks written as they are made (WAV to stdout with '-')."""
    from audiox_jax.audio.io import WavStream

    to_stdout = args.stream == "-"
    f = sys.stdout.buffer if to_stdout else open(args.stream, "wb")
    log = sys.stderr if to_stdout else sys.stdout
    writer, t0, first, total = WavStream(f, pipe.sr), time.perf_counter(), None, 0
    try:
        for piece in pipe.generate_stream(labels, chunks=args.chunks, chunk_seconds=args.seconds,
                                          overlap_seconds=args.overlap, seed=args.seed, sampler=args.sampler,
                                          steps=args.steps, schedule=args.schedule, cfg=args.cfg):
            writer.write(piece[0])
            total += piece.shape[1]
            first = first if first is not None else time.perf_counter() - t0
        writer.close()
    except BrokenPipeError:  # the reader went away (`| head`): end the stream quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return
    finally:
        if not to_stdout:
            f.close()
    wall = time.perf_counter() - t0
    print(f"streamed {total / pipe.sr:.2f} s in {args.chunks} chunks to {args.stream}: first audio after "
          f"{first:.3f} s, total {wall:.3f} s (RTF {wall / (total / pipe.sr):.3f}; the first chunk includes "
          "compilation on a cold cache)", file=log)


def cmd_generate(args) -> None:
    """Generate audio with a trained model; write wav(s) and a mel PNG; print the real-time factor."""
    from audiox_jax import audio
    from audiox_jax.generator import enable_compilation_cache, load_pipeline
    from audiox_jax.plot import save_mel_png

    if not args.no_cache:
        enable_compilation_cache()
    import math

    if args.batch < 1:
        raise ParamError(f"--batch {args.batch} must be >= 1")
    if args.cfg is not None and not math.isfinite(args.cfg):
        raise ParamError(f"--cfg {args.cfg} must be a finite number (1 = no guidance, 2-4 usual)")
    if args.strength is not None and not 0.0 <= args.strength <= 1.0:
        raise ParamError(f"--strength {args.strength} must be in [0, 1] (0 = the input, 1 = from pure noise)")
    edits = [f for f, on in (("--continue", args.continue_audio), ("--keep", bool(args.keep)),
                             ("--strength", args.strength is not None)) if on]
    if len(edits) > 1:
        raise ParamError(f"{' and '.join(edits)} are different edits of --init-audio; use one: --continue "
                         "(the default) continues it, --keep inpaints around the kept ranges, --strength varies all of it")
    if edits and not args.init_audio:
        raise ParamError(f"{edits[0]} needs --init-audio FILE (the audio to edit)")
    if not args.stream:
        _check_out(args.out)
    pipe = load_pipeline(args.checkpoint or args.model)
    _check_request(pipe.config, args)
    labels = _parse_labels(args)
    if args.stream:
        return _stream(pipe, labels, args)
    init = None
    if args.init_audio:
        init = audio.load(args.init_audio, pipe.sr)[0]
        if args.keep and args.seconds is None:  # the documented form: keep parts of the input, as long as the input
            args.seconds = len(init) / pipe.sr
    spec = pipe.spec(args.seconds, batch=args.batch, sampler=args.sampler, steps=args.steps, schedule=args.schedule)
    prompt = None
    if init is not None:
        mask = _keep_mask(args.keep, pipe.config, spec) if args.keep else None
        prompt = pipe.prompt(spec, init, mask=mask, strength=args.strength,
                             continue_audio=mask is None and args.strength is None)
    res = pipe.generate(labels, spec=spec, seed=args.seed, cfg=args.cfg, prompt=prompt, length=args.length)
    stem, ext = (args.out.rsplit(".", 1) + ["wav"])[:2] if "." in os.path.basename(args.out) else (args.out, "wav")
    paths = [args.out] if len(res.audio) == 1 else [f"{stem}_{i}.{ext}" for i in range(len(res.audio))]
    wave, peak, done = loudness_policy(res.audio, args.normalize)
    for path, y in zip(paths, wave):
        audio.save(path, y, res.sr)
    png = stem + ".png"
    desc = ", ".join(f"{k}={v}" for k, v in res.labels[0].items())
    save_mel_png(res.log_mel, png, sr=res.sr, hop_length=pipe.config.audio.hop_length, title=desc)
    print(f"wrote {', '.join(paths)} and {png} ({desc}; {res.seconds:g} s x {len(res.audio)}; "
          f"{res.nfe} network evaluations; peak {20 * math.log10(max(peak, 1e-12)):+.1f} dBFS, {done})")
    print(f"time {res.wall_s:.3f} s, real-time factor {res.rtf:.4f} ({1 / max(res.rtf, 1e-9):.1f}x real time"
          f"{'; includes compilation on a cold cache' if res.wall_s > 1.0 else ''})")


def _int_list(flag: str, text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ParamError(f"{flag} {text!r} must be a comma-separated list of integers") from None


def cmd_eval(args) -> None:
    """Generate a note per label combination and report pitch/probe accuracy and Frechet distances."""
    import json

    from audiox_jax.evaluation.model_eval import evaluate_model, flow_map_error, plot_sweep, sweep_model
    from audiox_jax.evaluation.report import format_report
    from audiox_jax.generator import load_pipeline

    name = args.checkpoint or args.model
    model = load_pipeline(name).model
    if args.flow_map:
        steps = _int_list("--sweep-steps", args.sweep_steps or "1,2,4")
        result = flow_map_error(model, load_pipeline(args.flow_map).model, names=(name, args.flow_map), steps=steps,
                                seed=args.seed, sampler=args.sampler)
        print(f"{result['model']} ({result['sampler']}) vs {args.flow_map}'s {result['reference_steps']}-step ODE solution, "
              f"RMS log-mel error: " + ", ".join(f"{n} steps {v:.4f}" for n, v in result["rms"].items()))
        if args.out:
            with open(args.out, "w") as f:
                json.dump(result, f, indent=1)
        return
    if not args.data:
        raise ParamError("audiox-jax eval needs --data CACHE_OR_NOTES (a prepared cache or a render-notes folder)")
    if args.sweep:
        steps = _int_list("--sweep-steps", args.sweep_steps or "1,2,4,8,16,32")
        result = sweep_model(model, args.data, name=name, samplers=tuple(args.samplers.split(",")),
                             steps=steps, max_combos=args.max_combos, probes_dir=args.probes, seed=args.seed,
                             cfg=args.cfg, judge=not args.no_judge, progress=not args.no_progress,
                             seconds=args.seconds)
        out = args.out or "sweep.json"
        with open(out, "w") as f:
            json.dump(result, f, indent=1)
        png = plot_sweep(result, args.plot or out.rsplit(".", 1)[0] + ".png")
        print(f"wrote {out} and {png}")
        return
    report = evaluate_model(model, args.data, name=name, probes_dir=args.probes,
                            samples_per_combo=args.samples_per_combo, batch_size=args.batch, seed=args.seed,
                            sampler=args.sampler, steps=args.steps, cfg=args.cfg, schedule=args.schedule,
                            judge=not args.no_judge, progress=not args.no_progress, seconds=args.seconds)
    print(format_report(report))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)
        print(f"wrote {args.out}")


def cmd_render_notes(args) -> None:
    from audiox_jax.data import notes

    notes.run(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="audiox-jax", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser("vocode", help="round-trip audio through log-mel -> inversion -> Griffin-Lim")
    v.add_argument("--input", "-i", help="audio file to read (default: a built-in synthetic signal)")
    v.add_argument("--out", "-o", default="vocoded.wav", help="output wav (default: vocoded.wav)")
    v.add_argument("--png", help="mel PNG path (default: next to --out)")
    v.add_argument("--max-seconds", type=float, default=30.0, help="read at most this much of --input")
    v.add_argument("--gla-iters", type=int, default=32)
    v.add_argument("--nnls-iters", type=int, default=32)
    v.add_argument("--method", choices=("fast", "accelerated"), default="fast", help="Griffin-Lim variant")
    v.add_argument("--seed", type=int, default=0, help="seed of the initial phase")
    v.set_defaults(func=cmd_vocode)

    b = sub.add_parser("bench", help="time every stage against librosa/torch; see BENCHMARKS.md")
    b.add_argument("suite", nargs="?", default="all", choices=("dsp", "generate", "train", "realtime", "all"))
    b.add_argument("--quick", action="store_true", help="small sizes and few repeats (CI smoke test)")
    b.add_argument("--json", help="also write the results to this JSON file")
    b.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"), help="print two saved runs side by side")
    b.set_defaults(func=cmd_bench)

    pr = sub.add_parser("prepare", help="turn a folder of audio into a log-mel cache for training")
    pr.add_argument("--audio", required=True, help="folder of audio files (searched recursively)")
    pr.add_argument("--config", required=True, help="YAML config: its audio settings, data.clip_seconds, "
                    "data.labels and data.stats are used")
    pr.add_argument("--out", required=True, help="cache folder to write (re-runs are incremental)")
    pr.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a config value")
    pr.add_argument("--labels-csv", help="CSV 'path,label_a,...' (default: labels from sub-folder names)")
    pr.add_argument("--keep-whole", action="store_true", help="one item per file, padded to --max-seconds "
                    "(default: data.whole_files)")
    pr.add_argument("--max-seconds", type=float, help="read at most this many seconds per file "
                    "(default: data.max_seconds)")
    pr.add_argument("--min-rms-db", type=float, help="drop clips quieter than this (dBFS, e.g. -60)")
    pr.add_argument("--overwrite", action="store_true", help="rebuild a cache made with other settings")
    pr.add_argument("--no-progress", action="store_true", help="no progress bar")
    pr.set_defaults(func=cmd_prepare)

    g = sub.add_parser("generate", help="generate audio with the shipped model or a trained one")
    g.add_argument("--instrument", help="instrument label, e.g. piano (see the model card for the list)")
    g.add_argument("--pitch", help="pitch label as a note name (C4, F#3) or MIDI number")
    g.add_argument("--label", action="append", metavar="KEY=VALUE", help="any label by name (repeatable)")
    g.add_argument("--seconds", type=float, help="length of each clip (default: the model's training clip length)")
    g.add_argument("--normalize", choices=NORMALIZE, default="limit",
                   help="loudness of the written file: limit (default: scale to -1 dBFS peak only if it would "
                   "clip), peak (always -1 dBFS peak), none (as generated; warns when it clips)")
    g.add_argument("--length", type=float, help="length-conditioned models: seconds of sound, then silence until "
                   "--seconds (default: the typical length of a training sound with these labels)")
    g.add_argument("--out", "-o", default="out.wav", help="output wav; with --batch N, out_0.wav ... (default out.wav)")
    g.add_argument("--model", default="default", help="built-in model name: default or fast")
    g.add_argument("--checkpoint", help="a model folder or training workdir (overrides --model)")
    g.add_argument("--sampler", help="euler, heun, ddim, ddpm, dpmpp_2m, dpmpp_2m_sde, or fewstep for a few-step "
                   "model (default: the model's)")
    g.add_argument("--steps", type=int, help="sampler steps = network evaluations (default: the model's)")
    g.add_argument("--schedule", help="karras, exponential, logsnr_linear, uniform_t, uniform_t_end, shifted "
                   "(default: the model's)")
    g.add_argument("--cfg", type=float, help="classifier-free guidance scale (1 = none; default: the model's)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--batch", type=int, default=1, help="clips to generate in one call")
    g.add_argument("--init-audio", help="audio to continue (default), inpaint (--keep) or vary (--strength)")
    g.add_argument("--continue", dest="continue_audio", action="store_true", help="continue --init-audio")
    g.add_argument("--keep", help="with --init-audio: time ranges to keep, e.g. 0:1.5,3:4 (seconds)")
    g.add_argument("--strength", type=float, help="with --init-audio: variation strength 0..1")
    g.add_argument("--stream", metavar="OUT", help="stream chunks as they are made to a wav file, or '-' for stdout")
    g.add_argument("--chunks", type=int, default=4, help="--stream: number of chunks (default 4)")
    g.add_argument("--overlap", type=float, default=0.25, help="--stream: seconds each chunk continues (0.25)")
    g.add_argument("--no-cache", action="store_true", help="do not use the persistent compilation cache")
    g.add_argument("--force", action="store_true", help="run a request over the caps checked before generating: "
                   f"--steps > {MAX_STEPS}, attention memory beyond the free memory, over {CPU_TFLOP:g} TFLOP on CPU")
    g.set_defaults(func=cmd_generate)

    e = sub.add_parser("eval", help="measure a model: pitch accuracy, probe accuracy, Frechet distance, vocoder")
    e.add_argument("--model", default="default", help="built-in model name: default or fast")
    e.add_argument("--checkpoint", help="a model folder or training workdir (overrides --model)")
    e.add_argument("--data", help="a prepared cache or a rendered note folder (render-notes); not for --flow-map")
    e.add_argument("--probes", help="folder of probe classifiers (default: probes/ beside the cache; trained if absent)")
    e.add_argument("--samples-per-combo", type=int, default=1, help="notes generated per label combination")
    e.add_argument("--batch", type=int, default=32, help="notes per generate call")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--sampler")
    e.add_argument("--steps", type=int)
    e.add_argument("--schedule", help="noise schedule (default: the model's)")
    e.add_argument("--cfg", type=float)
    e.add_argument("--out", help="write the report (or the sweep) as JSON here")
    e.add_argument("--sweep", action="store_true", help="quality against steps: every --samplers x --sweep-steps")
    e.add_argument("--samplers", default="euler,heun,dpmpp_2m",
                   help="samplers for --sweep, each optionally sampler@schedule (e.g. euler@uniform_t_end)")
    e.add_argument("--sweep-steps", help="step counts for --sweep (default 1,2,4,8,16,32) or --flow-map (default 1,2,4)")
    e.add_argument("--max-combos", type=int, default=42, help="label combinations per --sweep setting (evenly spaced)")
    e.add_argument("--plot", help="--sweep's PNG (default: next to --out)")
    e.add_argument("--flow-map", metavar="REFERENCE", help="instead: RMS log-mel distance of the model's few-step "
                   "samples (--sweep-steps, default 1,2,4) to REFERENCE's 64-step ODE solution from the same noise")
    e.add_argument("--seconds", type=float, help="generate notes this long (default: the data's length; e.g. 2 "
                   "from 1.5 s notes: the note, its release and silence, scored by the judge and the silence floor)")
    e.add_argument("--no-judge", action="store_true", help="skip the instrument judge (an SVM trained on another "
                   "SoundFont's notes; its first build renders and caches them, ~3 min)")
    e.add_argument("--no-progress", action="store_true")
    e.set_defaults(func=cmd_eval)

    rn = sub.add_parser("render-notes", help="render the General MIDI note data set with fluidsynth")
    from audiox_jax.data import notes

    notes.add_arguments(rn)
    rn.set_defaults(func=cmd_render_notes)

    t = sub.add_parser("train", help="train a DiT (resumes when the workdir holds a checkpoint)")
    t.add_argument("--config", required=True, help="YAML config, e.g. configs/tiny.yaml")
    t.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set train.steps=100 (repeatable)")
    t.add_argument("--workdir", required=True, help="output folder: checkpoints, metrics, demos, model")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except AudioxError as err:
        message = " ".join(str(err).split())  # always one line
        print(f"audiox-jax {args.command}: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
