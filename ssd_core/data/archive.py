"""Safe extraction of an uploaded dataset ``.zip`` into a temporary folder we own.

Refuses absolute paths, ``..`` traversal, symlinks, encrypted members, too many files and zip
bombs (huge declared or actual uncompressed size, extreme compression ratios), with
``AnnotationError`` messages that say what to change.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import tempfile
import weakref
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from ssd_core.errors import AnnotationError

MAX_FILES = 20_000
MAX_TOTAL_BYTES = 4 * 1024**3
MAX_RATIO = 200  # uncompressed / compressed, for members over 1 MiB
_CHUNK = 1 << 20
_JUNK = ("__MACOSX/", ".DS_Store", "Thumbs.db")


def _is_junk(name: str) -> bool:
    return name.startswith("__MACOSX/") or PurePosixPath(name).name in _JUNK


def _safe_name(info: zipfile.ZipInfo, label: str) -> PurePosixPath | None:
    """The member's relative path, or None for directories; raises for unsafe members."""
    name = info.filename.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise AnnotationError(f"{label}: member {info.filename!r} has an absolute path; "
                              "zip the dataset folder with relative paths.")
    parts = PurePosixPath(name).parts
    if ".." in parts:
        raise AnnotationError(f"{label}: member {info.filename!r} points outside the archive "
                              "('..'); refusing to extract it.")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise AnnotationError(f"{label}: member {info.filename!r} is a symbolic link; "
                              "links are not allowed, zip the real files.")
    if info.flag_bits & 0x1:
        raise AnnotationError(f"{label}: member {info.filename!r} is encrypted; "
                              "upload an unencrypted zip.")
    if info.is_dir() or not parts:
        return None
    return PurePosixPath(*parts)


def extract_zip(source, dest: str | os.PathLike, max_files: int = MAX_FILES,
                max_total_bytes: int = MAX_TOTAL_BYTES, max_ratio: float = MAX_RATIO,
                name: str | None = None) -> Path:
    """Extract a zip (path, bytes or binary file object) safely into ``dest``; returns ``dest``.

    ``name``: what messages call the zip (default: its file name, or "the uploaded zip").
    """
    label = name or (Path(source).name if isinstance(source, (str, os.PathLike))
                     else "the uploaded zip")
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(bytes(source))
    elif hasattr(source, "getvalue"):
        source = io.BytesIO(source.getvalue())
    try:
        zf = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
        raise AnnotationError(f"{label} is not a readable zip file ({e}).") from None
    dest = Path(dest)
    with zf:
        infos = zf.infolist()
        if len(infos) > max_files:
            raise AnnotationError(f"{label} has {len(infos)} entries, more than the limit of "
                                  f"{max_files}; split the dataset into smaller archives.")
        members = []
        declared = 0
        for info in infos:
            rel = _safe_name(info, label)
            if rel is None or _is_junk(str(rel)):
                continue
            declared += info.file_size
            if info.file_size > _CHUNK and info.file_size > max_ratio * max(info.compress_size, 1):
                raise AnnotationError(
                    f"{label}: member {info.filename!r} expands {info.file_size:,} bytes from "
                    f"{info.compress_size:,} (ratio over {max_ratio}); refusing a possible "
                    "zip bomb.")
            members.append((info, rel))
        if declared > max_total_bytes:
            raise AnnotationError(f"{label} would expand to {declared:,} bytes, over the limit "
                                  f"of {max_total_bytes:,}; refusing a possible zip bomb.")
        written = 0
        for info, rel in members:
            target = dest.joinpath(*rel.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as src, open(target, "wb") as out:
                    while chunk := src.read(_CHUNK):
                        # Count what really comes out: headers can lie about sizes.
                        written += len(chunk)
                        if written > max_total_bytes:
                            raise AnnotationError(
                                f"{label} expands past {max_total_bytes:,} bytes; refusing a "
                                "possible zip bomb.")
                        out.write(chunk)
            except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, zlib.error) as e:
                raise AnnotationError(f"{label}: member {info.filename!r} could not be read "
                                      f"({e}); the archive may be corrupt.") from None
    return dest


def dataset_root(folder: Path) -> Path:
    """Descend through single wrapping folders (``data.zip`` -> ``data/``) to the real root."""
    folder = Path(folder)
    while True:
        entries = [p for p in folder.iterdir() if not _is_junk(p.name + ("/" if p.is_dir() else ""))
                   and not p.name.startswith(".")]
        if len(entries) == 1 and entries[0].is_dir():
            folder = entries[0]
        else:
            return folder


def _remove_tree(path: str, owner_pid: int) -> None:
    # Only the process that extracted removes: DataLoader workers are forks holding copies.
    if os.getpid() == owner_pid:
        shutil.rmtree(path, ignore_errors=True)


def temp_extract(source, owner=None, name: str | None = None, **limits) -> Path:
    """Extract into a fresh temporary folder; returns the dataset root inside it.

    The folder is deleted when ``owner`` (e.g. the dataset) is garbage collected, or at exit.
    ``name``: what messages call the zip (see :func:`extract_zip`).
    """
    tmp = tempfile.mkdtemp(prefix="ssd_dataset_")
    try:
        extract_zip(source, tmp, name=name, **limits)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    weakref.finalize(owner if owner is not None else _remove_tree, _remove_tree, tmp, os.getpid())
    return dataset_root(Path(tmp))
