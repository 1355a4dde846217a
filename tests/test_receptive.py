"""ssd_core.receptive: receptive fields in input pixels and a cell's anchors."""

import pytest
import torch

from ssd_core.anchors import TINYSSD_SIZES, layout_anchors, locate_anchor
from ssd_core.model import TinySSD, describe
from ssd_core.receptive import block_fields, cell_field


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return TinySSD(num_classes=1)


@pytest.mark.parametrize("size", [256, 288, 320, 64])
def test_fields_agree_with_describe(net, size):
    fields = block_fields(net, size)
    rows = describe(net, size)
    assert [f.rf for f in fields] == [r["receptive_field"] for r in rows]
    assert [f.jump for f in fields] == [r["stride"] for r in rows]
    assert [f.side for f in fields] == [r["output_shape"][1] for r in rows]


def test_book_numbers(net):
    # base_net: three blocks of (conv3, conv3, pool2): 1+2+2+1=6, 6+4+4+2=16, 16+8+8+4=36.
    f = block_fields(net, 256)
    assert [x.rf for x in f] == [36, 76, 156, 316, 508]
    assert [x.jump for x in f] == [8, 16, 32, 64, 256]
    assert [x.start for x in f] == [4.0, 8.0, 16.0, 32.0, 128.0]


def test_one_down_sample_block_is_six_pixels():
    from ssd_core.model import down_sample_blk

    class One:
        blks = [down_sample_blk(3, 10)]

    assert block_fields(One(), 64)[0].rf == 6  # the chapter: 1x2 + (3-1) + (3-1) = 6


def test_cell_field_box_and_anchors(net):
    f = cell_field(net, 0, 3, 5, 256)
    assert f["centre"] == (5 * 8 + 4.0, 3 * 8 + 4.0)
    assert f["box"] == (44 - 18, 28 - 18, 44 + 18, 28 + 18)
    assert f["clipped"] == f["box"]
    layout = net.layout(input_size=256)
    idx = f["anchor_index"].tolist()
    assert idx == [(3 * 32 + 5) * 4 + j for j in range(4)]
    torch.testing.assert_close(f["anchors"], layout_anchors(layout)[0, idx] * 256)
    for i, (size, ratio) in zip(idx, f["shapes"]):
        info = locate_anchor(layout, i)
        assert (info["scale"], info["row"], info["col"]) == (0, 3, 5)
        assert (size, ratio) == (info["size"], info["ratio"])
    # every anchor of the cell is centred on its receptive field
    a = f["anchors"]
    centres = torch.stack([(a[:, 0] + a[:, 2]) / 2, (a[:, 1] + a[:, 3]) / 2], 1)
    torch.testing.assert_close(centres, torch.tensor([f["centre"]] * 4), atol=1e-4, rtol=0)
    assert f["shapes"][0] == (TINYSSD_SIZES[0][0], 1)


def test_cell_field_clipping_and_last_scales(net):
    corner = cell_field(net, 1, 0, 0, 256)  # rf 76 centred at (8, 8)
    assert corner["box"] == (8 - 38, 8 - 38, 8 + 38, 8 + 38)
    assert corner["clipped"] == (0.0, 0.0, 46.0, 46.0)
    last = cell_field(net, 4, 0, 0, 256)
    assert last["centre"] == (128.0, 128.0) and last["rf"] == 508
    assert last["clipped"] == (0.0, 0.0, 256.0, 256.0)
    assert last["anchor_index"].tolist() == [5440, 5441, 5442, 5443]


def test_cell_field_follows_the_models_sizes():
    net = TinySSD(3, sizes=[[0.1, 0.17], [0.29, 0.373], [0.48, 0.567], [0.67, 0.759],
                            [0.86, 0.95]])
    f = cell_field(net, 0, 0, 0, 256)
    assert f["shapes"][0] == (0.1, 1)
    w = f["anchors"][0, 2] - f["anchors"][0, 0]
    assert abs(float(w) - 25.6) < 1e-4


def test_cell_field_refuses_cells_outside(net):
    with pytest.raises(IndexError):
        cell_field(net, 0, 32, 0)
    with pytest.raises(IndexError):
        cell_field(net, 5, 0, 0)
    with pytest.raises(IndexError):
        cell_field(net, 4, 0, 1)
