"""Presentation mode, for a projector: a sidebar toggle mirrored in the URL (``?present=1``).

On: the sidebar starts collapsed, each page's main figure comes first and fills the viewport,
explanations are folded, and chart text is at least 16 px with thicker lines. Off: the same
pages with their explanations, main figure still above the fold at 1280x720, chart text at
least 13 px. Every page draws its charts through :func:`chart`, the one place where the text
sizes are applied (``figures_style.readable``).
"""

from __future__ import annotations

import contextlib

import streamlit as st

from app import figures_style, urlstate

KEY = "app.present"  # ?present=1
# Chart heights (px) that fit a 1280x720 projector under the page title.
MAIN_HEIGHT = 520  # normal mode: the main figure, its top above the fold
PRESENT_HEIGHT = 530  # presentation mode: the main figure whole in the viewport

# Streamlit leaves 6rem above a page; on a 720-px screen that pushes the figure down. In
# presentation mode the body text and metric numbers grow too.
_CSS = """<style>
[data-testid="stMainBlockContainer"] {padding-top: 3.75rem; padding-bottom: 2rem;}
h1 {padding-top: 0.2rem !important; padding-bottom: 0.3rem !important;}
</style>"""
_PRESENT_CSS = """<style>
[data-testid="stMainBlockContainer"] {padding-top: 3.5rem;}
[data-testid="stMarkdownContainer"] p, [data-testid="stMarkdownContainer"] li {
  font-size: 1.15rem;}
[data-testid="stMetricValue"] [data-testid="stMarkdownContainer"] p {font-size: inherit;}
h1 {font-size: 2rem !important; padding-top: 0 !important;}
</style>"""


def seed() -> bool:
    """Read ``?present=`` into the session (once) and return whether the mode is on; main.py
    calls this before ``st.set_page_config`` so the sidebar can start collapsed."""
    urlstate.seed(KEY, False)
    return on()


def on() -> bool:
    """Whether presentation mode is on in this session."""
    return bool(st.session_state.get(KEY, False))


def toggle() -> bool:
    """The sidebar's "Presentation mode" toggle (mirrored in the URL as ``present=1``)."""
    return bool(urlstate.bind(st.toggle, KEY, False, "Presentation mode", omit_default=True,
                              help="For a projector: the main figure first and large, "
                                   "explanations folded, big chart text, sidebar collapsed. "
                                   "Share it as a link with ?present=1."))


def style() -> None:
    """The page's CSS (less space above the title; bigger text in presentation mode)."""
    st.html(_CSS + (_PRESENT_CSS if on() else ""))


def chart(fig, container=None, main: bool = False, present_height: int | None = None,
          **kwargs):
    """``st.plotly_chart`` (or ``container.plotly_chart``) with readable text; ``main``: the
    page's main figure, sized to fit the viewport (``present_height`` px in presentation mode,
    default PRESENT_HEIGHT). Returns what plotly_chart returns."""
    figures_style.readable(fig, present=on())
    if main:
        fig.update_layout(height=(present_height or PRESENT_HEIGHT) if on() else min(
            fig.layout.height or MAIN_HEIGHT, MAIN_HEIGHT))
    kwargs.setdefault("width", "stretch")
    return (container or st).plotly_chart(fig, **kwargs)


@contextlib.contextmanager
def notes(label: str = "About this page"):
    """Explanations: shown in place normally, folded into an expander in presentation mode."""
    if on():
        with st.expander(label):
            yield
    else:
        with st.container():
            yield


def explain(text: str, label: str = "About this page") -> None:
    """``st.markdown(text)``, folded in presentation mode."""
    with notes(label):
        st.markdown(text)


def page_top(title: str, text: str, label: str = "About this page"):
    """``st.title(title)`` and the page's explanation ``text``. In presentation mode the
    explanation is folded into the left half of one row and the right half is returned (for a
    second fold, e.g. the page's choices), so the main figure starts high; else None."""
    st.title(title)
    if not on():
        st.markdown(text)
        return None
    about, other = st.columns(2)
    with about.expander(label):
        st.markdown(text)
    return other


def figure_first(widths=(1, 2.3)):
    """Two columns ``(controls, figure)``: controls left of the figure normally, right of it
    (the figure first and wider) in presentation mode."""
    if on():
        figure, controls = st.columns([widths[1], widths[0]])
    else:
        controls, figure = st.columns(list(widths))
    return controls, figure
