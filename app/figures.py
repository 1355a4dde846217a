"""Plotly figure builders: plain data in (numpy arrays, PIL images, dicts), go.Figure out.

No Streamlit and no torch here, so every builder is testable on its own. Many boxes are drawn
as ONE line trace per group with NaN gaps between rectangles (thousands of ``add_shape`` calls
would take seconds); images go in as a layout image (a PNG data URI), not as a heatmap.
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

# One palette for the app and the CLI's drawings: a class has one colour everywhere.
from ssd_core.drawing import colour, text_colour

SCALE_COLOURS = ["#E69F00", "#56B4E9", "#009E73", "#D55E00", "#CC79A7"]


def box_lines(boxes) -> tuple[np.ndarray, np.ndarray]:
    """Corner boxes ``(N, 4)`` -> x, y arrays of length 6N: the 5 closed-rectangle points of each
    box, then a NaN that breaks the line before the next box."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x1, y1, x2, y2 = b.T
    nan = np.full(len(b), np.nan)
    xs = np.stack([x1, x2, x2, x1, x1, nan], axis=1).reshape(-1)
    ys = np.stack([y1, y1, y2, y2, y1, nan], axis=1).reshape(-1)
    return xs, ys


def box_trace(boxes, name: str, line_colour: str, width: float = 1.0, dash: str = "solid",
              opacity: float = 1.0, showlegend: bool = True, hover: str | None = None):
    """One ``go.Scatter`` line trace drawing every box in ``boxes (N, 4)`` (pixel corners)."""
    xs, ys = box_lines(boxes)
    return go.Scatter(
        x=xs, y=ys, mode="lines", name=name, opacity=opacity, showlegend=showlegend,
        line=dict(color=line_colour, width=width, dash=dash),
        hoverinfo="skip" if hover is None else "text", text=hover, connectgaps=False,
    )


def image_figure(image, height: int = 560, title: str | None = None) -> go.Figure:
    """A figure showing a PIL ``image`` in pixel coordinates (origin top-left, y down, 1:1)."""
    w, h = image.size
    fig = go.Figure()
    fig.add_layout_image(
        dict(source=image, xref="x", yref="y", x=0, y=0, sizex=w, sizey=h,
             sizing="stretch", layer="below")
    )
    fig.update_xaxes(range=[0, w], showgrid=False, zeroline=False, constrain="domain")
    fig.update_yaxes(range=[h, 0], showgrid=False, zeroline=False, scaleanchor="x",
                     scaleratio=1, constrain="domain")
    fig.update_layout(
        height=height, margin=dict(l=10, r=10, t=40 if title else 10, b=10), title=title,
        # A dark legend: the white ground-truth lines and light class colours show in it.
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="left", x=0,
                    bgcolor="#454545", font=dict(color="white")),
        plot_bgcolor="white", dragmode="pan",
    )
    return fig


def anchors_figure(image, groups, centres=None, highlight=None, height: int = 560,
                   centre_data=None, centre_text=None) -> go.Figure:
    """Anchors over an image.

    image: PIL image; groups: list of ``(name, boxes (N, 4) pixel corners, colour)``, one line
    trace each; centres: optional ``(K, 2)`` pixel centres (one marker trace, clickable);
    highlight: optional list of ``(name, boxes (n, 4), colour)`` drawn thick on top;
    centre_data / centre_text: optional per-centre customdata rows and hover text.
    """
    fig = image_figure(image, height=height)
    dim = highlight is not None and len(highlight) > 0
    for name, boxes, col in groups:
        # Under a highlighted cell the other anchors are faint: a legend entry for a line one
        # cannot see would mislead, so only the highlighted shapes are listed then.
        fig.add_trace(box_trace(boxes, name, col, width=1.0, opacity=0.15 if dim else 0.7,
                                showlegend=not dim))
    if centres is not None and len(centres):
        c = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
        fig.add_trace(go.Scatter(
            x=c[:, 0], y=c[:, 1], mode="markers", name="anchor centres",
            marker=dict(size=7 if len(c) < 300 else 4, color="white",
                        line=dict(color="black", width=0.7)),
            customdata=None if centre_data is None else np.asarray(centre_data),
            text=centre_text,
            hovertemplate=("%{text}" if centre_text is not None else "centre (%{x:.0f}, %{y:.0f})")
            + "<extra></extra>",
        ))
    for name, boxes, col in highlight or []:
        fig.add_trace(box_trace(boxes, name, col, width=3.0))
    return fig


# Labeling: one colour per kind of box, so the kinds stay apart even for a single object.
GT_COLOUR, GREEDY_COLOUR, THRESHOLD_COLOUR = "white", "#d6336c", "#00b4d8"
NEGATIVE_COLOUR = "#7f7f7f"


def labeling_figure(image, gt_boxes, gt_names, positives, negatives=None,
                    height: int = 560) -> go.Figure:
    """Ground truth and the anchors it labels.

    gt_boxes: ``(M, 4)`` pixel corners; gt_names: M legend names; positives: per object j a pair
    ``(greedy_boxes (g, 4), threshold_boxes (t, 4))``; negatives: optional ``(K, 4)`` kept
    hard negatives. Each kind has its colour: ground truth GT_COLOUR (solid, its object's name
    on a tag of the object's colour), greedy matches GREEDY_COLOUR (thick dashed), threshold matches
    THRESHOLD_COLOUR (dotted), kept negatives grey; object j's traces say its name.
    """
    fig = image_figure(image, height=height)
    if negatives is not None and len(negatives):
        fig.add_trace(box_trace(negatives, f"kept negatives ({len(negatives)})", NEGATIVE_COLOUR,
                                width=1.0, opacity=0.6))
    for j, (greedy, thresh) in enumerate(positives):
        if len(thresh):
            fig.add_trace(box_trace(thresh, f"{gt_names[j]}: IoU ≥ threshold ({len(thresh)})",
                                    THRESHOLD_COLOUR, width=1.5, dash="dot",
                                    opacity=0.9 if len(thresh) < 50 else 0.6,
                                    hover=np.repeat([f"{gt_names[j]}: IoU ≥ threshold"],
                                                    6 * len(thresh))))
        if len(greedy):
            fig.add_trace(box_trace(greedy, f"{gt_names[j]}: best anchor (greedy)",
                                    GREEDY_COLOUR, width=3.5, dash="dash",
                                    hover=np.repeat([f"{gt_names[j]}: best anchor (greedy)"],
                                                    6 * len(greedy))))
    for j, box in enumerate(np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)):
        fig.add_trace(box_trace(box[None], f"{gt_names[j]} (ground truth)", GT_COLOUR,
                                width=3.0, showlegend=True))
        fig.add_annotation(x=box[0], y=box[1], text=gt_names[j], showarrow=False,
                           xanchor="left", yanchor="bottom", font=dict(color="white", size=12),
                           bgcolor=colour(j), borderpad=1)
    return fig


def iou_heatmaps_figure(grids, titles, height: int | None = None, cols: int = 3) -> go.Figure:
    """One heatmap per scale: grids is a list of ``(h, w)`` arrays in [0, 1] (e.g. the best
    anchor IoU at each feature-map cell with one object), ``cols`` per row, each about 250 px
    high so a 4x4 or 1x1 map is still a readable square."""
    n = len(grids)
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.04,
                        vertical_spacing=0.12)
    for i, g in enumerate(grids):
        g = np.asarray(g, dtype=np.float64)
        r, c = divmod(i, cols)
        fig.add_trace(go.Heatmap(
            z=g, zmin=0, zmax=1, colorscale="Viridis", showscale=(i == n - 1),
            colorbar=dict(title="IoU", thickness=14),
            hovertemplate="row %{y}, col %{x}: IoU %{z:.2f}<extra></extra>",
        ), row=r + 1, col=c + 1)
        fig.update_yaxes(autorange="reversed", scaleanchor=f"x{i + 1 if i else ''}",
                         showticklabels=False, row=r + 1, col=c + 1)
        fig.update_xaxes(showticklabels=False, row=r + 1, col=c + 1)
    fig.update_layout(height=height or 40 + 280 * rows, margin=dict(l=10, r=10, t=40, b=10))
    return fig


# ---------------------------------------------------------------- loss curves


def _scrub_slider(values, fmt: str, prefix: str, trace_ys, trace_idx, names, active: int):
    """A client-side slider: each step restyles traces ``trace_idx`` with ``trace_ys[k]``."""
    steps = []
    for k, v in enumerate(values):
        steps.append(dict(
            method="restyle", label=fmt.format(v),
            args=[{"y": list(trace_ys[k]), "name": list(names[k])}, list(trace_idx)],
        ))
    return dict(active=active, currentvalue=dict(prefix=prefix, font=dict(color="#d6336c")),
                pad=dict(t=40), steps=steps, bgcolor="#f8d7e3", activebgcolor="#d6336c",
                bordercolor="#d6336c")


def smooth_l1_figure(x, curves, scrub_values, scrub_curves, l1_curve, grads=None,
                     scrub_grads=None, l1_grad=None, active: int = 0) -> go.Figure:
    """Smooth-L1 vs L1.

    x: ``(P,)``; curves: list of ``(sigma, y (P,))`` fixed curves; l1_curve: ``(P,)``;
    scrub_values / scrub_curves: sigmas and their curves for the client-side slider (restyles
    one trace, no rerun); grads / scrub_grads / l1_grad: the same for the derivative (second
    row) or None to leave it out.
    """
    with_grad = grads is not None
    fig = make_subplots(rows=2 if with_grad else 1, cols=1, shared_xaxes=True,
                        vertical_spacing=0.08,
                        subplot_titles=("loss", "gradient d loss / dx") if with_grad else None)
    dashes = ["solid", "dash", "dashdot", "dot", "longdash"]
    # L1 as a wide grey band under the curves: smooth-L1 with a large σ runs along it and
    # would hide a thin L1 line (both legend entries must stay visible).
    fig.add_trace(go.Scatter(x=x, y=l1_curve, name="L1 |x|",
                             line=dict(color="rgba(120,120,120,0.45)", width=9)), 1, 1)
    for k, (s, y) in enumerate(curves):
        fig.add_trace(go.Scatter(x=x, y=y, name=f"smooth L1, σ={s:g}",
                                 line=dict(color=colour(k), dash=dashes[k % 5])), 1, 1)
    scrub_idx = [len(fig.data)]
    fig.add_trace(go.Scatter(x=x, y=scrub_curves[active],
                             name=f"scrub σ={scrub_values[active]:.2f}",
                             line=dict(color="#d6336c", width=4)), 1, 1)
    names = [[f"scrub σ={v:.2f}"] for v in scrub_values]
    ys = [[c] for c in scrub_curves]
    if with_grad:
        fig.add_trace(go.Scatter(x=x, y=l1_grad, name="L1 gradient", showlegend=False,
                                 line=dict(color="rgba(120,120,120,0.45)", width=9)), 2, 1)
        for k, (s, g) in enumerate(grads):
            fig.add_trace(go.Scatter(x=x, y=g, name=f"σ={s:g} gradient", showlegend=False,
                                     line=dict(color=colour(k), dash=dashes[k % 5])), 2, 1)
        scrub_idx.append(len(fig.data))
        fig.add_trace(go.Scatter(x=x, y=scrub_grads[active], showlegend=False,
                                 name=f"scrub σ={scrub_values[active]:.2f} gradient",
                                 line=dict(color="#d6336c", width=4)), 2, 1)
        names = [[n[0], n[0] + " gradient"] for n in names]
        ys = [[c, g] for c, g in zip(scrub_curves, scrub_grads)]
    fig.update_layout(
        height=560 if with_grad else 440, margin=dict(l=10, r=10, t=40, b=10),
        sliders=[_scrub_slider(scrub_values, "{:.2f}", "σ = ", ys, scrub_idx, names, active)],
        legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0),
    )
    fig.update_xaxes(title_text="x (prediction − target)", row=2 if with_grad else 1, col=1)
    return fig


def focal_figure(p, curves, scrub_values, scrub_curves, alpha: float, active: int = 0,
                 log_y: bool = False) -> go.Figure:
    """Cross-entropy vs focal loss over p.

    p: ``(P,)`` probabilities of the true class; curves: list of ``(gamma, y (P,))``;
    scrub_values / scrub_curves: gammas and curves for the client-side slider.
    """
    fig = go.Figure()
    dashes = ["solid", "dash", "dashdot", "dot", "longdash"]
    for k, (g, y) in enumerate(curves):
        fig.add_trace(go.Scatter(x=p, y=y, name=f"γ={g:g}" + (" (cross-entropy)" if g == 0
                                                              and alpha == 1 else ""),
                                 line=dict(color=colour(k), dash=dashes[k % 5])))
    idx = len(fig.data)
    fig.add_trace(go.Scatter(x=p, y=scrub_curves[active],
                             name=f"scrub γ={scrub_values[active]:.2f}",
                             line=dict(color="#d6336c", width=4)))
    names = [[f"scrub γ={v:.2f}"] for v in scrub_values]
    fig.update_layout(
        height=440, margin=dict(l=10, r=10, t=40, b=10),
        sliders=[_scrub_slider(scrub_values, "{:.2f}", "γ = ", [[c] for c in scrub_curves],
                               [idx], names, active)],
        legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0),
        xaxis_title="p (predicted probability of the true class)",
        yaxis_title=f"loss (α = {alpha:g})",
    )
    if log_y:
        fig.update_yaxes(type="log")
    return fig


# ---------------------------------------------------------------- model


def tinyssd_diagram(rows, input_size: int, height: int = 330) -> go.Figure:
    """TinySSD as five boxes left to right, one per ``describe()`` row: block name, output
    shape, anchors per pixel and anchors; box height shrinks with the feature map."""
    fig = go.Figure()
    n = len(rows)
    total = sum(r["num_anchors"] for r in rows)
    max_side = max(r["output_shape"][1] for r in rows) or 1
    xs = [1.5 + 2.0 * i for i in range(n)]
    fig.add_shape(type="rect", x0=-0.7, x1=0.3, y0=-0.5, y1=0.5, fillcolor="#dddddd",
                  line=dict(color="#555555"))
    fig.add_annotation(x=-0.2, y=0, text=f"image<br>3×{input_size}×{input_size}",
                       showarrow=False, font=dict(size=11, color="#111111"))
    prev = 0.3
    for i, (r, x) in enumerate(zip(rows, xs)):
        c, h, w = r["output_shape"]
        half = 0.15 + 0.35 * math.sqrt(h / max_side)
        col = SCALE_COLOURS[i % len(SCALE_COLOURS)]
        fig.add_shape(type="rect", x0=x - 0.6, x1=x + 0.6, y0=-half, y1=half, fillcolor=col,
                      opacity=0.35, line=dict(color=col, width=2))
        fig.add_annotation(x=prev, y=0, ax=x - 0.6, ay=0, xref="x", yref="y", axref="x",
                           ayref="y", text="", showarrow=True, arrowhead=2, arrowside="start",
                           arrowwidth=1.5)
        fig.add_annotation(x=x, y=0, text=f"<b>{c}×{h}×{w}</b>", showarrow=False,
                           font=dict(size=12, color="#111111"))
        fig.add_annotation(x=x, y=0.62, text=r["name"], showarrow=False, font=dict(size=11))
        fig.add_annotation(
            x=x, y=-0.66, showarrow=False, font=dict(size=11),
            text=f"{r['anchors_per_pixel']} anchors/pixel<br>{h}·{w}·{r['anchors_per_pixel']}"
                 f" = <b>{r['num_anchors']}</b><br>sizes {', '.join(f'{s:g}' for s in r['sizes'])}",
        )
        prev = x + 0.6
    fig.add_annotation(x=xs[-1] + 1.1, y=0, text=f"total<br><b>{total}</b><br>anchors",
                       showarrow=False, font=dict(size=13), xanchor="left")
    # invisible points carry the hover text and make the axes span the drawing
    fig.add_trace(go.Scatter(
        x=xs, y=[0] * n, mode="markers", marker=dict(size=40, opacity=0), showlegend=False,
        hovertext=[f"{r['name']}: output {r['output_shape']}, receptive field "
                   f"{r['receptive_field']} px, {r['params']:,} parameters" for r in rows],
        hoverinfo="text",
    ))
    fig.update_xaxes(visible=False, range=[-0.8, xs[-1] + 2.2])
    fig.update_yaxes(visible=False, range=[-1.05, 0.8])
    fig.update_layout(height=height, margin=dict(l=5, r=5, t=10, b=5), plot_bgcolor="white")
    return fig


def feature_grid_figure(fmap, cols: int = 8, height: int | None = None,
                        title: str | None = None) -> go.Figure:
    """Feature-map channels as one mosaic heatmap: ``fmap (C, h, w)`` -> a grid of ``cols``
    columns, each channel min-max normalised to [0, 1], separated by NaN gaps (one trace)."""
    f = np.asarray(fmap, dtype=np.float64)
    c, h, w = f.shape
    cols = max(1, min(cols, c))
    rows = math.ceil(c / cols)
    lo = f.reshape(c, -1).min(axis=1)[:, None, None]
    hi = f.reshape(c, -1).max(axis=1)[:, None, None]
    norm = np.where(hi > lo, (f - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0)
    gap = 1 if h > 1 else 0
    mosaic = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), np.nan)
    for k in range(c):
        r, q = divmod(k, cols)
        mosaic[r * (h + gap): r * (h + gap) + h, q * (w + gap): q * (w + gap) + w] = norm[k]
    fig = go.Figure(go.Heatmap(z=mosaic, colorscale="Viridis", zmin=0, zmax=1, showscale=False,
                               hoverinfo="skip"))
    fig.update_yaxes(autorange="reversed", visible=False, scaleanchor="x")
    fig.update_xaxes(visible=False)
    fig.update_layout(height=height or min(900, 120 + 60 * rows),
                      margin=dict(l=5, r=5, t=30 if title else 5, b=5), title=title,
                      plot_bgcolor="white")
    return fig


# ---------------------------------------------------------------- detections


class ImageURI(str):
    """A PNG data URI that knows its image's pixel ``size`` (W, H): pass it wherever a figure
    builder takes a PIL image, so a rerun does not re-encode the image (~100 ms for 512²)."""

    size: tuple

    def __new__(cls, uri: str, size):
        obj = super().__new__(cls, uri)
        obj.size = tuple(int(v) for v in size)
        return obj

    def __reduce__(self):
        return (ImageURI, (str(self), self.size))


def image_uri(image) -> ImageURI:
    """PIL image -> ImageURI (PNG, base64)."""
    import base64
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return ImageURI("data:image/png;base64," + base64.b64encode(buf.getvalue()).decode(),
                    image.size)


CAPTION_SIZE = 13  # px at least (readable() raises it with the other chart text)
CAPTION_ROOM = 0.06  # a box whose top is this close to the image's top has its caption inside


def box_captions(boxes, texts, colours, image_height: float) -> list[dict]:
    """One layout annotation per box: ``texts[i]`` at the box's top-left corner on a filled
    ``colours[i]`` background (black or white text, whichever reads better on it), just above
    the box, or just inside it where the box touches the top of the image. boxes: ``(K, 4)``
    pixel corners of an ``image_figure`` (y down)."""
    out = []
    for (x1, y1, _, _), text, col in zip(np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
                                         texts, colours):
        inside = y1 < CAPTION_ROOM * image_height
        out.append(dict(x=float(x1), y=float(y1), xref="x", yref="y", text=text,
                        showarrow=False, xanchor="left", yanchor="top" if inside else "bottom",
                        bgcolor=col, bordercolor=col, borderpad=2,
                        font=dict(color=text_colour(col), size=CAPTION_SIZE)))
    return out


def detection_captions(boxes, scores, labels, class_names, image_height: float) -> list[dict]:
    """``box_captions`` of detections: "class score" on the class colour."""
    lab = np.asarray(labels, dtype=np.int64).reshape(-1).tolist()
    s = np.asarray(scores, dtype=np.float64).reshape(-1).tolist()
    texts = [f"{class_names[c] if 0 <= c < len(class_names) else c} {v:.2f}"
             for c, v in zip(lab, s)]
    return box_captions(boxes, texts, [colour(c) for c in lab], image_height)


def detections_figure(image, boxes, scores, labels, class_names, hover=None, gt_boxes=None,
                      gt_labels=None, height: int = 560, label_limit: int = 40,
                      title: str | None = None, extra_boxes=None) -> go.Figure:
    """Detections over ``image`` (PIL or ImageURI): one NaN-separated line trace per class.

    boxes: ``(K, 4)`` pixel corners; scores, labels: ``(K,)``; hover: optional K strings (shown
    on every corner of the box); gt_boxes/gt_labels: optional ground truth, dashed white;
    extra_boxes: optional list of ``(name, boxes (n, 4), colour, dash)`` drawn on top (e.g.
    misses). A "class score" caption on a filled background in the class colour is written
    at each box's top-left when K <= label_limit (``box_captions``).
    """
    fig = image_figure(image, height=height, title=title)
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    lab = np.asarray(labels, dtype=np.int64).reshape(-1)
    if gt_boxes is not None and len(gt_boxes):
        gl = np.asarray(gt_labels, dtype=np.int64).reshape(-1)
        text = np.repeat([f"ground truth: {class_names[c]}" for c in gl], 6)
        fig.add_trace(box_trace(gt_boxes, "ground truth", "white", width=2.0, dash="dash",
                                hover=text))
    for c in np.unique(lab):
        sel = lab == c
        name = class_names[c] if 0 <= c < len(class_names) else str(c)
        text = None
        if hover is not None:
            text = np.repeat(np.asarray(hover, dtype=object)[sel], 6)
        fig.add_trace(box_trace(b[sel], f"{name} ({int(sel.sum())})", colour(int(c)),
                                width=2.5 if len(b) <= label_limit else 1.2, hover=text))
    if 0 < len(b) <= label_limit:
        for caption in detection_captions(b, s, lab, class_names, image.size[1]):
            fig.add_annotation(**caption)
    for name, xb, col, dash in extra_boxes or []:
        if len(xb):
            fig.add_trace(box_trace(xb, name, col, width=3.0, dash=dash,
                                    hover=np.repeat([name] * len(xb), 6)))
    fig.update_layout(hoverlabel=dict(namelength=-1))
    return fig


def replay_figure(image, frames: list[dict], class_names, active: int = -1,
                  height: int = 520, duration_ms: int = 1000) -> go.Figure:
    """A training run's replay over ``image`` (PIL or ImageURI): one Plotly frame per epoch,
    ``active`` shown, and a Play button that animates from the first frame (epoch 0) in the
    browser. frames: dicts with ``name``, ``title``, ``boxes (k, 4)`` pixel corners,
    ``scores (k,)``, ``labels (k,)``, ``gt_boxes (m, 4)``; every frame has the same traces
    (ground truth, one per class) and as many annotations: its captions (``box_captions``, up
    to 40 boxes), then hidden ones (Plotly's animate merges a frame's annotations into the
    shown ones item by item: a shorter list would leave the last frame's captions standing).
    The legend sits under the image, clear of the title."""
    fig = image_figure(image, height=height)
    shown = [f for f in frames if len(f["boxes"]) <= 40]
    slots = max((len(f["boxes"]) for f in shown), default=0)

    def captions(f) -> list[dict]:
        caps = [] if len(f["boxes"]) > 40 else [
            dict(c, visible=True) for c in detection_captions(
                f["boxes"], f["scores"], f["labels"], class_names, image.size[1])]
        return caps + [dict(visible=False, text="")] * (slots - len(caps))

    def traces(f) -> list[dict]:
        b = np.asarray(f["boxes"], dtype=np.float64).reshape(-1, 4)
        lab = np.asarray(f["labels"], dtype=np.int64).reshape(-1)
        gx, gy = box_lines(f.get("gt_boxes", np.zeros((0, 4))))
        out = [dict(x=gx, y=gy)]
        for c in range(len(class_names)):
            x, y = box_lines(b[lab == c])
            out.append(dict(x=x, y=y, name=f"{class_names[c]} ({int((lab == c).sum())})"))
        return out

    fig.add_trace(box_trace(np.zeros((0, 4)), "ground truth", "white", width=2.0, dash="dash"))
    for c, name in enumerate(class_names):
        fig.add_trace(box_trace(np.zeros((0, 4)), name, colour(c), width=3.0))
    if not frames:
        return fig
    active = active % len(frames)
    for t, d in zip(fig.data, traces(frames[active])):
        t.update(**d)
    ids = list(range(len(fig.data)))
    fig.frames = [go.Frame(name=f["name"], data=[go.Scatter(**d) for d in traces(f)],
                           traces=ids, layout=dict(title=dict(text=f["title"]),
                                                   annotations=captions(f)))
                  for f in frames]
    play = dict(mode="immediate", fromcurrent=False,
                frame=dict(duration=duration_ms, redraw=True), transition=dict(duration=0))
    still = dict(mode="immediate", frame=dict(duration=0, redraw=True),
                 transition=dict(duration=0))
    fig.update_layout(
        annotations=captions(frames[active]),
        title=dict(text=frames[active]["title"], x=0, xanchor="left", y=0.98, yanchor="top"),
        margin=dict(l=10, r=10, t=50, b=10),
        legend=dict(orientation="h", yanchor="top", y=-0.08, xanchor="left", x=0,
                    bgcolor="#454545", font=dict(color="white")),
        updatemenus=[dict(type="buttons", direction="left", x=1.0, y=1.0, xanchor="right",
                          yanchor="bottom", showactive=False, pad=dict(b=4),
                          buttons=[dict(label="▶ Play from epoch 0", method="animate",
                                        args=[[f["name"] for f in frames], play]),
                                   dict(label="❚❚", method="animate", args=[[None], still])])])
    return fig
