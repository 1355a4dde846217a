"""Where a runs folder keeps its photo sets (``<runs>/datasets/<slug>/``), which names are
taken, and how a set comes and goes: built in a hidden ``.new-*`` folder, then renamed into place
under a free slug; deleted by a rename to a hidden ``.deleted-*`` folder, then removed (the runs
listing skips ``datasets/``: it has no ``config.json``).

A hidden folder is held (flock on its ``.lock``) for as long as its operation runs; one that a
killed process left behind is removed when the sets are next listed, once nobody holds it and
it is older than STALE_AFTER seconds (an unlocked folder younger than that may be one whose
operation has not taken its lock yet; where the OS has no flock, age alone decides).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from ssd_core.errors import ConfigError
from ssd_core.runfolder import DATASETS_DIR  # <runs root>/datasets/<slug>/
from ssd_core.userdata.names import _clean_name, _same_name, _slug_for
from ssd_core.userdata.state import LOCK, _locked, _read_state, fcntl

NEW, DELETED = ".new-", ".deleted-"  # the hidden folders of a set being made or removed
STALE_AFTER = 60.0  # seconds


def _datasets_dir(root) -> Path:
    return Path(root) / DATASETS_DIR


def _set_folders(root) -> Iterator[Path]:
    """The folders that may hold a set (hidden ones are half-made or half-deleted sets: the
    stale ones among them are removed on the way)."""
    sets = _datasets_dir(root)
    if not sets.is_dir():
        return
    for folder in sets.iterdir():
        if folder.name.startswith((NEW, DELETED)):
            _remove_if_stale(folder)
        elif not folder.name.startswith(".") and folder.is_dir():
            yield folder


@contextlib.contextmanager
def _held(folder: Path):
    """flock ``folder``'s lock file for the block (no-op where the OS has no flock)."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    fd = os.open(folder / LOCK, os.O_CREAT | os.O_RDWR, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _remove_if_stale(folder: Path) -> bool:
    """Remove a hidden ``.new-*`` / ``.deleted-*`` folder that no live operation holds and that
    is older than STALE_AFTER -> whether it was removed."""
    try:
        if not folder.is_dir() or time.time() - folder.stat().st_mtime < STALE_AFTER:
            return False
    except OSError:  # gone meanwhile
        return False
    fd = None
    if fcntl is not None:
        try:
            fd = os.open(folder / LOCK, os.O_RDWR)
        except FileNotFoundError:  # no lock file: nobody can be holding it
            pass
        except OSError:
            return False
    try:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # OSError: a live operation's
        shutil.rmtree(folder, ignore_errors=True)
        return True
    except OSError:
        return False
    finally:
        if fd is not None:
            os.close(fd)


def _taken_names(root: Path, but: Path | None = None) -> list[str]:
    """The names of the readable sets in ``root``, but the one in folder ``but``."""
    out = []
    for folder in _set_folders(root):
        if but is not None and folder.resolve() == but.resolve():
            continue
        try:
            out.append(_read_state(folder).name)
        except Exception:  # not a readable set: list_datasets skips it too
            continue
    return out


def _new_name(root: Path, name, but: Path | None = None) -> str:
    """``name`` cleaned -> the name, when it makes a slug and no other set has it (any case);
    ConfigError saying why not. ``but``: the folder of the set being renamed."""
    name = _clean_name(name)
    _slug_for(name)
    _check_new_name(root, name, but)
    return name


def _check_new_name(root: Path, name: str, but: Path | None = None) -> None:
    for other in _taken_names(root, but):
        if _same_name(other, name):
            raise ConfigError(f"A photo set named {other!r} already exists; choose another "
                              "name.", field="name")


def _place(root: Path, build, name: str) -> Path:
    """Build a set in a hidden folder (``build(folder)``), then rename it into place under a
    free slug; the hidden folder is removed if anything fails."""
    sets = _datasets_dir(root)
    sets.mkdir(parents=True, exist_ok=True)
    tmp = sets / f"{NEW}{uuid.uuid4().hex}"
    tmp.mkdir()  # the mode any new folder gets (mkdtemp's 0700 would shut out a shared folder)
    try:
        with _held(tmp):  # not a leftover while it is built
            build(tmp)
            with _locked(sets):
                _check_new_name(root, name)
                slug, n = _slug_for(name), 1
                while (sets / (slug if n == 1 else f"{slug}-{n}")).exists():
                    n += 1
                final = sets / (slug if n == 1 else f"{slug}-{n}")
                os.rename(tmp, final)
        return final
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _remove_set(folder: Path) -> None:
    """Delete a set's folder: renamed away under its lock first (gone from listings at once,
    whatever rmtree meets), then removed, still under the lock (not a leftover meanwhile)."""
    with _locked(folder):
        trash = folder.parent / f"{DELETED}{folder.name}-{uuid.uuid4().hex[:8]}"
        os.rename(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)
