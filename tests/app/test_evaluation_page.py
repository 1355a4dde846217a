"""Evaluation page through AppTest: its AP50/mAP equal ssd_core's evaluate_model on the same
model and images, its threshold sweep and error gallery agree with a plain per-image matching
loop, a bad dataset zip is an error message."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest

from ssd_core import evaluate_model, predict_batch
from ssd_core.boxes import box_iou
from ssd_core.data import CLASS_NAMES, SyntheticDetection
from ssd_core.model import seeded_tinyssd

from .conftest import app_on_page

APP = Path(__file__).resolve().parents[2] / "app"
N, SEED = 4, 10_000


@pytest.fixture
def at(tmp_path, monkeypatch):
    app = app_on_page("evaluation", tmp_path / "runs", monkeypatch)
    app.session_state["evaluation.model"] = "untrained"
    app.session_state["evaluation.n"] = N
    return app


def arr(v) -> np.ndarray:
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
    return np.asarray(v, dtype=np.float64)


def charts(app) -> list[dict]:
    return [json.loads(c.proto.spec) for c in app.get("plotly_chart")]


def title(spec) -> str:
    t = spec["layout"].get("title", {})
    return t.get("text", "") if isinstance(t, dict) else str(t)


def predictions(model, ds):
    """Per image: detection rows [class, score, x1..y2] (book post-processing), gt rows, and
    their IoU matrix as plain lists."""
    out = []
    for i in range(len(ds)):
        x, target = ds[i]
        rows = predict_batch(model, x[None])[0]
        rows = rows[rows[:, 0] >= 0]
        gt = target[target[:, 0] >= 0]
        out.append((rows.tolist(), gt.tolist(), box_iou(rows[:, 2:6], gt[:, 1:5]).tolist()))
    return out


def reference_counts(preds, threshold):
    """Plain loops: per image (TP, FP, misses) with detections scoring >= threshold, matched
    per class by descending score to the unmatched ground truth of highest IoU >= 0.5."""
    out = []
    for rows, gt, ious in preds:
        used = [False] * len(gt)
        tp = n = 0
        for d in sorted(range(len(rows)), key=lambda d: -rows[d][1]):
            if rows[d][1] < threshold:
                continue
            n += 1
            best, best_iou = None, 0.5
            for j, g in enumerate(gt):
                if not used[j] and int(g[0]) == int(rows[d][0]) and ious[d][j] >= best_iou:
                    best, best_iou = j, ious[d][j]
            if best is not None:
                used[best], tp = True, tp + 1
        out.append((tp, n - tp, len(gt) - tp))
    return out


def test_metrics_sweep_and_gallery_match_ssd_core(at):
    at.run()
    assert not at.exception and not at.error
    model = seeded_tinyssd(len(CLASS_NAMES), seed=0).eval()  # the page's untrained model
    ds = SyntheticDetection(N, seed=SEED, image_size=256)
    ref = evaluate_model(model, ds, list(CLASS_NAMES))
    preds = predictions(model, ds)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["AP50"] == f"{ref.ap50:.3f}"
    assert metrics["mAP (0.50:0.95)"] == f"{ref.map:.3f}"
    assert metrics["Objects"] == str(sum(int((ds[i][1][:, 0] >= 0).sum()) for i in range(N)))
    table = at.dataframe[0].value
    assert table["class"].tolist() == list(CLASS_NAMES)

    specs = charts(at)
    pr = next(s for s in specs if title(s).startswith("Precision-recall"))
    assert {t["name"].split(" (")[0] for t in pr["data"]} == set(ref.pr_curves)
    sweep = next(s for s in specs if title(s) == "Confidence-threshold sweep")
    lines = {t["name"]: t for t in sweep["data"]}
    t = arr(lines["precision"]["x"])
    precision, recall = arr(lines["precision"]["y"]), arr(lines["recall"]["y"])
    assert recall.max() > 0  # the untrained model finds a few objects by chance: a real check
    for k in range(len(t)):
        counts = reference_counts(preds, t[k])
        tp, fp, miss = (sum(c[i] for c in counts) for i in range(3))
        assert recall[k] == pytest.approx(tp / (tp + miss))
        assert precision[k] == pytest.approx(tp / (tp + fp) if tp + fp else 1.0)
    f1 = arr(lines["F1"]["y"])
    assert arr(lines["best F1"]["y"])[0] == pytest.approx(f1.max())

    # Gallery at the best-F1 threshold: the worst image first, with its own error counts.
    thr = at.slider[0].value
    assert thr == pytest.approx(float(arr(lines["best F1"]["x"])[0]))
    counts = reference_counts(preds, thr)
    errors = [fp + miss for _, fp, miss in counts]
    gallery = [s for s in specs if title(s).startswith("image ")]
    assert len(gallery) == sum(e > 0 for e in errors)
    i, fp, miss = map(int, re.match(r"image (\d+): (\d+) false positive\(s\), (\d+) miss",
                                     title(gallery[0])).groups())
    assert errors[i] == max(errors) and (fp, miss) == counts[i][1:]


def test_bad_dataset_zip_is_an_error(at):
    at.run()
    at.radio(key="evaluation.data").set_value("Upload a dataset (.zip)").run()
    assert not at.exception
    at.file_uploader(key="evaluation.zip").upload("data.zip", b"this is no zip", "application/zip")
    at.run()
    assert not at.exception
    assert at.error and "could not be used" in at.error[0].value
