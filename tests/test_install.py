"""Packaging: what pyproject.toml declares matches the code, and a non-editable install (a
wheel in a fresh virtual environment) runs the CLI, finds the shipped files and serves the app
from a folder outside the checkout."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import site
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# Import name -> distribution name, where they differ.
DISTRIBUTIONS = {"PIL": "pillow", "streamlit_webrtc": "streamlit-webrtc"}


def _names(requirements) -> set[str]:
    return {re.split(r"[<>=!~;\[ ]", r.strip(), maxsplit=1)[0].lower() for r in requirements}


def _requirements_file(name: str) -> list[str]:
    lines = (ROOT / name).read_text().splitlines()
    return [s for s in (line.split("#")[0].strip() for line in lines)
            if s and not s.startswith("-r")]


# ----------------------------------------------------------- metadata (fast, no install)


def test_requirements_files_agree_with_pyproject():
    project = PYPROJECT["project"]
    assert _requirements_file("requirements.txt") == project["dependencies"]
    assert _requirements_file("requirements-dev.txt") == project["optional-dependencies"]["dev"]


def test_every_imported_package_is_declared():
    # The app's modules import each other as the package ``app`` (``from app import figures``).
    local = {"ssd_core", "app", *(p.stem for p in (ROOT / "app").glob("*.py")),
             *(p.name for p in (ROOT / "app").iterdir()
               if p.is_dir() and any(p.glob("*.py")))}
    imported = set()
    for path in [*(ROOT / "ssd_core").rglob("*.py"), *(ROOT / "app").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - local - set(sys.stdlib_module_names)
    declared = _names(PYPROJECT["project"]["dependencies"])
    missing = {DISTRIBUTIONS.get(m, m).lower() for m in third_party} - declared
    assert not missing, f"imported but not in [project].dependencies: {sorted(missing)}"


def test_every_package_folder_is_installed():
    """pyproject lists its packages (assets/ is mapped to ssd_explorer_assets): a new
    subpackage of ssd_core or app must be listed too, or a wheel would lack it."""
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    folders = {".".join(p.parent.relative_to(ROOT).parts)
               for top in ("ssd_core", "app") for p in (ROOT / top).rglob("*.py")
               if "__pycache__" not in p.parts}
    assert folders - listed == set()
    assert PYPROJECT["tool"]["setuptools"]["package-dir"] == {"ssd_explorer_assets": "assets"}


def test_version_has_one_source():
    import ssd_core

    assert "version" not in PYPROJECT["project"]
    assert "version" in PYPROJECT["project"]["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "ssd_core.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", ssd_core.__version__)
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]
    assert "MIT License" in (ROOT / "LICENSE").read_text()


def test_launcher_uses_the_checkout_streamlit_config():
    """`ssd-explorer` passes the options that .streamlit/config.toml gives `streamlit run`."""
    from app.launch import MAIN, OPTIONS, streamlit_argv

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    flat = {f"{section}.{key}": value for section, table in config.items()
            for key, value in table.items()}
    assert flat == OPTIONS
    argv = streamlit_argv(["--server.port", "9999"])
    assert argv[:3] == ["streamlit", "run", str(MAIN)] and MAIN.is_file()
    assert "--server.fileWatcherType=none" in argv and argv[-2:] == ["--server.port", "9999"]


def test_resources_find_the_shipped_files():
    """The shipped checkpoint is the real file: in the installed assets package if there is one
    (``pip install``, editable or not), else in the checkout's assets/; it loads as the
    pretrained 3-class TinySSD its config and metrics files describe."""
    import importlib.util

    from ssd_core import resources
    from ssd_core.checkpoint import load_checkpoint
    from ssd_core.detection import DEFAULT_CHECKPOINT

    spec = importlib.util.find_spec("ssd_explorer_assets")
    folder = (Path(next(iter(spec.submodule_search_locations))) if spec is not None
              else ROOT / "assets")
    path = resources.shipped_checkpoint()
    assert path == folder / "tinyssd_synthetic.pt" and path.is_file()
    assert path == DEFAULT_CHECKPOINT  # what Detector() loads without a path
    config = json.loads(path.with_suffix(".config.json").read_text())
    metrics = json.loads(path.with_suffix(".metrics.json").read_text())
    ckpt = load_checkpoint(path)
    assert ckpt.class_names == config["class_names"] == ["banana", "ring", "star"]
    assert ckpt.config.input_size == config["input_size"] == 256
    assert metrics["checkpoint"] == "assets/tinyssd_synthetic.pt"
    samples = sorted(p.name for p in resources.samples_dir().glob("*.jpg"))
    assert resources.samples_dir() == folder / "samples"
    assert {"shapes-1.jpg", "shapes-2.jpg", "shapes-3.jpg"} <= set(samples)
    missing = resources.asset_path("no-such-file.pt")
    assert not missing.exists() and missing == folder / "no-such-file.pt"


# ------------------------------------------------- a wheel in a fresh venv (slow, offline)


CHECK_INSTALL = """
import importlib.metadata, json, sys
from pathlib import Path
import ssd_core, app.launch, ssd_explorer_assets
import ssd_core.detection, ssd_core.cli, app.views
from ssd_core import resources
from ssd_core.checkpoint import load_checkpoint
ckpt = load_checkpoint(resources.shipped_checkpoint())
packages = {name: [Path(p) for p in sys.modules[name].__path__]
            for name in ("ssd_core", "app", "ssd_explorer_assets")}
print(json.dumps({
    "ssd_core": ssd_core.__file__, "launch": app.launch.__file__,
    "checkpoint": str(resources.shipped_checkpoint()),
    "checkpoint_exists": resources.shipped_checkpoint().is_file(),
    "class_names": list(ckpt.class_names),
    "samples": sorted(str(p) for p in resources.samples_dir().glob("*.jpg")),
    "sys_path": [str(Path(p or ".").resolve()) for p in sys.path],
    "version": ssd_core.__version__,
    "modules": {name: [m.__file__] if getattr(m, "__file__", None) else list(m.__path__)
                for name, m in list(sys.modules.items()) if name.split(".")[0] in packages},
    "folders": {name: [str(f) for f in folders] for name, folders in packages.items()},
    "files": {name: sorted(str(p.relative_to(folders[0])) for p in folders[0].rglob("*")
                           if p.is_file() and "__pycache__" not in p.parts)
              for name, folders in packages.items()},
    "distribution": str(importlib.metadata.distribution("ssd-explorer").locate_file("")),
    "meta_path": [repr(f) for f in sys.meta_path],
}))
"""


def _checkout_files(folder: Path, patterns=("*.py",)) -> list[str]:
    return sorted(str(p.relative_to(folder)) for pattern in patterns
                  for p in folder.rglob(pattern) if "__pycache__" not in p.parts)


# What `streamlit run` itself does before the script runs (puts the script's folder on
# sys.path; the app does not rely on it, it imports itself as the package ``app``), then the
# app's first page and its Detection page with the shipped model, in AppTest.
CHECK_APP = """
import sys
import app.launch
sys.path.insert(0, str(app.launch.MAIN.parent))
from streamlit.testing.v1 import AppTest
at = AppTest.from_file(str(app.launch.MAIN), default_timeout=120)
at.run()
assert not at.exception, [e.value for e in at.exception]
at.switch_page("views/detection.py").run()
assert not at.exception, [e.value for e in at.exception]
text = " ".join(str(e.value) for e in [*at.markdown, *at.caption, *at.info, *at.warning])
assert "missing" not in text.lower(), text
# Without SSD_RUNS_DIR an installed app keeps runs where it was started, not in site-packages.
import os, pathlib
os.environ.pop("SSD_RUNS_DIR", None)
from app import job_queue
assert job_queue.runs_dir() == pathlib.Path.cwd() / "runs", job_queue.runs_dir()
print("app ok")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _visible_site_dirs() -> list[str]:
    """The site directories this interpreter imports installed packages from, in its sys.path
    order: a venv's own site-packages (and the base's only if that venv includes them), or,
    outside a venv, the interpreter's site-packages and the user site when it is on sys.path."""
    candidates = [*site.getsitepackages(), sysconfig.get_path("purelib"),
                  sysconfig.get_path("platlib")]
    if site.ENABLE_USER_SITE:
        candidates.append(site.getusersitepackages())
    known = {os.path.realpath(p) for p in candidates}
    entries = dict.fromkeys(os.path.realpath(e) for e in sys.path if e)
    return [e for e in entries if e in known and os.path.isdir(e)]


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """``(bin folder, env, cwd)`` of a venv holding the project's wheel; torch and streamlit
    come from this interpreter's site directories (no network), venv or not.

    ``venv --system-site-packages`` would expose the *base* interpreter's site-packages, which
    inside a venv lacks what the venv installed; instead a .pth file in the new venv lists the
    site directories this interpreter sees. Plain path lines in a .pth are appended after the
    new venv's own site-packages and their folders' .pth files are not run, so an editable
    install of this project here (a .pth finder mapping to a checkout) cannot reach the new
    venv: only the wheel's copy of ssd_core, app and the assets is importable."""
    tmp = tmp_path_factory.mktemp("install")
    src, dist, env_dir, cwd = tmp / "src", tmp / "dist", tmp / "venv", tmp / "elsewhere"
    # Build from a copy: the checkout gets no build/ or egg-info, and uncommitted files count.
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", "runs", "build", "*.egg-info", "__pycache__", ".venv", ".pytest_cache",
        ".ruff_cache", ".benchmarks", "test-artifacts", ".gl", ".whl"))
    run = {"capture_output": True, "text": True, "timeout": 300}
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps",
                        "--no-build-isolation", "--no-index", "-w", str(dist)], **run)
    assert p.returncode == 0, p.stdout + p.stderr
    (wheel,) = dist.glob("ssd_explorer-*.whl")
    p = subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], **run)
    assert p.returncode == 0, p.stderr
    bindir = env_dir / "bin"
    p = subprocess.run([str(bindir / "python"), "-I", "-c",
                        "import sysconfig; print(sysconfig.get_path('purelib'))"], **run)
    assert p.returncode == 0, p.stderr
    own_site = Path(p.stdout.strip())
    assert own_site.is_dir() and own_site.is_relative_to(env_dir), own_site
    shared = _visible_site_dirs()
    assert shared, sys.path
    (own_site / "_this_interpreters_site_dirs.pth").write_text("\n".join(shared) + "\n")
    # pip of this interpreter, run by the venv's python, installs into the venv; --no-index:
    # every dependency the wheel declares must already be installed here.
    p = subprocess.run([str(bindir / "python"), "-m", "pip", "install", "--no-index",
                        "--force-reinstall", "--no-deps", str(wheel)], **run)
    assert p.returncode == 0, p.stdout + p.stderr
    p = subprocess.run([str(bindir / "python"), "-m", "pip", "install", "--no-index",
                        str(wheel)], **run)  # the dependencies are resolved (found here)
    assert p.returncode == 0, p.stdout + p.stderr
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env["SSD_RUNS_DIR"] = str(tmp / "runs")
    return bindir, env, cwd


def _run(venv, *args, timeout=180):
    bindir, env, cwd = venv
    return subprocess.run([str(bindir / args[0]), *args[1:]], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_wheel_installs_code_and_shipped_files_outside_the_checkout(venv):
    p = _run(venv, "python", "-c", CHECK_INSTALL)
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    prefix = Path(venv[0].parent).resolve()

    def installed(path) -> bool:
        return Path(path).resolve().is_relative_to(prefix) and "site-packages" in str(path)

    for key in ("ssd_core", "launch", "checkpoint", "distribution"):
        assert installed(info[key]), (key, info[key])
    # Every module of the project that was imported is the wheel's, none a checkout's (this
    # one's or the one an editable install here points to), and no finder maps to one.
    assert info["modules"] and all(installed(f) for files in info["modules"].values()
                                   for f in files), info["modules"]
    assert all(len(f) == 1 and installed(f[0]) for f in info["folders"].values()), info["folders"]
    assert not any("editable" in f.lower() for f in info["meta_path"]), info["meta_path"]
    # No path into the checkout's sources: only this interpreter's site directories may lie
    # inside it (the README's .venv does).
    shared = {str(Path(d).resolve()) for d in _visible_site_dirs()}
    assert not any(Path(e).is_relative_to(ROOT) and e not in shared
                   for e in info["sys_path"]), info["sys_path"]
    # The wheel holds every module of the checkout and the shipped files.
    assert _checkout_files(ROOT / "ssd_core") == [
        f for f in info["files"]["ssd_core"] if f.endswith(".py")]
    assert _checkout_files(ROOT / "app") == [f for f in info["files"]["app"] if f.endswith(".py")]
    assert {"box_editor.js", "box_editor.css"} <= set(info["files"]["app"])  # the component
    assets = info["files"]["ssd_explorer_assets"]
    assert {"__init__.py", "tinyssd_synthetic.pt", "tinyssd_synthetic.config.json",
            "tinyssd_synthetic.metrics.json", "samples/shapes-1.jpg"} <= set(assets), assets
    assert info["checkpoint_exists"] and Path(info["checkpoint"]).name == "tinyssd_synthetic.pt"
    assert info["class_names"] == ["banana", "ring", "star"]
    assert len(info["samples"]) >= 1 and all(installed(s) for s in info["samples"])
    # The dependencies are this interpreter's: its site directories are on the venv's path.
    assert set(_visible_site_dirs()) <= set(info["sys_path"])
    import ssd_core

    assert info["version"] == ssd_core.__version__


@pytest.mark.slow
def test_installed_cli_detects_with_the_shipped_model(venv):
    sample = json.loads(_run(venv, "python", "-c", CHECK_INSTALL).stdout)["samples"][0]
    p = _run(venv, "python", "-m", "ssd_core", "detect", "shipped", sample,
             "--draw", str(venv[2] / "out.png"))
    assert p.returncode == 0, p.stdout + p.stderr
    found = json.loads(p.stdout)["detections"]
    assert found and all(d["score"] >= 0.5 for d in found), found
    assert (venv[2] / "out.png").is_file()


@pytest.mark.slow
def test_installed_app_runs_its_pages(venv):
    p = _run(venv, "python", "-c", CHECK_APP, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "app ok" in p.stdout


@pytest.mark.slow
def test_console_script_serves_the_app(venv):
    bindir, env, cwd = venv
    assert _run(venv, "ssd-explorer", "--help").returncode == 0
    port = _free_port()
    proc = subprocess.Popen([str(bindir / "ssd-explorer"), "--server.headless", "true",
                             "--server.address", "127.0.0.1", "--server.port", str(port)],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        deadline, body = time.monotonic() + 60, ""
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health",
                                            timeout=2) as r:
                    body = r.read().decode()
                if body == "ok":
                    break
            except OSError:
                time.sleep(0.5)
        assert body == "ok", f"no health within 60 s (exit code {proc.poll()})"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            assert r.status == 200
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert f":{port}" in out, out  # it printed its URL
