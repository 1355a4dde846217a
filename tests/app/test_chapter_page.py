"""The Chapter page: every cell's output is ssd_core.chapter's and equals the book's print-out;
the links go to registered pages; the training cell runs for real; the prediction is the
shipped model's."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

from ssd_core import chapter
from ssd_core.checkpoint import load_checkpoint
from ssd_core.resources import samples_dir, shipped_checkpoint

from .conftest import arr, charts, open_page

BOOK_OUTPUTS = [
    "((2, 55, 20, 20), (2, 33, 10, 10))",
    "(2, 25300)",
    "(2, 10, 10, 10)",
    "(2, 64, 32, 32)",
    "output anchors: (1, 5444, 4)\noutput class preds: (32, 5444, 2)\n"
    "output bbox preds: (32, 21776)",
]
EPOCH_LINE = r"epoch +\d+, class err \d\.\d\de-\d\d, bbox mae \d\.\d\de-\d\d, time \d+\.\d sec"


@pytest.fixture(scope="module")
def at():
    return open_page("chapter")


def codes(at) -> list[str]:
    return [c.value for c in at.code]


def test_cells_in_order_with_the_books_outputs(at):
    import chapter_cells

    values = codes(at)
    shown = [c.value for c in at.code if c.language == "python"]
    assert shown == [c.code for c in chapter_cells.CELLS + chapter_cells.PROBLEM_CELLS]
    assert [c.number for c in chapter_cells.CELLS][:3] == ["1", "2", "3"]
    positions = []
    for out in BOOK_OUTPUTS:
        hits = [i for i, v in enumerate(values) if v.startswith(out)]
        assert hits, out
        positions.append(hits[0])
    assert positions == sorted(positions)  # in the chapter's order
    assert any("(32² + 16² + 8² + 4² + 1²) × 4 = 5444" in v for v in values)
    # In [11]: num_anchors
    sizes_cell = next(i for i, v in enumerate(values) if "num_anchors = len(sizes[0])" in v)
    assert values[sizes_cell + 1] == "4"
    headings = [h.value for h in at.header]
    assert headings == ["Model", "Training", "Prediction", "Problems"]


def test_training_cell_shows_the_shipped_record_in_the_books_format(at):
    metrics = load_checkpoint(shipped_checkpoint()).metrics
    printed = next(v for v in codes(at) if v.startswith("epoch "))
    lines = printed.split("\n")
    assert re.fullmatch(EPOCH_LINE, lines[0])
    assert lines[0] == chapter.book_epoch_line(metrics["epoch"], metrics["class_error"],
                                               metrics["box_mae"], metrics["epoch_time"])
    assert lines[1] == f"class err {metrics['class_error']:.2e}, bbox mae {metrics['box_mae']:.2e}"
    assert re.fullmatch(r"\d+\.\d examples/sec on cpu", lines[2])
    assert any("shipped model's saved record" in c.value for c in at.caption)


def test_training_button_runs_the_loop_for_real(monkeypatch):
    monkeypatch.setattr(chapter, "TRAIN_DEMO", {"num_images": 2, "epochs": 2, "batch_size": 2,
                                                "print_every": 1})
    calls = []
    real = chapter.cell_training

    def counted(**kwargs):
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(chapter, "cell_training", counted)
    at = open_page("chapter")
    assert not calls  # nothing trains until asked
    at.button(key="chapter.train").click().run()
    assert calls == [chapter.TRAIN_DEMO]
    printed = [v for v in codes(at) if v.startswith("epoch ")][-1].split("\n")
    assert [re.fullmatch(EPOCH_LINE, line) is not None for line in printed[:2]] == [True, True]
    assert printed[0].startswith("epoch  1,") and printed[1].startswith("epoch  2,")
    assert re.fullmatch(r"class err \S+, bbox mae \S+", printed[2])
    assert re.fullmatch(r"\d+\.\d examples/sec on cpu", printed[3])
    assert any("a real run: 2 synthetic 'book' images" in c.value for c in at.caption)
    at.run()  # the output stays after another rerun, without training again
    assert len(calls) == 1 and sum(v.startswith("epoch ") for v in codes(at)) == 2


def _prediction_boxes(fig) -> np.ndarray:
    xs = np.concatenate([arr(d["x"]) for d in fig["data"]
                         if d.get("mode") == "lines" and d["name"] != "ground truth"])
    return xs[np.isfinite(xs.astype(float))].astype(float)


def test_prediction_is_the_shipped_model_at_threshold_03(at):
    model = load_checkpoint(shipped_checkpoint()).model.eval()
    name = at.selectbox(key="chapter.sample").value
    image = Image.open(samples_dir() / name).convert("RGB")
    want = chapter.cell_predict(model, image, 256, 0.3)
    assert len(want["shown"]) >= 1
    fig = next(f for f in charts(at) if f["layout"].get("images"))
    got = np.sort(_prediction_boxes(fig))
    x1, x2 = want["pixels"][:, 0].numpy(), want["pixels"][:, 2].numpy()
    expected = np.sort(np.concatenate([np.stack([x1, x2, x2, x1, x1], 1).ravel()]))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    table = at.dataframe[0].value
    np.testing.assert_allclose(table["score"], want["shown"][:, 1].numpy().round(3), atol=1e-6)
    assert (table["score"] >= 0.3).all()
    assert any(f"draws the {len(want['shown'])} with score ≥ 0.3" in c.value for c in at.caption)


def test_another_sample_changes_the_prediction(at):
    names = at.selectbox(key="chapter.sample").options
    before = at.dataframe[0].value.to_dict()
    at.selectbox(key="chapter.sample").set_value(names[-1]).run()
    assert not at.exception
    assert at.dataframe[0].value.to_dict() != before


def test_links_go_to_registered_pages_and_the_problems(at):
    from pages import PAGES

    labels = [link.proto.label for link in at.get("page_link")]
    pages = {link.proto.page for link in at.get("page_link")}
    registered = {p.path for p in PAGES}
    # a link's page is its url path: views/anchors.py -> "anchors"
    assert pages <= {p.path.split("/")[-1][:-3] for p in PAGES}, pages
    for want in ("Losses: scrub sigma and see the gradient",
                 "Training: train with box loss smooth_l1 and its sigma",
                 "Losses: cross-entropy vs focal, gamma and alpha",
                 "Training: the hard negative mining switch and its ratio",
                 "Training: class and box loss weights",
                 "Model: receptive fields: 1×2 + (3-1) + (3-1) = 6 per block, click a cell",
                 "Detection: any image, thresholds, NMS on and off"):
        assert want in labels, want
    has_experiments = "views/experiments.py" in registered
    assert any(label.startswith("Experiments:") for label in labels) == has_experiments


def test_problem_curves_are_the_cells(at):
    figs = [f for f in charts(at) if not f["layout"].get("images")]
    smooth, focal = figs[-2], figs[-1]
    x, curves = chapter.cell_smooth_l1()
    assert [d["name"] for d in smooth["data"]] == list(curves)
    np.testing.assert_allclose(arr(smooth["data"][2]["y"]), curves["sigma=0.5"].numpy(),
                               rtol=1e-6)
    p, fl = chapter.cell_focal()
    assert [d["name"] for d in focal["data"]] == list(fl)
    np.testing.assert_allclose(arr(focal["data"][2]["y"]), fl["gamma=5.0"].numpy(), rtol=1e-5)
    assert torch.equal(x, torch.arange(-2, 2, 0.1))
