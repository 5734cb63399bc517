"""Turn a folder of audio files into a log-mel cache for training (see :mod:`audiox_jax.data.cache`).

``prepare`` runs in stages: check the settings against any previous cache in
``out_dir``; find audio files (by extension, recursively, case-insensitive); label them
(sub-folders or a CSV, :mod:`audiox_jax.data.labels`); decode, cut and transform only
the files that are new or changed (size or mtime differ); assemble the shards from the
previous cache and the new results; refit the normalisation stats; write the manifest
and ``report.txt``.

Conventions:

* Decoding: ``audio.load`` (mono by channel average, resampled to ``audio_cfg.sr``).
  Converted with a note in ``report.txt``: files of more than two channels (mixed to
  mono), files at a lower rate than ``audio_cfg.sr`` (upsampled: nothing above half their
  rate), float files that exceed full scale (peak > 1, e.g. integer-scaled floats at
  ~1e6: divided by their peak, so they neither skew the normaliser nor clip), and WAVs
  cut short (the header promises more audio than the file holds: the part present is kept).
* Cutting: :mod:`audiox_jax.data.clips` (fixed-length clips, or whole files padded to
  ``max_seconds``); every item is zero-padded to the same length.
* Features: ``audio.log_mel`` of each padded item, jitted and batched (batches padded
  to a power of two <= 64 items, so at most 7 compilations).
* Skipped, never silently: unreadable / empty / non-audio / NaN files, broken or looping
  symbolic links, digital silence (every sample 0), files shorter than one STFT window
  (``n_fft`` samples), files whose every item is below ``min_rms_db``, and files without
  labels; each is listed in ``report.txt`` with its reason. Unusable audio is remembered
  by size + mtime and not decoded again.
* Crash safety: decoded files are staged in ``out_dir/.work/`` until the run finishes
  (a re-run after a crash reuses them); the new arrays are written to temporary files,
  renamed into place, and ``manifest.json`` is replaced last. Two runs must not share
  an ``out_dir`` at the same time.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import re
import shutil
import struct
import warnings
from typing import Sequence

import jax
import numpy as np
from tqdm import tqdm

from audiox_jax.audio import AudioConfig, MelStats, fit_meanstd, load, log_mel
from audiox_jax.audio.io import native_path
from audiox_jax.data import cache as C
from audiox_jax.data.cache import Cache, FileRecord, Manifest, ShardedMels, load_cache
from audiox_jax.data.clips import ClipSpec, cut, rms_db
from audiox_jax.data.labels import encode, label_files, vocabulary
from audiox_jax.errors import AudioFileError, AudioxError, ParamError
from audiox_jax.files import atomic_write

__all__ = ["AUDIO_EXTENSIONS", "Cache", "Manifest", "find_audio", "load_cache", "log_mel_items", "prepare"]

AUDIO_EXTENSIONS = (
    ".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc",
    ".au", ".snd", ".w64", ".caf", ".m4a",
)
STATS_KINDS = ("meanstd", "range")
MAX_BATCH = 64  # items per log-mel call
WORK = ".work"


def prepare(
    audio_dir: str,
    out_dir: str,
    *,
    audio_cfg: AudioConfig,
    clip_seconds: float,
    keep_whole: bool = False,
    max_seconds: float | None = None,
    labels_csv: str | None = None,
    label_names: Sequence[str] | None = None,
    stats_kind: str = "meanstd",
    hop_seconds: float | None = None,
    min_rms_db: float | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> Manifest:
    """Build or update the log-mel cache of every audio file under ``audio_dir``.

    Args:
      audio_dir: folder searched recursively for files with an ``AUDIO_EXTENSIONS`` suffix.
      out_dir: cache folder (created); see :mod:`audiox_jax.data.cache` for its layout.
      audio_cfg: front-end settings (rate, STFT, mel, log) of every item.
      clip_seconds: clip length in seconds, e.g. 2.0 (ignored with ``keep_whole``).
      keep_whole: one item per file, its first ``max_seconds`` zero-padded to ``max_seconds``.
      max_seconds: read at most this many seconds per file (required with ``keep_whole``).
      labels_csv: ``path,label_a,...`` CSV of labels (paths relative to ``audio_dir``);
        None takes one label, "label", from first-level sub-folder names.
      label_names: labels to keep (CSV columns), or the folder label's name.
      stats_kind: "meanstd" (per-bin mean/std) or "range" (min/max) for ``stats.json``.
      hop_seconds: seconds between clip starts; None = ``clip_seconds`` (no overlap).
      min_rms_db: drop items quieter than this (dBFS, e.g. -60.0); None keeps all.
      progress: draw a progress bar on stderr.
      overwrite: rebuild a cache that was made with other audio or clip settings.
    Returns:
      the :class:`Manifest` written; ``processed`` names the files decoded by this run.
    Raises:
      ParamError: bad arguments, or ``out_dir`` holds a cache made with other settings.
      AudioxError: no usable audio under ``audio_dir`` (``report.txt`` says why).
    """
    spec = ClipSpec(clip_seconds, hop_seconds, keep_whole, max_seconds, min_rms_db)
    if isinstance(label_names, str):
        raise ParamError(f"label_names={label_names!r} must be a tuple of names; try label_names=({label_names!r},)")
    if stats_kind not in STATS_KINDS:
        raise ParamError(f"stats_kind={stats_kind!r} must be one of {STATS_KINDS}")
    audio_dir, out_dir = os.path.abspath(os.fspath(audio_dir)), os.path.abspath(os.fspath(out_dir))
    if not os.path.isdir(audio_dir):
        raise ParamError(f"audio_dir={audio_dir!r} is not a folder; pass the folder that holds your audio files")
    os.makedirs(out_dir, exist_ok=True)

    previous = _previous_cache(out_dir, audio_cfg, spec, overwrite)
    rels = find_audio(audio_dir)
    labelling = label_files(rels, audio_dir, labels_csv=labels_csv, label_names=label_names)
    plan, unreadable = _plan(audio_dir, rels, labelling, previous)
    staged = _decode_all(audio_dir, out_dir, [r for r, how in plan.items() if how == "process"],
                         audio_cfg, spec, progress)
    records = _records(audio_dir, rels, labelling, plan, staged, previous, unreadable)
    report = os.path.join(out_dir, C.REPORT)
    if not any(r.status == C.STATUS_OK for r in records):
        _write_report(report, audio_dir, out_dir, records, labelling.unmatched, spec)
        shutil.rmtree(os.path.join(out_dir, WORK), ignore_errors=True)  # holds nothing: every decode failed
        raise AudioxError(_nothing_usable(audio_dir, records, report))

    manifest = _write_cache(out_dir, audio_dir, audio_cfg, spec, labelling, records, staged, previous, stats_kind)
    _write_report(report, audio_dir, out_dir, records, labelling.unmatched, spec)
    shutil.rmtree(os.path.join(out_dir, WORK), ignore_errors=True)
    return manifest


# ---------------------------------------------------------------- finding and planning


def find_audio(audio_dir: str) -> list[str]:
    """Relative "/" paths of every file under ``audio_dir`` whose suffix is in ``AUDIO_EXTENSIONS`` (sorted)."""
    found = []
    for root, dirs, files in os.walk(audio_dir):
        dirs.sort()
        for name in files:
            if os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS:
                found.append(os.path.relpath(os.path.join(root, name), audio_dir).replace(os.sep, "/"))
    return sorted(found)


def _previous_cache(out_dir: str, cfg: AudioConfig, spec: ClipSpec, overwrite: bool) -> Manifest | None:
    """The previous cache's manifest when its items can be reused, else None."""
    if overwrite or not os.path.isfile(os.path.join(out_dir, C.MANIFEST)):
        return None
    old = C.read_manifest(out_dir)
    diffs = _differences("audio_cfg", old.audio_config.to_dict(), cfg.to_dict())
    diffs += _differences("clips", old.clips.to_dict(), spec.to_dict())
    if diffs:
        raise ParamError(
            f"out_dir={out_dir!r} holds a cache made with other settings ({'; '.join(diffs)}); "
            "use a new out_dir, or pass overwrite=True to rebuild this one"
        )
    try:
        load_cache(out_dir, mmap=True)
    except (AudioxError, OSError, ValueError, KeyError) as err:
        warnings.warn(f"the previous cache in {out_dir} is unusable ({err}); recomputing every file", stacklevel=3)
        return None
    return old


def _differences(prefix: str, old: dict, new: dict) -> list[str]:
    return [f"{prefix}.{k}: cached {old.get(k)!r}, now {new.get(k)!r}" for k in sorted(new) if old.get(k) != new.get(k)]


def _plan(audio_dir: str, rels: list[str], labelling,
          previous: Manifest | None) -> tuple[dict[str, str], dict[str, str]]:
    """{path: "reuse" | "bad" | "process" | "unlabelled" | "unreadable"} for each file found,
    and {path: why} for the unreadable ones (broken or looping symbolic links)."""
    old = {f.path: f for f in previous.files} if previous else {}
    plan, unreadable = {}, {}
    for rel in rels:
        problem = _stat_problem(os.path.join(audio_dir, rel))
        if problem:
            plan[rel], unreadable[rel] = "unreadable", problem
            continue
        if rel not in labelling.by_file:
            plan[rel] = "unlabelled"
            continue
        size, mtime = _stat(os.path.join(audio_dir, rel))
        rec = old.get(rel)
        same = rec is not None and (rec.size, rec.mtime_ns) == (size, mtime)
        plan[rel] = {C.STATUS_OK: "reuse", C.STATUS_BAD: "bad"}.get(rec.status, "process") if same else "process"
    return plan, unreadable


def _stat(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return int(st.st_size), int(st.st_mtime_ns)


def _stat_problem(path: str) -> str:
    """Why ``path`` cannot even be looked at (a broken or looping symbolic link), or ""."""
    try:
        os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return (f"a symbolic link that loops (it leads back to itself: {os.readlink(path)!r}); "
                    "fix or remove the link")
        if os.path.islink(path):
            return f"a symbolic link to a missing file ({os.readlink(path)!r}); fix or remove the link"
        return f"cannot be read ({err.strerror})"
    return ""


# ---------------------------------------------------------------- decoding


@dataclasses.dataclass(frozen=True)
class _Decoded:
    """A decoded file: staged npz path and metadata, or the reason it is unusable."""

    size: int
    mtime_ns: int
    staged: str = ""
    n_items: int = 0
    seconds: float = 0.0
    note: str = ""
    error: str = ""


def _decode_all(audio_dir, out_dir, rels, cfg, spec, progress) -> dict[str, _Decoded]:
    work = os.path.join(out_dir, WORK)
    os.makedirs(work, exist_ok=True)
    bar = tqdm(total=len(rels), desc="prepare", unit="file", disable=not progress or not rels)
    out = {}
    for rel in rels:
        out[rel] = _decode_one(os.path.join(audio_dir, rel), rel, work, cfg, spec)
        bar.update()
    bar.close()
    return out


def _decode_one(path: str, rel: str, work: str, cfg: AudioConfig, spec: ClipSpec) -> _Decoded:
    size, mtime = _stat(path)
    key = json.dumps([cfg.to_dict(), spec.to_dict(), rel, size, mtime], sort_keys=True)
    staged = os.path.join(work, hashlib.sha1(key.encode()).hexdigest()[:20] + ".npz")
    if os.path.isfile(staged):  # decoded by an interrupted earlier run
        with np.load(staged) as z:
            return _Decoded(size, mtime, staged, len(z["offset"]), float(z["seconds"]), str(z["note"]))
    try:
        items, offsets, lengths, seconds, note = read_items(path, cfg, spec)
    except AudioFileError as err:
        return _Decoded(size, mtime, error=str(err).removeprefix(f"{path}: "))
    mels = log_mel_items(items, cfg)
    if not np.all(np.isfinite(mels)):
        return _Decoded(size, mtime, error="log-mel has NaN or Inf values")
    with atomic_write(staged) as f:
        np.savez(f, mels=mels, offset=offsets, length=lengths, seconds=np.float64(seconds), note=np.str_(note))
    return _Decoded(size, mtime, staged, len(offsets), seconds, note)


def read_items(path: str, cfg: AudioConfig, spec: ClipSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, str]:
    """Decode and cut one file: items f32[k, item_samples], offsets i64[k], lengths i64[k], seconds read, note.

    The note lists the conversions made (see the module docstring): mixed to mono from more
    than two channels, upsampled, scaled down from above full scale, a WAV cut short.

    Raises:
      AudioFileError: unreadable, shorter than ``n_fft`` samples, digital silence, or silent
        (all items below ``min_rms_db``).
    """
    read = None if spec.max_seconds is None else spec.max_seconds + 0.1  # a little extra to detect truncation
    y, sr = load(path, cfg.sr, max_seconds=read)
    note = _format_notes(path, sr)
    if spec.max_seconds is not None:
        limit = int(round(spec.max_seconds * sr))
        if len(y) > limit:
            y = y[:limit]
            note.append(f"truncated to max_seconds={spec.max_seconds}")
    if len(y) < cfg.n_fft:
        raise AudioFileError(
            f"{path}: too short: {len(y)} samples ({1000 * len(y) / sr:.1f} ms) < one STFT window n_fft={cfg.n_fft}"
        )
    peak = float(np.max(np.abs(y)))
    if peak == 0.0:
        raise AudioFileError(f"{path}: silent: every sample is 0 (digital silence)")
    if peak > 1.0:  # beyond full scale, only possible in float files: would skew the normaliser
        y = y / np.float32(peak)
        note.append(f"peak {peak:.4g} ({20 * np.log10(peak):+.1f} dBFS) is above full scale: divided by it "
                    "(0 dBFS peak)")
    items, offsets, lengths = cut(y, spec, sr)
    if spec.min_rms_db is not None:
        level = rms_db(items, lengths)
        keep = level >= spec.min_rms_db
        if not keep.any():
            raise AudioFileError(
                f"{path}: silent: every item is below min_rms_db={spec.min_rms_db} dBFS "
                f"(loudest {level.max():.1f} dBFS)"
            )
        if not keep.all():
            note.append(f"dropped {int((~keep).sum())} of {len(keep)} items below min_rms_db={spec.min_rms_db} dBFS")
        items, offsets, lengths = items[keep], offsets[keep], lengths[keep]
    return items, offsets, lengths, len(y) / sr, "; ".join(note)


def _format_notes(path: str, sr: int) -> list[str]:
    """Notes on how a decoded file was converted: channels mixed, upsampled, a WAV cut short."""
    import soundfile as sf

    try:
        info = sf.info(native_path(path))
    except (RuntimeError, OSError, TypeError):  # decoded by the fallback decoder: its format is not known here
        return []
    notes = []
    if info.channels > 2:
        notes.append(f"mixed {info.channels} channels to mono (their average)")
    if info.samplerate < sr:
        notes.append(f"upsampled from {info.samplerate} Hz to {sr} Hz: nothing above {info.samplerate / 2:g} Hz")
    short = _wav_shortfall(path)
    if short:
        notes.append(f"cut short: its WAV header declares {short[0]} bytes of audio, the file holds {short[1]}; "
                     "kept what is there")
    return notes


def _wav_shortfall(path: str) -> tuple[int, int] | None:
    """(declared, present) bytes of a RIFF/WAVE file's ``data`` chunk when fewer are present, else None."""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        size, pos = os.fstat(f.fileno()).st_size, 12
        while pos + 8 <= size:
            f.seek(pos)
            cid, n = struct.unpack("<4sI", f.read(8))
            if cid == b"data":
                present = size - pos - 8
                return (n, present) if n != 0xFFFFFFFF and present < n else None  # 0xFFFFFFFF: a stream's open size
            pos += 8 + n + (n & 1)
    return None


_log_mel_jit = jax.jit(log_mel, static_argnames="cfg")


def log_mel_items(items: np.ndarray, cfg: AudioConfig) -> np.ndarray:
    """Items f32[k, samples] -> log-mel f32[k, n_mels, frames] via jitted ``audio.log_mel``.

    Calls are at most ``MAX_BATCH`` items, zero-padded to a power of two, so a run
    compiles at most once per size in 1, 2, 4, ..., 64.
    """
    out = []
    for start in range(0, len(items), MAX_BATCH):
        chunk = items[start : start + MAX_BATCH]
        size = 1 << (len(chunk) - 1).bit_length()
        padded = np.zeros((size, items.shape[1]), np.float32)
        padded[: len(chunk)] = chunk
        out.append(np.asarray(_log_mel_jit(padded, cfg=cfg))[: len(chunk)])
    return np.concatenate(out)


# ---------------------------------------------------------------- records and writing


def _records(audio_dir, rels, labelling, plan, staged, previous, unreadable) -> list[FileRecord]:
    """One FileRecord per file found (``first`` filled in later by :func:`_write_cache`)."""
    old = {f.path: f for f in previous.files} if previous else {}
    out = []
    for rel in rels:
        how = plan[rel]
        if how == "unreadable":  # size and mtime 0: looked at again on every run
            out.append(FileRecord(rel, 0, 0, C.STATUS_BAD, unreadable[rel]))
        elif how == "unlabelled":
            size, mtime = _stat(os.path.join(audio_dir, rel))
            out.append(FileRecord(rel, size, mtime, C.STATUS_UNLABELLED, labelling.skipped[rel]))
        elif how in ("reuse", "bad"):
            out.append(dataclasses.replace(old[rel], labels=labelling.by_file[rel]))
        else:
            d = staged[rel]
            status, reason = (C.STATUS_BAD, d.error) if d.error else (C.STATUS_OK, d.note)
            out.append(FileRecord(rel, d.size, d.mtime_ns, status, reason, -1, d.n_items,
                                  labelling.by_file[rel], d.seconds))
    return out


def _write_cache(out_dir, audio_dir, cfg, spec, labelling, records, staged, previous, stats_kind) -> Manifest:
    """Assemble shards, labels.npy, clips.npz, stats.json and manifest.json from old and new items."""
    item_samples, frames = spec.item_samples(cfg.sr), cfg.frames(spec.item_samples(cfg.sr))
    ok = [r for r in records if r.status == C.STATUS_OK]
    n = sum(r.n_items for r in ok)
    vocab = vocabulary(labelling.names, [r.labels for r in ok])
    old = load_cache(out_dir, mmap=True) if previous else None
    old_first = {f.path: f.first for f in previous.files} if previous else {}

    shard_sizes = [min(C.SHARD_SIZE, n - s) for s in range(0, n, C.SHARD_SIZE)]
    tmp_shards = [os.path.join(out_dir, C.shard_name(i) + ".tmp") for i in range(len(shard_sizes))]
    shards = [np.lib.format.open_memmap(p, mode="w+", dtype=np.float32, shape=(k, cfg.n_mels, frames))
              for p, k in zip(tmp_shards, shard_sizes)]
    writer = ShardedMels(shards)
    labels = np.zeros((n, len(labelling.names)), np.int32)
    file_index, offset, length = (np.zeros(n, np.int32), np.zeros(n, np.int64), np.zeros(n, np.int64))
    first, final = 0, []
    for i, rec in enumerate(records):
        if rec.status != C.STATUS_OK:
            final.append(dataclasses.replace(rec, first=-1, n_items=0))
            continue
        rows = slice(first, first + rec.n_items)
        if rec.path in staged:
            with np.load(staged[rec.path].staged) as z:
                mels, offset[rows], length[rows] = z["mels"], z["offset"], z["length"]
        else:
            src = slice(old_first[rec.path], old_first[rec.path] + rec.n_items)
            mels, offset[rows], length[rows] = old.mels[src], old.offset[src], old.length[src]
        _put(writer, first, mels)
        labels[rows] = encode(rec.labels, vocab)
        file_index[rows] = i
        final.append(dataclasses.replace(rec, first=first))
        first += rec.n_items
    for s in shards:
        s.flush()
    valid = np.minimum(frames, cfg.frames(length)).astype(np.int32)  # frames not made only of padding
    stats = fit_stats(shards, valid, stats_kind)
    del writer, shards, old

    for i, p in enumerate(tmp_shards):
        os.replace(p, os.path.join(out_dir, C.shard_name(i)))
    for name in os.listdir(out_dir):
        m = re.fullmatch(r"mels-(\d{5})\.npy", name)
        if m and int(m.group(1)) >= len(shard_sizes):
            os.remove(os.path.join(out_dir, name))
    _save_npy(os.path.join(out_dir, C.LABELS), labels)
    with atomic_write(os.path.join(out_dir, C.CLIPS)) as f:
        np.savez(f, file_index=file_index, offset=offset, length=length, frames=valid)
    C.write_json(os.path.join(out_dir, C.STATS), stats.to_dict())

    manifest = Manifest(
        audio_dir=audio_dir, audio_config=cfg, clips=spec, item_samples=item_samples, frames=frames,
        label_source=labelling.source, label_names=labelling.names, vocab=vocab, stats_kind=stats_kind,
        n_items=n, shards=tuple((C.shard_name(i), k) for i, k in enumerate(shard_sizes)), files=tuple(final),
        processed=tuple(r for r in staged), reused=tuple(r.path for r in ok if r.path not in staged),
    )
    C.write_json(os.path.join(out_dir, C.MANIFEST), manifest.to_dict())
    return manifest


def _put(writer: ShardedMels, first: int, mels: np.ndarray) -> None:
    """Copy f32[k, n_mels, frames] into the shards at items first .. first + k."""
    k, done = len(mels), 0
    while done < k:
        s = int(np.searchsorted(writer.starts, first + done, side="right") - 1)
        at = first + done - int(writer.starts[s])
        take = min(k - done, len(writer.shards[s]) - at)
        writer.shards[s][at : at + take] = mels[done : done + take]
        done += take


def _save_npy(path: str, arr: np.ndarray) -> None:
    with atomic_write(path) as f:
        np.save(f, arr)


def fit_stats(shards: Sequence[np.ndarray], valid_frames: np.ndarray, kind: str) -> MelStats:
    """MelStats over the first ``valid_frames`` i32[N] frames of each item in shards f32[n, n_mels, frames].

    kind "meanstd": per-bin mean/std (``audio.fit_meanstd``); "range": global min/max.
    """
    def chunks():
        start = 0
        for s in shards:
            v = valid_frames[start : start + len(s)]
            start += len(s)
            full = v >= s.shape[-1]
            if full.any():
                yield np.asarray(s[full])
            for i in np.flatnonzero(~full):
                yield np.asarray(s[i, :, : v[i]])

    if kind == "meanstd":
        return fit_meanstd(chunks())
    lo, hi = np.inf, -np.inf
    for c in chunks():
        lo, hi = min(lo, float(c.min())), max(hi, float(c.max()))
    if not hi > lo:
        raise AudioxError(f"stats_kind='range' needs varying log-mel values, but every value is {lo}")
    return MelStats(kind="range", lo=lo, hi=hi)


# ---------------------------------------------------------------- reporting


def _write_report(path, audio_dir, out_dir, records, unmatched, spec) -> None:
    ok = [r for r in records if r.status == C.STATUS_OK]
    bad = [r for r in records if r.status != C.STATUS_OK]
    notes = [r for r in ok if r.reason]
    lines = [
        "audiox-jax prepare report",
        f"audio_dir: {audio_dir}",
        f"out_dir: {out_dir}",
        f"item settings: {json.dumps(spec.to_dict())}",
        f"files found: {len(records)} (extensions {', '.join(AUDIO_EXTENSIONS)})",
        f"files used: {len(ok)}, items: {sum(r.n_items for r in ok)}",
        f"files skipped: {len(bad)}",
        "",
        "skipped files:",
        *(f"  {r.path}: [{r.status}] {r.reason}" for r in bad),
        "",
        "notes:",
        *(f"  {r.path}: {r.reason}" for r in notes),
    ]
    if unmatched:
        lines += ["", "labels_csv rows naming no audio file:", *(f"  {u}" for u in unmatched)]
    with open(path, "w", encoding="utf-8", errors="backslashreplace") as f:  # names that are not UTF-8: \udcff
        f.write("\n".join(lines) + "\n")


def _nothing_usable(audio_dir: str, records: list[FileRecord], report: str) -> str:
    if not records:
        return (
            f"no audio files under audio_dir={audio_dir!r}: looked recursively for extensions "
            f"{', '.join(AUDIO_EXTENSIONS)}; check the path"
        )
    shown = "; ".join(f"{r.path}: {r.reason}" for r in records[:5])
    more = f" (and {len(records) - 5} more)" if len(records) > 5 else ""
    return (
        f"no usable audio under audio_dir={audio_dir!r}: found {len(records)} audio file(s), all skipped: "
        f"{shown}{more}; see {report}"
    )
