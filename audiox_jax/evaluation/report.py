"""``evaluate``: generate a note for each label combination and measure it against the real data set.

What is measured (each figure has a real-data reference beside it, so it can be read):

* FD ratio per probe, reported first: the Frechet distance of the generated notes to the
  real reference set over that of the vocoded matched real clips (:func:`.metrics.fd_ratio`):
  1 = as good as a perfect log-mel model heard through this vocoder. The raw distances
  follow under ``frechet``.
* pitch accuracy: fraction of generated notes whose pYIN f0 is within a semitone of the
  conditioned pitch (:mod:`.pitch`); reference: the same on the matched real clips and
  on those clips through the vocoder path.
* probe accuracy per label: the probe (:mod:`.probe`, trained on real clips) predicts
  the conditioned class from the generated note's log-mel; references: the probe's
  held-out accuracy on real clips, and its accuracy on the vocoded matched real clips.
* Frechet distance per probe, on its embeddings, between the generated notes and the
  real reference set (``real_indices``, default every cached clip); references at the
  same sample count: the matched real clips (the floor a perfect generator reaches) and
  the matched clips through the vocoder (the floor of a perfect log-mel model).
* silence floor: the generated log-mel's level where the matched real clips are silent,
  against the real clips' level there (:func:`.metrics.silence_floor`), and the same for the
  vocoded real clips; taken on the generated notes uncut, so a note longer than its real
  clip is measured past the real clip's end too.
* instrument judge (optional, :mod:`.judge`): an SVM on MFCC / spectral contrast /
  harmonic statistics trained on notes of another SoundFont, never on this data; its
  accuracy on the generated notes, the matched real clips and the vocoded ones.
* the vocoder path alone: spectral convergence and log-spectral distance of the matched
  real clips through log-mel -> mel inversion -> Griffin-Lim (:mod:`.metrics`).

"Matched real clips": for each generated note, one real clip with the same labels
(drawn with ``default_rng(seed)`` among the cache's clips of that combination). Their
audio is read from the cache's ``audio_dir``; when it is gone the audio-based references
are skipped with a warning and the report says why.

Generation calls ``generate_fn(label_ids i32[B, n_labels], seed: int) -> f32[B, samples]``
with a fixed ``B = batch_size`` (the last batch is padded by repeating its last row and the
extra outputs dropped, so a jitted generator compiles once); batch ``b`` gets ``seed + b``.
Generated audio is cut or zero-padded to the cache's item length before its log-mel is
taken (``data.prepare.log_mel_items``, the cache's own front end); pitch uses it uncut.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from typing import Callable, Mapping

import numpy as np

from audiox_jax.audio import load
from audiox_jax.audio.pitch import TOLERANCE, pitch_errors
from audiox_jax.data.notes import label_midi
from audiox_jax.data.prepare import log_mel_items
from audiox_jax.errors import AudioFileError, AudioxError, ParamError
from audiox_jax.evaluation.metrics import fd_ratio, frechet_distance, reconstruction_metrics, silence_floor, vocode
from audiox_jax.evaluation.probe import ProbeParams, probe_embed, probe_logits

GenerateFn = Callable[[np.ndarray, int], np.ndarray]


def label_combos(cache) -> np.ndarray:
    """The label combinations present in a cache: unique rows i32[K, n_labels] of ``cache.labels``, sorted."""
    return np.unique(np.asarray(cache.labels, np.int32), axis=0)


def evaluate(
    generate_fn: GenerateFn,
    combos: np.ndarray,
    real,
    probes: Mapping[str, ProbeParams],
    *,
    pitch_label: str | None = "pitch",
    samples_per_combo: int = 1,
    batch_size: int = 32,
    seed: int = 0,
    real_indices: np.ndarray | None = None,
    judge=None,
    judge_label: str = "instrument",
    progress: bool = False,
) -> dict:
    """Generate for each label combination and report quality (see the module docstring).

    Args:
      generate_fn: ``(label_ids i32[B, n_labels], seed) -> audio f32[B, samples]`` at the cache's rate.
      combos: i32[K, n_labels] class ids in ``real.manifest.label_names`` order (``label_combos(real)``).
      real: the real data set, a ``data.cache.Cache``.
      probes: {label name: probe} trained on ``real`` (``probe.train_probes``); may be empty.
      pitch_label: the label holding MIDI pitches ("060" or "C4"); None skips pitch accuracy.
      samples_per_combo: notes generated per combination.
      batch_size: rows per ``generate_fn`` call.
      seed: first generation seed, and the seed of the matched-clip draw and vocoder phases.
      real_indices: i64[M] cache items forming the real reference set of the Frechet distance;
        None = every item.
      judge: a :class:`.judge.Judge` knowing every class of ``judge_label``; None skips it.
        It needs ``pitch_label`` (its harmonic features use the conditioned pitch).
      judge_label: the label the judge predicts ("instrument").
      progress: print a line per stage on stderr.
    Returns:
      a JSON-able dict (NaN written as None); :func:`format_report` prints it.
    """
    man = real.manifest
    names, cfg = tuple(man.label_names), man.audio_config
    combos = _check_combos(combos, man)
    _check_probes(probes, man)
    if pitch_label is not None and pitch_label not in names:
        raise ParamError(f"pitch_label={pitch_label!r} is not a label of the data set {names}; pass None to skip pitch")
    if samples_per_combo < 1 or batch_size < 1:
        raise ParamError(f"samples_per_combo={samples_per_combo} and batch_size={batch_size} must be >= 1")
    if judge is not None:
        _check_judge(judge, judge_label, pitch_label, man)
    ref_idx = np.arange(len(real)) if real_indices is None else np.asarray(real_indices, np.int64)
    if len(ref_idx) < 2:
        raise ParamError(f"real_indices holds {len(ref_idx)} items; the Frechet distance needs at least 2")
    say = _Say(progress)

    rows = np.repeat(combos, samples_per_combo, axis=0)  # [n, n_labels]
    say(f"generating {len(rows)} notes ({len(combos)} combinations x {samples_per_combo})")
    t0 = time.monotonic()
    gen = _generate(generate_fn, rows, batch_size, seed)  # [n, samples]
    wall = time.monotonic() - t0
    gen_mels = log_mel_items(_fit(gen, man.item_samples), cfg)
    midis = None if pitch_label is None else _midis(rows[:, names.index(pitch_label)], man.vocab[pitch_label])

    matched = _match(real, rows, seed)  # i64[n], -1 where no real clip has the labels
    real_audio, why = _real_audio(real, matched[matched >= 0])
    voc_audio = None if real_audio is None else vocode(real_audio, cfg, seed=seed)
    voc_mels = None if voc_audio is None else log_mel_items(voc_audio, cfg)

    report: dict = {
        "combinations": len(combos), "samples_per_combo": samples_per_combo, "generated": len(rows),
        "seed": seed, "generated_seconds": gen.shape[1] / cfg.sr, "item_seconds": man.item_samples / cfg.sr,
        "generation_wall_s": wall, "real_time_factor": len(rows) * gen.shape[1] / cfg.sr / max(wall, 1e-9),
        "real_reference_clips": len(ref_idx), "matched_real_clips": int((matched >= 0).sum()),
    }
    gen_correct = None
    if midis is not None:
        say("pitch of generated notes (pYIN)")
        err = pitch_errors(gen, midis, cfg.sr)
        gen_correct = np.abs(np.nan_to_num(err, nan=np.inf)) <= TOLERANCE
        report["pitch"] = {
            "label": pitch_label, "tolerance_semitones": TOLERANCE, "accuracy": float(gen_correct.mean()),
            "median_abs_error_semitones": float(np.nanmedian(np.abs(err))) if np.isfinite(err).any() else None,
            "unvoiced_fraction": float(np.isnan(err).mean()),
        }
        if real_audio is not None:
            say("pitch of matched real and vocoded clips")
            m = midis[matched >= 0]
            report["pitch"]["accuracy_real"] = _accuracy(pitch_errors(real_audio, m, cfg.sr))
            report["pitch"]["accuracy_vocoded_real"] = _accuracy(pitch_errors(voc_audio, m, cfg.sr))

    say("probes and Frechet distances")
    report["probe"], report["frechet"], gen_pred = {}, {}, {}
    for name, probe in probes.items():
        col = names.index(name)
        gen_pred[name] = np.argmax(probe_logits(probe, gen_mels), axis=1) == rows[:, col]
        entry = {"accuracy_generated": float(gen_pred[name].mean()), "accuracy_real_heldout": probe.val_accuracy}
        emb_ref = probe_embed(probe, real.mels[ref_idx])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sample-count bias: the references below share the counts
            fd = {"generated": frechet_distance(probe_embed(probe, gen_mels), emb_ref),
                  "real_matched": _fd_or_none(probe, real.mels[matched[matched >= 0]], emb_ref)}
            if voc_mels is not None:
                entry["accuracy_vocoded_real"] = float(np.mean(
                    np.argmax(probe_logits(probe, voc_mels), axis=1) == rows[matched >= 0, col]))
                fd["vocoded_real"] = _fd_or_none(probe, voc_mels, emb_ref)
        fd["ratio_real_matched"] = fd_ratio(fd["real_matched"], fd.get("vocoded_real"))
        report["probe"][name], report["frechet"][name] = entry, fd
    say("silence floor")
    report["silence_floor"] = _silence_floor(gen, gen_mels, real, matched, voc_mels, man)
    if judge is not None:
        say("instrument judge")
        report["judge"] = _judge_report(judge, judge_label, gen, rows, midis, matched, real_audio, voc_audio, why, man)
    if real_audio is not None:
        report["vocoder"] = reconstruction_metrics(real_audio, voc_audio, cfg)
    else:
        report["vocoder"] = {"skipped": why}
    report["by_class"] = _by_class(rows, names, man.vocab, pitch_label, gen_correct, gen_pred)
    ratios = {name: fd_ratio(fd["generated"], fd.get("vocoded_real")) for name, fd in report["frechet"].items()}
    return _jsonable({"fd_ratio": ratios, **report})


def _check_judge(judge, judge_label: str, pitch_label: str | None, man) -> None:
    if judge_label not in man.label_names:
        raise ParamError(f"judge_label={judge_label!r} is not a label of the data set {tuple(man.label_names)}")
    if pitch_label is None:
        raise ParamError("the instrument judge needs the pitch label (pitch_label) for its harmonic features")
    missing = [c for c in man.vocab[judge_label] if c not in judge.classes]
    if missing:
        raise ParamError(f"the judge knows {judge.classes} but the data's {judge_label} classes include {missing}; "
                         f"build it with judge.JudgeRecipe(instruments=...) holding them")


def _silence_floor(gen, gen_mels, real, matched, voc_mels, man) -> dict:
    """Silence floor of the generated notes (uncut) and of the vocoded real clips against the matched real clips."""
    cfg, ok = man.audio_config, matched >= 0
    if not ok.any():
        return {"skipped": "no real clip matches a generated label combination"}
    full = gen_mels if gen.shape[1] == man.item_samples else log_mel_items(gen, cfg)
    real_mels = real.mels[matched[ok]]
    out = silence_floor(full[ok], real_mels, cfg)
    if voc_mels is not None:
        out["silence_floor_db_vocoded_real"] = silence_floor(voc_mels, real_mels, cfg)["silence_floor_db_generated"]
    return out


def _judge_report(judge, label, gen, rows, midis, matched, real_audio, voc_audio, why, man) -> dict:
    """Judge accuracy on generated notes, matched real clips and vocoded ones; overall and per class."""
    col, sr = man.label_names.index(label), man.audio_config.sr
    want = np.asarray(man.vocab[label])[rows[:, col]]
    pred = {"generated": (judge.predict(gen, midis, sr), want)}
    if real_audio is not None:
        ok = matched >= 0
        pred["real"] = (judge.predict(real_audio, midis[ok], sr), want[ok])
        pred["vocoded_real"] = (judge.predict(voc_audio, midis[ok], sr), want[ok])
    out = {"label": label, "soundfonts": list(judge.recipe.soundfonts),
           "vocoder_augmented": judge.recipe.vocoder is not None, "build_seconds": judge.build_seconds}
    out.update({f"accuracy_{k}": float(np.mean(p == w)) for k, (p, w) in pred.items()})
    names, counts = np.unique(pred["generated"][0], return_counts=True)  # a class soaking up odd notes shows here
    out["predicted_generated"] = {str(c): float(n / len(want)) for c, n in zip(names, counts)}
    if real_audio is None:
        out["real_skipped"] = why
    out["by_class"] = {c: {k: float(np.mean(p[w == c] == c)) if (w == c).any() else None for k, (p, w) in pred.items()}
                       for c in man.vocab[label] if (want == c).any()}
    return out


def _check_combos(combos, man) -> np.ndarray:
    combos = np.asarray(combos)
    n_labels = len(man.label_names)
    if combos.ndim != 2 or combos.shape[1] != n_labels or len(combos) == 0 or combos.dtype.kind not in "iu":
        raise ParamError(f"combos must be i32[K, {n_labels}] class ids for labels {man.label_names}, "
                         f"got {combos.dtype}{list(combos.shape)}; use evaluation.label_combos(cache)")
    for j, name in enumerate(man.label_names):
        size = len(man.vocab[name])
        if combos[:, j].min() < 0 or combos[:, j].max() >= size:
            raise ParamError(f"combos column {j} ({name!r}) must hold ids in 0..{size - 1}, "
                             f"got {combos[:, j].min()}..{combos[:, j].max()}")
    return combos.astype(np.int32)


def _check_probes(probes: Mapping[str, ProbeParams], man) -> None:
    for name, probe in probes.items():
        if name not in man.label_names:
            raise ParamError(f"probe {name!r} is for a label the data set lacks; its labels: {man.label_names}")
        if tuple(probe.classes) != tuple(man.vocab[name]) or probe.n_mels != man.n_mels:
            raise ParamError(f"probe {name!r} was trained on other classes or mel bins than this data set; "
                             "retrain it with evaluation.probe.train_probes(cache)")


def _generate(generate_fn: GenerateFn, rows: np.ndarray, batch_size: int, seed: int) -> np.ndarray:
    out = []
    for b, start in enumerate(range(0, len(rows), batch_size)):
        chunk = rows[start : start + batch_size]
        padded = np.pad(chunk, ((0, batch_size - len(chunk)), (0, 0)), mode="edge")
        audio = np.asarray(generate_fn(padded, seed + b), np.float32)
        if audio.ndim != 2 or audio.shape[0] != batch_size or (out and audio.shape[1] != out[0].shape[1]):
            raise AudioxError(f"generate_fn returned shape {audio.shape} for batch {b}; it must return "
                              f"f32[{batch_size}, samples] with the same samples for every batch")
        if not np.all(np.isfinite(audio)):
            raise AudioxError(f"generate_fn returned NaN or Inf samples in batch {b} (rows {start}..)")
        out.append(audio[: len(chunk)])
    return np.concatenate(out)


def _fit(audio: np.ndarray, samples: int) -> np.ndarray:
    """Cut or zero-pad f32[n, s] to f32[n, samples]."""
    return np.pad(audio, ((0, 0), (0, max(0, samples - audio.shape[1]))))[:, :samples]


def _midis(ids: np.ndarray, vocab: tuple[str, ...]) -> np.ndarray:

    try:
        table = np.asarray([label_midi(v) for v in vocab], np.float64)
    except ParamError as err:
        raise ParamError(f"the pitch label's classes must be MIDI numbers or note names: {err}") from err
    return table[ids]


def _match(real, rows: np.ndarray, seed: int) -> np.ndarray:
    """For each row, a cache item with the same labels (or -1), drawn with ``default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(real.labels)
    by_combo: dict[tuple, np.ndarray] = {}
    for i, lab in enumerate(map(tuple, labels)):
        by_combo.setdefault(lab, []).append(i)
    out = np.asarray([rng.choice(by_combo[tuple(r)]) if tuple(r) in by_combo else -1 for r in rows], np.int64)
    if (out < 0).any():
        warnings.warn(f"{int((out < 0).sum())} of {len(rows)} generated notes have label combinations absent from "
                      "the real data; the real references leave them out", stacklevel=3)
    return out


def _real_audio(real, idx: np.ndarray) -> tuple[np.ndarray | None, str]:
    """Audio f32[len(idx), item_samples] of cache items, or (None, why) when it cannot be read."""
    man = real.manifest
    if len(idx) == 0:
        return None, "no real clip matches a generated label combination"
    out = np.zeros((len(idx), man.item_samples), np.float32)
    try:
        for k, i in enumerate(idx):
            path = os.path.join(man.audio_dir, man.files[int(real.file_index[i])].path)
            y, _ = load(path, man.audio_config.sr)
            seg = y[int(real.offset[i]) : int(real.offset[i]) + man.item_samples]
            out[k, : len(seg)] = seg
    except AudioFileError as err:
        why = f"real audio unreadable ({err}); the vocoder and audio references need the cache's audio_dir"
        warnings.warn(why, stacklevel=3)
        return None, why
    return out, ""


def _fd_or_none(probe: ProbeParams, mels: np.ndarray, emb_ref: np.ndarray) -> float | None:
    return frechet_distance(probe_embed(probe, mels), emb_ref) if len(mels) >= 2 else None


def _accuracy(err: np.ndarray) -> float:
    return float(np.mean(np.abs(np.nan_to_num(err, nan=np.inf)) <= TOLERANCE))


def _by_class(rows, names, vocab, pitch_label, gen_correct, gen_pred) -> dict:
    """Per class of the first non-pitch label: notes, pitch accuracy, probe accuracies."""
    group = next((n for n in names if n != pitch_label), None)
    if group is None:
        return {}
    col = names.index(group)
    out = {}
    for cid, cname in enumerate(vocab[group]):
        sel = rows[:, col] == cid
        if not sel.any():
            continue
        entry = {"n": int(sel.sum())}
        if gen_correct is not None:
            entry["pitch_accuracy"] = float(gen_correct[sel].mean())
        entry["probe_accuracy"] = {n: float(p[sel].mean()) for n, p in gen_pred.items()}
        out[cname] = entry
    return {group: out}


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


class _Say:
    def __init__(self, enabled: bool):
        self.enabled, self.t0 = enabled, time.monotonic()

    def __call__(self, msg: str) -> None:
        if self.enabled:
            import sys

            sys.stderr.write(f"eval [{time.monotonic() - self.t0:6.1f} s] {msg}\n")


def format_report(report: dict) -> str:
    """A short plain-text table of an :func:`evaluate` report."""

    def f(v, fmt="{:.3f}"):
        return "-" if v is None else fmt.format(v)

    lines = [
        f"{report['generated']} generated notes ({report['combinations']} label combinations x "
        f"{report['samples_per_combo']}), {report['generated_seconds']:.2f} s each; "
        f"generation {report['generation_wall_s']:.1f} s (real-time factor {report['real_time_factor']:.1f}x)",
        "",
        f"{'metric':28s} {'generated':>10s} {'real':>10s} {'vocoded real':>13s}",
    ]
    for name, ratio in report.get("fd_ratio", {}).items():
        fd = report["frechet"][name]
        lines.append(f"{'FD ratio (' + name + ' probe)':28s} {f(ratio, '{:.2f}'):>10s} "
                     f"{f(fd.get('ratio_real_matched'), '{:.2f}'):>10s} "
                     f"{f(None if fd.get('vocoded_real') is None else 1.0, '{:.2f}'):>13s}")
    if "pitch" in report:
        p = report["pitch"]
        lines.append(f"{'pitch accuracy (+-1 st)':28s} {f(p['accuracy']):>10s} {f(p.get('accuracy_real')):>10s} "
                     f"{f(p.get('accuracy_vocoded_real')):>13s}")
    for name, e in report["probe"].items():
        lines.append(f"{name + ' probe accuracy':28s} {f(e['accuracy_generated']):>10s} "
                     f"{f(e['accuracy_real_heldout']):>10s} {f(e.get('accuracy_vocoded_real')):>13s}")
    for name, fd in report["frechet"].items():
        lines.append(f"{'FD (' + name + ' probe)':28s} {f(fd['generated'], '{:.2f}'):>10s} "
                     f"{f(fd['real_matched'], '{:.2f}'):>10s} {f(fd.get('vocoded_real'), '{:.2f}'):>13s}")
    sf = report.get("silence_floor", {})
    if "silence_floor_db_generated" in sf:
        lines.append(f"{'silence floor (dB)':28s} {f(sf['silence_floor_db_generated'], '{:.1f}'):>10s} "
                     f"{f(sf['silence_floor_db_real'], '{:.1f}'):>10s} "
                     f"{f(sf.get('silence_floor_db_vocoded_real'), '{:.1f}'):>13s}")
    j = report.get("judge", {})
    if "accuracy_generated" in j:
        lines.append(f"{j['label'] + ' judge accuracy':28s} {f(j['accuracy_generated']):>10s} "
                     f"{f(j.get('accuracy_real')):>10s} {f(j.get('accuracy_vocoded_real')):>13s}")
    v = report["vocoder"]
    lines.append("")
    if "skipped" in v:
        lines.append(f"vocoder path: skipped ({v['skipped']})")
    else:
        lines.append(f"vocoder path on {v['clips']} real clips: spectral convergence "
                     f"{v['spectral_convergence']:.3f}, log-spectral distance {v['log_spectral_distance_db']:.2f} dB")
    if "silence_floor_db_difference" in sf:
        lines.append(f"silence floor: generated {sf['silence_floor_db_difference']:+.1f} dB against the real clips in "
                     f"their quietest frames ({sf['silent_frames_per_clip']:.0f} per clip)")
    if "skipped" in j:
        lines.append(f"instrument judge: skipped ({j['skipped']})")
    elif j:
        lines.append(f"instrument judge: SVM on MFCC/contrast/harmonics trained on {'+'.join(j['soundfonts'])} notes"
                     f"{' (clean and vocoded)' if j['vocoder_augmented'] else ''}, never on this data")
    lines.append("(real: probe accuracy on held-out real clips; pitch, FD, silence floor and judge on one real clip "
                 "per generated note; FD ratio = FD / FD of the vocoded real clips)")
    for group, classes in report.get("by_class", {}).items():
        lines.append("")
        probe_names = list(next(iter(classes.values()))["probe_accuracy"]) if classes else []
        lines.append(f"{group:12s} {'n':>4s} {'pitch':>7s} " + " ".join(f"{n:>11s}" for n in probe_names))
        for cname, e in classes.items():
            lines.append(f"{cname:12s} {e['n']:4d} {f(e.get('pitch_accuracy')):>7s} "
                         + " ".join(f"{f(e['probe_accuracy'][n]):>11s}" for n in probe_names))
    return "\n".join(lines)
