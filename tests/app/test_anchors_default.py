"""The Anchors page opens as the book's display_anchors: one scale (8×8) with one cell's
anchors highlighted, not all 5444 anchors at once; "all" is still a choice."""

from __future__ import annotations

import math

from .conftest import arr, charts, metric, open_page


def test_anchors_open_on_one_scale_with_one_cell():
    at = open_page("anchors")
    assert at.radio(key="anchors.scale").value == "3"
    assert at.checkbox(key="anchors.cell").value is True
    row, col = at.slider(key="anchors.row").value, at.slider(key="anchors.col").value
    assert (row, col) == (4, 4)  # the centre cell of the 8x8 map
    fig = charts(at)[0]
    lines = [d for d in fig["data"] if d.get("mode") == "lines"]
    per_shape = [d for d in lines if not d["name"].startswith("cell")]
    assert [d["name"] for d in per_shape] == ["s=0.54, r=1", "s=0.619, r=1", "s=0.54, r=2",
                                              "s=0.54, r=0.5"]
    assert sum(len(arr(d["x"])) for d in per_shape) == 6 * 8 * 8 * 4  # 256 anchors, not 5444
    highlight = [d for d in lines if d["name"].startswith("cell (4, 4)")]
    assert len(highlight) == 4
    for d in highlight:  # centred on cell (4, 4) of the 8x8 map (a 256 px sample image)
        xs, ys = arr(d["x"])[:4], arr(d["y"])[:4]
        assert math.isclose(xs.mean(), 4.5 / 8 * 256, abs_tol=1e-3)
        assert math.isclose(ys.mean(), 4.5 / 8 * 256, abs_tol=1e-3)
    assert metric(at, "Total anchors") == "5444"  # the counts still cover every scale
    assert at.query_params["scale"] == "3" and at.query_params["cell"] == "1"


def test_all_scales_is_still_a_choice():
    at = open_page("anchors", query={"scale": "all"})
    lines = [d for d in charts(at)[0]["data"] if d.get("mode") == "lines"]
    assert len(lines) == 5 and sum(len(arr(d["x"])) for d in lines) == 6 * 5444
