"""AppTest fixtures: the real app script, run in this process (so tests can patch ssd_core)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

AppTest = pytest.importorskip("streamlit.testing.v1").AppTest

MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")


def registered_pages() -> list:
    """app/pages.py's PAGES (path, title, icon, summary)."""
    from app.pages import PAGES

    return list(PAGES)


def open_page(page: str | None = None, query: dict | None = None):
    """Run the app, optionally with URL query parameters, then switch to ``views/<page>.py``."""
    import streamlit as st

    st.cache_data.clear()  # every test starts cold, so counts of network runs are exact
    at = AppTest.from_file(MAIN, default_timeout=60)
    at.run()
    if query:
        at.query_params.update(query)
    if page:
        at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def charts(at) -> list[dict]:
    """The Plotly figure specs on the page, in order."""
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def arr(value) -> np.ndarray:
    """A figure array from a JSON spec: a plain list, or Plotly's base64 typed array."""
    if isinstance(value, dict) and "bdata" in value:
        out = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        if "shape" in value:
            out = out.reshape([int(n) for n in str(value["shape"]).split(",")])
        return out
    return np.asarray(value, dtype=object if value and isinstance(value[0], str) else float)


def metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


@pytest.fixture
def count_forwards(monkeypatch):
    """Count TinySSD forward / feature_maps calls made while the app runs."""
    from ssd_core.model import TinySSD

    calls = {"n": 0}
    for name in ("forward", "feature_maps"):
        original = getattr(TinySSD, name)

        def wrapped(self, *args, _original=original, **kwargs):
            calls["n"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(TinySSD, name, wrapped)
    return calls


def app_on_page(page: str, runs_dir, monkeypatch, timeout: int = 120):
    """The app (not yet run) switched to ``views/<page>.py``, with cold caches and its own
    empty runs folder, so each test gets a fresh JobManager and counts network runs exactly."""
    import streamlit as st

    monkeypatch.setenv("SSD_RUNS_DIR", str(runs_dir))
    monkeypatch.syspath_prepend(str(Path(MAIN).parent))
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(MAIN, default_timeout=timeout)
    at.switch_page(f"views/{page}.py")
    return at
