"""Evaluation of generated notes against the real data set: FD ratio, pitch, probe accuracy, Frechet distance,
silence floor, an independent instrument judge, vocoder.

Modules, in the order a report is built:

* ``audio.pitch`` (re-exported here): f0 by pYIN and "within a semitone" accuracy.
* ``probe``: a small classifier trained on real log-mels; its accuracy and embeddings.
* ``metrics``: Frechet distance and the FD ratio, the silence floor, spectral convergence,
  log-spectral distance, the vocoder path.
* ``judge``: an instrument classifier on MFCC / contrast / harmonic features, trained on
  another SoundFont's notes (never on the data set), cached per recipe.
* ``report``: ``evaluate(generate_fn, combos, cache, probes)`` and ``format_report``.
"""

from audiox_jax.evaluation.judge import Judge, JudgeRecipe, build_judge, judge_features
from audiox_jax.evaluation.metrics import (
    fd_ratio,
    frechet_distance,
    reconstruction_metrics,
    silence_floor,
    vocode,
    vocoder_metrics,
)
from audiox_jax.audio.pitch import estimate_f0, pitch_accuracy, pitch_correct, pitch_errors
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
    "Judge", "JudgeRecipe", "ProbeConfig", "ProbeParams", "build_judge", "estimate_f0", "evaluate", "fd_ratio",
    "format_report", "frechet_distance", "judge_features", "label_combos", "silence_floor",
    "load_or_train_probes", "load_probes", "pitch_accuracy", "pitch_correct", "pitch_errors", "probe_accuracy",
    "probe_embed", "probe_logits", "reconstruction_metrics", "save_probe", "train_probe", "train_probes", "vocode",
    "vocoder_metrics",
]
