"""Figures of training and evaluation metrics: a run's curves (or several runs overlaid),
precision-recall curves and the confidence-threshold sweep. Pure like ``figures``: plain data
in, go.Figure out."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ssd_core.drawing import colour

# (record key, subplot, legend name, dash) for training_curves_figure.
CURVES = [
    ("loss", 1, "total loss", "solid"), ("cls_loss", 1, "class loss", "dash"),
    ("box_loss", 1, "box loss", "dot"), ("class_error", 2, "class error", "solid"),
    ("object_accuracy", 2, "object accuracy", "dash"),
    ("box_mae", 3, "box MAE", "solid"), ("val_ap50", 4, "val AP50", "solid"),
    ("val_map", 4, "val mAP", "dash"), ("images_per_s", 5, "images/s", "solid"),
    ("lr", 6, "learning rate", "solid"),
]
CURVE_TITLES = ["Loss: total ━ class ╌ box ┈", "Class error (book) ━ objects' accuracy ╌",
                "Box MAE (book)",
                "Validation: AP50 ━ mAP ╌", "Images per second", "Learning rate"]


def training_curves_figure(runs: dict, height: int = 560) -> go.Figure:
    """Training curves of one or several runs. runs: name -> metric records (``kind`` "step" or
    "epoch", as ssd_core.engine writes them); x is the optimizer step. One run: a colour per
    metric; several: a colour per run (dash = metric, as in the subplot titles). Validation
    metrics come from epoch records, the rest from step records (epoch records if none)."""
    fig = make_subplots(rows=2, cols=3, subplot_titles=CURVE_TITLES, horizontal_spacing=0.08,
                        vertical_spacing=0.2)
    single = len(runs) == 1
    for r, (name, records) in enumerate(runs.items()):
        epochs = [x for x in records if x.get("kind") == "epoch"]
        # A run shorter than its logging interval has only epoch records: plot those.
        steps = [x for x in records if x.get("kind") == "step"] or epochs
        first = True
        for m, (key, sub, label, dash) in enumerate(CURVES):
            src = epochs if key.startswith("val_") else steps
            pts = [(x["step"], x[key]) for x in src if x.get(key) is not None]
            if not pts:
                continue
            xs, ys = zip(*pts)
            row, col = (sub - 1) // 3 + 1, (sub - 1) % 3 + 1
            fig.add_trace(go.Scatter(
                x=xs, y=ys, mode="lines+markers" if src is epochs or len(xs) < 3 else "lines",
                name=label if single else name, legendgroup=label if single else name,
                showlegend=(sub in (1, 4)) if single else first,
                line=dict(color=colour(m if single else r), dash=dash, width=2),
                marker=dict(size=5), hovertemplate=f"{label}<br>step %{{x}}: %{{y:.4g}}"
                + f"<extra>{name}</extra>"), row=row, col=col)
            first = False
    # "step" under the bottom row only: above, it ran into the next row's subplot titles.
    fig.update_xaxes(title_text="step", title_standoff=0, row=2)
    fig.update_annotations(font_size=13)
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=30, b=10),
                      legend=dict(orientation="h", yanchor="top", y=-0.1, x=0))
    return fig


def pr_curves_figure(curves: dict, height: int = 420) -> go.Figure:
    """Precision-recall curves at IoU 0.5. curves: class name -> (recall, precision, scores,
    ap50); one line per class, hover shows the score threshold."""
    fig = go.Figure()
    for i, (name, (rec, prec, scores, ap)) in enumerate(curves.items()):
        fig.add_trace(go.Scatter(
            x=np.asarray(rec), y=np.asarray(prec), mode="lines", name=f"{name} (AP50 {ap:.3f})",
            line=dict(color=colour(i), width=2, shape="hv"), customdata=np.asarray(scores),
            hovertemplate="recall %{x:.3f}<br>precision %{y:.3f}<br>score ≥ %{customdata:.3f}"
            f"<extra>{name}</extra>"))
    return _unit_axes(fig, "Precision-recall (IoU 0.5)", ("recall", 1.02), ("precision", 1.05),
                      height)


def threshold_sweep_figure(thresholds, precision, recall, f1, best: int,
                           height: int = 420) -> go.Figure:
    """Precision, recall and F1 against the confidence threshold, the best F1 marked.
    All arrays ``(T,)``; best: index into them."""
    t = np.asarray(thresholds, dtype=np.float64)
    fig = go.Figure()
    for name, ys, col in (("precision", precision, colour(4)), ("recall", recall, colour(5)),
                          ("F1", f1, colour(2))):
        fig.add_trace(go.Scatter(x=t, y=np.asarray(ys), mode="lines", name=name,
                                 line=dict(color=col, width=2.5 if name == "F1" else 2)))
    fig.add_trace(go.Scatter(
        x=[t[best]], y=[np.asarray(f1)[best]], mode="markers+text", name="best F1",
        marker=dict(size=12, color=colour(2), symbol="star", line=dict(color="black", width=1)),
        text=[f"best F1 {np.asarray(f1)[best]:.3f} at {t[best]:.2f}"],
        textposition="top right" if t[best] < 0.5 else "top left"))
    fig.add_vline(x=float(t[best]), line=dict(color="#888", dash="dot"))
    return _unit_axes(fig, "Confidence-threshold sweep", ("confidence threshold", 1),
                      ("value", 1.08), height)


def _unit_axes(fig: go.Figure, title: str, x: tuple, y: tuple, height: int) -> go.Figure:
    """Axes from 0 to a little over 1 (``(title, top)`` each), the title, and the legend under
    the plot: at the side it took most of a half-width chart's width."""
    fig.update_xaxes(title_text=x[0], range=[0, x[1]])
    fig.update_yaxes(title_text=y[0], range=[0, y[1]])
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=40, b=10), title=title,
                      legend=dict(orientation="h", yanchor="top", y=-0.18, x=0))
    return fig
