"""PNG pictures of spectrograms (matplotlib's object API: no pyplot, no global backend; host side only)."""

from __future__ import annotations

import os

import numpy as np


def save_mel_png(logmel, path: str | os.PathLike, *, sr: int, hop_length: int, title: str = "") -> str:
    """Save f32[n_mels, frames] log-mel (or f32[batch, n_mels, frames], stacked) as a PNG; returns the path."""
    from matplotlib.figure import Figure  # imported on use: matplotlib takes ~0.3 s to import

    lm = np.asarray(logmel, np.float32)
    lm = lm.reshape(-1, *lm.shape[-2:])
    fig = Figure(figsize=(8, 2.6 * len(lm)))
    axes = fig.subplots(len(lm), 1, squeeze=False)
    for i, (ax, m) in enumerate(zip(axes[:, 0], lm)):
        seconds = m.shape[1] * hop_length / sr
        im = ax.imshow(m, origin="lower", aspect="auto", cmap="magma", extent=(0, seconds, 0, m.shape[0]))
        ax.set_ylabel("mel bin")
        ax.set_title(f"{title} [{i}]" if len(lm) > 1 and title else title, fontsize=9)
        fig.colorbar(im, ax=ax, pad=0.01)
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=90)
    return path
