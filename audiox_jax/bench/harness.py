"""The measuring part of `audiox-jax bench`: timing, rows, peak FLOP/s, the table and comparisons.

Method (the same for every row):
* JAX functions are compiled ahead of time (``jit(f).lower(*args).compile()``); that
  wall time is reported as ``compile_s`` and never mixed into the steady state.
* Steady state: ``warmup`` untimed calls, then ``repeats`` timed calls, each ended by
  ``jax.block_until_ready``; we report the median and the spread (min, max).
* Real-time factor (RTF) = wall time / seconds of audio produced (< 1 is faster than
  real time); ``x_realtime`` = 1 / RTF.
* Quality columns (spectral convergence, residuals) are computed on the benchmarked
  outputs, so a faster row can not hide a worse result.

A row is a dict: ``name``, the timing keys (``median_s``, ``min_s``, ``max_s``, ``repeats``,
maybe ``compile_s``, ``gb_per_s``), ``audio_s``/``rtf``/``x_realtime`` when it produced
audio, any quality columns, or ``skipped`` with the reason instead of timings.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import time
from typing import Callable

import flax
import jax
import jax.numpy as jnp
import librosa
import numpy as np

from audiox_jax.errors import ParamError


def environment() -> dict:
    """Backend, device and versions, recorded with every run."""
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
    return spread(times)


def spread(times: list[float]) -> dict:
    """Wall seconds of repeated calls -> ``{median_s, min_s, max_s, repeats}``."""
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "repeats": len(times)}


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
    """One table row: ``timing`` (from time_calls/time_jax) plus ``extra`` columns; with
    ``audio_s`` (seconds of audio the timed call produced) also ``rtf`` and ``x_realtime``."""
    r = {"name": name, **timing, **extra}
    if audio_s:
        r["audio_s"] = audio_s
        r["rtf"] = timing["median_s"] / audio_s
        r["x_realtime"] = audio_s / timing["median_s"]
    return r


def skipped(name: str, reason: str) -> dict:
    """A row for a measurement that could not run here, with the reason (the table prints it)."""
    return {"name": name, "skipped": reason}


# ---------------------------------------------------------------------- peak FLOP/s

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
    """(peak FLOP/s of the default device for ``dtype`` ("float32" or "bfloat16"), its source):
    the data sheet for known GPUs, else a measured float32 matmul."""
    kind = getattr(jax.devices()[0], "device_kind", "")
    for name, peaks in PEAK_FLOPS.items():
        if name.lower() in kind.lower():
            return peaks[dtype], f"{name} data sheet"
    return measured_matmul_peak(), "measured f32 matmul"


# ---------------------------------------------------------------------- output


COLUMNS = ("median_s", "min_s", "max_s", "compile_s", "rtf", "x_realtime", "speedup_vs_librosa", "gb_per_s")


def format_table(rows: list[dict]) -> str:
    """Rows as a text table: one line of column names, then one line per row (COLUMNS first,
    then every other column in order of appearance; a skipped row prints its reason)."""
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


def read_run(path: str) -> dict:
    """A run saved by ``bench --json``: ``{"env": {...}, "rows": [{"name", ...}, ...]}``, checked.

    Raises:
      ParamError: the file is missing, not JSON, or not a saved run (the message names it and the fix).
    """
    fix = "pass a file written by `audiox-jax bench --json FILE`"
    try:
        with open(path, encoding="utf-8") as f:
            run = json.load(f)
    except FileNotFoundError:
        raise ParamError(f"--compare {path!r}: no such file; {fix}") from None
    except (OSError, ValueError) as err:  # a folder, unreadable, not UTF-8, not JSON
        raise ParamError(f"--compare {path!r} cannot be read as JSON ({err}); {fix}") from None
    env_keys = ("device", "backend", "jax", "date")
    ok = (isinstance(run, dict) and isinstance(run.get("env"), dict) and all(k in run["env"] for k in env_keys)
          and isinstance(run.get("rows"), list) and all(isinstance(r, dict) and "name" in r for r in run["rows"]))
    if not ok:
        raise ParamError(f"--compare {path!r} is JSON but not a saved bench run (it needs \"env\" with "
                         f"{', '.join(env_keys)} and \"rows\" with a \"name\" each); {fix}")
    return run


def compare(path_a: str, path_b: str) -> str:
    """Two JSON runs side by side: median seconds of each row and the ratio B/A."""
    a, b = read_run(path_a), read_run(path_b)
    out = [f"A: {path_a}  [{a['env']['device']}, {a['env']['backend']}, jax {a['env']['jax']}, {a['env']['date']}]",
           f"B: {path_b}  [{b['env']['device']}, {b['env']['backend']}, jax {b['env']['jax']}, {b['env']['date']}]"]
    rows_b = {r["name"]: r for r in b["rows"]}
    width = max((len(r["name"]) for r in a["rows"]), default=0) + 2
    out.append("".ljust(width) + "A median_s".rjust(14) + "B median_s".rjust(14) + "B/A".rjust(10))
    for r in a["rows"]:
        rb = rows_b.get(r["name"])
        if "median_s" not in r or rb is None or "median_s" not in rb:
            continue
        ratio = rb["median_s"] / r["median_s"] if r["median_s"] else None
        out.append(r["name"].ljust(width) + _fmt(r["median_s"]).rjust(14) + _fmt(rb["median_s"]).rjust(14)
                   + _fmt(ratio).rjust(10))
    return "\n".join(out)


def report(suites: list[tuple[str, Callable[..., list[dict]]]], *, quick: bool = False,
           json_path: str | None = None, **kwargs) -> dict:
    """Run each suite ``(name, fn)`` in order as ``fn(quick=quick, **kwargs) -> rows``, print the
    environment line and the table, and write ``{"env", "quick", "rows"}`` as JSON to ``json_path``
    when given; returns that dict (each row tagged with its ``suite``)."""
    env = environment()
    rows = []
    for name, fn in suites:
        rows += [{**r, "suite": name} for r in fn(quick=quick, **kwargs)]
    result = {"env": env, "quick": quick, "rows": rows}
    print(f"# {env['date']}  {env['backend']} / {env['device']}  jax {env['jax']}  librosa {env['librosa']}")
    print(format_table(rows))
    if json_path:
        with open(json_path, "w") as f:
            json.dump(result, f, indent=1)
        print(f"wrote {json_path}")
    return result
