"""`audiox-jax bench`: honest timings of every stage, with comparisons run in the same process.

``harness`` measures and reports (method in its docstring); one module per suite:
``dsp`` (log-mel, mel inversion, Griffin-Lim vs librosa and torch), ``generate`` (the one
program vs a Python loop, streaming, torch), ``train`` (step time, MFU) and ``realtime``
(few-step latency split into model and vocoder). ``torch_ref`` is the PyTorch reference DiT
and generate; it needs torch and is imported only by the torch rows (in a fresh subprocess)
and the parity tests, never here.

Results print as a table and are written as JSON (``--json``); ``--compare A B``
prints two JSON runs side by side.
"""

from __future__ import annotations

from audiox_jax.bench.dsp import bench_dsp
from audiox_jax.bench.generate import bench_generate
from audiox_jax.bench.harness import compare, environment, format_table, report, row, time_calls, time_jax
from audiox_jax.bench.realtime import bench_realtime
from audiox_jax.bench.train import bench_train

SUITES = {"dsp": bench_dsp, "generate": bench_generate, "train": bench_train, "realtime": bench_realtime}

__all__ = ["SUITES", "compare", "environment", "format_table", "row", "run", "time_calls", "time_jax"]


def run(suites: list[str], *, quick: bool = False, json_path: str | None = None, **kwargs) -> dict:
    """Run the named suites (keys of SUITES, in order), print the table, write JSON to
    ``json_path`` when given; returns ``{"env", "quick", "rows"}``."""
    return report([(name, SUITES[name]) for name in suites], quick=quick, json_path=json_path, **kwargs)
