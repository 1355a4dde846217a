"""Where a runs folder keeps its photo sets (``<runs>/datasets/<slug>/``), which names are
taken, and how a new set gets there: built in a hidden folder, then renamed into place under a
free slug (the runs listing skips ``datasets/``: it has no ``config.json``)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from ssd_core.errors import ConfigError
from ssd_core.runfolder import DATASETS_DIR  # <runs root>/datasets/<slug>/
from ssd_core.userdata.names import _clean_name, _same_name, _slug_for
from ssd_core.userdata.state import _locked, _read_state


def _datasets_dir(root) -> Path:
    return Path(root) / DATASETS_DIR


def _set_folders(root) -> Iterator[Path]:
    """The folders that may hold a set (hidden ones are half-made or half-deleted sets)."""
    sets = _datasets_dir(root)
    if not sets.is_dir():
        return
    for folder in sets.iterdir():
        if not folder.name.startswith(".") and folder.is_dir():
            yield folder


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
    tmp = sets / f".new-{uuid.uuid4().hex}"
    tmp.mkdir()  # the mode any new folder gets (mkdtemp's 0700 would shut out a shared folder)
    try:
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
    whatever rmtree meets), then removed."""
    with _locked(folder):
        trash = folder.parent / f".deleted-{folder.name}-{uuid.uuid4().hex[:8]}"
        os.rename(folder, trash)
    shutil.rmtree(trash, ignore_errors=True)
