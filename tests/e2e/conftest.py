"""End-to-end fixtures: a real `streamlit run` server and the system Chromium via Playwright.

Screenshots land in test-artifacts/ (gitignored). Chromium is installed with apt when missing
and we are root with apt available; otherwise the e2e tests are skipped with the reason.
"""

from __future__ import annotations

import os
import tempfile

import pytest

from app.serve import CHROMIUM_ARGS, chromium, serve

from .browser import ARTIFACTS

# The session's server (started by app_url below) trains into a runs folder of its own.
os.environ.setdefault("SSD_RUNS_DIR", tempfile.mkdtemp(prefix="ssd-e2e-runs-"))


@pytest.fixture(scope="session")
def chromium_path() -> str:
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    path = chromium()
    if path is None:
        pytest.skip("no `chromium` on PATH and cannot install it (needs root and apt-get); "
                    "install Debian's chromium package to run the e2e tests")
    return path


@pytest.fixture(scope="session")
def app_url(chromium_path) -> str:
    """Start `streamlit run app/main.py` on a free port; yield its URL; stop it afterwards."""
    try:
        with serve(ARTIFACTS / "streamlit-server.log") as server:
            yield server.url
    except RuntimeError as e:
        pytest.fail(str(e))


@pytest.fixture(scope="session")
def playwright(chromium_path):
    """The session's one Playwright: its sync API cannot be started twice in one thread, so
    every browser of the e2e tests (plain or with a fake camera) is launched from it."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
def browser(playwright, chromium_path):
    b = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
    yield b
    b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 2000})
    p = ctx.new_page()
    yield p
    ctx.close()
