"""The one place that sets the text sizes (and, for a projector, line widths) of every chart.

``readable(fig, present)`` raises every font of a Plotly figure to at least :data:`TEXT` px
(:data:`PRESENT_TEXT` in presentation mode): the base font, axis ticks and titles, legend,
subplot titles and other annotations, trace text (box labels), hover labels, colour bars,
sliders and buttons. Sizes a builder set larger stay larger. Pure like the other figure modules
(go.Figure in, the same figure out), so a test can check it without Streamlit; the pages call it
through ``present.chart``.
"""

from __future__ import annotations

import contextlib

import plotly.graph_objects as go

TEXT = 14  # px: readable from the back of a room on a laptop screen (at least 13)
PRESENT_TEXT = 18  # px in presentation mode (at least 16; metric numbers 18+)
LINE_SCALE = 1.6  # presentation mode: lines this much wider


def _at_least(font, size: float) -> None:
    """font.size = max(font.size, size) on a Plotly font object (unset counts as 0)."""
    font.size = max(font.size or 0, size)


def _axis(axis, size: float) -> None:
    _at_least(axis.tickfont, size)
    _at_least(axis.title.font, size)


def readable(fig: go.Figure, present: bool = False) -> go.Figure:
    """Every text of ``fig`` at least TEXT px (PRESENT_TEXT and lines LINE_SCALE x wider when
    ``present``); returns ``fig`` (changed in place)."""
    size = PRESENT_TEXT if present else TEXT
    layout = fig.layout
    _at_least(layout.font, size)
    _at_least(layout.legend.font, size)
    _at_least(layout.legend.title.font, size)
    _at_least(layout.title.font, size + 2)
    _at_least(layout.hoverlabel.font, size)
    fig.for_each_xaxis(lambda a: _axis(a, size))
    fig.for_each_yaxis(lambda a: _axis(a, size))
    for ann in layout.annotations:
        _at_least(ann.font, size)
    for slider in layout.sliders:
        _at_least(slider.font, size)
        _at_least(slider.currentvalue.font, size)
    for menu in layout.updatemenus:
        _at_least(menu.font, size)
    for trace in fig.data:
        if "textfont" in trace:
            _at_least(trace.textfont, size)
        if "colorbar" in trace:
            _at_least(trace.colorbar.tickfont, size)
        if present and "line" in trace and getattr(trace, "mode", None) != "markers":
            with contextlib.suppress(ValueError):  # a line without a width
                trace.line.width = (trace.line.width or 2) * LINE_SCALE
    if present:
        for shape in layout.shapes:
            if shape.line.width:
                shape.line.width *= LINE_SCALE
    return fig


def font_sizes(spec: dict) -> list[tuple[str, float]]:
    """(path, size) of every font size in a figure's JSON ``spec`` (``fig.to_plotly_json()`` or
    Streamlit's chart spec), the base ``layout.font`` included: what a test checks."""
    out = []

    def walk(node, path):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "template":
                    continue
                if k == "size" and "font" in path.rsplit(".", 1)[-1] and isinstance(
                        v, (int, float)):
                    out.append((path, float(v)))
                elif k == "size" and path.endswith("font") and isinstance(v, list):
                    out.extend((path, float(x)) for x in v)
                else:
                    walk(v, f"{path}.{k}" if path else k)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")

    walk(spec, "")
    return out
