"""Widgets mirrored in the URL, so a view can be shared as a link.

A widget key is page-scoped ("anchors.size"); its query parameter is the key without the page
("?size=320"). :func:`bind` creates a widget whose value starts from the URL (or a default) and
is written back to the URL after every change.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from ssd_core.config import FIELDS

INPUT_SIZES = list(range(64, 513, 32))
DEFAULT_INPUT_SIZE = FIELDS["input_size"].default  # the book's 256


def param(key: str) -> str:
    """The query parameter of a widget key: "anchors.size" -> "size"."""
    return key.split(".", 1)[-1]


def as_bool(text: str) -> bool:
    """"1"/"true"/"yes"/"on" -> True, "0"/"false"/"no"/"off" -> False, else ValueError."""
    if str(text).lower() in ("1", "true", "yes", "on"):
        return True
    if str(text).lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def _cast_for(default) -> Callable:
    if isinstance(default, bool):
        return as_bool
    return type(default) if isinstance(default, (int, float)) else str


def _text(value) -> str:
    """A value as the URL shows it: booleans as 1/0, floats in short form."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def seed(key: str, default, valid: Callable | None = None) -> None:
    """Set ``st.session_state[key]`` once per session: from the URL when its value casts to the
    default's type and passes ``valid``, else ``default`` (a shared link must never crash)."""
    if key in st.session_state:
        return
    value = default
    raw = st.query_params.get(param(key))
    if raw is not None:
        try:
            candidate = _cast_for(default)(raw)
            if valid is None or valid(candidate):
                value = candidate
        except (TypeError, ValueError):
            pass
    st.session_state[key] = value


def hold(key: str) -> None:
    """Re-assert the kept value of widget ``key`` through the Session State API, before the widget
    is drawn in this run, so that Streamlit sends the value to the browser with the widget.

    Why: a widget keyed in ``st.session_state`` but drawn without ``value=`` is sent with its
    *default* (a slider's minimum). While the browser still holds the widget it keeps its own
    value, but when a run drew the page without it (an upload being replaced passes through a
    run with no file) the browser builds it afresh from that default: it showed 0.00 while the
    server kept 0.50, and the next touch sent the browser's values back (``conf=0.01&nms=0``).
    A value set through the API is sent with the widget, so the two never disagree.
    """
    if key in st.session_state:
        st.session_state[key] = st.session_state[key]


def held(widget: Callable, key: str, default, *args, **kwargs):
    """``widget(*args, key=key, **kwargs)`` whose value is kept in the session (``default`` at
    first) and always sent with the widget (see :func:`hold`); pass no ``value=``/``default=``
    to the widget itself. For widgets that are not in the URL (e.g. a class multiselect)."""
    if key not in st.session_state:
        st.session_state[key] = default
    hold(key)
    return widget(*args, key=key, **kwargs)


def write(key: str, omit=None) -> None:
    """Put the current value of ``key`` into the URL; drop the parameter instead while the
    value equals ``omit`` (e.g. a long default that would clutter the link)."""
    if key not in st.session_state:
        return
    value = st.session_state[key]
    if omit is not None and value == omit:
        if param(key) in st.query_params:
            del st.query_params[param(key)]
        return
    text = _text(value)
    if st.query_params.get(param(key)) != text:
        st.query_params[param(key)] = text


def bind(widget: Callable, key: str, default, *args, valid: Callable | None = None,
         fit: Callable | None = None, omit_default: bool = False, **kwargs):
    """``widget(*args, key=key, **kwargs)`` (e.g. ``st.slider`` or a column's ``.radio``) with
    its value taken from ``?<param>=`` or ``default`` and written back to the URL.

    ``valid(value)`` refuses URL values out of range; ``fit(value)`` adjusts the kept value
    before the widget is drawn (e.g. clamps it to a new maximum); ``omit_default`` leaves the
    parameter out of the URL while the value is the default. Returns the widget's value.
    """
    seed(key, default, valid)
    if fit is not None:
        st.session_state[key] = fit(st.session_state[key])
    hold(key)
    value = widget(*args, key=key, **kwargs)
    write(key, omit=default if omit_default else None)
    return value


def input_size_select(key: str, label: str = "Input size (pixels)",
                      help: str | None = None) -> int:
    """A select slider over multiples of 32 (64..512), 256 by default, mirrored in the URL."""
    return int(bind(st.select_slider, key, DEFAULT_INPUT_SIZE, label, INPUT_SIZES,
                    valid=lambda v: v in INPUT_SIZES,
                    help=help or "TinySSD needs a multiple of 32; the book uses 256."))
