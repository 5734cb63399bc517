"""Evaluation of generated notes against the real data set: pitch, probe accuracy, Frechet distance, vocoder.

Modules, in the order a report is built:

* ``pitch``: f0 by pYIN and "within a semitone" accuracy.
* ``probe``: a small classifier trained on real log-mels; its accuracy and embeddings.
* ``metrics``: Frechet distance, spectral convergence, log-spectral distance, the vocoder path.
* ``report``: ``evaluate(generate_fn, combos, cache, probes)`` and ``format_report``.
"""

from audiox_jax.evaluation.metrics import frechet_distance, reconstruction_metrics, vocode, vocoder_metrics
from audiox_jax.evaluation.pitch import estimate_f0, pitch_accuracy, pitch_correct, pitch_errors
from audiox_jax.evaluation.probe import (
    ProbeConfig,
    ProbeParams,
    load_or_train_probes,
    load_probes,
    probe_accuracy,
    probe_embed,
    probe_logits,
    save_probe,
    train_probe,
    train_probes,
)
from audiox_jax.evaluation.report import evaluate, format_report, label_combos

__all__ = [
    "ProbeConfig", "ProbeParams", "estimate_f0", "evaluate", "format_report", "frechet_distance", "label_combos",
    "load_or_train_probes", "load_probes", "pitch_accuracy", "pitch_correct", "pitch_errors", "probe_accuracy",
    "probe_embed", "probe_logits", "reconstruction_metrics", "save_probe", "train_probe", "train_probes", "vocode",
    "vocoder_metrics",
]
