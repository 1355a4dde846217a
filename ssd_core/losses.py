"""SSD losses: the chapter's curves (L1, smooth-L1, cross-entropy, focal), the combined
SSD loss with its options, the book's metrics, and the focal prior initialisation.

Curves are element-wise on tensors of any shape/device; ``ssd_loss`` is batched.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ssd_core.config import LossConfig
from ssd_core.errors import ConfigError
from ssd_core.matching import hard_negative_mask

# ---------------------------------------------------------------- curves (the chapter's)


def _tensor(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(x, dtype=torch.float32)


def l1(x) -> torch.Tensor:
    """|x|, element-wise (same shape as x)."""
    return _tensor(x).abs()


def smooth_l1(x, sigma: float = 1.0) -> torch.Tensor:
    """MXNet smooth-L1: 0.5*(sigma*x)^2 if |x| < 1/sigma^2 else |x| - 0.5/sigma^2.

    Large sigma -> close to L1; small sigma -> smoother (quadratic over a wider range).
    """
    if sigma <= 0:
        raise ConfigError(f"smooth_l1 needs sigma > 0, got {sigma!r}.")
    x = _tensor(x)
    ax = x.abs()
    return torch.where(ax < 1.0 / sigma**2, 0.5 * (sigma * x) ** 2, ax - 0.5 / sigma**2)


def cross_entropy_curve(p) -> torch.Tensor:
    """-log p for the probability p of the true class (p in (0, 1])."""
    return -torch.log(_tensor(p))


def focal_loss(p, gamma: float = 2.0, alpha: float = 1.0) -> torch.Tensor:
    """-alpha * (1 - p)^gamma * log p; gamma = 0, alpha = 1 is cross-entropy."""
    p = _tensor(p)
    return -alpha * (1 - p) ** gamma * torch.log(p)


def smooth_l1_grad(x, sigma: float = 1.0) -> torch.Tensor:
    """d smooth_l1 / dx: sigma^2 * x inside |x| < 1/sigma^2, sign(x) outside."""
    x = _tensor(x)
    return torch.where(x.abs() < 1.0 / sigma**2, sigma**2 * x, torch.sign(x))


def focal_loss_grad(p, gamma: float = 2.0, alpha: float = 1.0) -> torch.Tensor:
    """d focal_loss / dp = alpha * (gamma*(1-p)^(gamma-1)*log p - (1-p)^gamma / p)."""
    p = _tensor(p)
    q = 1 - p
    inner = -(q**gamma) / p
    if gamma != 0:  # the first term vanishes for gamma = 0 (avoid 0 * inf at p = 1)
        inner = inner + gamma * q ** (gamma - 1) * torch.log(p)
    return alpha * inner


# ---------------------------------------------------------------- combined SSD loss

def class_loss_per_anchor(cls_preds, cls_labels, config: LossConfig | None = None):
    """Per-anchor class loss: cls_preds (B, N, C+1) logits, cls_labels (B, N) long -> (B, N).

    Focal loss is the softmax form of the focal paper: -alpha_t (1 - p_t)^gamma log p_t with
    p_t the softmax probability of the true class, alpha_t = alpha for object classes and
    1 - alpha for background (alpha = 0.25 down-weights objects as in the paper, because the
    (1 - p_t)^gamma factor already suppresses the many easy background anchors).
    """
    config = config or LossConfig()
    B, N, K = cls_preds.shape
    if config.cls_loss == "ce":
        loss = F.cross_entropy(cls_preds.reshape(-1, K), cls_labels.reshape(-1), reduction="none")
        return loss.reshape(B, N)
    log_p = F.log_softmax(cls_preds, dim=-1)
    log_pt = log_p.gather(-1, cls_labels.unsqueeze(-1)).squeeze(-1)
    # clamp: (1 - p_t)^gamma has an infinite derivative at p_t = 1 when gamma < 1.
    modulator = (1 - log_pt.exp()).clamp_min(1e-12) ** config.focal_gamma
    alpha_t = torch.where(cls_labels > 0, config.focal_alpha, 1 - config.focal_alpha)
    return -alpha_t * modulator * log_pt


def box_loss_elementwise(bbox_preds, bbox_labels, bbox_masks, config: LossConfig | None = None):
    """Masked offset loss per entry: (B, N*4) each -> (B, N*4); zero where the mask is 0."""
    config = config or LossConfig()
    diff = bbox_preds * bbox_masks - bbox_labels * bbox_masks
    if config.box_loss == "l1":
        return diff.abs()
    return smooth_l1(diff, config.smooth_l1_sigma)


def _check_shapes(cls_preds, cls_labels, bbox_preds, bbox_labels, bbox_masks):
    if cls_preds.dim() != 3 or cls_labels.shape != cls_preds.shape[:2]:
        raise ValueError(
            f"cls_preds must be (B, N, C+1) and cls_labels (B, N); got {tuple(cls_preds.shape)} "
            f"and {tuple(cls_labels.shape)}."
        )
    B, N = cls_labels.shape
    for name, t in (("bbox_preds", bbox_preds), ("bbox_labels", bbox_labels),
                    ("bbox_masks", bbox_masks)):
        if tuple(t.shape) != (B, N * 4):
            raise ValueError(f"{name} must be (B, N*4) = {(B, N * 4)}, got {tuple(t.shape)}.")


def ssd_loss(
    cls_preds, cls_labels, bbox_preds, bbox_labels, bbox_masks, config: LossConfig | None = None
) -> dict:
    """The SSD training loss.

    cls_preds (B, N, C+1) logits, cls_labels (B, N) long (0 = background), bbox_preds,
    bbox_labels, bbox_masks (B, N*4) -> {"total", "cls", "box"} scalar tensors with
    total = cls_weight * cls + box_weight * box.
    With hard negative mining the class loss counts only positives and the negatives kept by
    ``hard_negative_mask`` (neg_ratio per positive, highest loss first); with "mean" it is then
    averaged over the kept anchors instead of all anchors.
    """
    config = config or LossConfig()
    _check_shapes(cls_preds, cls_labels, bbox_preds, bbox_labels, bbox_masks)
    cls_labels = cls_labels.long()
    B = cls_labels.shape[0]
    cls_l = class_loss_per_anchor(cls_preds, cls_labels, config)  # (B, N)
    box_l = box_loss_elementwise(bbox_preds, bbox_labels, bbox_masks, config)  # (B, N*4)
    positive = cls_labels > 0

    if config.hard_negative_mining:
        keep = positive | hard_negative_mask(cls_l.detach(), cls_labels, config.neg_ratio)
        cls_l = cls_l * keep
        cls_count = keep.sum(dim=1).clamp_min(1)  # (B,)
    else:
        cls_count = torch.full((B,), cls_l.shape[1], device=cls_l.device)

    if config.normalize == "positives":
        num_pos = positive.sum().clamp_min(1)
        cls = cls_l.sum() / num_pos
        box = box_l.sum() / num_pos
    else:  # the book: per-image means, then the batch mean
        cls = (cls_l.sum(dim=1) / cls_count).mean()
        box = box_l.mean(dim=1).mean()
    total = config.cls_weight * cls + config.box_weight * box
    return {"total": total, "cls": cls, "box": box}


# ---------------------------------------------------------------- metrics (the book's)


def cls_eval(cls_preds, cls_labels) -> float:
    """Number of anchors whose argmax class equals the label: (B, N, C+1), (B, N) -> float."""
    return float((cls_preds.argmax(dim=-1).type(cls_labels.dtype) == cls_labels).sum())


def bbox_eval(bbox_preds, bbox_labels, bbox_masks) -> float:
    """Sum of masked absolute offset errors: (B, N*4) each -> float."""
    return float(torch.abs((bbox_labels - bbox_preds) * bbox_masks).sum())


def metric_sums(cls_preds, cls_labels, bbox_preds, bbox_labels, bbox_masks) -> torch.Tensor:
    """The sums behind the book's metrics, on the inputs' device -> float tensor ``(correct
    anchors, anchors, abs offset error, offset entries, positive anchors, correct positive
    anchors)``. The last one gives the object-only accuracy: the book's class error counts the
    thousands of background anchors too, so it looks small while nothing is found. No host
    sync and no host-to-device copy (counts are filled on the device with ``new_full``), so a
    training step never waits for a GPU here."""
    with torch.no_grad():
        correct = cls_preds.argmax(dim=-1) == cls_labels
        positive = cls_labels > 0
        return torch.stack([
            correct.sum().float(),
            bbox_preds.new_full((), float(cls_labels.numel()), dtype=torch.float32),
            torch.abs((bbox_labels - bbox_preds) * bbox_masks).sum().float(),
            bbox_preds.new_full((), float(bbox_labels.numel()), dtype=torch.float32),
            positive.sum().float(),
            (correct & positive).sum().float(),
        ])


# ---------------------------------------------------------------- focal prior init


def init_focal_bias(model: nn.Module, prior: float = 0.01) -> None:
    """Set every class predictor's bias so that initially p(background) ~= 1 - prior.

    Softmax adaptation of the focal paper's prior init: object logits get bias 0 and the
    background logit b = log(C * (1 - prior) / prior), so with zero features
    p(bg) = e^b / (e^b + C) = 1 - prior and each of the C classes gets prior / C.
    Output channel i*(C+1) + j is class j of anchor i (the book's layout).
    """
    if not 0 < prior < 1:
        raise ConfigError(f"init_focal_bias needs 0 < prior < 1, got {prior!r}.")
    C = model.num_classes
    b = math.log(C * (1 - prior) / prior)
    with torch.no_grad():
        for head in model.cls_predictors:
            bias = head.bias.view(-1, C + 1)
            bias.zero_()
            bias[:, 0] = b
