"""Figures of the Teach page: a photo with its labeled boxes that takes new boxes by mouse drag
(Plotly box selection over an invisible scatter grid), and small thumbnails with their boxes."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from PIL import Image, ImageDraw

from app.figures import box_trace, image_figure
from ssd_core.drawing import colour

GRID = 60  # points per side of the invisible grid that makes box selection report a box


def label_figure(image, boxes, labels, class_names, height: int = 560,
                 title: str | None = None) -> go.Figure:
    """``image`` (PIL) with boxes ``(N, 4)`` pixel corners, ``labels`` (N class names) drawn in
    their class colours and numbered; a drag draws a selection box (dragmode "select") that
    Streamlit returns because an invisible scatter grid covers the image."""
    fig = image_figure(image, height=height, title=title)
    w, h = image.size
    gx, gy = np.meshgrid(np.linspace(0, w, GRID), np.linspace(0, h, GRID))
    fig.add_trace(go.Scatter(x=gx.ravel(), y=gy.ravel(), mode="markers", showlegend=False,
                             marker=dict(size=4, opacity=0), hoverinfo="skip", name="grid"))
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    for name in dict.fromkeys(labels):
        sel = np.array([lab == name for lab in labels])
        c = class_names.index(name) if name in class_names else 0
        fig.add_trace(box_trace(b[sel], f"{name} ({int(sel.sum())})", colour(c), width=3.0,
                                hover=np.repeat([name] * int(sel.sum()), 6)))
    if len(b):
        fig.add_trace(go.Scatter(
            x=b[:, 0], y=b[:, 1], mode="text", showlegend=False, hoverinfo="skip",
            text=[f"{i + 1} {lab}" for i, lab in enumerate(labels)], textposition="top right",
            textfont=dict(size=14, color=[colour(class_names.index(lab))
                                          if lab in class_names else "white" for lab in labels])))
    fig.update_layout(dragmode="select", selectdirection="any", newselection=dict(mode="immediate"),
                      activeselection=dict(fillcolor="rgba(255,255,255,0.15)"),
                      hoverlabel=dict(namelength=-1), font=dict(size=13))
    return fig


def thumbnail(image: Image.Image, boxes, labels, class_names, side: int = 200) -> Image.Image:
    """A copy of ``image`` no larger than ``side`` px with its boxes (pixel corners of the full
    image) drawn in their class colours."""
    out = image.convert("RGB").copy()
    scale = min(1.0, side / max(out.size))
    out = out.resize((max(1, round(out.width * scale)), max(1, round(out.height * scale))))
    draw = ImageDraw.Draw(out)
    for (x1, y1, x2, y2), lab in zip(np.asarray(boxes, dtype=np.float64).reshape(-1, 4), labels):
        c = colour(class_names.index(lab)) if lab in class_names else "white"
        draw.rectangle([x1 * scale, y1 * scale, x2 * scale, y2 * scale], outline=c, width=3)
    return out
