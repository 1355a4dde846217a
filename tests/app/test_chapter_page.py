"""The Chapter page: the output printed under each cell is the chapter's literal print-out (copied
below from the chapter); the training lines use In [18]'s print format; the problem curves are
the chapter's formulas; the prediction is the book's predict() on the shipped model (written here
with the reference multibox_detection, tests/reference.py); the links go to registered pages;
the training cell runs for real."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

from ssd_core import chapter
from ssd_core.book import BOOK_PRINT, book_focal, book_smooth_l1
from ssd_core.checkpoint import load_checkpoint
from ssd_core.images import image_to_tensor
from ssd_core.resources import samples_dir, shipped_checkpoint
from tests.reference import ref_multibox_detection

from .conftest import arr, charts, open_page

# (a line of the cell's code, what the chapter prints under it): Out[3], Out[5], Out[7],
# Out[8], In [11]'s num_anchors and In [13]'s three print() lines.
BOOK_OUTPUTS = [
    ("Y1.shape, Y2.shape", "((2, 55, 20, 20), (2, 33, 10, 10))"),
    ("concat_preds([Y1, Y2]).shape", "(2, 25300)"),
    ("down_sample_blk(3, 10)).shape", "(2, 10, 10, 10)"),
    ("base_net()).shape", "(2, 64, 32, 32)"),
    ("num_anchors = len(sizes[0])", "4"),
    ("print('output bbox preds:', bbox_preds.shape)",
     "output anchors: (1, 5444, 4)\noutput class preds: (32, 5444, 2)\n"
     "output bbox preds: (32, 21776)"),
]
EPOCH_LINE = r"epoch +\d+, class err \d\.\d\de-\d\d, bbox mae \d\.\d\de-\d\d, time \d+\.\d sec"


@pytest.fixture(scope="module")
def at():
    return open_page("chapter")


def codes(at) -> list[str]:
    return [c.value for c in at.code]


def test_cells_in_order_with_the_books_outputs(at):
    from app import chapter_cells

    values = codes(at)
    python = [i for i, c in enumerate(at.code) if c.language == "python"]
    assert [values[i] for i in python] == [
        c.code for c in chapter_cells.CELLS + chapter_cells.PROBLEM_CELLS]
    assert [c.number for c in chapter_cells.CELLS][:3] == ["1", "2", "3"]
    positions = []
    for line, printed in BOOK_OUTPUTS:
        (cell,) = [i for i in python if any(line in code for code in values[i].splitlines())]
        # the block right under the cell is exactly the chapter's print-out, line for line,
        # then at most comments (the page notes the book's anchor count under In [13])
        assert cell + 1 < len(values) and cell + 1 not in python, line
        shown = values[cell + 1].splitlines()
        n = len(printed.splitlines())
        assert shown[:n] == printed.splitlines(), (line, shown)
        assert all(extra.startswith("# ") for extra in shown[n:] if extra), (line, shown)
        positions.append(cell)
    assert positions == sorted(positions)  # in the chapter's order
    assert any("(32² + 16² + 8² + 4² + 1²) × 4 = 5444" in v for v in values)
    # the chapter's own lines of code are the cells' (In [11], [13], [21], [22], [23])
    for line in ("sizes = [[0.2, 0.272], [0.37, 0.447], [0.54, 0.619], [0.71, 0.79],",
                 "ratios = [[1, 2, 0.5]] * 5", "display(img, output, threshold=0.3)",
                 "sigmas = [10, 1, 0.5]", "x = torch.arange(0.01, 1, 0.01)"):
        assert any(line in values[i] for i in python), line
    headings = [h.value for h in at.header]
    assert headings == ["Model", "Training", "Prediction", "Problems"]


def test_training_cell_shows_the_shipped_record_in_the_books_format(at):
    metrics = load_checkpoint(shipped_checkpoint()).metrics
    printed = next(v for v in codes(at) if v.startswith("epoch "))
    lines = printed.split("\n")
    assert re.fullmatch(EPOCH_LINE, lines[0])
    assert lines[0] == BOOK_PRINT % (metrics["epoch"], metrics["class_error"],
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


def book_predict(model, image: Image.Image) -> torch.Tensor:
    """In [19]-[21]: the book's predict(X) with the reference multibox_detection, rows with
    class -1 dropped -> (K, 6)."""
    with torch.no_grad():
        anchors, cls_preds, bbox_preds = model(image_to_tensor(image, 256)[None])
        cls_probs = torch.softmax(cls_preds, dim=2).permute(0, 2, 1)
        output = ref_multibox_detection(cls_probs, bbox_preds, anchors)
    idx = [i for i, row in enumerate(output[0]) if row[0] != -1]
    return output[0, idx]


def test_prediction_is_the_shipped_model_at_threshold_03(at):
    model = load_checkpoint(shipped_checkpoint()).model.eval()
    name = at.selectbox(key="chapter.sample").value
    image = Image.open(samples_dir() / name).convert("RGB")
    output = book_predict(model, image)
    shown = output[output[:, 1] >= 0.3]  # display(img, output, threshold=0.3)
    assert len(shown) >= 1  # the shipped model finds the shapes
    w, h = image.size
    pixels = shown[:, 2:6] * torch.tensor([w, h, w, h])
    fig = next(f for f in charts(at) if f["layout"].get("images"))
    got = np.sort(_prediction_boxes(fig))
    x1, x2 = pixels[:, 0].numpy(), pixels[:, 2].numpy()
    expected = np.sort(np.concatenate([np.stack([x1, x2, x2, x1, x1], 1).ravel()]))
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    table = at.dataframe[0].value
    np.testing.assert_allclose(table["score"], shown[:, 1].numpy().round(3), atol=1e-3)
    names = load_checkpoint(shipped_checkpoint()).class_names
    assert list(table["class"]) == [names[int(c)] for c in shown[:, 0]]
    assert (table["score"] >= 0.3).all()
    assert any(f"`output` holds {len(output)} rows with class ≠ -1; `display` draws the "
               f"{len(shown)} with score ≥ 0.3" in c.value for c in at.caption)


def test_another_sample_changes_the_prediction(at):
    names = at.selectbox(key="chapter.sample").options
    before = at.dataframe[0].value.to_dict()
    at.selectbox(key="chapter.sample").set_value(names[-1]).run()
    assert not at.exception
    assert at.dataframe[0].value.to_dict() != before


def test_links_go_to_registered_pages_and_the_problems(at):
    from app.pages import PAGES

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


def test_problem_curves_are_the_chapters_formulas(at):
    figs = [f for f in charts(at) if not f["layout"].get("images")]
    smooth, focal = figs[-2], figs[-1]
    # In [22]: x = arange(-2, 2, 0.1), one curve 'sigma=%.1f' per sigma in [10, 1, 0.5]
    assert [d["name"] for d in smooth["data"]] == ["sigma=10.0", "sigma=1.0", "sigma=0.5"]
    for d, sigma in zip(smooth["data"], (10, 1, 0.5)):
        x = arr(d["x"])
        np.testing.assert_allclose(x, np.arange(-2, 2, 0.1), rtol=0, atol=1e-6)
        np.testing.assert_allclose(arr(d["y"]), book_smooth_l1(x, sigma), rtol=1e-5, atol=1e-6)
    # In [23]: x = arange(0.01, 1, 0.01), -(1 - x) ** gamma * log(x) for gamma in [0, 1, 5]
    assert [d["name"] for d in focal["data"]] == ["gamma=0.0", "gamma=1.0", "gamma=5.0"]
    for d, gamma in zip(focal["data"], (0, 1, 5)):
        x = arr(d["x"])
        np.testing.assert_allclose(x, np.arange(0.01, 1, 0.01), rtol=0, atol=1e-6)
        np.testing.assert_allclose(arr(d["y"]), book_focal(gamma, x), rtol=1e-5, atol=1e-6)
