"""SSD Explorer: the app shell (navigation, sidebar). Run with ``streamlit run app/main.py``."""

# pandas in full before any page runs: Plotly looks it up in sys.modules without importing
# it (_plotly_utils.basevalidators), so a figure built while another session's thread is
# still importing pandas met a half-made module ("partially initialized module 'pandas' has no
# attribute 'Series'": 8 of 10 sessions of the load test hung at their upload once). An import
# statement waits for a module another thread is importing; Plotly's lookup does not.
import pandas  # noqa: F401
import streamlit as st

from app import model_picker, present, timing
from app.pages import DEFAULT, PAGES
from ssd_core.device import default_device, device_label, tune_cpu_allocator


@st.cache_resource
def _tune_once() -> bool:
    # Once per server process: glibc keeps freed torch buffers instead of trimming them.
    return tune_cpu_allocator()


def model_in_use(page) -> None:
    """The sidebar's "Model in use": the current page's model picker choice (``<page>.model``),
    else the one every picker opens on (the active checkpoint, else the shipped model)."""
    choices = model_picker.model_choices()
    picked = st.session_state.get(f"{page.url_path}.model")
    choice = picked if picked in choices else next(iter(choices))
    st.caption("Model in use")
    st.write(f"**{choices[choice]}**")
    active = model_picker.active_checkpoint()
    if active and active not in choices:
        st.caption(f"The active checkpoint `{active}` is missing; pages use the model above.")
    elif choice not in (model_picker.SHIPPED, model_picker.UNTRAINED):
        st.write(f"`{choice}`")


def sidebar():
    """The sidebar -> a slot for :func:`model_in_use`, filled again once the page has run (its
    picker may have chosen another model)."""
    with st.sidebar:
        present.toggle()
        st.caption("Device")
        st.write(f"**{device_label(default_device())}**")
        slot = st.empty()
        with st.expander("About"):
            st.markdown(
                "An interactive companion to the *Single Shot MultiBox Detection* chapter of "
                "Dive into Deep Learning: the chapter's TinySSD in PyTorch, its anchors, labels, "
                "losses and model, reproduced and explorable. Everything runs locally, offline."
            )
    return slot


_tune_once()
st.set_page_config(page_title="SSD Explorer", page_icon=":material/center_focus_strong:",
                   layout="wide",
                   initial_sidebar_state="collapsed" if present.seed() else "auto")
page = st.navigation([st.Page(p.path, title=p.title, icon=p.icon, default=p is DEFAULT)
                      for p in PAGES])
slot = sidebar()
present.style()
with slot.container():
    model_in_use(page)
with timing.timed(f"page {page.title}"):
    page.run()
with slot.container():
    model_in_use(page)
