"""ssd_core.offset_terms against independent references: decoding equals the book's
offset_inverse and encoding its offset_boxes (ssd_core/book.py), every named term equals the book's
formula (0.1 on centres, 0.2 on log sizes) computed here from the corners; anchor_index is the
book's anchor order (and inverts locate_anchor)."""

import math

import pytest
import torch

from ssd_core.anchors import anchor_layout, layout_anchors, locate_anchor
from ssd_core.book import book_offset_boxes, book_offset_inverse
from ssd_core.offset_terms import (
    SIGMA_WH,
    SIGMA_XY,
    anchor_index,
    center_box,
    decode_terms,
    encode_terms,
)
from tests.reference import ref_multibox_prior


def test_anchor_index_inverts_locate_anchor():
    layout = anchor_layout(input_size=320)
    for i in [0, 1, 3, 4, 777, layout[1].start, layout[2].start + 5, layout[-1].stop - 1]:
        info = locate_anchor(layout, i)
        assert anchor_index(layout, info["scale"], info["row"], info["col"], info["shape"]) == i
    with pytest.raises(IndexError):
        anchor_index(layout, 4, 1, 0, 0)


def test_anchor_index_is_the_books_order():
    """Independent of the layout code: the book's 256 input has 32, 16, 8, 4, 1 maps with 4
    anchors per cell, concatenated scale by scale; the anchor there is the book's multibox_prior
    anchor of that cell and shape (a plain loop, tests/reference.py)."""
    sides, ratios = (32, 16, 8, 4, 1), [1, 2, 0.5]
    sizes = [[0.2, 0.272], [0.37, 0.447], [0.54, 0.619], [0.71, 0.79], [0.88, 0.961]]  # In [11]
    layout, anchors = anchor_layout(), layout_anchors(anchor_layout())[0]
    for scale, row, col, shape in [(0, 0, 0, 0), (0, 5, 31, 2), (1, 15, 3, 3), (2, 4, 4, 1),
                                   (3, 3, 2, 0), (4, 0, 0, 3)]:
        side = sides[scale]
        start = sum(4 * s * s for s in sides[:scale])
        index = start + (row * side + col) * 4 + shape
        assert anchor_index(layout, scale, row, col, shape) == index
        want = ref_multibox_prior(side, side, sizes[scale], ratios)[(row * side + col) * 4 + shape]
        torch.testing.assert_close(anchors[index], torch.tensor(want), rtol=0, atol=1e-6)
    assert sum(4 * s * s for s in sides) == 5444 == anchors.shape[0]


def _centres(boxes):
    """The book's corner -> centre terms, in float64 from the corners (not the module's)."""
    x1, y1, x2, y2 = boxes.double().unbind(-1)
    return {"cx": (x1 + x2) / 2, "cy": (y1 + y2) / 2, "w": x2 - x1, "h": y2 - y1}


def _close(got, want, tol=1e-5):
    torch.testing.assert_close(got.double(), want, rtol=tol, atol=tol)


def test_decode_is_the_books_offset_inverse_term_by_term():
    # Anchors of three shapes: ratio 2 (wide), 1 (square) and 0.5 (tall), so a w/h mix-up shows.
    anchors = layout_anchors(anchor_layout())[0, [10, 2000, 5443]]
    offsets = torch.tensor([[1.0, -2.0, 0.5, -1.0], [0.0, 0.0, 0.0, 0.0], [-3, 4, 2, 2.5]])
    t = decode_terms(anchors, offsets)
    assert SIGMA_XY == 0.1 and SIGMA_WH == 0.2
    torch.testing.assert_close(t["corners"], book_offset_inverse(anchors, offsets),
                               rtol=0, atol=1e-6)
    a, o = _centres(anchors), offsets.double()
    assert not torch.allclose(a["w"][[0, 2]], a["h"][[0, 2]])
    box = {"cx": a["cx"] + o[:, 0] * 0.1 * a["w"], "cy": a["cy"] + o[:, 1] * 0.1 * a["h"],
           "w": a["w"] * torch.exp(o[:, 2] * 0.2), "h": a["h"] * torch.exp(o[:, 3] * 0.2)}
    for key in ("cx", "cy", "w", "h"):
        _close(t["anchor"][key], a[key])
        _close(t["box"][key], box[key])
    _close(t["dx"], o[:, 0] * 0.1 * a["w"])
    _close(t["dy"], o[:, 1] * 0.1 * a["h"])
    _close(t["kw"], torch.exp(o[:, 2] * 0.2))
    _close(t["kh"], torch.exp(o[:, 3] * 0.2))
    _close(t["corners"], torch.stack([box["cx"] - box["w"] / 2, box["cy"] - box["h"] / 2,
                                      box["cx"] + box["w"] / 2, box["cy"] + box["h"] / 2], 1))


def test_encode_is_the_books_offset_boxes_and_round_trips():
    anchors = layout_anchors(anchor_layout())[0, [102, 4001, 4003]]  # wide, square, tall
    torch.testing.assert_close(center_box(0.3, 0.4, 0.2, 0.1),
                               torch.tensor([0.2, 0.35, 0.4, 0.45]), rtol=0, atol=1e-7)
    boxes = torch.tensor([[0.2, 0.35, 0.4, 0.45], [0.45, 0.35, 0.95, 0.85],
                          [0.1, 0.5, 0.3, 0.9]])
    t = encode_terms(anchors, boxes)
    torch.testing.assert_close(t["offsets"], book_offset_boxes(anchors, boxes),
                               rtol=1e-5, atol=1e-4)
    a, b = _centres(anchors), _centres(boxes)
    want = torch.stack([(b["cx"] - a["cx"]) / a["w"] / 0.1, (b["cy"] - a["cy"]) / a["h"] / 0.1,
                        torch.log(b["w"] / a["w"]) / 0.2, torch.log(b["h"] / a["h"]) / 0.2], 1)
    _close(t["offsets"], want, tol=1e-4)
    for key in ("cx", "cy", "w", "h"):
        _close(t["anchor"][key], a[key])
        _close(t["box"][key], b[key])
    # The first box by hand, in plain floats.
    x1, y1, x2, y2 = (float(v) for v in anchors[0])
    wa, ha = x2 - x1, y2 - y1
    assert float(t["offsets"][0, 0]) == pytest.approx((0.3 - (x1 + x2) / 2) / wa / 0.1, abs=1e-4)
    assert float(t["offsets"][0, 3]) == pytest.approx(math.log(0.1 / ha) / 0.2, abs=1e-4)
    back = decode_terms(anchors, t["offsets"])["corners"]
    torch.testing.assert_close(back, boxes, rtol=0, atol=1e-5)
