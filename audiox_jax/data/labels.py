"""Per-file class labels: from first-level sub-folder names or from a metadata CSV.

Conventions (stated once, here):

* Paths are relative to ``audio_dir`` with "/" separators (``piano/C4.wav``).
* Folders: the first-level sub-folder is the class (``piano/soft/a.wav`` -> "piano") of
  one label named "label" (or ``label_names[0]``). Files directly in ``audio_dir`` have
  no class and are skipped with a reason. A folder with no sub-folders at all is
  unlabelled (zero labels per item).
* CSV: a header row ``path,label_a,label_b,...`` names the labels; each later row gives a
  file (relative to ``audio_dir``; absolute paths inside it are accepted) and its class
  names. ``label_names`` selects and orders a subset of the columns. Audio files with
  no row, or with an empty cell, are skipped with a reason; rows naming no audio file
  are reported.
* Vocabulary: per label, the sorted class names of the files kept; a class id is the
  index into that list (int32).
"""

from __future__ import annotations

import csv
import io
import os
import posixpath
from typing import NamedTuple, Sequence

import numpy as np

from audiox_jax.errors import ParamError

FOLDER_LABEL = "label"


class Labelling(NamedTuple):
    """How files are labelled.

    source: "folders", "csv" or "none". names: the label names, in column order.
    by_file: relative path -> class names tuple[str, ...] (one per label), for labelled files.
    skipped: relative path -> why it has no labels.
    unmatched: CSV rows naming no audio file, as "path (line N)".
    """

    source: str
    names: tuple[str, ...]
    by_file: dict[str, tuple[str, ...]]
    skipped: dict[str, str]
    unmatched: tuple[str, ...]


def normalize_path(path: str, audio_dir: str) -> str:
    """A user-written path -> the canonical relative "/" form used as a key."""
    p = path.strip()
    if os.path.isabs(p):
        p = os.path.relpath(p, audio_dir)
    p = p.replace("\\", "/")
    return posixpath.normpath(p)


def label_files(
    rel_paths: Sequence[str], audio_dir: str, *, labels_csv: str | None, label_names: Sequence[str] | None
) -> Labelling:
    """Labels for each relative path, from ``labels_csv`` if given, else from sub-folders."""
    if labels_csv is not None:
        return _from_csv(rel_paths, audio_dir, labels_csv, label_names)
    return _from_folders(rel_paths, label_names)


def _from_folders(rel_paths: Sequence[str], label_names: Sequence[str] | None) -> Labelling:
    nested = [p for p in rel_paths if "/" in p]
    if label_names is not None and len(label_names) != 1:
        raise ParamError(
            f"label_names={tuple(label_names)} must name exactly one label when labels come from sub-folders; "
            f"try label_names=('{FOLDER_LABEL}',), or pass labels_csv for several labels"
        )
    if not nested:
        if label_names is not None:
            raise ParamError(
                f"label_names={tuple(label_names)} was given but the folder has no class sub-folders and no "
                "labels_csv was passed; put files in <audio_dir>/<class>/ or pass labels_csv"
            )
        return Labelling("none", (), {p: () for p in rel_paths}, {}, ())
    name = FOLDER_LABEL if label_names is None else str(label_names[0])
    by_file, skipped = {}, {}
    for p in rel_paths:
        if "/" in p:
            by_file[p] = (p.split("/", 1)[0],)
        else:
            skipped[p] = "not inside a class sub-folder (labels come from first-level sub-folder names)"
    return Labelling("folders", (name,), by_file, skipped, ())


def _from_csv(
    rel_paths: Sequence[str], audio_dir: str, labels_csv: str, label_names: Sequence[str] | None
) -> Labelling:
    header, rows = read_csv(labels_csv, audio_dir)
    available = header[1:]
    names = tuple(available) if label_names is None else tuple(str(n) for n in label_names)
    missing = [n for n in names if n not in available]
    if missing or not names:
        raise ParamError(
            f"label_names={names} must be a non-empty subset of the label columns {tuple(available)} "
            f"in labels_csv={labels_csv!r}"
        )
    cols = [available.index(n) for n in names]
    by_file, skipped = {}, {}
    for p in rel_paths:
        if p not in rows:
            skipped[p] = f"no row in labels_csv={os.path.basename(labels_csv)}"
            continue
        line, values = rows[p]
        picked = tuple(values[c] for c in cols)
        empty = [n for n, v in zip(names, picked) if v == ""]
        if empty:
            skipped[p] = f"empty value for label {empty[0]!r} in labels_csv line {line}"
        else:
            by_file[p] = picked
    present = set(rel_paths)
    unmatched = tuple(f"{p} (line {line})" for p, (line, _) in rows.items() if p not in present)
    return Labelling("csv", names, by_file, skipped, unmatched)


def read_csv(labels_csv: str, audio_dir: str) -> tuple[list[str], dict[str, tuple[int, list[str]]]]:
    """Parse ``path,label_a,...``: returns the header and {relative path: (line number, label values)}."""
    if not os.path.isfile(labels_csv):
        raise ParamError(f"labels_csv={labels_csv!r} is not a file; pass the path of a 'path,label,...' CSV")
    with open(labels_csv, "rb") as f:
        raw = f.read().removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ParamError(
            f"labels_csv={labels_csv!r} is not UTF-8 text (byte 0x{raw[err.start]:02x} on line {line}); save it as "
            f"UTF-8, e.g. iconv -f latin1 -t utf-8 {labels_csv} > labels-utf8.csv"
        ) from None
    table = list(csv.reader(io.StringIO(text, newline="")))
    if not table or len(table[0]) < 2 or table[0][0].strip().lower() != "path":
        first = table[0] if table else []
        raise ParamError(
            f"labels_csv={labels_csv!r} needs a header row 'path,<label name>,...' with at least one label "
            f"column; its first row is {first}"
        )
    header = [h.strip() for h in table[0]]
    rows: dict[str, tuple[int, list[str]]] = {}
    for line, row in enumerate(table[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise ParamError(
                f"labels_csv={labels_csv!r} line {line} has {len(row)} fields but the header has {len(header)}; "
                "fix the row (quote values that contain commas)"
            )
        key = normalize_path(row[0], audio_dir)
        if key in rows:
            raise ParamError(f"labels_csv={labels_csv!r} lists {key!r} twice (lines {rows[key][0]} and {line})")
        rows[key] = (line, [c.strip() for c in row[1:]])
    return header, rows


def vocabulary(names: Sequence[str], labels: Sequence[tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """{label name: sorted class names} over the given per-file label tuples."""
    return {n: tuple(sorted({lab[i] for lab in labels})) for i, n in enumerate(names)}


def encode(labels: tuple[str, ...], vocab: dict[str, tuple[str, ...]]) -> np.ndarray:
    """Class names tuple[str, ...] -> class ids i32[n_labels] (indices into each sorted vocabulary)."""
    return np.asarray([vocab[n].index(v) for n, v in zip(vocab, labels)], np.int32).reshape(len(vocab))
