"""ssd_core.offset_terms: decoding is offset_inverse, encoding is offset_boxes, and the named
terms are the book's formula (0.1 on centres, 0.2 on log sizes); anchor_index inverts
locate_anchor."""

import math

import pytest
import torch

from ssd_core.anchors import anchor_layout, layout_anchors, locate_anchor
from ssd_core.boxes import offset_boxes, offset_inverse
from ssd_core.offset_terms import (
    SIGMA_WH,
    SIGMA_XY,
    anchor_index,
    center_box,
    decode_terms,
    encode_terms,
)


def test_anchor_index_inverts_locate_anchor():
    layout = anchor_layout(input_size=320)
    for i in [0, 1, 3, 4, 777, layout[1].start, layout[2].start + 5, layout[-1].stop - 1]:
        info = locate_anchor(layout, i)
        assert anchor_index(layout, info["scale"], info["row"], info["col"], info["shape"]) == i
    with pytest.raises(IndexError):
        anchor_index(layout, 4, 1, 0, 0)


def test_decode_is_offset_inverse_with_the_books_constants():
    anchors = layout_anchors(anchor_layout())[0, [10, 2000, 5443]]
    offsets = torch.tensor([[1.0, -2.0, 0.5, -1.0], [0.0, 0.0, 0.0, 0.0], [-3, 4, 2, 2.5]])
    t = decode_terms(anchors, offsets)
    assert torch.equal(t["corners"], offset_inverse(anchors, offsets))
    a, b = t["anchor"], t["box"]
    assert SIGMA_XY == 0.1 and SIGMA_WH == 0.2
    assert torch.allclose(b["cx"], a["cx"] + offsets[:, 0] * SIGMA_XY * a["w"], atol=1e-6)
    assert torch.allclose(b["cy"], a["cy"] + offsets[:, 1] * SIGMA_XY * a["h"], atol=1e-6)
    assert torch.allclose(t["kw"], torch.exp(offsets[:, 2] * SIGMA_WH), atol=1e-5)
    assert torch.allclose(t["kh"], torch.exp(offsets[:, 3] * SIGMA_WH), atol=1e-5)


def test_encode_is_offset_boxes_and_round_trips():
    anchors = layout_anchors(anchor_layout())[0, [100, 4000]]
    boxes = torch.stack([center_box(0.3, 0.4, 0.2, 0.1), center_box(0.7, 0.6, 0.5, 0.5)])
    t = encode_terms(anchors, boxes)
    assert torch.equal(t["offsets"], offset_boxes(anchors, boxes))
    back = decode_terms(anchors, t["offsets"])["corners"]
    assert torch.allclose(back, boxes, atol=1e-5)
    a, b = t["anchor"], t["box"]
    assert torch.allclose(t["offsets"][:, 0], (b["cx"] - a["cx"]) / a["w"] / 0.1, atol=1e-4)
    assert float(t["offsets"][0, 2]) == pytest.approx(
        math.log(0.2 / float(a["w"][0])) / 0.2, abs=1e-4)
