"""Prediction: the book's ``multibox_detection`` (on :mod:`ssd_core.suppression`'s NMS),
``predict_batch`` and the ``Detector`` (image in, boxes out)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .anchors import locate_anchor
from .boxes import offset_inverse
from .checkpoint import load_checkpoint
from .device import resolve_device
from .errors import CheckpointError, TrainingDiverged
from .images import image_to_tensor, load_image
from .ordering import descending_order
from .resources import shipped_checkpoint
from .suppression import nms, nms_sorted

__all__ = ["nms", "multibox_detection", "predict_batch", "Detector", "Detections",
           "RawOutput", "raw_output", "DEFAULT_CHECKPOINT"]


def _best_class(cls_probs):
    """Each anchor's best non-background class and its probability: ``(B, C+1, N)`` ->
    ``(class_id (B, N) long, conf (B, N))``, ties to the lower class like the book's
    ``torch.max(dim)``. A running comparison over the few classes: on the CPU an argmax over
    the short, strided class dimension is ~50x slower."""
    conf = cls_probs[:, 1].clone()
    class_id = torch.zeros(conf.shape, dtype=torch.long, device=conf.device)
    for c in range(2, cls_probs.shape[1]):
        better = cls_probs[:, c] > conf
        conf = torch.where(better, cls_probs[:, c], conf)
        class_id.masked_fill_(better, c - 1)
    return class_id, conf


def multibox_detection(
    cls_probs,
    offset_preds,
    anchors,
    nms_threshold=0.5,
    pos_threshold=0.009,
    per_class=False,
    exact_order=True,
):
    """Book detection: ``cls_probs (B, C+1, N)``, ``offset_preds (B, N*4)``, ``anchors (1, N, 4)``
    -> ``(B, N, 6)`` rows ``[class_id, score, x1, y1, x2, y2]``.

    Class-agnostic NMS over each anchor's best non-background class (``per_class=True``: NMS only
    among anchors of the same class); suppressed rows get class -1. Rows are the kept ones by
    descending score, then the others by anchor index; finally rows with score < pos_threshold
    get class -1 and score ``1 - score``.

    ``exact_order=False`` runs NMS only over anchors with score >= pos_threshold: every row with
    class >= 0 (the detections) and their order are unchanged, because a box with a lower score
    is visited after all of them and so can never suppress one; only the order of the class -1
    rows differs from the book. Much faster when most anchors are confidently background.
    """
    anchors = _check_detection_inputs(cls_probs, offset_preds, anchors, nms_threshold,
                                      pos_threshold)
    batch, _, n = cls_probs.shape
    device = cls_probs.device
    class_id, conf = _best_class(cls_probs)
    predicted = offset_inverse(anchors, offset_preds.reshape(batch, n, 4))

    order = descending_order(conf)
    sorted_boxes = predicted.gather(1, order[..., None].expand(-1, -1, 4))
    groups = class_id.gather(1, order) if per_class else None
    if exact_order:
        valid = torch.ones((batch, n), dtype=torch.bool, device=device)
    else:
        valid = conf.gather(1, order) >= pos_threshold
    keep_sorted = nms_sorted(sorted_boxes, valid, nms_threshold, groups)

    return _book_rows(keep_sorted, order, class_id, conf, predicted, pos_threshold)


# ------------------------------------------------------- the Detector (image in, boxes out)


def _check_detection_inputs(cls_probs, offset_preds, anchors, nms_threshold, pos_threshold):
    """Raise ValueError naming the bad argument; -> anchors as (N, 4)."""
    if not torch.is_tensor(cls_probs) or cls_probs.dim() != 3 or cls_probs.shape[1] < 2:
        shape = tuple(cls_probs.shape) if torch.is_tensor(cls_probs) else type(cls_probs).__name__
        raise ValueError(f"cls_probs must have shape (B, C+1, N) with C >= 1, got {shape}")
    batch, _, n = cls_probs.shape
    if not (torch.is_tensor(anchors) and torch.is_tensor(offset_preds)):
        raise ValueError("anchors and offset_preds must be tensors, got "
                         f"{type(anchors).__name__} and {type(offset_preds).__name__}")
    if anchors.dim() == 3 and anchors.shape[0] == 1:
        anchors = anchors[0]
    if anchors.shape != (n, 4):
        raise ValueError(
            f"anchors must have shape (1, N, 4) = (1, {n}, 4) to match cls_probs, "
            f"got {tuple(anchors.shape)}"
        )
    if offset_preds.shape != (batch, n * 4):
        raise ValueError(
            f"offset_preds must have shape (B, N*4) = ({batch}, {n * 4}), "
            f"got {tuple(offset_preds.shape)}"
        )
    for name, t in (("cls_probs", cls_probs), ("offset_preds", offset_preds),
                    ("anchors", anchors)):
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN or infinite values (a diverged model?)")
    if not (0 <= nms_threshold <= 1 and 0 <= pos_threshold <= 1):
        raise ValueError("nms_threshold and pos_threshold must lie in [0, 1], got "
                         f"{nms_threshold} and {pos_threshold}")
    return anchors


def _book_rows(keep_sorted, order, class_id, conf, predicted, pos_threshold):
    """The book's output rows (B, N, 6) from the kept mask in visiting order."""
    batch, n = class_id.shape
    device = class_id.device
    # Output order: kept rows by their visiting position, then the rest by anchor index. Each
    # anchor's output row is its rank among the kept (visiting order) or, after all kept ones,
    # its rank among the others (anchor order): two cumulative sums instead of a sort.
    kept = torch.empty_like(keep_sorted).scatter_(1, order, keep_sorted)  # by anchor index
    row_if_kept = torch.empty_like(order).scatter_(1, order, keep_sorted.cumsum(dim=1) - 1)
    num_kept = keep_sorted.sum(dim=1, keepdim=True)
    row = torch.where(kept, row_if_kept, num_kept + (~kept).cumsum(dim=1) - 1)
    perm = torch.empty_like(order).scatter_(1, row, torch.arange(n, device=device).expand(batch, n))
    class_out = torch.where(kept, class_id, torch.full_like(class_id, -1)).gather(1, perm)
    conf_out = conf.gather(1, perm)
    box_out = predicted.gather(1, perm[..., None].expand(-1, -1, 4))
    below = conf_out < pos_threshold
    class_out = torch.where(below, torch.full_like(class_out, -1), class_out)
    conf_out = torch.where(below, 1 - conf_out, conf_out)
    return torch.cat((class_out[..., None].to(conf_out.dtype), conf_out[..., None], box_out), -1)


@torch.no_grad()
def predict_batch(model, X, nms_threshold=0.5, pos_threshold=0.009):
    """Model + the book's multibox_detection: X (B,3,S,S) -> (B, N, 6) rows
    [class_id, score, x1, y1, x2, y2] (normalized corners, class -1 = background/suppressed)."""
    anchors, cls_preds, bbox_preds = model(X)
    if not bool(torch.isfinite(cls_preds).all() & torch.isfinite(bbox_preds).all()):
        raise TrainingDiverged("The network's outputs are NaN/inf: its weights diverged in "
                               "training. Use an earlier checkpoint or train again with a "
                               "lower learning rate.")
    cls_probs = F.softmax(cls_preds.float(), dim=2).permute(0, 2, 1)
    # exact_order=False: the detections (class >= 0) and their order are the book's; only the
    # order of the background rows differs, and NMS skips the thousands of background anchors.
    return multibox_detection(cls_probs, bbox_preds.float(), anchors.float(),
                              nms_threshold=nms_threshold, pos_threshold=pos_threshold,
                              exact_order=False)


DEFAULT_CHECKPOINT = shipped_checkpoint()


@dataclass
class Detections:
    """Detections on one image, sorted by score: ``boxes (K,4)`` pixel corners in the original
    image, ``scores (K,)``, ``labels (K,)`` long (0..C-1), ``anchor_index (K,)`` (which anchor
    produced each box), ``class_names`` and ``image_size`` ``(W, H)``."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    anchor_index: torch.Tensor
    class_names: list
    image_size: tuple

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def to_records(self) -> list[dict]:
        """JSON-ready ``[{"class", "class_id", "score", "box": [x1, y1, x2, y2], "anchor"}]``."""
        return [{"class": self.class_names[c], "class_id": c, "score": round(s, 5),
                 "box": [round(v, 2) for v in b], "anchor": a}
                for b, s, c, a in zip(self.boxes.tolist(), self.scores.tolist(),
                                      self.labels.tolist(), self.anchor_index.tolist())]


@dataclass
class RawOutput:
    """The network's output for one image, kept so thresholds can change without re-running it:
    ``probs (N, C+1)`` softmax class probabilities (column 0 background), ``boxes (N, 4)`` decoded
    normalized corners, ``image_size (W, H)`` of the original image."""

    probs: torch.Tensor
    boxes: torch.Tensor
    image_size: tuple

    @property
    def scores(self) -> torch.Tensor:
        """Best non-background probability per anchor ``(N,)``."""
        return self.probs[:, 1:].max(dim=1).values


def raw_output(anchors, cls_preds, bbox_preds, image_size) -> RawOutput:
    """TinySSD's outputs for one image (``anchors (1, N, 4)``, ``cls_preds (1, N, C+1)``,
    ``bbox_preds (1, N*4)``) -> :class:`RawOutput` on the CPU (softmax, decoded boxes)."""
    probs = torch.softmax(cls_preds[0].float(), dim=-1)
    boxes = offset_inverse(anchors[0].float(), bbox_preds[0].float().reshape(-1, 4))
    return RawOutput(probs.cpu(), boxes.cpu(), tuple(image_size))


class Detector:
    """A trained TinySSD ready for images of any size: ``predict(image)`` -> :class:`Detections`.

    ``raw(image)`` runs the network once; ``filter(raw, ...)`` applies thresholds and NMS to
    that output in milliseconds, and equals a fresh ``predict`` with the same thresholds.
    """

    def __init__(self, model, class_names, input_size: int = 256, device=None,
                 checkpoint: str | None = None):
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.class_names = [str(c) for c in class_names]
        self.input_size = int(input_size)
        self.checkpoint = checkpoint

    @classmethod
    def from_checkpoint(cls, path=None, device=None) -> Detector:
        """Load a checkpoint (``None``: the shipped default model in ``assets/``)."""
        if path is None:
            path = DEFAULT_CHECKPOINT
            if not path.exists():
                raise CheckpointError(
                    f"The shipped model {str(path)!r} is missing; reinstall SSD Explorer or "
                    "train one (README: 'How the default model was trained').")
        ckpt = load_checkpoint(path, map_location="cpu")
        return cls(ckpt.model, ckpt.class_names, ckpt.config.input_size, device, str(path))

    @torch.no_grad()
    def raw(self, image) -> RawOutput:
        """Any ``load_image`` source -> :class:`RawOutput` (network run once, results on CPU)."""
        img = load_image(image)
        X = image_to_tensor(img, self.input_size).unsqueeze(0).to(self.device)
        return raw_output(*self.model(X), img.size)

    def filter(self, raw: RawOutput, conf_threshold: float = 0.5, nms_threshold: float = 0.5,
               per_class: bool = False, classes=None, apply_nms: bool = True) -> Detections:
        """Thresholds and NMS over a cached :class:`RawOutput` -> :class:`Detections`.

        Like the book's ``multibox_detection``: each anchor predicts its most likely object class;
        anchors scoring below ``conf_threshold`` are dropped, then greedy NMS (class-agnostic or
        ``per_class``) keeps the best of overlapping boxes. ``classes``: class ids to keep (None:
        all), applied after NMS so hiding a class never changes the other classes' boxes.
        """
        if not 0 <= conf_threshold <= 1 or not 0 <= nms_threshold <= 1:
            raise ValueError("conf_threshold and nms_threshold must lie in [0, 1], got "
                             f"{conf_threshold} and {nms_threshold}.")
        conf, cls = raw.probs[:, 1:].max(dim=1)
        idx = torch.nonzero(conf >= conf_threshold).flatten()
        boxes, scores, labels = raw.boxes[idx], conf[idx], cls[idx]
        if apply_nms and len(idx):
            keep = nms(boxes, scores, nms_threshold, groups=labels if per_class else None)
        else:
            keep = torch.argsort(scores, descending=True, stable=True)
        idx, boxes, scores, labels = idx[keep], boxes[keep], scores[keep], labels[keep]
        if classes is not None:
            wanted = torch.isin(labels, torch.as_tensor(list(classes), dtype=labels.dtype))
            idx, boxes, scores, labels = idx[wanted], boxes[wanted], scores[wanted], labels[wanted]
        w, h = raw.image_size
        scale = torch.tensor([w, h, w, h], dtype=boxes.dtype)
        pixels = (boxes * scale).clamp(min=0)
        pixels = torch.minimum(pixels, scale)
        return Detections(pixels, scores, labels, idx, self.class_names, tuple(raw.image_size))

    def predict(self, image, conf_threshold: float = 0.5, nms_threshold: float = 0.5,
                per_class: bool = False) -> Detections:
        """Any ``load_image`` source -> :class:`Detections` (boxes in the image's own pixels)."""
        return self.filter(self.raw(image), conf_threshold, nms_threshold, per_class)

    def anchor_info(self, index: int) -> dict:
        """Which scale, feature-map cell and anchor shape an anchor index belongs to."""
        return locate_anchor(self.model.layout(input_size=self.input_size), index)
