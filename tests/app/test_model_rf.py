"""The Model page's default model (the shipped one, the untrained a choice) and its
receptive-field view: the cell's field and anchors are ssd_core.receptive's, sliders and the
block choice never run the network, and the view is shareable by URL."""

from __future__ import annotations

import numpy as np

from ssd_core.checkpoint import load_checkpoint
from ssd_core.receptive import cell_field
from ssd_core.resources import shipped_checkpoint

from .conftest import arr, charts, metric, open_page

RF = "model_rf_chart"


def rf_figure(at) -> dict:
    return next(f for f in charts(at) if any(d.get("name", "").startswith("receptive field")
                                              for d in f["data"]))


def trace(fig, prefix: str) -> dict:
    return next(d for d in fig["data"] if d.get("name", "").startswith(prefix))


def test_model_page_opens_on_the_shipped_model_untrained_a_choice():
    at = open_page("model")
    assert at.selectbox(key="model.model").value == "shipped"
    assert "untrained TinySSD (random weights)" in at.selectbox(key="model.model").options
    assert "shipped TinySSD" in at.caption[0].value
    shipped_sizes = list(at.dataframe[0].value["sizes"])
    assert shipped_sizes[0] == "0.1, 0.17"  # the shipped model's anchors, not the book's
    at.selectbox(key="model.model").set_value("untrained").run()
    assert "untrained" in at.caption[0].value
    assert list(at.dataframe[0].value["sizes"])[0] == "0.2, 0.272"


def test_receptive_field_view_is_ssd_cores(count_forwards):
    at = open_page("model")
    n = count_forwards["n"]
    model = load_checkpoint(shipped_checkpoint()).model
    assert (metric(at, "Field size"), metric(at, "Stride")) == ("36 px", "8 px")
    want = cell_field(model, 0, 16, 16, 256)
    fig = rf_figure(at)
    assert trace(fig, "cell (")["name"] == "cell (16, 16)"
    inside = arr(trace(fig, "receptive field inside")["x"])[:5]
    x1, _, x2, _ = want["clipped"]
    np.testing.assert_allclose(inside, [x1, x2, x2, x1, x1])
    anchors = [d for d in fig["data"] if d["name"].startswith("anchor s=")]
    assert [d["name"] for d in anchors] == [f"anchor s={s:g}, r={r:g}" for s, r in want["shapes"]]
    np.testing.assert_allclose(arr(anchors[0]["x"])[:2], want["anchors"][0, [0, 2]].numpy(),
                               rtol=1e-5)
    table = at.dataframe[-1].value
    assert list(table["anchor"]) == want["anchor_index"].tolist()
    assert list(table["size"]) == [0.1, 0.17, 0.1, 0.1]

    at.slider(key="model.rf_row").set_value(0).run()
    at.slider(key="model.rf_col").set_value(31).run()
    fig = rf_figure(at)
    assert trace(fig, "cell (")["name"] == "cell (0, 31)"
    corner = cell_field(model, 0, 0, 31, 256)
    assert corner["box"] != corner["clipped"]  # it reaches into the padding
    np.testing.assert_allclose(arr(trace(fig, "receptive field 36")["x"])[:2],
                               [corner["box"][0], corner["box"][2]])
    assert at.query_params["rf_row"] == "0" and at.query_params["rf_col"] == "31"

    at.radio(key="model.rf_scale").set_value(2).run()  # the same image point on the 8x8 map
    assert (at.slider(key="model.rf_row").value, at.slider(key="model.rf_col").value) == (0, 7)
    assert (metric(at, "Field size"), metric(at, "Stride")) == ("156 px", "32 px")
    at.radio(key="model.rf_scale").set_value(4).run()
    assert "model.rf_row" not in [s.key for s in at.slider]
    assert metric(at, "Field size") == "508 px"
    assert list(at.dataframe[-1].value["anchor"]) == [5440, 5441, 5442, 5443]
    assert count_forwards["n"] == n  # picking cells never runs the network


def test_receptive_field_from_a_shared_link_and_another_size():
    at = open_page("model", {"rf_scale": "1", "rf_row": "3", "rf_col": "2", "size": "320"})
    assert trace(rf_figure(at), "cell (")["name"] == "cell (3, 2)"
    assert metric(at, "Field size") == "76 px"
    fig = rf_figure(at)
    assert len(arr(trace(fig, "cell centres")["x"])) == 20 * 20  # 320 px: a 20x20 map
    # a bad link falls back to the defaults instead of failing
    at = open_page("model", {"rf_scale": "9", "rf_row": "-4"})
    assert not at.exception
    assert trace(rf_figure(at), "cell (")["name"] == "cell (16, 16)"
