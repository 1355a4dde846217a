"""Detection page through AppTest: an uploaded image gets the same detections as ssd_core's
Detector, moving the sliders never re-runs the network, a corrupt upload is an error message."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ssd_core.data import CLASS_NAMES, SyntheticDetection
from ssd_core.detection import Detector
from ssd_core.drawing import text_colour
from ssd_core.model import seeded_tinyssd

from .conftest import app_on_page

APP = Path(__file__).resolve().parents[2] / "app"
TIMEOUT = 120


@pytest.fixture
def at(tmp_path, monkeypatch):
    """The app on the Detection page with an empty runs folder and the untrained model."""
    app = app_on_page("detection", tmp_path / "runs", monkeypatch)
    app.session_state["detection.model"] = "untrained"
    return app


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def metric(app, label: str) -> str:
    return next(m.value for m in app.metric if m.label == label)


def chart(app) -> dict:
    return json.loads(app.get("plotly_chart")[0].proto.spec)


def arr(v) -> np.ndarray:
    """A Plotly JSON array: a list, or a typed array {"dtype", "bdata" (base64)}."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
    return np.asarray(v, dtype=object)


def untrained_detector() -> Detector:
    # the app's untrained model: the weights a run of seed 0 starts from
    return Detector(seeded_tinyssd(len(CLASS_NAMES), seed=0), list(CLASS_NAMES), 256,
                    device="cpu")


def test_upload_detects_and_sliders_never_rerun_the_network(at, monkeypatch):
    calls = []
    raw = Detector.raw

    def counting_raw(self, image):
        calls.append(1)
        return raw(self, image)

    monkeypatch.setattr(Detector, "raw", counting_raw)
    image = SyntheticDetection(3, seed=5, image_size=200).sample(2)[0]
    data = png_bytes(image)
    at.run()
    at.radio(key="detection.image").set_value("Upload").run()
    assert not at.exception
    calls.clear()
    at.file_uploader(key="detection.upload").upload("shapes.png", data, "image/png").run()
    assert not at.exception and not at.error
    assert len(calls) == 1

    ref = untrained_detector()
    ref_raw = raw(ref, data)
    for conf, nms in [(0.2, 0.5), (0.25, 0.3), (0.0, 0.7), (0.26, 0.5)]:
        at.slider(key="detection.conf").set_value(conf)
        at.slider(key="detection.nms").set_value(nms).run()
        assert not at.exception
        expected = ref.filter(ref_raw, conf, nms)
        assert int(metric(at, "Detections")) == len(expected)
        assert int(metric(at, "Candidates ≥ threshold")) == int((ref_raw.scores >= conf).sum())
    assert len(expected) > 0
    # NMS off shows every candidate; per-class NMS keeps at least as many as class-agnostic.
    at.toggle(key="detection.apply_nms").set_value(False).run()
    assert int(metric(at, "Detections")) == int((ref_raw.scores >= 0.26).sum())
    at.toggle(key="detection.apply_nms").set_value(True).run()
    at.radio(key="detection.nms_mode").set_value("per class").run()
    assert int(metric(at, "Detections")) == len(ref.filter(ref_raw, 0.26, 0.5, per_class=True))
    assert len(calls) == 1, "moving a slider must only re-filter the cached network output"

    # The figure: one line trace per class, 6 points per box (5 corners + NaN gap), and hover
    # text naming the anchor that produced each box.
    d = ref.filter(ref_raw, 0.26, 0.5, per_class=True)
    spec = chart(at)
    lines = [t for t in spec["data"] if t.get("mode") == "lines"]
    assert sum(len(arr(t["x"])) for t in lines) == 6 * len(d)
    xs = np.concatenate([arr(t["x"]).astype(float) for t in lines])
    assert np.isnan(xs[5::6]).all() and not np.isnan(xs.reshape(-1, 6)[:, :5]).any()
    assert {t["name"].split(" (")[0] for t in lines} == {CLASS_NAMES[c] for c in d.labels.tolist()}
    info = ref.anchor_info(int(d.anchor_index[0]))
    assert any(f"scale {info['scale'] + 1}" in s and f"anchor #{int(d.anchor_index[0])}" in s
               for t in lines for s in t["text"] if s)
    # The table lists the same detections, with the anchor behind each.
    table = at.dataframe[0].value
    assert len(table) == len(d)
    assert np.allclose(table["score"].to_numpy(), d.scores.numpy(), atol=1e-5)
    assert table["anchor_index"].tolist() == d.anchor_index.tolist()
    assert len(at.get("download_button")) == 2


def test_box_captions_sit_on_a_filled_background_in_the_class_colour(tmp_path, monkeypatch):
    app = app_on_page("detection", tmp_path / "runs", monkeypatch)  # the shipped model
    app.run()
    assert not app.exception
    n = int(metric(app, "Detections"))
    assert 0 < n <= 40  # few enough to be captioned
    spec = chart(app)
    line_colour = {t["name"].split(" (")[0]: t["line"]["color"] for t in spec["data"]
                   if t.get("mode") == "lines" and t["name"] != "ground truth"}
    caps = [a for a in spec["layout"].get("annotations", []) if a.get("bgcolor")]
    assert len(caps) == n
    for a in caps:
        name, score = a["text"].rsplit(" ", 1)
        assert a["bgcolor"] == line_colour[name] and 0.5 <= float(score) <= 1
        assert a["font"]["color"] == text_colour(a["bgcolor"]) and a["font"]["size"] >= 13


def test_corrupt_upload_shows_error_and_page_keeps_working(at):
    at.run()
    at.radio(key="detection.image").set_value("Upload").run()
    at.file_uploader(key="detection.upload").upload("photo.png", b"\x89PNG\r\n\x1a\n garbage",
                                                    "image/png").run()
    assert not at.exception
    assert at.error and "could not be used" in at.error[0].value
    assert not at.get("plotly_chart")
    at.radio(key="detection.image").set_value("Synthetic sample").run()
    assert not at.exception and not at.error
    assert metric(at, "Anchors") == "5444"
    # synthetic samples draw their ground truth (dashed white) under the detections
    assert any(t["name"] == "ground truth" for t in chart(at)["data"])


def test_replaced_upload_sends_the_applied_thresholds_with_the_sliders(at):
    """Issue 21: after an upload is replaced, the browser may build the sliders afresh from what
    the server sends. Every run must send the applied value with each threshold widget (a value
    set through the Session State API), not the slider's default of 0.00 (the browser then
    showed 0.00 while 0.50 was applied, and its next message applied conf=0.01&nms=0)."""
    at.run()
    at.radio(key="detection.image").set_value("Upload").run()
    for i, name in enumerate(["first.png", "second.png"]):
        image = SyntheticDetection(2, seed=7 + i, image_size=160 + 40 * i).sample(0)[0]
        at.file_uploader(key="detection.upload").upload(name, png_bytes(image), "image/png")
        at.run()
        assert not at.exception and not at.error
        for key in ("detection.conf", "detection.nms"):
            proto = at.slider(key=key).proto
            assert proto.set_value and list(proto.value) == [0.5], (name, key, proto.value)
        assert at.toggle(key="detection.apply_nms").proto.set_value
        assert at.query_params["conf"] == "0.5" and at.query_params["nms"] == "0.5"
    at.slider(key="detection.conf").set_value(0.49).run()
    assert list(at.slider(key="detection.conf").proto.value) == [0.49]
    assert list(at.slider(key="detection.nms").proto.value) == [0.5]
    assert at.query_params["conf"] == "0.49" and at.query_params["nms"] == "0.5"
    assert any("confidence ≥ 0.49, NMS IoU 0.50" in c.value for c in at.caption)
