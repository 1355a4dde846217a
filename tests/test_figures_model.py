"""app/figures_model.py: the receptive-field figure and the chapter's curves, on their data."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from app import figures_model
from ssd_core.model import TinySSD
from ssd_core.receptive import cell_field


def test_grid_lines_and_centres():
    xs, ys = figures_model.grid_lines(4, 256)
    assert len(xs) == len(ys) == 2 * 5 * 3
    np.testing.assert_array_equal(xs[:2], [0, 0])
    np.testing.assert_array_equal(ys[:2], [0, 256])
    centres, data = figures_model.cell_centres(4, 256)
    assert centres.shape == (16, 2) and data.shape == (16, 2)
    np.testing.assert_array_equal(centres[5], [96.0, 96.0])  # row 1, col 1: (1 + 0.5) * 64
    np.testing.assert_array_equal(data[6], [1, 2])


def test_receptive_field_figure():
    net = TinySSD(1)
    field = cell_field(net, 1, 1, 3, 256)
    labels = [f"anchor {j}" for j in range(4)]
    fig = figures_model.receptive_field_figure(Image.new("RGB", (256, 256)), 16, (1, 3), field,
                                               labels)
    names = [t.name for t in fig.data]
    assert names[0] == "16×16 cells" and names[1] == "cell (1, 3)"
    assert "receptive field 76×76 px (dashed: padding)" in names
    assert names[-5:-1] == labels and names[-1] == "cell centres (click one)"
    cell = fig.data[1]
    assert list(cell.x) == [48, 64, 64, 48, 48] and list(cell.y) == [16, 16, 32, 32, 16]
    clicks = fig.data[-1]
    assert len(clicks.x) == 256 and list(clicks.customdata[1 * 16 + 3]) == [1, 3]
    rf = fig.data[names.index("receptive field inside the image")]
    x1, y1, x2, y2 = field["clipped"]
    assert list(rf.x[:5]) == [x1, x2, x2, x1, x1]
    anchors = fig.data[names.index("anchor 0")]
    a = field["anchors"][0].tolist()
    np.testing.assert_allclose(list(anchors.x[:5]), [a[0], a[2], a[2], a[0], a[0]])
    # the field of cell (1, 3) (centre y 24, rf 76) reaches 14 px past the top edge: the view
    # shows that padding
    assert field["box"][1] == -14
    m = 0.02 * 256  # plus a margin of 2% of the image
    assert tuple(fig.layout.yaxis.range) == (256 + 14 + m, -14 - m)


def test_last_block_padding_is_capped_and_no_grid_for_one_cell():
    net = TinySSD(1)
    field = cell_field(net, 4, 0, 0, 256)  # 508 px centred on 128: 126 px of padding each side
    fig = figures_model.receptive_field_figure(Image.new("RGB", (256, 256)), 1, (0, 0), field,
                                               ["a", "b", "c", "d"])
    assert "1×1 cells" not in [t.name for t in fig.data]
    assert tuple(fig.layout.xaxis.range) == (-126 - 5.12, 382 + 5.12)
    cell = next(t for t in fig.data if t.name == "cell (0, 0)")
    assert cell.fillcolor == "rgba(232,17,45,0.15)"  # one cell is the whole image: a light tint
    small = cell_field(net, 4, 0, 0, 64)  # at 64 px the padding is capped at half the image
    fig = figures_model.receptive_field_figure(Image.new("RGB", (64, 64)), 1, (0, 0), small,
                                               ["a", "b", "c", "d"])
    assert tuple(fig.layout.xaxis.range) == (-32 - 1.28, 96 + 1.28)


def test_curves_figure():
    x = torch.arange(-2, 2, 0.1)
    fig = figures_model.curves_figure(x, {"a": x.abs(), "b": x**2}, "x", "y")
    assert [t.name for t in fig.data] == ["a", "b"]
    assert [t.line.dash for t in fig.data] == ["solid", "dash"]
    np.testing.assert_allclose(fig.data[1].y, (x**2).numpy(), rtol=1e-6)
