"""Figure builders for the step-through views (NMS steps, offset sandbox, hard negative mining,
anchor fit): plain arrays in, go.Figure out; no Streamlit and no torch.

Boxes are NaN-gapped line traces (figures.box_lines). The NMS figure scrubs its steps in the
browser: one Plotly frame per step with a slider and Play/Pause, so stepping never reruns
Streamlit, let alone the network.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from app.figures import SCALE_COLOURS, box_lines, box_trace, colour, image_figure

KEPT, KEEPING, REMOVED, REMAINING = "#009E73", "#E69F00", "#D55E00", "#c8ccd0"

# ---------------------------------------------------------------- NMS step by step


def _lines(boxes, text=None) -> dict:
    xs, ys = box_lines(boxes)
    out = {"x": xs, "y": ys}
    if text is not None:
        out["text"] = np.repeat(np.asarray(text, dtype=object), 6)
    return out


def nms_step_data(boxes, scores, labels, names, trace, s: int, max_remaining: int = 300,
                  max_labels: int = 0):
    """The five traces of step ``s`` as dicts (x, y[, text]): kept earlier, remaining candidates,
    removed now, kept now, and the labels: the kept box's class and score, and the IoU of the
    ``max_labels`` removed boxes overlapping it most (default none: near-duplicates pile up on
    the kept box's corner; every removed box shows its IoU on hover and in the page's table).

    boxes ``(K, 4)`` pixel corners, scores/labels ``(K,)``; ``trace``: dict of numpy arrays
    ``kept (S,)``, ``step (K,)``, ``removed_by (K,)``, ``iou (K,)`` (ssd_core.nms_trace).
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    kept, step, by, iou = (np.asarray(trace[k]) for k in ("kept", "step", "removed_by", "iou"))
    now = int(kept[s])
    removed = np.flatnonzero((step == s) & (by >= 0))
    removed = removed[np.argsort(-iou[removed], kind="stable")]
    rest = np.flatnonzero(step > s)
    rest = rest[np.argsort(-np.asarray(scores)[rest], kind="stable")][:max_remaining]
    earlier = kept[:s]

    def label(i):
        return f"{names[int(labels[i])]} {float(scores[i]):.2f}"

    labelled = removed[:max_labels]  # the highest IoUs; more labels would pile up
    texts = [f"<b>keep</b> {label(now)}"] + [f"IoU {iou[i]:.2f}" for i in labelled]
    corners = b[np.concatenate(([now], labelled)).astype(int)]
    return [
        _lines(b[earlier], [f"kept at step {int(step[i]) + 1}: {label(i)}" for i in earlier]),
        _lines(b[rest], [f"candidate {label(i)}" for i in rest]),
        _lines(b[removed], [f"removed: {label(i)}, IoU {iou[i]:.3f} with the kept box"
                            for i in removed]),
        _lines(b[[now]], [f"step {s + 1}: keep {label(now)}"]),
        {"x": corners[:, 0], "y": corners[:, 1], "text": np.asarray(texts, dtype=object)},
    ]


def _play_controls(frame_names, labels, active: int) -> tuple[list, list]:
    """A Plotly slider over the frames and Play/Pause buttons (all client-side)."""
    still = dict(mode="immediate", frame=dict(duration=0, redraw=False),
                 transition=dict(duration=0))
    steps = [dict(method="animate", label=lab, args=[[name], still])
             for name, lab in zip(frame_names, labels)]
    slider = dict(active=active, steps=steps, pad=dict(t=30), x=0.14, len=0.86,
                  currentvalue=dict(prefix="NMS step ", font=dict(color=KEEPING)))
    play = dict(mode="immediate", fromcurrent=True, frame=dict(duration=900, redraw=False),
                transition=dict(duration=0))
    buttons = dict(type="buttons", direction="left", x=0.0, y=0, xanchor="left", yanchor="top",
                   pad=dict(t=30, r=10), showactive=False,
                   buttons=[dict(label="▶", method="animate", args=[None, play]),
                            dict(label="❚❚", method="animate", args=[[None], still])])
    return [slider], [buttons]


def nms_steps_figure(image, boxes, scores, labels, names, trace, active: int = 0,
                     max_frames: int = 60, max_remaining: int = 300,
                     height: int = 600) -> go.Figure:
    """Greedy NMS over ``image`` (PIL or ImageURI), one frame per step (at most ``max_frames``
    around ``active``), scrubbed by a Plotly slider with Play/Pause: green the boxes kept so
    far, thick orange the box kept at this step, dashed red the boxes it removes (labelled with
    their IoU), dotted grey the candidates still to visit (the ``max_remaining`` best)."""
    num_steps = len(trace["kept"])
    fig = image_figure(image, height=height)
    styles = [("kept earlier", KEPT, 2.0, "solid"), ("candidates left", REMAINING, 1.3, "dot"),
              ("removed at this step", REMOVED, 2.5, "dash"), ("kept at this step", KEEPING,
                                                               4.0, "solid")]
    for name, col, width, dash in styles:
        fig.add_trace(box_trace(np.zeros((0, 4)), name, col, width=width, dash=dash, hover=""))
    fig.add_trace(go.Scatter(x=[], y=[], mode="text", showlegend=False, hoverinfo="skip",
                             textposition="top right", textfont=dict(color="white", size=12)))
    if num_steps == 0:
        return fig
    active = int(np.clip(active, 0, num_steps - 1))
    first = int(np.clip(active - max_frames // 2, 0, max(0, num_steps - max_frames)))
    window = range(first, min(num_steps, first + max_frames))
    frames = []
    for s in window:
        data = nms_step_data(boxes, scores, labels, names, trace, s, max_remaining)
        frames.append(go.Frame(name=str(s), data=[go.Scatter(**d) for d in data],
                               traces=list(range(5))))
        if s == active:
            for t, d in zip(fig.data, data):
                t.update(**d)
    fig.frames = frames
    sliders, menus = _play_controls([str(s) for s in window], [str(s + 1) for s in window],
                                    active - first)
    fig.update_layout(sliders=sliders, updatemenus=menus, hoverlabel=dict(namelength=-1))
    return fig


# ---------------------------------------------------------------- offset sandbox


def offset_sandbox_figure(image, anchor, box, title: str | None = None,
                          height: int = 460) -> go.Figure:
    """An anchor (dashed) and a box (solid) over ``image`` (PIL, ImageURI or a ``(W, H)``
    blank canvas), with an arrow from the anchor's centre to the box's. Pixel corners ``(4,)``."""
    if isinstance(image, tuple):
        w, h = image
        fig = go.Figure()
        fig.update_xaxes(range=[0, w], showgrid=True, zeroline=False, constrain="domain")
        fig.update_yaxes(range=[h, 0], showgrid=True, zeroline=False, scaleanchor="x",
                         scaleratio=1, constrain="domain")
        fig.update_layout(height=height, margin=dict(l=10, r=10, t=40 if title else 10, b=10),
                          plot_bgcolor="#f7f7f7", title=title,
                          legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0))
    else:
        fig = image_figure(image, height=height, title=title)
    a = np.asarray(anchor, dtype=np.float64).reshape(4)
    b = np.asarray(box, dtype=np.float64).reshape(4)
    fig.add_trace(box_trace(a[None], "anchor", "#56B4E9", width=3.0, dash="dash"))
    fig.add_trace(box_trace(b[None], "box", KEEPING, width=3.5))
    ca, cb = (a[:2] + a[2:]) / 2, (b[:2] + b[2:]) / 2
    fig.add_trace(go.Scatter(x=[ca[0], cb[0]], y=[ca[1], cb[1]], mode="markers", name="centres",
                             marker=dict(color=["#56B4E9", KEEPING], size=9,
                                         line=dict(color="black", width=1)),
                             showlegend=False, hoverinfo="skip"))
    if np.hypot(*(cb - ca)) > 1e-6:
        fig.add_annotation(x=cb[0], y=cb[1], ax=ca[0], ay=ca[1], xref="x", yref="y", axref="x",
                           ayref="y", showarrow=True, arrowhead=3, arrowwidth=2,
                           arrowcolor="black", text="")
    return fig


# ---------------------------------------------------------------- hard negative mining

GROUP_COLOURS = [KEPT, REMOVED, REMAINING]


def negatives_rank_figure(negative_loss, kept: int, positive_loss=None,
                          height: int = 340) -> go.Figure:
    """Background anchors' class losses by rank, hardest first (``negative_loss (n,)``, sorted
    descending): the ``kept`` first are what mining keeps, the rest it drops; the positives'
    losses (optional ``(p,)``) as a strip for comparison. Log-scaled loss."""
    loss = np.asarray(negative_loss, dtype=np.float64).reshape(-1)
    rank = np.arange(1, len(loss) + 1)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=rank[:kept], y=loss[:kept], mode="lines+markers",
                             name=f"kept hard negatives ({kept})", line=dict(color=REMOVED),
                             marker=dict(size=4),
                             hovertemplate="rank %{x}: loss %{y:.4f}<extra></extra>"))
    fig.add_trace(go.Scatter(x=rank[kept:], y=loss[kept:], mode="lines",
                             name=f"dropped easy negatives ({len(loss) - kept})",
                             line=dict(color=REMAINING),
                             hovertemplate="rank %{x}: loss %{y:.5f}<extra></extra>"))
    if positive_loss is not None and len(positive_loss):
        p = np.sort(np.asarray(positive_loss, dtype=np.float64))[::-1]
        fig.add_trace(go.Scatter(x=np.arange(1, len(p) + 1), y=p, mode="markers",
                                 name=f"positives ({len(p)})", marker=dict(color=KEPT, size=7,
                                                                           symbol="diamond"),
                                 hovertemplate="positive %{x}: loss %{y:.4f}<extra></extra>"))
    positive = loss[loss > 0]
    if 0 < kept <= len(loss) and len(positive):  # a trace, not a shape: data units on log axes
        fig.add_trace(go.Scatter(x=[kept + 0.5, kept + 0.5], y=[positive.min(), positive.max()],
                                 mode="lines", name=f"cut-off after rank {kept}",
                                 line=dict(color="black", dash="dash", width=1),
                                 hoverinfo="skip"))
    fig.update_xaxes(type="log", title="rank among background anchors (1 = hardest)")
    fig.update_yaxes(type="log", title="class loss of the anchor")
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=30, b=10),
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0))
    return fig


def loss_shares_figure(rows, groups, height: int = 260) -> go.Figure:
    """Stacked horizontal bars, one per row ``(name, shares (3,), counts (3,))``: each group's
    share of the class loss (positives, kept hard negatives, dropped easy negatives)."""
    fig = go.Figure()
    names = [r[0] for r in rows]
    for g, group in enumerate(groups):
        shares = [100 * float(r[1][g]) for r in rows]
        counts = [int(r[2][g]) for r in rows]
        fig.add_trace(go.Bar(
            y=names, x=shares, orientation="h", name=group, marker_color=GROUP_COLOURS[g],
            text=[f"{v:.1f}% ({c})" for v, c in zip(shares, counts)], textposition="inside",
            hovertemplate=f"{group}: %{{x:.2f}}% of the loss<extra>%{{y}}</extra>"))
    fig.update_layout(barmode="stack", height=height, margin=dict(l=10, r=10, t=30, b=10),
                      xaxis=dict(title="share of the image's class loss (%)", range=[0, 100]),
                      yaxis=dict(autorange="reversed"),
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0))
    return fig


def mining_image_figure(image, gt_boxes, positives, hard, hard_text=None,
                        height: int = 520) -> go.Figure:
    """The image with its objects (white dashed), positive anchors (thin green) and the kept
    hard negatives on top (red, hover: rank and loss). Pixel corners ``(n, 4)`` each."""
    fig = image_figure(image, height=height)
    fig.add_trace(box_trace(positives, f"positives ({len(positives)})", KEPT, width=1.0,
                            opacity=0.6))
    fig.add_trace(box_trace(hard, f"kept hard negatives ({len(hard)})", REMOVED, width=2.0,
                            hover=None if hard_text is None
                            else np.repeat(np.asarray(hard_text, dtype=object), 6)))
    fig.add_trace(box_trace(gt_boxes, "objects", "white", width=2.5, dash="dash"))
    return fig


# ---------------------------------------------------------------- anchor fit of a dataset


def anchor_fit_figure(widths, heights, best_iou, threshold: float, shapes,
                      height: int = 520) -> go.Figure:
    """Every object's (width, height) (normalized, log axes) coloured by its best anchor IoU,
    the unreached ones (best IoU < ``threshold``) as red crosses, against each scale's anchor
    shapes (``shapes``: list of ``(scale, widths (a,), heights (a,))``) as diamonds."""
    w, h = (np.asarray(v, dtype=np.float64).reshape(-1) for v in (widths, heights))
    iou = np.asarray(best_iou, dtype=np.float64).reshape(-1)
    low = iou < threshold
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=w[~low], y=h[~low], mode="markers", name=f"objects reached ({int((~low).sum())})",
        marker=dict(color=iou[~low], cmin=0, cmax=1, colorscale="Viridis", size=6, opacity=0.7,
                    colorbar=dict(title="best IoU", thickness=12)),
        customdata=iou[~low], hovertemplate="w %{x:.3f}, h %{y:.3f}: best IoU %{customdata:.2f}"
                                            "<extra></extra>"))
    fig.add_trace(go.Scatter(
        x=w[low], y=h[low], mode="markers", name=f"best IoU < {threshold:g} ({int(low.sum())})",
        marker=dict(color=REMOVED, symbol="x", size=8), customdata=iou[low],
        hovertemplate="w %{x:.3f}, h %{y:.3f}: best IoU %{customdata:.2f}<extra></extra>"))
    for scale, aw, ah in shapes:
        aw, ah = np.asarray(aw, dtype=np.float64), np.asarray(ah, dtype=np.float64)
        fig.add_trace(go.Scatter(
            x=aw, y=ah, mode="markers", name=f"scale {scale + 1} anchors",
            marker=dict(symbol="diamond", size=13, color=SCALE_COLOURS[scale % 5],
                        line=dict(color="black", width=1)),
            hovertemplate=f"scale {scale + 1} anchor: w %{{x:.3f}}, h %{{y:.3f}}<extra></extra>"))
    fig.update_xaxes(type="log", title="width (fraction of the image)")
    fig.update_yaxes(type="log", title="height (fraction of the image)", scaleanchor="x")
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=30, b=10),
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0))
    return fig


def best_iou_histogram(best_ious: dict, threshold: float, height: int = 320) -> go.Figure:
    """Overlaid histograms of the objects' best anchor IoU, one per anchor set (name -> ``(P,)``),
    with the threshold marked: what falls left of it only the greedy step labels."""
    fig = go.Figure()
    for k, (name, values) in enumerate(best_ious.items()):
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        fig.add_trace(go.Histogram(x=v, name=f"{name} ({int((v < threshold).sum())} below)",
                                   xbins=dict(start=0, end=1, size=0.025), opacity=0.6,
                                   marker_color=colour(k)))
    fig.add_vline(x=threshold, line=dict(color="black", dash="dash"),
                  annotation_text=f"IoU threshold {threshold:g}", annotation_position="top left")
    fig.update_layout(barmode="overlay", height=height, margin=dict(l=10, r=10, t=30, b=10),
                      xaxis=dict(title="best IoU of an object with any anchor", range=[0, 1]),
                      yaxis=dict(title="objects"),
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0))
    return fig
