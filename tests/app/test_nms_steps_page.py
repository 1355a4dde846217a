"""NMS step by step on the Detection page (AppTest): the steps keep exactly nms's boxes in nms's
order (class-agnostic) and the per-class path's, Next / Back / the Step slider move through
them, the figure holds one frame per step, and none of it re-runs the network."""

from __future__ import annotations

import json
import re

import pytest
import torch

from ssd_core.detection import Detector, nms

from .conftest import app_on_page, metric


@pytest.fixture
def page(tmp_path, monkeypatch):
    """The Detection page on the shipped model and shapes-1.jpg; Detector.raw counted and
    its output kept."""
    seen = []
    raw = Detector.raw

    def recording_raw(self, image):
        seen.append(raw(self, image))
        return seen[-1]

    monkeypatch.setattr(Detector, "raw", recording_raw)
    at = app_on_page("detection", tmp_path / "runs", monkeypatch)
    # shapes-1.jpg: several overlapping boxes to step through (the page opens on shapes-3.jpg,
    # whose two objects are each found once)
    at.query_params["file"] = "shapes-1.jpg"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at, seen


def kept_anchor(at) -> int:
    text = next(m.value for m in at.markdown if m.value.startswith("**Step "))
    return int(re.search(r"anchor (\d+)\)", text).group(1))


def walk_steps(at) -> list[int]:
    """Press Next through every step; the anchor each step keeps."""
    total = int(metric(at, "NMS step").split("/")[1])
    anchors = [kept_anchor(at)]
    for _ in range(total - 1):
        at.button(key="detection.nms_next").click().run()
        assert not at.exception
        anchors.append(kept_anchor(at))
    assert metric(at, "NMS step") == f"{total} / {total}"
    return anchors


def test_steps_keep_nms_order_and_never_rerun_the_network(page):
    at, seen = page
    assert len(seen) == 1
    raw = seen[0]
    at.slider(key="detection.conf").set_value(0.3).run()
    at.slider(key="detection.nms").set_value(0.4).run()
    conf, cls = raw.probs[:, 1:].max(dim=1)
    idx = torch.nonzero(conf >= 0.3).flatten()
    expected = idx[nms(raw.boxes[idx], conf[idx], 0.4)].tolist()
    assert len(expected) >= 3
    assert metric(at, "NMS step") == f"1 / {len(expected)}"
    assert walk_steps(at) == expected
    # the kept, removed and remaining counts add up at the last step
    assert int(metric(at, "Candidates left")) == 0
    at.button(key="detection.nms_back").click().run()
    assert metric(at, "NMS step") == f"{len(expected) - 1} / {len(expected)}"
    assert kept_anchor(at) == expected[-2]
    at.slider(key="detection.nms_step").set_value(2).run()
    assert kept_anchor(at) == expected[1]
    # the chart: one Plotly frame per step (scrubbed in the browser), active on the chosen one
    spec = next(json.loads(c.proto.spec) for c in at.get("plotly_chart")
                if "frames" in json.loads(c.proto.spec))
    assert len(spec["frames"]) == len(expected)
    assert spec["layout"]["sliders"][0]["active"] == 1
    assert len(seen) == 1, "stepping and scrubbing must never run the network again"


def test_per_class_steps_follow_the_per_class_path(page):
    at, seen = page
    raw = seen[0]
    at.slider(key="detection.conf").set_value(0.25).run()
    at.radio(key="detection.nms_mode").set_value("per class").run()
    det = Detector.from_checkpoint()
    expected = det.filter(raw, 0.25, 0.5, per_class=True).anchor_index.tolist()
    agnostic = det.filter(raw, 0.25, 0.5).anchor_index.tolist()
    assert walk_steps(at) == expected
    assert len(expected) >= len(agnostic)
    assert not at.exception and len(seen) == 1


def test_no_candidates_says_so(page):
    at, seen = page
    best = float(seen[0].scores.max())
    at.slider(key="detection.conf").set_value(min(1.0, round(best + 0.01, 2))).run()
    assert not at.exception
    assert any("nothing to suppress" in i.value for i in at.info)
