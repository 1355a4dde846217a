"""A bare page around app/views/_live.py's live_view with the shipped model, for
tests/e2e/test_live_e2e.py: ``streamlit run tests/e2e/live_page.py``."""

import streamlit as st

from app.views._live import live_view
from ssd_core.detection import Detector
from ssd_core.device import tune_cpu_allocator


@st.cache_resource
def shipped() -> Detector:
    tune_cpu_allocator()
    return Detector.from_checkpoint(device="cpu")


st.title("Live detection (test page)")
live_view(shipped(), key="live")
