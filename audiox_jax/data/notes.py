"""The General MIDI note data set: instruments x pitches x velocities, rendered with fluidsynth.

One command renders it (the audio is not committed)::

    python -m audiox_jax.data.notes --out data/gm_notes     # 630 notes, 27 MB: ~2.7 min (~2 min with --workers 2)

then ``prepare_note_cache(out_dir, cache_dir)`` makes the log-mel cache the model trains on.

Layout of ``out_dir``::

    <instrument>/<instrument>_<pitch:03d>_<velocity:03d>.wav   16-bit mono, ``sr`` Hz, ``seconds`` long
    labels.csv                                               path,instrument,pitch (paths relative to out_dir)
    recipe.json                                              the settings the notes were rendered with

Conventions (stated once, here):

* Instruments: ``INSTRUMENTS`` maps a name to its GM program (0-based) in Debian's
  ``fluid-soundfont-gm`` and the MIDI range it is rendered in. Each instrument gets the
  requested pitches inside its range (flute from C4, bass up to C4), so the data set
  is a grid clipped per instrument: ``plan_notes`` lists the notes, and a model should
  be evaluated on the (instrument, pitch) pairs that exist (``evaluation.label_combos``).
* "organ" is program 20 (Reed Organ), not 19 (Church Organ): the drawbar organs (16-18)
  and the church organ above G4 sound a 16' stop an octave below the key, so their f0
  is an octave low and no pitch estimator could call them right.
* A note: ``render.render_note`` (fluidsynth, gain 1.0, its default reverb and chorus),
  key held ``hold_s`` (0.8 s) and cut at ``seconds`` (1.0 s) during the release; a
  ``FADE_S`` (20 ms) raised-cosine fade-out at the cut; then peak-normalised to
  ``PEAK_DBFS`` (-1 dBFS). So level carries no information: velocity changes timbre
  only (the SoundFont's velocity layers and filters), and the model conditions on
  instrument and pitch only. The onset is about 4-9 ms (90-200 samples) into the clip.
* A silent note (peak below ``SILENT_PEAK`` = 1e-4, -80 dBFS, before normalising) is not
  written: it is left out of ``labels.csv`` with a warning naming it.
* Pitch labels are zero-padded MIDI numbers, "060" = C4 = 261.6 Hz, so the cache's
  sorted vocabulary is in pitch order; ``pitch_label`` / ``label_midi`` convert, and
  ``label_midi`` also reads note names ("C4", "F#3").
* Idempotent: existing wav files are kept, not rendered again (delete a folder to
  re-render it); a file is written under a temporary name and renamed; ``labels.csv``
  is rewritten on every run and lists exactly this run's notes. ``recipe.json`` records
  the settings (hold, length, rate, programs); a run with other settings in the same
  folder is refused rather than mixing notes made two ways.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import json
import os
import sys
import time
import warnings
from typing import NamedTuple, Sequence

import numpy as np
import soundfile as sf
from tqdm import tqdm

from audiox_jax import files
from audiox_jax.audio import AudioConfig, load
from audiox_jax.audio.pitch import estimate_f0, semitone_error
from audiox_jax.data import render
from audiox_jax.data.prepare import prepare
from audiox_jax.errors import ParamError

# name: (GM program, lowest MIDI, highest MIDI) rendered.
INSTRUMENTS = {
    "piano": (0, 21, 108),
    "organ": (20, 36, 96),
    "guitar": (24, 40, 88),
    "bass": (33, 28, 60),
    "strings": (48, 28, 96),
    "trumpet": (56, 54, 84),
    "brass": (61, 36, 84),
    "flute": (73, 60, 96),
}
DEFAULT_INSTRUMENTS = ("piano", "guitar", "strings", "brass", "flute", "organ")
DEFAULT_PITCHES = tuple(range(48, 85))  # C3 (130.8 Hz) .. C6 (1046.5 Hz)
DEFAULT_VELOCITIES = (70, 100, 120)
LABELS_CSV = "labels.csv"
RECIPE_JSON = "recipe.json"
LABEL_NAMES = ("instrument", "pitch")
PEAK_DBFS = -1.0
FADE_S = 0.02
SILENT_PEAK = 1e-4


class Note(NamedTuple):
    """One note of the data set; ``path`` is relative to the data set folder, "/"-separated."""

    instrument: str
    pitch: int
    velocity: int
    path: str


def pitch_label(midi: int) -> str:
    """MIDI pitch -> the data set's pitch class name: 60 -> "060"."""
    return f"{int(midi):03d}"


def label_midi(name: str) -> int:
    """A pitch class name -> MIDI pitch: "060" -> 60; note names work too: "C4" -> 60."""
    return render.note_to_midi(name)


def plan_notes(
    instruments: Sequence[str] = DEFAULT_INSTRUMENTS,
    pitches: Sequence[int] = DEFAULT_PITCHES,
    velocities: Sequence[int] = DEFAULT_VELOCITIES,
) -> list[Note]:
    """The notes to render: every instrument x (its pitches in range) x velocity, in that order."""
    if isinstance(instruments, str):
        raise ParamError(f"instruments={instruments!r} must be a sequence of names; try instruments=({instruments!r},)")
    unknown = [i for i in instruments if i not in INSTRUMENTS]
    if unknown or not instruments:
        raise ParamError(f"instruments={tuple(instruments)} must be a non-empty subset of {tuple(INSTRUMENTS)}")
    if len(set(instruments)) != len(instruments):
        raise ParamError(f"instruments={tuple(instruments)} lists an instrument twice")
    bad = [p for p in pitches if not 0 <= int(p) <= 127]
    if bad or len(pitches) == 0:
        raise ParamError(f"pitches={tuple(pitches)} must be MIDI numbers in 0..127 (60 = C4), at least one")
    bad = [v for v in velocities if not 1 <= int(v) <= 127]
    if bad or len(velocities) == 0:
        raise ParamError(f"velocities={tuple(velocities)} must be MIDI velocities in 1..127, at least one")
    notes = []
    for name in instruments:
        _, lo, hi = INSTRUMENTS[name]
        kept = sorted({int(p) for p in pitches if lo <= int(p) <= hi})
        if not kept:
            raise ParamError(
                f"instrument {name!r} plays MIDI {lo}..{hi} but pitches span {min(pitches)}..{max(pitches)}; "
                "widen pitches or drop the instrument"
            )
        for p in kept:
            for v in sorted({int(v) for v in velocities}):
                notes.append(Note(name, p, v, f"{name}/{name}_{p:03d}_{v:03d}.wav"))
    return notes


def render_note_dataset(
    out_dir: str,
    *,
    instruments: Sequence[str] = DEFAULT_INSTRUMENTS,
    pitches: Sequence[int] = DEFAULT_PITCHES,
    velocities: Sequence[int] = DEFAULT_VELOCITIES,
    hold_s: float = 0.8,
    seconds: float = 1.0,
    sr: int = 22050,
    workers: int = 1,
    progress: bool = True,
) -> list[str]:
    """Render the note data set into ``out_dir`` (layout and conventions in the module docstring).

    Args:
      out_dir: folder to write (created); existing notes in it are kept.
      instruments: names from ``INSTRUMENTS``; default the six of ``DEFAULT_INSTRUMENTS``.
      pitches: MIDI pitches, each kept for the instruments whose range holds it;
        default C3..C6 (48..84, 37 pitches).
      velocities: MIDI note-on velocities 1..127; default (70, 100, 120).
      hold_s: seconds the key is held (0.8 s); the release follows until ``seconds``.
      seconds: clip length, 1.0 s = 22050 samples at 22.05 kHz.
      sr: sample rate in Hz.
      workers: fluidsynth processes run at once (each note is one process, ~0.22 s).
      progress: print progress and a summary on stderr.
    Returns:
      the paths of the notes in ``labels.csv`` (in ``plan_notes`` order), then the CSV's.
    Raises:
      ParamError: bad arguments. render.ToolMissingError: fluidsynth or the SoundFont missing.
    """
    if not (hold_s > 0 and seconds > 0):
        raise ParamError(f"hold_s={hold_s!r} and seconds={seconds!r} must be > 0; try hold_s=0.8, seconds=1.0")
    if sr < 8000:
        raise ParamError(f"sr={sr!r} must be >= 8000 Hz; try sr=22050")
    if workers < 1:
        raise ParamError(f"workers={workers!r} must be >= 1")
    notes = plan_notes(instruments, pitches, velocities)
    render.soundfont()  # fail before any work when the SoundFont is missing
    _check_recipe(out_dir, {"hold_s": float(hold_s), "seconds": float(seconds), "sr": int(sr),
                            "peak_dbfs": PEAK_DBFS, "fade_s": FADE_S,
                            "programs": {name: INSTRUMENTS[name][0] for name in instruments}})
    todo = [n for n in notes if not os.path.isfile(os.path.join(out_dir, *n.path.split("/")))]
    t0 = time.monotonic()
    silent = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        jobs = [pool.submit(_render_one, out_dir, n, hold_s, seconds, sr) for n in todo]
        for note, job in zip(todo, tqdm(jobs, desc="render-notes", unit="note", disable=not progress or not jobs)):
            if not job.result():
                silent.append(note)
    if silent:
        warnings.warn(f"{len(silent)} notes were silent and are left out: {[n.path for n in silent]}", stacklevel=2)
    kept = [n for n in notes if os.path.isfile(os.path.join(out_dir, *n.path.split("/")))]
    csv_path = write_labels(out_dir, kept)
    if progress:
        sys.stderr.write(f"render-notes: {len(kept)} notes in {out_dir} ({len(todo)} rendered, "
                         f"{len(notes) - len(todo)} kept, {len(silent)} silent) in {time.monotonic() - t0:.1f} s\n")
    return [os.path.join(out_dir, *n.path.split("/")) for n in kept] + [csv_path]


def _check_recipe(out_dir: str, recipe: dict) -> None:
    """Refuse settings that differ from ``out_dir/recipe.json``; then write the merged recipe."""
    path = os.path.join(out_dir, RECIPE_JSON)
    old = {}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            old = json.load(f)
        diffs = [f"{k}: {old[k]!r} there, {recipe[k]!r} now" for k in recipe if k != "programs" and k in old
                 and old[k] != recipe[k]]
        diffs += [f"programs.{n}: {old['programs'][n]} there, {p} now" for n, p in recipe["programs"].items()
                  if n in old.get("programs", {}) and old["programs"][n] != p]
        if diffs:
            raise ParamError(f"out_dir={out_dir!r} holds notes rendered with other settings ({'; '.join(diffs)}); "
                             "use a new out_dir, or delete that one")
    merged = {**old, **recipe, "programs": {**old.get("programs", {}), **recipe["programs"]}}
    os.makedirs(out_dir, exist_ok=True)
    files.write_json(path, merged, sort_keys=True)


def _render_one(out_dir: str, note: Note, hold_s: float, seconds: float, sr: int) -> bool:
    """Render, fade, normalise and write one note; False (nothing written) when it is silent."""
    program = INSTRUMENTS[note.instrument][0]
    y = render.render_note(program, note.pitch, velocity=note.velocity, hold_s=hold_s, seconds=seconds, sr=sr)
    y = finish_note(y, sr)
    if y is None:
        return False
    path = os.path.join(out_dir, *note.path.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with files.atomic_write(path) as f:
        sf.write(f, y, sr, subtype="PCM_16", format="WAV")
    return True


def finish_note(y: np.ndarray, sr: int) -> np.ndarray | None:
    """A rendered note f32[samples] -> faded out over ``FADE_S``, peak-normalised to ``PEAK_DBFS``; None if silent."""
    y = np.asarray(y, np.float64).copy()
    n = min(len(y), int(round(FADE_S * sr)))
    y[len(y) - n :] *= 0.5 * (1.0 + np.cos(np.pi * np.arange(1, n + 1) / n))  # 1 -> 0, raised cosine
    peak = np.max(np.abs(y)) if len(y) else 0.0
    if peak < SILENT_PEAK:
        return None
    return (y * (10.0 ** (PEAK_DBFS / 20.0)) / peak).astype(np.float32)


def write_labels(out_dir: str, notes: Sequence[Note]) -> str:
    """Write ``out_dir/labels.csv`` (``path,instrument,pitch``) for ``notes``, atomically; returns its path."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, LABELS_CSV)
    with files.atomic_write(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(("path",) + LABEL_NAMES)
        w.writerows((n.path, n.instrument, pitch_label(n.pitch)) for n in notes)
    return path


def read_labels(out_dir: str) -> list[tuple[str, str, int]]:
    """``labels.csv`` of a rendered data set as (path relative to out_dir, instrument, MIDI pitch) rows."""
    path = os.path.join(out_dir, LABELS_CSV)
    if not os.path.isfile(path):
        raise ParamError(f"no {LABELS_CSV} in {out_dir!r}; render the data set first: "
                         f"python -m audiox_jax.data.notes --out {out_dir}")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [(r["path"], r["instrument"], label_midi(r["pitch"])) for r in rows]


def prepare_note_cache(notes_dir: str, cache_dir: str, *, audio_cfg=None, seconds: float = 1.0,
                       progress: bool = True):
    """Prepare a rendered data set as a log-mel cache: one item per note, labels "instrument" and "pitch".

    ``data.prepare.prepare`` with ``keep_whole=True``, ``max_seconds=seconds`` (each note
    zero-padded or cut to ``seconds``) and ``labels_csv=notes_dir/labels.csv``;
    ``audio_cfg`` defaults to ``AudioConfig()`` (22.05 kHz, 80 mels). Returns the Manifest.
    """
    read_labels(notes_dir)  # a clear error when the data set is not rendered
    return prepare(notes_dir, cache_dir, audio_cfg=AudioConfig() if audio_cfg is None else audio_cfg,
                   clip_seconds=seconds, keep_whole=True, max_seconds=seconds,
                   labels_csv=os.path.join(notes_dir, LABELS_CSV), label_names=LABEL_NAMES, progress=progress)


def check_notes(out_dir: str, *, every: int = 1, sr: int = 22050) -> dict:
    """Check rendered notes: none silent, and their pYIN f0 within a semitone of the MIDI pitch.

    Args:
      out_dir: a rendered data set.
      every: check every ``every``-th note of ``labels.csv`` (1: all; ~0.05 s per note).
      sr: rate to analyse at.
    Returns:
      {"checked": int, "silent": [paths], "pitch_accuracy": float,
       "pitch_wrong": [{"path", "midi", "f0_hz", "error_semitones"}],
       "pitch_accuracy_by_instrument": {name: float}}.
    """
    if every < 1:
        raise ParamError(f"every={every!r} must be >= 1")
    rows = read_labels(out_dir)[::every]
    silent, wrong, by_inst = [], [], {}
    for rel, inst, midi in rows:
        y, _ = load(os.path.join(out_dir, *rel.split("/")), sr)
        if np.max(np.abs(y)) < SILENT_PEAK:
            silent.append(rel)
        f0 = estimate_f0(y, sr, target_midi=midi)
        err = float(semitone_error(f0, midi))
        ok = bool(abs(err) <= 1.0)
        by_inst.setdefault(inst, []).append(ok)
        if not ok:
            wrong.append({"path": rel, "midi": midi, "f0_hz": f0, "error_semitones": err})
    n = len(rows)
    return {
        "checked": n,
        "silent": silent,
        "pitch_accuracy": float(1.0 - len(wrong) / n) if n else float("nan"),
        "pitch_wrong": wrong,
        "pitch_accuracy_by_instrument": {k: float(np.mean(v)) for k, v in sorted(by_inst.items())},
    }


def _ints(text: str) -> list[int]:
    """ "48-84" -> 48..84 inclusive; "60,64,67" -> [60, 64, 67]; note names allowed ("C3-C6")."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if "-" in part:
            a, b = part.split("-", 1)
            out.extend(range(label_midi(a), label_midi(b) + 1))
        elif part:
            out.append(label_midi(part))
    return out


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The recipe's command-line options (for ``python -m audiox_jax.data.notes`` and ``audiox-jax render-notes``)."""
    p.add_argument("--out", required=True, help="output folder (existing notes are kept)")
    p.add_argument("--instruments", default=",".join(DEFAULT_INSTRUMENTS),
                   help=f"comma-separated names, or 'all'; choices: {','.join(INSTRUMENTS)}")
    p.add_argument("--pitches", default="48-84", help="MIDI range/list, e.g. 48-84, C3-C6 or 60,64,67 (default 48-84)")
    p.add_argument("--velocities", default=",".join(map(str, DEFAULT_VELOCITIES)), help="MIDI velocities (70,100,120)")
    p.add_argument("--hold", type=float, default=0.8, help="seconds the key is held (0.8)")
    p.add_argument("--seconds", type=float, default=1.0, help="clip length in seconds (1.0)")
    p.add_argument("--sr", type=int, default=22050, help="sample rate in Hz (22050)")
    p.add_argument("--workers", type=int, default=1, help="fluidsynth processes at once (1)")
    p.add_argument("--check", type=int, default=0, metavar="EVERY",
                   help="then check every EVERY-th note for silence and pitch (0: no check)")
    return p


def run(args: argparse.Namespace) -> int:
    """Render (and optionally check) the data set from parsed :func:`add_arguments` options; returns 0."""
    instruments = tuple(INSTRUMENTS) if args.instruments == "all" else tuple(
        s.strip() for s in args.instruments.split(",") if s.strip())
    render_note_dataset(
        args.out, instruments=instruments, pitches=_ints(args.pitches), velocities=_ints(args.velocities),
        hold_s=args.hold, seconds=args.seconds, sr=args.sr, workers=args.workers,
    )
    if args.check:
        report = check_notes(args.out, every=args.check, sr=args.sr)
        print(f"checked {report['checked']} notes: {len(report['silent'])} silent, "
              f"pitch accuracy {report['pitch_accuracy']:.3f}")
        for name, acc in report["pitch_accuracy_by_instrument"].items():
            print(f"  {name:10s} {acc:.3f}")
        for w in report["pitch_wrong"][:20]:
            print(f"  wrong: {w['path']} f0={w['f0_hz']:.1f} Hz ({w['error_semitones']:+.2f} semitones)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m audiox_jax.data.notes",
        description="Render the General MIDI note data set (instruments x pitches x velocities) with fluidsynth.",
    )
    return run(add_arguments(p).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
