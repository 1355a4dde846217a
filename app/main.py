"""SSD Explorer: the app shell (navigation, sidebar). Run with ``streamlit run app/main.py``."""

import models
import streamlit as st
import timing
from pages import DEFAULT, PAGES

from ssd_core.device import default_device, device_label, tune_cpu_allocator


@st.cache_resource
def _tune_once() -> bool:
    # Once per server process: glibc keeps freed torch buffers instead of trimming them.
    return tune_cpu_allocator()


def sidebar() -> None:
    with st.sidebar:
        st.caption("Device")
        st.write(f"**{device_label(default_device())}**")
        st.caption("Active checkpoint")
        ckpt = models.active_checkpoint()
        st.write(f"`{ckpt}`" if ckpt else "none yet")
        with st.expander("About"):
            st.markdown(
                "An interactive companion to the *Single Shot MultiBox Detection* chapter of "
                "Dive into Deep Learning: the chapter's TinySSD in PyTorch, its anchors, labels, "
                "losses and model, reproduced and explorable. Everything runs locally, offline."
            )


_tune_once()
st.set_page_config(page_title="SSD Explorer", page_icon=":material/center_focus_strong:",
                   layout="wide")
page = st.navigation([st.Page(p.path, title=p.title, icon=p.icon, default=p is DEFAULT)
                      for p in PAGES])
sidebar()
with timing.timed(f"page {page.title}"):
    page.run()
