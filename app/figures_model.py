"""Figure builders for the Model page's receptive-field view and the Chapter page's curves.

Pure like ``figures``: plain data in (PIL images, numpy arrays, dicts), go.Figure out, no
Streamlit or torch, so each builder is tested on its own.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from app.figures import box_trace, colour, image_figure

# Apart from the anchors' palette colours: a white field (on a dark shadow, visible on any
# image) and a red cell.
RF_COLOUR, SHADOW, CELL_COLOUR = "#FFFFFF", "rgba(0,0,0,0.6)", "#E8112D"
PADDING_COLOUR = "#555555"  # the dashed full field: mostly outside the image, on white


def grid_lines(side: int, size: float) -> tuple[np.ndarray, np.ndarray]:
    """A ``side``×``side`` feature-map grid over a ``size`` px square -> x, y of one line trace
    (each line two points and a NaN gap)."""
    ticks = np.linspace(0.0, size, side + 1)
    nan = np.full(side + 1, np.nan)
    zero, full = np.zeros(side + 1), np.full(side + 1, float(size))
    xs = np.concatenate([np.stack([ticks, ticks, nan], 1).ravel(),
                         np.stack([zero, full, nan], 1).ravel()])
    ys = np.concatenate([np.stack([zero, full, nan], 1).ravel(),
                         np.stack([ticks, ticks, nan], 1).ravel()])
    return xs, ys


def cell_centres(side: int, size: float) -> tuple[np.ndarray, np.ndarray]:
    """Centres ``(side², 2)`` in pixels of a side×side map over ``size`` px, and their
    ``[row, col]`` rows (row-major, the anchors' order)."""
    rows, cols = np.divmod(np.arange(side * side), side)
    step = size / side
    return np.stack([(cols + 0.5) * step, (rows + 0.5) * step], 1), np.stack([rows, cols], 1)


def receptive_field_figure(image, side: int, cell: tuple[int, int], field: dict,
                           labels: list[str], height: int = 600) -> go.Figure:
    """The network's view of an image (PIL, already ``input_size`` square) with one block's
    ``side``×``side`` grid, clickable cell centres (customdata ``[row, col]``), the chosen
    ``cell`` filled, its receptive field (``field["box"]`` dashed where it reaches into the
    padding, ``field["clipped"]`` solid) and its anchors ``field["anchors"] (a, 4)`` named
    by ``labels``; all in input pixels."""
    size = float(image.size[0])
    fig = image_figure(image, height=height)
    if side > 1:
        gx, gy = grid_lines(side, size)
        fig.add_trace(go.Scatter(x=gx, y=gy, mode="lines", name=f"{side}×{side} cells",
                                 line=dict(color="rgba(255,255,255,0.35)", width=1),
                                 hoverinfo="skip", connectgaps=False))
    step = size / side
    r, c = cell
    fig.add_trace(go.Scatter(
        x=[c * step, (c + 1) * step, (c + 1) * step, c * step, c * step],
        y=[r * step, r * step, (r + 1) * step, (r + 1) * step, r * step],
        # A large cell (4×4, 1×1 maps) is most of the image: tint it lightly.
        mode="lines", fill="toself", fillcolor=f"rgba(232,17,45,{0.45 if side >= 8 else 0.15})",
        line=dict(color=CELL_COLOUR, width=2), name=f"cell ({r}, {c})", hoverinfo="skip"))
    fig.add_trace(box_trace([field["clipped"]], "shadow", SHADOW, width=6.0, showlegend=False))
    fig.add_trace(box_trace([field["box"]], f"receptive field {field['rf']}×{field['rf']} px "
                            "(dashed: padding)", PADDING_COLOUR, width=2.0, dash="dash"))
    fig.add_trace(box_trace([field["clipped"]], "receptive field inside the image", RF_COLOUR,
                            width=3.0))
    for j, (box, label) in enumerate(zip(np.asarray(field["anchors"]).reshape(-1, 4), labels)):
        fig.add_trace(box_trace(box[None], label, colour(j), width=2.5))
    centres, data = cell_centres(side, size)
    fig.add_trace(go.Scatter(
        x=centres[:, 0], y=centres[:, 1], mode="markers", name="cell centres (click one)",
        # Small and faint: Plotly picks the nearest centre within 20 px of a click anyway.
        marker=dict(size=5 if side <= 16 else 3, color="rgba(255,255,255,0.45)"),
        customdata=data, hovertemplate="cell (%{customdata[0]}, %{customdata[1]})<extra></extra>"))
    # Show the padding the field reaches into, up to half the image on each side.
    pad = min(max(0.0, -min(field["box"][:2]), max(field["box"][2:]) - size), size / 2)
    pad += 0.02 * size  # a margin, so a box on the edge of the view is not cut off
    fig.update_xaxes(range=[-pad, size + pad])
    fig.update_yaxes(range=[size + pad, -pad])
    return fig


def curves_figure(x, curves: dict, xlabel: str, ylabel: str, height: int = 320) -> go.Figure:
    """Line plots ``{label: y}`` over a shared ``x`` (the chapter's problem cells), dashed in
    turn as the book's ``lines = ['-', '--', '-.']``."""
    dashes = ["solid", "dash", "dashdot", "dot"]
    fig = go.Figure()
    for j, (label, y) in enumerate(curves.items()):
        fig.add_trace(go.Scatter(x=np.asarray(x, dtype=np.float64),
                                 y=np.asarray(y, dtype=np.float64), mode="lines", name=label,
                                 line=dict(color=colour(j), dash=dashes[j % len(dashes)])))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=10, b=10),
                      xaxis_title=xlabel, yaxis_title=ylabel)
    return fig
