"""Training logs: ``workdir/metrics.jsonl``, TensorBoard scalars and a progress bar on stderr.

``metrics.jsonl`` has one JSON object per line. Training rows (every ``train.log_every``
updates): ``step`` (updates done), ``loss`` and ``grad_norm`` (means over the updates since
the previous row), ``param_norm``, ``update_norm``, ``lr`` (at ``step``), ``steps_per_s``
(updates per second over those updates, host time). Validation rows: ``step``, ``val_loss``.
On resume from step s the rows after s are dropped first, so the file reads as one run.
The same numbers go to TensorBoard (``workdir/tb``, written by tensorboardX). The progress
bar is tqdm's.
"""

from __future__ import annotations

import json
import os
import sys

from tensorboardX import SummaryWriter
from tqdm import tqdm

from audiox_jax.files import atomic_write

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
        with atomic_write(self.path, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in kept)
        self._f = open(self.path, "a", encoding="utf-8")
        self._tb = SummaryWriter(os.path.join(workdir, TB), flush_secs=30) if tensorboard else None

    def write(self, row: dict) -> None:
        self._f.write(json.dumps(row) + "\n")
        self._f.flush()
        if self._tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)):
                    self._tb.add_scalar(("val/" if k.startswith("val") else "train/") + k, v, int(row["step"]))

    def close(self) -> None:
        self._f.close()
        if self._tb is not None:
            self._tb.close()


class Progress:
    """The training progress bar on stderr (tqdm): updates done of ``total``, the last logged loss and
    updates per second, and the time left. Off (``enabled=False``) on non-lead processes."""

    def __init__(self, total: int, start: int, *, enabled: bool = True, stream=None):
        self.bar = tqdm(total=total, initial=start, desc="train", unit="step", disable=not enabled, dynamic_ncols=True,
                        file=sys.stderr if stream is None else stream, mininterval=0.5)

    def advance(self, step: int) -> None:
        self.bar.update(step - self.bar.n)

    def log(self, step: int, loss: float, steps_per_s: float) -> None:
        self.advance(step)
        self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def close(self) -> None:
        self.bar.close()
