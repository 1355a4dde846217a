"""Atomic file writes: a reader (another process, a server restarted mid-write) sees the old
file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Read once, at import (os.umask can only be read by setting it, which is not thread-safe).
_FILE_MODE = 0o666 & ~_read_umask()


def atomic_write_bytes(path, write) -> None:
    """Call write(file) on a temp file next to ``path``, fsync, then os.replace. The file gets
    the mode any new file would (the temp file's own 0600 would lock out the other users of a
    shared runs folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):  # not on Windows, where modes do not apply
            os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def json_default(o):
    """json.dumps ``default=`` for numpy scalars/arrays, tensors and paths."""
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, (np.ndarray, torch.Tensor)):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def write_json_atomic(path, data) -> None:
    """Write ``data`` as JSON to ``path`` atomically."""
    blob = json.dumps(data, indent=2, default=json_default).encode()
    atomic_write_bytes(Path(path), lambda f: f.write(blob))


def read_json(path, default=None):
    """The JSON in ``path``, or ``default`` when it is missing or not JSON (a torn or
    hand-edited file)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


def append_json_line(path, record: dict) -> None:
    """Append one JSON line to ``path`` and flush it (metrics.jsonl)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, default=json_default) + "\n")
        f.flush()


def read_json_lines(path):
    """The JSON objects of a JSON-lines file, in order; a torn line (a crash mid-write) or a
    line that is not an object is skipped, and a missing or unreadable file holds none."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return
    for line in lines:
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            yield obj
