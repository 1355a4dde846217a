"""TinySSD: the book's shapes, a hand-computed parameter count, anchors, describe()."""

import pytest
import torch
from torch import nn

from ssd_core.anchors import TINYSSD_RATIOS, TINYSSD_SIZES, feature_map_sizes, multibox_prior
from ssd_core.errors import ConfigError
from ssd_core.model import (
    TinySSD,
    base_net,
    bbox_predictor,
    blk_forward,
    cls_predictor,
    concat_preds,
    describe,
    down_sample_blk,
    flatten_pred,
    get_blk,
)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return TinySSD(num_classes=1).eval()


def test_book_forward_shapes(net):
    with torch.no_grad():
        anchors, cls_preds, bbox_preds = net(torch.zeros(32, 3, 256, 256))
    assert anchors.shape == (1, 5444, 4)
    assert cls_preds.shape == (32, 5444, 2)
    assert bbox_preds.shape == (32, 21776)


def test_book_concat_example():
    Y1 = cls_predictor(8, 5, 10)(torch.zeros(2, 8, 20, 20))
    Y2 = cls_predictor(16, 3, 10)(torch.zeros(2, 16, 10, 10))
    assert Y1.shape == (2, 55, 20, 20)
    assert Y2.shape == (2, 33, 10, 10)
    assert concat_preds([Y1, Y2]).shape == (2, 25300)


def test_flatten_pred_keeps_one_pixels_channels_together():
    pred = torch.arange(2 * 3 * 2 * 2).reshape(2, 3, 2, 2)
    flat = flatten_pred(pred)
    # element (b, h*w*C + c) of the flat tensor is pred[b, c, h, w]
    for b in range(2):
        for c in range(3):
            for h in range(2):
                for w in range(2):
                    assert flat[b, (h * 2 + w) * 3 + c] == pred[b, c, h, w]


def test_book_block_shapes():
    assert down_sample_blk(3, 10)(torch.zeros(2, 3, 20, 20)).shape == (2, 10, 10, 10)
    assert base_net()(torch.zeros(2, 3, 256, 256)).shape == (2, 64, 32, 32)
    assert bbox_predictor(64, 4)(torch.zeros(1, 64, 5, 5)).shape == (1, 16, 5, 5)
    assert isinstance(get_blk(4), nn.AdaptiveMaxPool2d)
    assert get_blk(1)(torch.zeros(1, 64, 8, 8)).shape == (1, 128, 4, 4)
    assert get_blk(2)(torch.zeros(1, 128, 8, 8)).shape == (1, 128, 4, 4)


def test_down_sample_blk_layers():
    layers = list(down_sample_blk(3, 10))
    kinds = [type(m) for m in layers]
    assert kinds == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU] * 2 + [nn.MaxPool2d]
    assert layers[0].kernel_size == (3, 3) and layers[0].padding == (1, 1)
    assert layers[0].in_channels == 3 and layers[3].in_channels == 10


def test_parameter_count_by_hand(net):
    def conv(i, o, k=3):
        return i * o * k * k + o

    def bn(o):
        return 2 * o  # weight and bias; running statistics are buffers

    def down(i, o):
        return conv(i, o) + bn(o) + conv(o, o) + bn(o)

    a, C = 4, 1
    blocks = down(3, 16) + down(16, 32) + down(32, 64) + down(64, 128) + 2 * down(128, 128)
    heads = conv(64, a * (C + 1)) + conv(64, a * 4)
    heads += 4 * (conv(128, a * (C + 1)) + conv(128, a * 4))
    expected = blocks + heads
    assert sum(p.numel() for p in net.parameters()) == expected
    rows = describe(net)
    assert sum(r["params"] for r in rows) == expected


def test_module_lists(net):
    assert isinstance(net.blks, nn.ModuleList) and len(net.blks) == 5
    assert isinstance(net.cls_predictors, nn.ModuleList) and len(net.cls_predictors) == 5
    assert isinstance(net.bbox_predictors, nn.ModuleList) and len(net.bbox_predictors) == 5
    assert net.num_classes == 1 and net.sizes == TINYSSD_SIZES and net.ratios == TINYSSD_RATIOS
    # anchors are not part of the saved state
    assert not any("anchor" in k for k in net.state_dict())


def test_forward_equals_book_blk_forward(net):
    """The cached-anchor forward equals the book's loop of blk_forward + concatenations."""
    torch.manual_seed(1)
    X = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        anchors, cls_preds, bbox_preds = net(X)
        A, Cp, Bp = [], [], []
        Y = X
        for i in range(5):
            Y, a, c, b = blk_forward(
                Y, net.blks[i], TINYSSD_SIZES[i], TINYSSD_RATIOS[i],
                net.cls_predictors[i], net.bbox_predictors[i],
            )
            A.append(a)
            Cp.append(c)
            Bp.append(b)
    assert torch.equal(anchors, torch.cat(A, dim=1))
    assert torch.equal(cls_preds, concat_preds(Cp).reshape(2, -1, 2))
    assert torch.equal(bbox_preds, concat_preds(Bp))


def test_anchors_cached(net):
    with torch.no_grad():
        a1 = net(torch.zeros(1, 3, 256, 256))[0]
        a2 = net(torch.rand(2, 3, 256, 256))[0]
        a3 = net(torch.zeros(1, 3, 320, 320))[0]
    assert a1 is a2
    assert a3 is not a1 and a3.shape[1] != a1.shape[1]
    assert a1.dtype == torch.float32 and not a1.requires_grad


@pytest.mark.parametrize(
    "size, maps", [(256, [32, 16, 8, 4, 1]), (320, [40, 20, 10, 5, 1]), (64, [8, 4, 2, 1, 1]),
                   (96, [12, 6, 3, 1, 1]), (384, [48, 24, 12, 6, 1])],
)
def test_other_input_sizes(net, size, maps):
    assert feature_map_sizes(size) == maps
    with torch.no_grad():
        feats = net.feature_maps(torch.zeros(1, 3, size, size))
        anchors, cls_preds, bbox_preds = net(torch.zeros(1, 3, size, size))
    assert [f.shape[-1] for f in feats] == maps
    assert [f.shape[1] for f in feats] == [64, 128, 128, 128, 128]
    n = 4 * sum(m * m for m in maps)
    assert anchors.shape == (1, n, 4)
    assert cls_preds.shape == (1, n, 2)
    assert bbox_preds.shape == (1, 4 * n)


def test_book_anchor_count_320(net):
    with torch.no_grad():
        anchors = net(torch.zeros(1, 3, 320, 320))[0]
    assert anchors.shape[1] == 4 * (1600 + 400 + 100 + 25 + 1)


@pytest.mark.parametrize("size", [0, 32, 63, 100, 250, 257, 256.0, "256"])
def test_bad_input_sizes(net, size):
    with pytest.raises(ValueError, match="multiple of 32"):
        feature_map_sizes(size)


@pytest.mark.parametrize("shape", [(1, 3, 100, 100), (1, 3, 32, 32), (1, 3, 256, 250)])
def test_bad_input_tensor(net, shape):
    with pytest.raises(ConfigError, match="multiple of 32"):
        net(torch.zeros(shape))


def test_bad_channels(net):
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        net(torch.zeros(1, 1, 256, 256))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        net(torch.zeros(3, 256, 256))


def test_bad_constructor_args():
    with pytest.raises(ConfigError):
        TinySSD(0)
    with pytest.raises(ConfigError):
        TinySSD(2, sizes=TINYSSD_SIZES[:4])
    with pytest.raises(ConfigError):
        TinySSD(2, ratios=[[1, -2]] * 5)


def test_custom_channels_and_anchor_specs():
    sizes = [[0.2]] * 5
    ratios = [[1, 2, 0.5, 3]] * 5  # 4 anchors/pixel from 1 size + 4 ratios
    net = TinySSD(3, sizes=sizes, ratios=ratios, base_channels=(8, 8, 16), channels=32).eval()
    with torch.no_grad():
        anchors, cls_preds, bbox_preds = net(torch.zeros(2, 3, 256, 256))
    assert anchors.shape == (1, 5444, 4)
    assert cls_preds.shape == (2, 5444, 4)
    assert bbox_preds.shape == (2, 21776)
    first = multibox_prior(torch.zeros(1, 1, 32, 32), sizes[0], ratios[0])
    assert torch.equal(anchors[:, : first.shape[1]], first)


def _biases_before_batchnorm(net) -> set[str]:
    """Names of conv biases that a BatchNorm follows: its mean subtraction cancels them, so in
    training mode their gradient is 0 (up to rounding) and they cannot learn."""
    names = set()
    for prefix, module in net.named_modules():
        children = list(module.named_children())
        for (name, a), (_, b) in zip(children, children[1:]):
            if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d) and a.bias is not None:
                names.add(f"{prefix}.{name}.bias" if prefix else f"{name}.bias")
    return names


def test_gradients_flow():
    torch.manual_seed(0)
    net = TinySSD(2)
    batch = 2
    _, cls_preds, bbox_preds = net(torch.rand(batch, 3, 64, 64))
    (cls_preds.sum() + bbox_preds.sum()).backward()
    grads = dict(net.named_parameters())
    cancelled = _biases_before_batchnorm(net)
    assert len(cancelled) == 2 * 6  # 2 convs in each of the 3 base blocks and 3 down-samplers
    for name, p in grads.items():
        assert p.grad is not None and p.grad.shape == p.shape, name
        assert torch.isfinite(p.grad).all(), name
        if name in cancelled:
            weight = grads[name[: -len("bias")] + "weight"].grad
            assert float(p.grad.abs().max()) <= 1e-3 * float(weight.abs().max()), name
        else:  # every other parameter learns: each of its tensors gets a nonzero gradient
            top = float(p.grad.abs().max())
            assert top > 1e-3, (name, top)
    # d(sum of outputs)/d(predictor bias) = the number of outputs per channel: batch * h * w of
    # that scale's map (8, 4, 2, 1, 1 for a 64x64 input), a sum of ones, exact on any CPU.
    for i, side in enumerate((8, 4, 2, 1, 1)):
        for head in ("cls_predictors", "bbox_predictors"):
            bias = grads[f"{head}.{i}.bias"].grad
            assert torch.equal(bias, torch.full_like(bias, batch * side * side)), (head, i)


def test_describe(net):
    rows = describe(net, 256)
    assert [r["name"] for r in rows] == [
        "base_net", "down_sample_blk_1", "down_sample_blk_2", "down_sample_blk_3",
        "global_max_pool",
    ]
    assert [r["output_shape"] for r in rows] == [
        (64, 32, 32), (128, 16, 16), (128, 8, 8), (128, 4, 4), (128, 1, 1)
    ]
    assert [r["anchors_per_pixel"] for r in rows] == [4] * 5
    assert [r["num_anchors"] for r in rows] == [4096, 1024, 256, 64, 4]
    assert sum(r["num_anchors"] for r in rows) == 5444
    assert [r["sizes"] for r in rows] == TINYSSD_SIZES
    assert [r["ratios"] for r in rows] == TINYSSD_RATIOS
    # Receptive fields by hand: a conv3x3 adds 2*jump, a 2x2/2 pool adds jump and doubles it.
    # One down-sample block at jump j: rf += 2j + 2j + j = 5j, j -> 2j (the book's 6 = 1 + 5).
    rf, j, expected = 1, 1, []
    for _ in range(3):  # base net
        rf, j = rf + 5 * j, 2 * j
    expected.append(rf)  # 36
    for _ in range(3):
        rf, j = rf + 5 * j, 2 * j
        expected.append(rf)
    expected.append(rf + (4 - 1) * j)  # global pooling over the 4x4 map: the whole input
    assert [r["receptive_field"] for r in rows] == expected == [36, 76, 156, 316, 508]
    assert [r["stride"] for r in rows] == [8, 16, 32, 64, 256]
    assert rows[-1]["receptive_field"] >= 256
    for r, blk, c, b in zip(rows, net.blks, net.cls_predictors, net.bbox_predictors):
        n = [sum(p.numel() for p in m.parameters()) for m in (blk, c, b)]
        assert (r["block_params"], r["cls_params"], r["bbox_params"]) == tuple(n)
        assert r["params"] == sum(n)
    assert rows[-1]["block_params"] == 0  # pooling has no parameters


def test_describe_other_size_and_bad_size(net):
    rows = describe(net, 320)
    assert [r["output_shape"][1] for r in rows] == [40, 20, 10, 5, 1]
    assert rows[-1]["receptive_field"] >= 320
    with pytest.raises(ValueError):
        describe(net, 100)


def test_autocast_and_channels_last_keep_float32_anchors():
    torch.manual_seed(0)
    net = TinySSD(2).eval()
    X = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        ref = net(X)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            anchors, cls_preds, _ = net(X)
        out_cl = net.to(memory_format=torch.channels_last)(X.to(memory_format=torch.channels_last))
    assert anchors.dtype == torch.float32 and torch.equal(anchors, ref[0])
    assert cls_preds.shape == ref[1].shape
    for a, b in zip(out_cl, ref):
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("channels_last", [False, True])
def test_training_step_equals_the_books_bit_for_bit(channels_last):
    """Same weights, same batch: the book's TinySSD (ssd_core/book_train.py, pooling after the
    last ReLU) and ours (the last ReLU after the pooling) give the same outputs, loss gradients
    and BatchNorm statistics, bit for bit; ReLU outputs of exactly 0 included."""
    from ssd_core.book_train import BookTinySSD

    torch.manual_seed(0)
    book, ours = BookTinySSD(num_classes=2), TinySSD(num_classes=2)
    # Module order differs (setattr blocks vs ModuleLists); the blocks' layers line up.
    book_modules = [getattr(book, f"{kind}_{i}") for kind in ("blk", "cls", "bbox")
                    for i in range(5)]
    our_modules = [*ours.blks, *ours.cls_predictors, *ours.bbox_predictors]
    for b, o in zip(book_modules, our_modules):
        o.load_state_dict(b.state_dict())
    X = torch.rand(4, 3, 128, 128)
    X[0, :, :40] = 0.0  # flat regions: many ReLU outputs exactly 0, ties inside pool windows
    if channels_last:
        book, ours = (m.to(memory_format=torch.channels_last) for m in (book, ours))
        X = X.contiguous(memory_format=torch.channels_last)
    outs = []
    for net, modules in ((book, book_modules), (ours, our_modules)):
        net.train()
        anchors, cls, bbox = net(X)
        (cls.square().mean() + bbox.abs().mean()).backward()
        grads = [p.grad for m in modules for p in m.parameters()]
        stats = [b for m in modules for b in m.buffers()]
        outs.append((anchors, cls, bbox, grads, stats))
    (ab, cb, bb, gb, sb), (ao, co, bo, go, so) = outs
    assert torch.allclose(ab, ao, atol=1e-6)  # the book computes anchors every forward
    assert torch.equal(cb, co) and torch.equal(bb, bo)
    assert len(gb) == len(go) and all(torch.equal(x, y) for x, y in zip(gb, go))
    assert all(torch.equal(x, y) for x, y in zip(sb, so))
