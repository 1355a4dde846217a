"""Prediction: non-maximum suppression and the book's ``multibox_detection``.

NMS here gives exactly the book's greedy result (boxes visited by descending score, ties in
``torch.argsort(descending=True, stable=True)`` order; a kept box removes every later box with
IoU > threshold) but is batched over images and works on chunks of boxes instead of one box at
a time: the top ``chunk`` undecided boxes are resolved exactly among themselves (a fixed-point
iteration on their suppression matrix), then the kept ones remove what they overlap from the
rest in one vectorized step.
"""

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
from .resources import shipped_checkpoint

# Boxes resolved together. Smaller chunks shrink the rest sooner; measured on 5444 TinySSD
# boxes: 128 is fastest for one image (5.5 ms vs 7.5 ms at 64), 64 for a batch of 8 (27 ms vs
# 30 ms at 128).
_CHUNK_ONE, _CHUNK_BATCH = 128, 64


def _compact(mask, sentinel):
    """Positions of True in ``mask (B, N)``, ascending, padded with ``sentinel`` -> ``(B, K)``."""
    batch, n = mask.shape
    width = int(mask.sum(dim=1).max()) if n else 0
    rank = mask.cumsum(dim=1) - 1
    out = torch.full((batch, width + 1), sentinel, dtype=torch.long, device=mask.device)
    # Unselected positions all land in the extra last column, which is dropped.
    slot = torch.where(mask, rank, torch.full_like(rank, width))
    out.scatter_(1, slot, torch.arange(n, device=mask.device).expand(batch, n))
    return out[:, :width]


def _resolve_chunk(suppress):
    """Exact greedy NMS inside a chunk: ``suppress (B, C, C)`` bool, ``[b, j, i]`` True when
    box j (earlier) would remove box i (later), ``valid`` folded in -> kept ``(B, C)`` bool.

    ``keep[i] = not any(keep[j] and suppress[j, i])`` has a unique solution (induction over i);
    iterating it from all-True reaches that solution after at most C steps (usually a few).
    """
    # A batched matrix-vector product counts the kept suppressors of each box (exact: small
    # integers in float) and is much faster than a boolean any() over dim 1.
    weights = suppress.to(torch.float32)
    keep = torch.ones(suppress.shape[:2], dtype=torch.bool, device=suppress.device)
    while True:
        new = torch.bmm(keep[:, None, :].to(torch.float32), weights)[:, 0] == 0
        if torch.equal(new, keep):
            return keep
        keep = new


def _pair_iou(first, second):
    """``[b, j, i]``: IoU of box j of ``first`` with box i of ``second`` (planes ``(5, B, K)``:
    x1, y1, x2, y2, area), NaN for 0/0."""
    ax1, ay1, ax2, ay2, area_a = (v[..., :, None] for v in first)
    bx1, by1, bx2, by2, area_b = (v[..., None, :] for v in second)
    # The book's box_iou operations in its order (same bits), on coordinate planes: three
    # pair-sized planes in all, reused, so that they stay in the cache.
    w = torch.minimum(ax2, bx2)
    spare = torch.maximum(ax1, bx1)
    w.sub_(spare).clamp_(min=0)
    h = torch.minimum(ay2, by2)
    h.sub_(torch.maximum(ay1, by1, out=spare)).clamp_(min=0)
    inter = w.mul_(h)
    union = torch.add(area_a, area_b, out=h).sub_(inter)
    return inter.div_(union)


def _suppression(first, g1, second, g2, iou_threshold):
    """``[b, j, i]``: box j of ``first`` would remove box i of ``second`` (same group only)."""
    s = _pair_iou(first, second) > iou_threshold
    if g1 is not None:
        s &= g1[:, :, None] == g2[:, None, :]
    return s


class _Candidates:
    """Boxes in visiting order as coordinate planes, with slot n an empty box at the origin: its
    IoU with any box is 0, or 0/0 = NaN with another empty box, and ``iou > threshold`` is False
    for both, so gathered padding positions never suppress and are never suppressed (no masks
    in the pair computations). An IoU whose union is 0 is 0 (no suppression) everywhere in
    ssd_core; NaN > threshold gives the same answer."""

    def __init__(self, boxes, groups):
        batch = boxes.shape[0]
        x1, y1, x2, y2 = torch.cat((boxes, boxes.new_zeros(batch, 1, 4)), dim=1).unbind(-1)
        self.planes = torch.stack((x1, y1, x2, y2, (x2 - x1) * (y2 - y1)))  # (5, B, N+1)
        self.groups = None
        if groups is not None:
            self.groups = torch.cat((groups, groups.new_full((batch, 1), -1)), dim=1)

    def gather(self, idx):
        """Planes (5, B, K) and groups (B, K) or None of the slots ``idx (B, K)``."""
        p = self.planes.gather(2, idx[None].expand(5, -1, -1))
        return p, None if self.groups is None else self.groups.gather(1, idx)


def _removed_by_kept(cand, ci, k, ri, n, iou_threshold):
    """Which rest boxes (slots ``ri``) a chunk's kept boxes (``k`` over chunk slots ``ci``)
    remove -> (B, R) bool."""
    size = ci.shape[1]
    kept_local = _compact(k, size)  # chunk slots that were kept, padded with `size`
    # Pad with a copy of the image's first kept box (a duplicate changes no "any"); an image
    # without one has an empty chunk and so no rest either.
    kept_local = torch.where(kept_local < size, kept_local, kept_local[:, :1])
    ki = torch.cat((ci, ci.new_full((ci.shape[0], 1), n)), dim=1).gather(1, kept_local)
    kp, kg = cand.gather(ki)
    rp, rg = cand.gather(ri)
    if kg is None:
        # max over the kept boxes, then one comparison: NaN (0/0) only arises for an empty
        # rest box, which no box can suppress, and NaN > threshold is False.
        return _pair_iou(kp, rp).amax(dim=1) > iou_threshold
    return _suppression(kp, kg, rp, rg, iou_threshold).any(dim=1)


def _nms_sorted(boxes, valid, iou_threshold, groups=None, chunk=None):
    """Greedy NMS on boxes already in visiting order.

    ``boxes (B, N, 4)``, ``valid (B, N)`` bool (False = not a candidate), optional ``groups
    (B, N)`` long (boxes of different groups never suppress each other) -> kept ``(B, N)`` bool.
    Chunks of ``chunk`` candidates are resolved exactly among themselves, then their kept boxes
    remove what they overlap among the rest.
    """
    batch, n = valid.shape
    if chunk is None:
        chunk = _CHUNK_ONE if batch <= 2 else _CHUNK_BATCH
    cand = _Candidates(boxes, groups)
    alive = torch.cat((valid, valid.new_zeros(batch, 1)), dim=1)
    keep = torch.zeros_like(alive)
    rows = torch.arange(batch, device=boxes.device)[:, None]
    upper = torch.ones((chunk, chunk), dtype=torch.bool, device=boxes.device).triu(1)
    while bool(alive[:, :n].any()):
        live = alive[:, :n]
        ci = _compact(live & (live.cumsum(dim=1) <= chunk), n)  # (B, C) this chunk's slots
        cp, cg = cand.gather(ci)
        size = ci.shape[1]
        k = _resolve_chunk(_suppression(cp, cg, cp, cg, iou_threshold)
                           & upper[:size, :size]) & (ci < n)
        keep[rows, ci] = k
        alive[rows, ci] = False
        keep[:, n] = False
        rest = alive[:, :n]
        if not bool(rest.any()):
            break
        ri = _compact(rest, n)
        alive[rows, ri] = alive[rows, ri] & ~_removed_by_kept(cand, ci, k, ri, n, iou_threshold)
        alive[:, n] = False
    return keep[:, :n]


def _descending_order(values):
    """``torch.argsort(values, dim=-1, descending=True, stable=True)`` for float32 ``values``
    without NaN, ~1.4x faster: one unstable sort of unique int64 keys (the float's order-
    preserving bits, then the reversed position, so equal values keep position order)."""
    if values.dtype != torch.float32 or values.shape[-1] >= 2**31:
        return torch.argsort(values, dim=-1, descending=True, stable=True)
    bits = (values + 0.0).view(torch.int32)  # + 0.0: -0.0 becomes +0.0 (they compare equal)
    bits = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits).to(torch.int64)
    position = torch.arange(values.shape[-1], device=values.device)
    return ((bits << 32) | ((2**32 - 1) - position)).sort(dim=-1, descending=True).indices


def _check_boxes_scores(boxes, scores):
    if not torch.is_tensor(boxes) or boxes.dim() != 2 or boxes.shape[-1] != 4:
        shape = tuple(boxes.shape) if torch.is_tensor(boxes) else type(boxes).__name__
        raise ValueError(f"nms: boxes must have shape (K, 4) corner boxes, got {shape}")
    if not torch.is_tensor(scores) or scores.shape != boxes.shape[:1]:
        shape = tuple(scores.shape) if torch.is_tensor(scores) else type(scores).__name__
        raise ValueError(
            f"nms: scores must have shape (K,) = ({boxes.shape[0]},) to match boxes, got {shape}"
        )


def nms(boxes, scores, iou_threshold, groups=None):
    """Book greedy NMS: ``boxes (K, 4)``, ``scores (K,)`` -> kept indices ``(k,)`` long,
    highest score first (ties: lower index first). ``groups (K,)``: boxes of different groups
    (e.g. classes) never suppress each other, i.e. NMS within each group."""
    _check_boxes_scores(boxes, scores)
    if groups is not None and (not torch.is_tensor(groups) or groups.shape != scores.shape):
        raise ValueError(f"nms: groups must be a tensor of shape (K,) = ({boxes.shape[0]},)")
    order = _descending_order(scores)
    valid = torch.ones((1, boxes.shape[0]), dtype=torch.bool, device=boxes.device)
    grouped = None if groups is None else groups[order][None].long()
    keep = _nms_sorted(boxes[order][None], valid, iou_threshold, grouped)[0]
    return order[keep]


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

    order = _descending_order(conf)
    sorted_boxes = predicted.gather(1, order[..., None].expand(-1, -1, 4))
    groups = class_id.gather(1, order) if per_class else None
    if exact_order:
        valid = torch.ones((batch, n), dtype=torch.bool, device=device)
    else:
        valid = conf.gather(1, order) >= pos_threshold
    keep_sorted = _nms_sorted(sorted_boxes, valid, nms_threshold, groups)

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
        anchors, cls_preds, bbox_preds = self.model(X)
        probs = torch.softmax(cls_preds[0].float(), dim=-1)
        boxes = offset_inverse(anchors[0].float(), bbox_preds[0].float().reshape(-1, 4))
        return RawOutput(probs.cpu(), boxes.cpu(), img.size)

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
