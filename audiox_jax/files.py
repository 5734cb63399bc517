"""Atomic file writes: a reader (or a resumed run) sees the old file or the whole new one, never half.

``with atomic_write(path, "w") as f: ...`` writes to a temporary file beside ``path`` (same
folder, so the rename stays on one file system) and renames it onto ``path`` with
``os.replace`` when the block ends without an error; on an error the temporary file is
removed and ``path`` is untouched.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import IO, Iterator


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", *, encoding: str | None = None,
                 newline: str | None = None) -> Iterator[IO]:
    """Open ``path`` for writing through a temporary file (``mode`` "wb" or "w"; "w" defaults to UTF-8;
    ``newline`` as for ``open``, e.g. "" for the csv module)."""
    if mode not in ("wb", "w"):
        raise ValueError(f"mode={mode!r} must be 'wb' or 'w'")
    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        text = mode == "w"
        with open(tmp, mode, encoding=(encoding or "utf-8") if text else None, newline=newline if text else None) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path, "wb") as f:
        f.write(data)


def write_json(path: str | os.PathLike, obj, **dump_kwargs) -> None:
    """Write ``obj`` as JSON (``indent=1`` unless given) to ``path`` atomically."""
    with atomic_write(path, "w") as f:
        json.dump(obj, f, **{"indent": 1, **dump_kwargs})
