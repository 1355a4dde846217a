"""A bare page around app/views/_live.py's live_view with the shipped model, for
tests/e2e/test_live_e2e.py: ``streamlit run tests/e2e/live_page.py``."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for path in (ROOT, ROOT / "app"):  # as `streamlit run app/main.py` and an installed ssd_core
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import streamlit as st  # noqa: E402
from views._live import live_view  # noqa: E402

from ssd_core.detection import Detector  # noqa: E402
from ssd_core.device import tune_cpu_allocator  # noqa: E402


@st.cache_resource
def shipped() -> Detector:
    tune_cpu_allocator()
    return Detector.from_checkpoint(device="cpu")


st.title("Live detection (test page)")
live_view(shipped(), key="live")
