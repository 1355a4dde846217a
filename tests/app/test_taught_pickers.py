"""A taught model in every page's model picker (issue 22: Anchors, Labeling, Detection,
Evaluation, and Model): a finished run of the runs folder (trained on photos of a mug, a book and
a ball, here a tiny TinySSD with its own anchor sizes at 64 px, a few seconds) is listed with its
class names, and picking it makes the page use it: its anchors, its input size, its classes."""

from __future__ import annotations

import pytest

from ssd_core.anchor_fit import dataset_labels, fit_anchor_set, fit_summary
from ssd_core.anchors import anchor_layout, layout_anchors
from ssd_core.data import SyntheticDetection, export_dataset
from ssd_core.data.dataset import make_target
from ssd_core.data.fewshot import FewShotObjects
from ssd_core.matching import label_anchors
from tests.helpers import tiny_config, zip_bytes

from .conftest import app_on_page, metric

NAMES = ["mug", "book", "ball"]
SIZES = [[0.12, 0.2], [0.3, 0.4], [0.45, 0.55], [0.6, 0.7], [0.8, 0.9]]  # neither book nor shipped
SIZE = 64  # the taught model's input size (the TINY setup's)
N_ANCHORS = (8 * 8 + 4 * 4 + 2 * 2 + 1 + 1) * 4  # its anchors at 64 px: 344
PICKERS = {"anchors": "anchors.model", "labeling": "labeling.model",
           "detection": "detection.model", "evaluation": "evaluation.model",
           "model": "model.model"}


@pytest.fixture(scope="module")
def taught(tmp_path_factory):
    """(runs folder, checkpoint path): one finished run of the Trainer on few-shot photos."""
    from ssd_core import runfolder as rf
    from ssd_core.engine import Trainer

    runs = tmp_path_factory.mktemp("taught") / "runs"
    trainer = Trainer(tiny_config(epochs=1, anchor_sizes=SIZES),
                      FewShotObjects(4, photo_size=SIZE, image_size=SIZE), run_dir=runs / "taught")
    for _ in trainer.fit():
        pass
    assert trainer.state == "finished", trainer.message
    return runs, str(rf.checkpoint(runs / "taught"))


def open_with(page, runs, monkeypatch, ckpt=None):
    at = app_on_page(page, runs, monkeypatch)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    if page == "anchors":  # the picker belongs to the anchor fit, behind its toggle
        at.toggle(key="anchors.fit_on").set_value(True).run()
        at.slider(key="anchors.fit_n").set_value(20).run()
    if ckpt is not None:
        at.selectbox(key=PICKERS[page]).set_value(ckpt).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def sidebar_text(at) -> list[str]:
    return [m.value for m in at.sidebar.markdown]


@pytest.mark.parametrize("page", list(PICKERS))
def test_every_picker_lists_the_taught_model_with_its_classes(taught, monkeypatch, page):
    runs, ckpt = taught
    at = open_with(page, runs, monkeypatch)
    box = at.selectbox(key=PICKERS[page])
    label = next(o for o in box.options if "run taught" in o)
    assert label.endswith(": mug, book, ball"), label
    assert box.value == "shipped"  # the taught run is offered, not forced on the page
    box.set_value(ckpt).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key=PICKERS[page]).value == ckpt
    assert any("run taught" in t and "mug, book, ball" in t for t in sidebar_text(at)), \
        sidebar_text(at)


def test_anchor_fit_uses_the_taught_models_anchors_at_its_size(taught, monkeypatch):
    runs, ckpt = taught
    at = open_with("anchors", runs, monkeypatch, ckpt)
    table = next(d.value for d in at.dataframe if "anchor set" in d.value.columns)
    row = table[table["anchor set"].str.startswith("picked model: run taught")].iloc[0]
    assert "mug, book, ball" in row["anchor set"] and row["input px"] == SIZE
    assert row["s_k (first size per scale)"] == ", ".join(f"{s[0]:g}" for s in SIZES)
    labels = dataset_labels(SyntheticDetection(20, seed=0))
    _, fit = fit_anchor_set(labels, SIZES, None, SIZE, 0.5)
    expected = fit_summary(fit)
    assert row["best IoU < threshold"] == expected["unreached"]
    assert row["positive anchors per object"] == pytest.approx(
        expected["positives_per_object"])
    assert not any(n.startswith("shipped model") for n in table["anchor set"])


def test_anchor_fit_on_a_teach_set(taught, monkeypatch):
    from ssd_core.userdata import Box, UserDataset

    runs, ckpt = taught
    ds = UserDataset.create(runs, "desk")
    try:
        for k in range(3):
            img, boxes, labels = FewShotObjects(3, seed=5, photo_size=96).sample(k)
            e = ds.add_image(img, f"p{k}.png")
            ds.set_boxes(e.id, [Box(NAMES[c], *b) for b, c in zip(boxes.tolist(),
                                                                 labels.tolist())])
        at = open_with("anchors", runs, monkeypatch, ckpt)
        at.radio(key="anchors.fit_source").set_value("A Teach photo set").run()
        assert not at.exception and not at.error, [e.value for e in at.error]
        assert at.selectbox(key="anchors.fit_set").value == "desk"
        n = sum(len(im.boxes) for im in ds.images)
        table = next(d.value for d in at.dataframe if "anchor set" in d.value.columns)
        assert set(table["objects"]) == {n}
        targets = dataset_labels(ds.to_dataset())
        _, fit = fit_anchor_set(targets, SIZES, None, SIZE, 0.5)
        row = table[table["anchor set"].str.startswith("picked model")].iloc[0]
        assert row["best IoU < threshold"] == fit_summary(fit)["unreached"]
    finally:
        ds.delete()


def test_labeling_uses_the_taught_models_anchors_classes_and_loss(taught, monkeypatch,
                                                                 count_forwards):
    runs, ckpt = taught
    at = open_with("labeling", runs, monkeypatch, ckpt)
    assert at.select_slider(key="labeling.size").value == SIZE  # followed the model
    pos, neg = int(metric(at, "Positives")), int(metric(at, "Negatives (background)"))
    assert pos + neg == N_ANCHORS
    img, boxes, labels = SyntheticDetection(1, seed=0).sample(0)
    anchors = layout_anchors(anchor_layout(sizes=SIZES, input_size=SIZE))[0]
    lab = label_anchors(anchors, make_target(boxes, labels, img.size)[None], 0.5)
    assert pos == int((lab.gt_index >= 0).sum())
    assert any("mug, book, ball" in c.value for c in at.caption)
    # the synthetic sample's two shapes are named as the model's first class, to be
    # changed in the table: the positives' targets carry the model's classes
    table = next(d.value for d in at.dataframe if "object" in d.value.columns)
    assert set(table["object"]) == {"1. mug", "2. mug"} and len(table) == pos
    # ranking negatives by the picked model's loss runs the taught model once
    at.toggle(key="labeling.hnm").set_value(True).run()
    at.radio(key="labeling.loss").set_value("cross-entropy of the picked model").run()
    assert not at.exception, [e.value for e in at.exception]
    assert count_forwards["n"] == 1
    assert int(metric(at, "Kept negatives")) == 3 * pos
    # the hard negative mining view scores with the same model, its own anchors
    at.toggle(key="labeling.hnm_on").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("run taught" in c.value and f"its own {N_ANCHORS} anchors" in c.value
               for c in at.caption)


def test_detection_and_evaluation_run_the_taught_model(taught, monkeypatch, tmp_path):
    runs, ckpt = taught
    at = open_with("detection", runs, monkeypatch, ckpt)
    assert any(c.value == f"Input {SIZE}×{SIZE}, classes: mug, book, ball" for c in at.caption)
    at = open_with("evaluation", runs, monkeypatch, ckpt)
    ds = FewShotObjects(3, seed=7, photo_size=SIZE)
    export_dataset(ds, tmp_path / "coco", "coco")
    data = zip_bytes(tmp_path / "coco")
    at.radio(key="evaluation.data").set_value("Upload a dataset (.zip)").run()
    at.file_uploader(key="evaluation.zip").upload("desk.zip", data,
                                                  "application/zip").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert int(metric(at, "Objects")) == sum(len(ds.sample(i)[2]) for i in range(3))
