"""Hard negative mining view on the Labeling page (AppTest): its counts are multibox_target's
and hard_negative_mask's for the shipped model on the page's image and ground truth, its loss
shares are class_loss_per_anchor's under CE and focal, and its sliders never rerun the network."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ssd_core.anchors import layout_anchors
from ssd_core.data import SyntheticDetection
from ssd_core.data.dataset import make_target
from ssd_core.detection import Detector
from ssd_core.images import image_to_tensor
from ssd_core.losses import class_loss_per_anchor
from ssd_core.matching import hard_negative_mask, multibox_target
from ssd_core.mining import focal_config

from .conftest import app_on_page, arr, metric

K = "labeling.hnm_"


@pytest.fixture
def at(tmp_path, monkeypatch, count_forwards):
    app = app_on_page("labeling", tmp_path / "runs", monkeypatch)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert count_forwards["n"] == 0  # the view runs a model only when asked to
    app.toggle(key=K + "on").set_value(True).run()
    assert not app.exception, [e.value for e in app.exception]
    return app, count_forwards


def expected_parts():
    """The shipped model's logits and targets on synthetic sample 0 (the page's default)."""
    img, boxes, labels = SyntheticDetection(1, seed=0).sample(0)
    target = make_target(boxes, labels, img.size)[None]
    det = Detector.from_checkpoint()
    with torch.no_grad():
        _, logits, _ = det.model(image_to_tensor(img, det.input_size)[None])
    anchors = layout_anchors(det.model.layout(input_size=det.input_size))
    _, _, cls = multibox_target(anchors, target)
    return logits.float(), cls


def shares_bars(at) -> list[list[float]]:
    spec = next(s for s in (json.loads(c.proto.spec) for c in at.get("plotly_chart"))
                if any(t.get("type") == "bar" for t in s["data"]))
    return [arr(t["x"]).astype(float).tolist() for t in spec["data"]]  # per group, per row


def test_counts_and_shares_agree_and_sliders_never_rerun_the_network(at):
    at, forwards = at
    assert forwards["n"] == 1, "the view runs the chosen model once per image"
    logits, cls = expected_parts()
    forwards["n"] = 1  # expected_parts ran the model once more, outside the app
    loss = class_loss_per_anchor(logits, cls)
    for ratio in (3, 1, 7):
        at.slider(key=K + "ratio").set_value(ratio).run()
        assert not at.exception
        kept = hard_negative_mask(loss, cls, ratio)
        assert int(metric(at, "Positive anchors")) == int((cls > 0).sum())
        assert int(metric(at, "Kept hard negatives")) == int(kept.sum())
        assert int(metric(at, "Dropped easy negatives")) == int(((cls == 0) & ~kept).sum())
    share = float(loss[cls > 0].sum() / loss.sum())
    assert metric(at, "Positives' share of the CE loss") == f"{100 * share:.1f}%"
    for gamma in (0.0, 2.0, 4.5):
        at.slider(key=K + "gamma").set_value(gamma).run()
        focal = class_loss_per_anchor(logits, cls, focal_config(gamma))
        bars = shares_bars(at)  # rows: CE all, CE mined, focal all
        expected = focal[cls > 0].sum() / focal.sum()
        assert bars[0][2] == pytest.approx(100 * float(expected), rel=1e-3)
    # CE as mining sees it: no easy negatives at all
    assert bars[2][1] == 0.0
    assert forwards["n"] == 1, "the ratio and gamma sliders must not rerun the network"
    table = next(d.value for d in at.dataframe if "rank" in d.value.columns)
    assert table["rank"].tolist() == list(range(1, 11))
    assert np.all(np.diff(table["class loss"].to_numpy()) <= 1e-7)
