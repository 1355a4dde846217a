"""Loss curves against the chapter's formulas in plain Python, and ssd_loss against loops."""

import math

import pytest
import torch

from ssd_core import LossConfig, TrainConfig
from ssd_core.engine.records import make_record, step_sums, sums_of
from ssd_core.errors import ConfigError
from ssd_core.losses import (
    bbox_eval,
    cls_eval,
    cross_entropy_curve,
    focal_loss,
    focal_loss_grad,
    init_focal_bias,
    l1,
    smooth_l1,
    smooth_l1_grad,
    ssd_loss,
)
from ssd_core.model import TinySSD

XS = [i / 10 for i in range(-30, 31)] + [0.0999, 0.2501, 1e-3, -4.0, 0.995, 1.005]
PS = [i / 100 for i in range(1, 101)] + [1e-4, 0.5]


def curve_gradient(fn, x, **kwargs) -> torch.Tensor:
    """Element-wise derivative of a curve by autograd: fn(x, **kwargs) -> d fn / dx."""
    x = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(fn(x, **kwargs).sum(), x)
    return grad


def book_record(cls_preds, cls_labels, bbox_preds, bbox_labels, bbox_masks) -> dict:
    """The training record of one batch (ssd_core.engine.records), losses left at 0."""
    zero = torch.zeros(())
    step = step_sums({"total": zero, "cls": zero, "box": zero}, cls_preds, cls_labels,
                     bbox_preds, bbox_labels, bbox_masks, cls_labels.shape[0], False)
    fields = dict.fromkeys(("step", "epoch", "epochs", "steps_per_epoch", "total_steps", "lr",
                            "elapsed", "eta_s", "world_size"), 0)
    return make_record("step", sums_of(step), 1.0, **fields)


def py_smooth_l1(x, sigma):
    return 0.5 * (sigma * x) ** 2 if abs(x) < 1 / sigma**2 else abs(x) - 0.5 / sigma**2


def py_focal(p, gamma, alpha=1.0):
    return -alpha * (1 - p) ** gamma * math.log(p)


def test_l1_curve():
    out = l1(torch.tensor(XS, dtype=torch.float64))
    assert out.tolist() == [abs(x) for x in XS]


@pytest.mark.parametrize("sigma", [10, 1, 0.5, 2.5])
def test_smooth_l1_curve(sigma):
    out = smooth_l1(torch.tensor(XS, dtype=torch.float64), sigma=sigma)
    for x, y in zip(XS, out.tolist()):
        assert y == pytest.approx(py_smooth_l1(x, sigma), abs=1e-12)


def test_smooth_l1_shapes_and_limits():
    x = torch.linspace(-2, 2, 41).reshape(41, 1).expand(41, 3)
    assert smooth_l1(x).shape == (41, 3)
    # the chapter: large sigma approaches L1
    xs = torch.linspace(-2, 2, 41, dtype=torch.float64)
    assert torch.allclose(smooth_l1(xs, sigma=100.0), xs.abs(), atol=1e-4)
    assert smooth_l1(0.5).item() == pytest.approx(0.125)  # plain numbers work too
    with pytest.raises(ConfigError):
        smooth_l1(xs, sigma=0)


def test_cross_entropy_curve():
    out = cross_entropy_curve(torch.tensor(PS, dtype=torch.float64))
    for p, y in zip(PS, out.tolist()):
        assert y == pytest.approx(-math.log(p), abs=1e-12)


@pytest.mark.parametrize("gamma, alpha", [(0, 1.0), (1, 1.0), (5, 1.0), (2, 0.25), (0.5, 0.75)])
def test_focal_curve(gamma, alpha):
    out = focal_loss(torch.tensor(PS, dtype=torch.float64), gamma=gamma, alpha=alpha)
    for p, y in zip(PS, out.tolist()):
        assert y == pytest.approx(py_focal(p, gamma, alpha), abs=1e-12)


def test_focal_gamma_zero_is_cross_entropy():
    p = torch.tensor(PS, dtype=torch.float64)
    assert torch.allclose(focal_loss(p, gamma=0), cross_entropy_curve(p))


@pytest.mark.parametrize("sigma", [10, 1, 0.5])
def test_smooth_l1_gradient(sigma):
    x = torch.tensor(XS, dtype=torch.float64)
    auto = curve_gradient(smooth_l1, x, sigma=sigma)
    assert torch.allclose(auto, smooth_l1_grad(x, sigma), atol=1e-12)
    for xi, g in zip(XS, auto.tolist()):  # central differences away from the kink
        if abs(abs(xi) - 1 / sigma**2) > 1e-3 and xi != 0:
            h = 1e-6
            fd = (py_smooth_l1(xi + h, sigma) - py_smooth_l1(xi - h, sigma)) / (2 * h)
            assert g == pytest.approx(fd, abs=1e-5)


@pytest.mark.parametrize("gamma, alpha", [(0, 1.0), (1, 1.0), (2, 0.25), (5, 1.0)])
def test_focal_gradient(gamma, alpha):
    p = torch.tensor(PS[:-3], dtype=torch.float64)  # 0.01 .. 0.99
    auto = curve_gradient(focal_loss, p, gamma=gamma, alpha=alpha)
    assert torch.allclose(auto, focal_loss_grad(p, gamma, alpha), rtol=1e-9, atol=1e-12)
    for pi, g in zip(p.tolist(), auto.tolist()):
        h = 1e-7
        fd = (py_focal(pi + h, gamma, alpha) - py_focal(pi - h, gamma, alpha)) / (2 * h)
        assert g == pytest.approx(fd, rel=1e-4, abs=1e-6)


# ------------------------------------------------------------------ ssd_loss on a tiny case


def tiny_batch():
    """B=2 images, N=3 anchors, C=2 object classes (3 logits), hand-made."""
    cls_preds = torch.tensor(
        [
            [[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-1.0, 3.0, 0.0]],
            [[1.0, 1.0, 1.0], [0.0, -2.0, 2.0], [4.0, 0.0, 0.0]],
        ]
    )
    cls_labels = torch.tensor([[0, 2, 1], [0, 0, 0]])  # image 2 has no positive
    bbox_preds = torch.tensor(
        [
            [0.1, 0.2, 0.3, 0.4, 0.5, -0.5, 2.0, 0.0, -0.2, 0.1, 0.0, 3.0],
            [9.0, 9.0, 9.0, 9.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0],
        ]
    )
    bbox_labels = torch.tensor(
        [
            [0.0] * 4 + [0.4, -0.1, 0.5, 0.2] + [0.3, 0.1, -0.5, 1.0],
            [0.0] * 12,
        ]
    )
    bbox_masks = torch.tensor([[0.0] * 4 + [1.0] * 8, [0.0] * 12])
    return cls_preds, cls_labels, bbox_preds, bbox_labels, bbox_masks


def py_log_softmax(row, k):
    m = max(row)
    return row[k] - m - math.log(sum(math.exp(v - m) for v in row))


def py_cls_losses(cls_preds, cls_labels, kind="ce", gamma=2.0, alpha=0.25):
    out = []
    for b in range(len(cls_labels)):
        row = []
        for n, k in enumerate(cls_labels[b]):
            lp = py_log_softmax(cls_preds[b][n], k)
            if kind == "ce":
                row.append(-lp)
            else:
                a = alpha if k > 0 else 1 - alpha
                row.append(-a * (1 - math.exp(lp)) ** gamma * lp)
        out.append(row)
    return out


def py_box_losses(bp, bl, bm, kind="l1", sigma=1.0):
    f = abs if kind == "l1" else (lambda x: py_smooth_l1(x, sigma))
    return [[f(p * m - t * m) for p, t, m in zip(*rows)] for rows in zip(bp, bl, bm)]


def as_lists(batch):
    return [t.tolist() for t in batch]


@pytest.mark.parametrize("cls_kind", ["ce", "focal"])
@pytest.mark.parametrize("box_kind", ["l1", "smooth_l1"])
@pytest.mark.parametrize("normalize", ["positives", "mean"])
def test_ssd_loss_matches_plain_computation(cls_kind, box_kind, normalize):
    batch = tiny_batch()
    cp, cl, bp, bl, bm = as_lists(batch)
    cfg = LossConfig(cls_loss=cls_kind, box_loss=box_kind, normalize=normalize,
                     smooth_l1_sigma=2.0, focal_gamma=2.0, focal_alpha=0.25,
                     cls_weight=0.7, box_weight=1.5)
    cls_l = py_cls_losses(cp, cl, cls_kind, 2.0, 0.25)
    box_l = py_box_losses(bp, bl, bm, box_kind, 2.0)
    if normalize == "positives":
        pos = sum(k > 0 for row in cl for k in row)  # 2
        cls = sum(map(sum, cls_l)) / pos
        box = sum(map(sum, box_l)) / pos
    else:  # the book: mean over anchors / offsets per image, then over images
        cls = sum(sum(r) / len(r) for r in cls_l) / len(cls_l)
        box = sum(sum(r) / len(r) for r in box_l) / len(box_l)
    out = ssd_loss(*batch, config=cfg)
    assert set(out) == {"total", "cls", "box"}
    assert all(v.dim() == 0 for v in out.values())
    assert out["cls"].item() == pytest.approx(cls, rel=1e-5)
    assert out["box"].item() == pytest.approx(box, rel=1e-5)
    assert out["total"].item() == pytest.approx(0.7 * cls + 1.5 * box, rel=1e-5)


def test_book_mean_loss_equals_book_code():
    """normalize='mean' with CE + L1 is the book's calc_loss(...).mean()."""
    torch.manual_seed(0)
    B, N, C = 3, 50, 2
    cls_preds = torch.randn(B, N, C + 1)
    cls_labels = torch.randint(0, C + 1, (B, N))
    bbox_preds, bbox_labels = torch.randn(B, N * 4), torch.randn(B, N * 4)
    bbox_masks = (cls_labels > 0).float().repeat_interleave(4, dim=1)
    ce = torch.nn.CrossEntropyLoss(reduction="none")
    l1loss = torch.nn.L1Loss(reduction="none")
    book_cls = ce(cls_preds.reshape(-1, C + 1), cls_labels.reshape(-1)).reshape(B, -1).mean(dim=1)
    book_box = l1loss(bbox_preds * bbox_masks, bbox_labels * bbox_masks).mean(dim=1)
    book = (book_cls + book_box).mean()
    out = ssd_loss(cls_preds, cls_labels, bbox_preds, bbox_labels, bbox_masks,
                   LossConfig(normalize="mean"))
    assert torch.allclose(out["total"], book)


def test_hard_negative_mining_keeps_hardest_negatives():
    # One image, 1 positive, 5 negatives with known, distinct losses.
    cls_preds = torch.tensor([[[0.0, 3.0], [5.0, 0.0], [0.0, 2.0], [1.0, 0.0], [0.0, 4.0],
                               [0.0, 1.0]]])
    cls_labels = torch.tensor([[1, 0, 0, 0, 0, 0]])
    zeros = torch.zeros(1, 24)
    per = py_cls_losses(cls_preds.tolist(), cls_labels.tolist())[0]
    pos_loss, neg_losses = per[0], sorted(per[1:], reverse=True)
    for ratio in (1, 2, 3):
        cfg = LossConfig(hard_negative_mining=True, neg_ratio=ratio, normalize="positives")
        out = ssd_loss(cls_preds, cls_labels, zeros, zeros, zeros, cfg)
        expected = pos_loss + sum(neg_losses[:ratio])  # / 1 positive
        assert out["cls"].item() == pytest.approx(expected, rel=1e-6)
    full = ssd_loss(cls_preds, cls_labels, zeros, zeros, zeros,
                    LossConfig(normalize="positives"))["cls"]
    assert full.item() == pytest.approx(sum(per), rel=1e-6)
    assert full.item() > out["cls"].item()
    # 'mean' normalization with mining averages over the kept anchors (1 + 2 here)
    cfg = LossConfig(hard_negative_mining=True, neg_ratio=2, normalize="mean")
    out = ssd_loss(cls_preds, cls_labels, zeros, zeros, zeros, cfg)
    assert out["cls"].item() == pytest.approx((pos_loss + sum(neg_losses[:2])) / 3, rel=1e-6)


def test_hard_negative_mining_gradient_only_on_kept_anchors():
    cls_preds = torch.tensor([[[0.0, 3.0], [5.0, 0.0], [0.0, 2.0], [0.0, 4.0]]],
                             requires_grad=True)
    cls_labels = torch.tensor([[1, 0, 0, 0]])
    zeros = torch.zeros(1, 16)
    cfg = LossConfig(hard_negative_mining=True, neg_ratio=1, normalize="positives")
    ssd_loss(cls_preds, cls_labels, zeros, zeros, zeros, cfg)["total"].backward()
    touched = (cls_preds.grad.abs().sum(-1) > 0).tolist()[0]
    assert touched == [True, False, False, True]  # the positive and the hardest negative


@pytest.mark.parametrize("cls_kind", ["ce", "focal"])
@pytest.mark.parametrize("normalize", ["positives", "mean"])
@pytest.mark.parametrize("mining", [False, True])
def test_no_nan_without_positives(cls_kind, normalize, mining):
    torch.manual_seed(0)
    cls_preds = (torch.randn(2, 10, 3) * 30).requires_grad_(True)  # very confident logits
    cls_preds.data[0, :, 0] = 100.0  # p(background) == 1 exactly in float32
    cls_labels = torch.zeros(2, 10, dtype=torch.long)
    bbox_preds = torch.randn(2, 40, requires_grad=True)
    zeros = torch.zeros(2, 40)
    cfg = LossConfig(cls_loss=cls_kind, normalize=normalize, hard_negative_mining=mining,
                     focal_gamma=0.5)
    out = ssd_loss(cls_preds, cls_labels, bbox_preds, zeros, zeros, cfg)
    assert all(torch.isfinite(v) for v in out.values())
    assert out["box"].item() == 0.0
    out["total"].backward()
    assert torch.isfinite(cls_preds.grad).all() and torch.isfinite(bbox_preds.grad).all()


def test_loss_config_validation():
    for bad in [dict(cls_loss="bce"), dict(box_loss="l2"), dict(normalize="sum"),
                dict(focal_gamma=-1), dict(focal_alpha=1.5), dict(smooth_l1_sigma=0),
                dict(neg_ratio=0), dict(cls_weight=float("nan"))]:
        with pytest.raises(ConfigError, match="LossConfig"):
            LossConfig(**bad)
    # One default for a notebook's ssd_loss() and the Trainer: the book's "mean".
    assert LossConfig().to_dict()["normalize"] == TrainConfig().loss.normalize == "mean"


def test_ssd_loss_shape_errors():
    cp, cl, bp, bl, bm = tiny_batch()
    with pytest.raises(ValueError, match="bbox_preds"):
        ssd_loss(cp, cl, bp[:, :8], bl, bm)
    with pytest.raises(ValueError, match="cls_labels"):
        ssd_loss(cp, cl[:, :2], bp, bl, bm)


# ------------------------------------------------------------------ metrics


def test_book_metrics_and_the_records_metrics():
    cp, cl, bp, bl, bm = tiny_batch()
    # argmax per anchor: [0, 2, 1], [0, 2, 0] vs labels [0, 2, 1], [0, 0, 0] -> 5 correct
    assert cls_eval(cp, cl) == 5.0
    abs_err = sum(abs(t - p) * m for rows in zip(*as_lists((bp, bl, bm)))
                  for p, t, m in zip(*rows))
    assert bbox_eval(bp, bl, bm) == pytest.approx(abs_err, rel=1e-6)
    m = book_record(cp, cl, bp, bl, bm)
    assert m["class_error"] == pytest.approx(1 - 5 / 6)
    assert m["box_mae"] == pytest.approx(abs_err / 24, rel=1e-6)
    assert m["positives_per_image"] == 1.0


# ------------------------------------------------------------------ focal prior init


def test_init_focal_bias():
    C, prior = 3, 0.01
    net = TinySSD(C)
    init_focal_bias(net, prior=prior)
    for head in net.cls_predictors:
        bias = head.bias.view(-1, C + 1)
        p = torch.softmax(bias, dim=-1)
        assert torch.allclose(p[:, 0], torch.full_like(p[:, 0], 1 - prior))
        assert torch.allclose(p[:, 1:], torch.full_like(p[:, 1:], prior / C))
        head.weight.data.zero_()  # with no signal from the features, only the bias speaks
    with torch.no_grad():
        _, cls_preds, _ = net.eval()(torch.rand(1, 3, 64, 64))
    p_bg = torch.softmax(cls_preds, dim=-1)[..., 0]
    assert torch.allclose(p_bg, torch.full_like(p_bg, 1 - prior), atol=1e-6)
    with pytest.raises(ConfigError):
        init_focal_bias(net, prior=0)
