"""Every name the package promises is importable from ``ssd_core`` itself, and the core never
imports Streamlit (nor the app): it is usable from a notebook, a CLI, a test."""

import ast
import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import ssd_core

ROOT = Path(ssd_core.__file__).parent
FORBIDDEN = ("streamlit", "app")  # the UI and the app package built on it


def core_modules() -> list[str]:
    """Every module of ssd_core, subpackages included; ``__main__`` runs the CLI when imported."""
    names = ["ssd_core"] + [m.name for m in pkgutil.walk_packages([str(ROOT)], "ssd_core.")]
    return sorted(n for n in names if not n.endswith(".__main__"))


def imported_names(path: Path) -> list[str]:
    """Top-level package of every import in ``path``: import statements anywhere (functions
    too) and ``importlib.import_module`` / ``__import__`` calls with a constant name."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append(node.module)
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and (getattr(node.func, "attr", None) == "import_module"
                   or getattr(node.func, "id", None) in ("__import__", "import_module"))):
            out.append(node.args[0].value)
    return [name.split(".")[0] for name in out]


@pytest.mark.parametrize("name", sorted(ssd_core._EXPORTS))
def test_exported_name_resolves(name):
    value = getattr(ssd_core, name)
    module = importlib.import_module(f"ssd_core.{ssd_core._EXPORTS[name]}")
    assert value is getattr(module, name)


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_thing"):
        ssd_core.no_such_thing  # noqa: B018


def test_walk_finds_the_whole_package():
    names = core_modules()
    assert {"ssd_core.boxes", "ssd_core.config", "ssd_core.data.formats"} <= set(names)
    files = sorted(ROOT.rglob("*.py"))
    assert len(names) == len([p for p in files if p.name != "__main__.py"]), (names, files)


def test_no_import_statement_names_streamlit_or_the_app():
    scanned = {p.relative_to(ROOT).as_posix(): imported_names(p) for p in ROOT.rglob("*.py")}
    assert "torch" in scanned["model.py"], "the scan must see the imports that are there"
    offenders = {f: sorted(set(names) & set(FORBIDDEN))
                 for f, names in scanned.items() if set(names) & set(FORBIDDEN)}
    assert offenders == {}


def test_importing_every_module_loads_no_streamlit():
    """In a fresh interpreter (this one may have Streamlit loaded by the app tests)."""
    pytest.importorskip("streamlit")  # installed, so only ssd_core keeping away from it passes
    code = (
        "import importlib, json, sys\n"
        f"for name in {core_modules()!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules\n"
        f"                       if m.split('.')[0] in {FORBIDDEN!r})))\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300, cwd=ROOT.parent)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == []
