"""Offset sandbox on the Labeling page (AppTest): the decoded box of the chosen anchor (the page's
model's, the shipped one by default) and offsets is offset_inverse's, the encoded offsets of the
chosen box are offset_boxes's, and the figure draws both at the image's scale."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ssd_core.anchors import layout_anchors
from ssd_core.boxes import box_center_to_corner, offset_boxes, offset_inverse
from ssd_core.detection import Detector
from ssd_core.offset_terms import anchor_index

from .conftest import app_on_page, arr, metric

K = "labeling.sb_"


@pytest.fixture
def at(tmp_path, monkeypatch):
    app = app_on_page("labeling", tmp_path / "runs", monkeypatch)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def table(at, name: str):
    return next(d.value for d in at.dataframe if "" in d.value.columns and
                name in d.value[""].tolist())


def choose_anchor(at, scale, row, col, shape):
    at.selectbox(key=K + "scale").set_value(scale).run()
    at.number_input(key=K + "row").set_value(row)
    at.number_input(key=K + "col").set_value(col)
    at.selectbox(key=K + "shape").set_value(shape).run()
    assert not at.exception
    layout = Detector.from_checkpoint().model.layout()  # the page's model: the shipped one
    return layout_anchors(layout)[0, anchor_index(layout, scale, row, col, shape)]


@pytest.mark.parametrize("where,offsets", [((1, 3, 11, 0), (1.5, -2.0, 0.5, -1.2)),
                                           ((0, 20, 5, 3), (-7.3, 4.4, 3.0, 2.2)),
                                           ((4, 0, 0, 1), (0.0, 0.0, -4.0, 10.0))])
def test_decode_agrees_with_offset_inverse(at, where, offsets):
    anchor = choose_anchor(at, *where)
    for name, v in zip(("t_x", "t_y", "t_w", "t_h"), offsets):
        at.slider(key=K + name).set_value(v)
    at.run()
    assert not at.exception
    expected = offset_inverse(anchor, torch.tensor(offsets))
    shown = table(at, "decoded box")
    row = shown[shown[""] == "decoded box"].iloc[0]
    np.testing.assert_allclose(row[["x1", "y1", "x2", "y2"]].to_numpy(float), expected.numpy(),
                               atol=1e-6)
    anchor_row = shown[shown[""] == "anchor"].iloc[0]
    np.testing.assert_allclose(anchor_row[["x1", "y1", "x2", "y2"]].to_numpy(float),
                               anchor.numpy(), atol=1e-6)
    # the formula shows the book's constants
    latex = " ".join(m.value for m in at.latex)
    assert r"t_x \cdot 0.1" in latex and r"t_w \cdot 0.2" in latex
    # the figure draws the decoded box at the display image's pixel scale
    spec = next(s for s in (json.loads(c.proto.spec) for c in at.get("plotly_chart"))
                if any(t.get("name") == "box" for t in s["data"]))  # the decode tab's, first
    xs = arr(next(t for t in spec["data"] if t.get("name") == "box")["x"]).astype(float)
    w = spec["layout"]["xaxis"]["range"][1]
    np.testing.assert_allclose(xs[[0, 1]] / w, expected.numpy()[[0, 2]], atol=1e-6)


@pytest.mark.parametrize("box", [(0.3, 0.6, 0.2, 0.45), (0.85, 0.1, 0.05, 0.9)])
def test_encode_agrees_with_offset_boxes(at, box):
    anchor = choose_anchor(at, 2, 4, 5, 2)
    for name, v in zip(("cx", "cy", "w", "h"), box):
        at.slider(key=K + name).set_value(v)
    at.run()
    assert not at.exception
    expected = offset_boxes(anchor, box_center_to_corner(torch.tensor(box)))
    for name, v in zip(("t_x", "t_y", "t_w", "t_h"), expected.tolist()):
        assert float(metric(at, name)) == pytest.approx(v, abs=5e-4)
    # decoding the encoded offsets gives the box back
    back = offset_inverse(anchor, expected)
    np.testing.assert_allclose(back.numpy(), box_center_to_corner(torch.tensor(box)).numpy(),
                               atol=1e-5)
