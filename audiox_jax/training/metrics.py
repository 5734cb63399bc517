"""Training logs: ``workdir/metrics.jsonl``, TensorBoard scalars and a progress bar on stderr.

``metrics.jsonl`` has one JSON object per line. Training rows (every ``train.log_every``
updates): ``step`` (updates done), ``loss`` and ``grad_norm`` (means over the updates since
the previous row), ``param_norm``, ``update_norm``, ``lr`` (at ``step``), ``steps_per_s``
(updates per second over those updates, host time). Validation rows: ``step``, ``val_loss``.
On resume from step s the rows after s are dropped first, so the file reads as one run.
The same numbers go to TensorBoard (``workdir/tb``, :mod:`audiox_jax.training.tfevents`).
"""

from __future__ import annotations

import json
import os
import sys
import time

from audiox_jax.training.tfevents import ScalarWriter

METRICS = "metrics.jsonl"
TB = "tb"


def read_metrics(workdir: str) -> list[dict]:
    """The rows of ``workdir/metrics.jsonl`` (empty if none)."""
    path = os.path.join(workdir, METRICS)
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class MetricsLog:
    """Appends rows to ``metrics.jsonl`` and TensorBoard; keeps only rows up to ``resume_step``."""

    def __init__(self, workdir: str, *, resume_step: int, tensorboard: bool = True):
        self.path = os.path.join(workdir, METRICS)
        kept = [r for r in read_metrics(workdir) if r.get("step", 0) <= resume_step]
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in kept)
        os.replace(tmp, self.path)
        self._f = open(self.path, "a", encoding="utf-8")
        self._tb = ScalarWriter(os.path.join(workdir, TB)) if tensorboard else None

    def write(self, row: dict) -> None:
        self._f.write(json.dumps(row) + "\n")
        self._f.flush()
        if self._tb is not None:
            scalars = {("val/" if k.startswith("val") else "train/") + k: v for k, v in row.items()
                       if k != "step" and isinstance(v, (int, float))}
            self._tb.scalars(int(row["step"]), scalars)

    def close(self) -> None:
        self._f.close()
        if self._tb is not None:
            self._tb.close()


class Progress:
    """``train [######......] 120/1000 loss 0.512  8.3 steps/s  eta 1m46s`` on stderr.

    On a terminal the line is redrawn in place (at most 10 times a second); otherwise
    (logs, subprocesses) one line is printed per logged row.
    """

    def __init__(self, total: int, start: int, *, enabled: bool = True, width: int = 24, stream=None):
        self.total, self.step, self.width = total, start, width
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.loss, self.rate, self._drawn = float("nan"), 0.0, 0.0

    def advance(self, step: int) -> None:
        self.step = step
        if self.tty and time.monotonic() - self._drawn > 0.1:
            self._draw("\r")

    def log(self, step: int, loss: float, steps_per_s: float) -> None:
        self.step, self.loss, self.rate = step, loss, steps_per_s
        if self.enabled:
            self._draw("\r" if self.tty else "")
            if not self.tty:
                self.stream.write("\n")

    def close(self) -> None:
        if self.tty:
            self._draw("\r")
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self, prefix: str) -> None:
        self._drawn = time.monotonic()
        fill = self.width * self.step // max(self.total, 1)
        eta = (self.total - self.step) / self.rate if self.rate > 0 else float("nan")
        eta_s = f"{int(eta // 60)}m{int(eta % 60):02d}s" if eta == eta else "?"
        self.stream.write(f"{prefix}train [{'#' * fill}{'.' * (self.width - fill)}] {self.step}/{self.total} "
                          f"loss {self.loss:.4f}  {self.rate:.2f} steps/s  eta {eta_s}")
        self.stream.flush()
