"""Anchor fit of a dataset on the Anchors page (AppTest): the positive-anchor counts are
multibox_target's on the same boxes, the objects below the threshold are the ones no anchor
reaches (box_iou), the book's sizes leave more of them than the shipped model's, an uploaded
dataset zip is read, and a broken one is an error message."""

from __future__ import annotations

import pytest
import torch

from ssd_core.anchor_fit import dataset_labels
from ssd_core.anchors import TINYSSD_SIZES, anchor_layout, layout_anchors
from ssd_core.boxes import box_iou
from ssd_core.data import SyntheticDetection, export_dataset
from ssd_core.detection import Detector
from ssd_core.matching import multibox_target
from tests.helpers import zip_bytes

from .conftest import app_on_page, metric

K = "anchors.fit_"


@pytest.fixture
def at(tmp_path, monkeypatch, count_forwards):
    app = app_on_page("anchors", tmp_path / "runs", monkeypatch)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    app.toggle(key=K + "on").set_value(True).run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def expected(labels, sizes, threshold):
    """(positive anchors per multibox_target, objects whose best IoU < threshold)."""
    anchors = layout_anchors(anchor_layout(sizes=sizes))
    _, _, cls = multibox_target(anchors, labels, threshold)
    valid = labels[..., 0] >= 0
    best = torch.cat([box_iou(anchors[0], labels[b, valid[b], 1:]).max(0).values
                      for b in range(len(labels))])
    return int((cls > 0).sum()), int((best < threshold).sum())


def row(at, prefix: str) -> dict:
    table = next(d.value for d in at.dataframe if "anchor set" in d.value.columns)
    return table[table["anchor set"].str.startswith(prefix)].iloc[0].to_dict()


def test_counts_agree_with_multibox_target(at, count_forwards):
    at.slider(key=K + "n").set_value(40).run()
    labels = dataset_labels(SyntheticDetection(40, seed=0))
    shipped = Detector.from_checkpoint().model.sizes
    for threshold in (0.5, 0.6):
        at.slider(key=K + "iou").set_value(threshold).run()
        assert not at.exception
        for name, sizes in (("book", TINYSSD_SIZES), ("shipped", shipped)):
            positives, unreached = expected(labels, sizes, threshold)
            r = row(at, name)
            assert r["objects"] == int((labels[..., 0] >= 0).sum())
            assert r["best IoU < threshold"] == unreached
            assert r["positive anchors per object"] == pytest.approx(positives / r["objects"])
            shown = next(n for n in at.radio(key=K + "shown").options if n.startswith(name))
            at.radio(key=K + "shown").set_value(shown).run()
            assert int(metric(at, "Positive anchors")) == positives
            assert int(metric(at, "Best IoU < threshold")) == unreached
    assert row(at, "book")["best IoU < threshold"] > row(at, "shipped")["best IoU < threshold"]
    # the suggestion starts at the smallest object and its histogram is drawn
    assert row(at, "suggested")["s_k (first size per scale)"].startswith(
        f"{round(float(metric(at, 'Object sizes √(wh)').split(' – ')[0]), 3):g}")
    assert len(at.get("plotly_chart")) >= 3
    assert count_forwards["n"] == 0  # annotations only: no network


def test_uploaded_dataset_and_broken_zip(at, tmp_path):
    ds = SyntheticDetection(6, seed=3, image_size=96)
    export_dataset(ds, tmp_path / "coco", "coco")
    data = zip_bytes(tmp_path / "coco")
    at.radio(key=K + "source").set_value("Upload a dataset (.zip)").run()
    at.file_uploader(key=K + "zip").upload("shapes.zip", data, "application/zip").run()
    assert not at.exception and not at.error
    n = sum(len(ds.sample(i)[2]) for i in range(len(ds)))
    assert row(at, "book")["objects"] == n
    at.file_uploader(key=K + "zip").upload("broken.zip", b"not a zip", "application/zip").run()
    assert not at.exception
    assert any("could not be read as a dataset" in e.value for e in at.error)
