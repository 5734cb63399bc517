"""The `audiox-jax` command: vocode | bench (generate, train, prepare, eval arrive with their issues).

Every error audiox-jax raises on purpose (AudioxError) is printed as one line naming
the input and the fix, with exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
import time

from audiox_jax.errors import AudioxError


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
    b.add_argument("suite", nargs="?", default="all", choices=("dsp", "generate", "all"))
    b.add_argument("--quick", action="store_true", help="small sizes and few repeats (CI smoke test)")
    b.add_argument("--json", help="also write the results to this JSON file")
    b.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"), help="print two saved runs side by side")
    b.set_defaults(func=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except AudioxError as err:
        print(f"audiox-jax {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
