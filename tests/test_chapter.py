"""ssd_core.chapter: every cell's output equals what the chapter prints (the literal print-outs
below are copied from the chapter, In [3] to In [23]; formats and curves are the chapter's own
code and formulas written out here, not the module's)."""

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

# Out[3], Out[5], Out[7], Out[8] and the three lines In [13] prints, as the chapter shows them.
PRINTED = {
    "predictor_shapes": "((2, 55, 20, 20), (2, 33, 10, 10))",
    "concat_shape": "(2, 25300)",
    "down_sample_shape": "(2, 10, 10, 10)",
    "base_net_shape": "(2, 64, 32, 32)",
    "tinyssd": "output anchors: (1, 5444, 4)\noutput class preds: (32, 5444, 2)\n"
               "output bbox preds: (32, 21776)",
}
# The four lines In [18] printed (the chapter's HTML collapses the space that %2d puts before a
# one-digit epoch).
BOOK_EPOCHS = [
    ((5, 2.91e-3, 3.09e-3, 11.6), "epoch 5, class err 2.91e-03, bbox mae 3.09e-03, time 11.6 sec"),
    ((10, 2.52e-3, 2.79e-3, 11.8),
     "epoch 10, class err 2.52e-03, bbox mae 2.79e-03, time 11.8 sec"),
    ((15, 2.37e-3, 2.63e-3, 11.7),
     "epoch 15, class err 2.37e-03, bbox mae 2.63e-03, time 11.7 sec"),
    ((20, 2.29e-3, 2.59e-3, 11.6),
     "epoch 20, class err 2.29e-03, bbox mae 2.59e-03, time 11.6 sec"),
]
EPOCH_LINE = re.compile(r"^epoch +\d+, class err \d\.\d\de[-+]\d\d, bbox mae \d\.\d\de[-+]\d\d, "
                        r"time \d+\.\d sec$")


def test_shape_cells_equal_the_book():
    assert str(chapter.cell_predictor_shapes()) == PRINTED["predictor_shapes"]
    assert str(chapter.cell_concat_shape()) == PRINTED["concat_shape"]
    assert str(chapter.cell_down_sample_shape()) == PRINTED["down_sample_shape"]
    assert str(chapter.cell_base_net_shape()) == PRINTED["base_net_shape"]
    # The module's copy of the print-outs is the chapter's.
    book = chapter.BOOK_OUTPUTS
    for key in ("predictor_shapes", "concat_shape", "down_sample_shape", "base_net_shape"):
        assert str(book[key]) == PRINTED[key], key
    assert book["num_anchors"] == 5444  # (32^2 + 16^2 + 8^2 + 4^2 + 1) x 4 = 5444 in the text


def test_sizes_cell_and_anchor_count():
    cell = chapter.cell_sizes()
    assert cell["sizes"] == [[0.2, 0.272], [0.37, 0.447], [0.54, 0.619], [0.71, 0.79],
                             [0.88, 0.961]]
    assert cell["ratios"] == [[1, 2, 0.5]] * 5
    assert cell["num_anchors"] == 4
    total, text = chapter.anchor_count(256)
    assert total == 5444 == (32**2 + 16**2 + 8**2 + 4**2 + 1) * 4
    assert text == "(32² + 16² + 8² + 4² + 1²) × 4 = 5444"
    assert chapter.anchor_count(288)[0] == 6872


def test_tinyssd_cell_meta_and_real():
    book = {"anchors": (1, 5444, 4), "cls_preds": (32, 5444, 2), "bbox_preds": (32, 21776)}
    cell = chapter.cell_tinyssd()
    assert cell == book
    # In [13]'s three print() calls on these shapes give the chapter's three lines.
    printed = "\n".join(f"output {name}: {cell[key]}" for name, key in (
        ("anchors", "anchors"), ("class preds", "cls_preds"), ("bbox preds", "bbox_preds")))
    assert printed == PRINTED["tinyssd"]
    assert chapter.BOOK_OUTPUTS["tinyssd_shapes"] == book
    # The meta device only skips the arithmetic: a real forward gives the same shapes.
    real = chapter.cell_tinyssd(batch_size=2, device="cpu")
    assert real == {"anchors": (1, 5444, 4), "cls_preds": (2, 5444, 2), "bbox_preds": (2, 21776)}


def test_print_formats_are_the_books():
    for args, printed in BOOK_EPOCHS:
        line = chapter.book_epoch_line(*args)
        assert line == BOOK_PRINT % args
        assert " ".join(line.split()) == printed
    assert chapter.book_epoch_line(5, 2.91e-3, 3.09e-3, 11.6) == (
        "epoch  5, class err 2.91e-03, bbox mae 3.09e-03, time 11.6 sec")
    assert chapter.torch_lines(3.22e-3, 3.16e-3, 3353.7, "cuda:0") == [
        "class err 3.22e-03, bbox mae 3.16e-03", "3353.7 examples/sec on cuda:0"]


def test_printout_every_fifth_epoch_and_speed():
    recs = [{"kind": "epoch", "epoch": e, "class_error": 0.01 / e, "box_mae": 0.02 / e,
             "epoch_time": 2.0, "images": 10} for e in range(1, 11)]
    out = chapter.printout(recs, print_every=5, device="cpu")
    assert out.epoch_lines == ["epoch  5, class err 2.00e-03, bbox mae 4.00e-03, time 2.0 sec",
                               "epoch 10, class err 1.00e-03, bbox mae 2.00e-03, time 2.0 sec"]
    assert out.torch_lines == ["class err 1.00e-03, bbox mae 2.00e-03",
                               "5.0 examples/sec on cpu"]  # 100 images / 20 s
    with pytest.raises(ValueError):
        chapter.printout([{"kind": "step"}])


def test_training_cell_is_a_real_run():
    out = chapter.cell_training(num_images=2, epochs=2, batch_size=2, print_every=1)
    assert len(out.records) == 2 and [r["epoch"] for r in out.records] == [1, 2]
    assert all(EPOCH_LINE.match(line) for line in out.epoch_lines), out.epoch_lines
    last = out.records[-1]
    assert out.epoch_lines == [BOOK_PRINT % (r["epoch"], r["class_error"], r["box_mae"],
                                             r["epoch_time"]) for r in out.records]
    assert out.torch_lines[0] == f"class err {last['class_error']:.2e}, bbox mae " \
                                 f"{last['box_mae']:.2e}"
    assert re.fullmatch(r"\d+\.\d examples/sec on cpu", out.torch_lines[1])
    assert "real run" in out.source


def test_shipped_printout():
    metrics = load_checkpoint(shipped_checkpoint()).metrics
    out = chapter.shipped_printout(metrics)
    assert out.epoch_lines == [BOOK_PRINT % (metrics["epoch"], metrics["class_error"],
                                             metrics["box_mae"], metrics["epoch_time"])]
    assert out.torch_lines[0] == f"class err {metrics['class_error']:.2e}, bbox mae " \
                                 f"{metrics['box_mae']:.2e}"
    assert "shipped" in out.source


def test_predict_cell_is_the_books_predict_and_display():
    model = load_checkpoint(shipped_checkpoint()).model.eval()
    image = Image.open(samples_dir() / "shapes-1.jpg").convert("RGB")
    res = chapter.cell_predict(model, image)
    # The book's predict(): softmax, transpose, multibox_detection (the reference loop, not
    # ssd_core's), rows with class -1 dropped.
    with torch.no_grad():
        anchors, cls_preds, bbox_preds = model(image_to_tensor(image, 256)[None])
        cls_probs = torch.softmax(cls_preds, dim=2).permute(0, 2, 1)
        output = ref_multibox_detection(cls_probs, bbox_preds, anchors)
    idx = [i for i, row in enumerate(output[0]) if row[0] != -1]
    book = output[0, idx]
    torch.testing.assert_close(res["output"], book)
    shown = book[book[:, 1] >= 0.3]
    torch.testing.assert_close(res["shown"], shown)
    assert res["threshold"] == 0.3 and len(shown) >= 1  # the shipped model finds the shapes
    w, h = image.size
    torch.testing.assert_close(res["pixels"], shown[:, 2:6] * torch.tensor([w, h, w, h]))


def test_problem_cells():
    x, curves = chapter.cell_smooth_l1()
    np.testing.assert_allclose(x.numpy(), np.arange(-2, 2, 0.1), rtol=0, atol=1e-6)
    # In [22]'s labels, 'sigma=%.1f' % s for s in [10, 1, 0.5]
    assert list(curves) == ["sigma=10.0", "sigma=1.0", "sigma=0.5"]
    for label, s in zip(curves, (10, 1, 0.5)):
        np.testing.assert_allclose(curves[label].numpy(), book_smooth_l1(x, s),
                                   rtol=1e-5, atol=1e-6)
    p, focal = chapter.cell_focal()
    np.testing.assert_allclose(p.numpy(), np.arange(0.01, 1, 0.01), rtol=0, atol=1e-6)
    assert list(focal) == ["gamma=0.0", "gamma=1.0", "gamma=5.0"]  # In [23]'s labels
    for label, g in zip(focal, (0, 1, 5)):
        np.testing.assert_allclose(focal[label].numpy(), book_focal(g, p), rtol=1e-5, atol=1e-6)
