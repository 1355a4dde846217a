"""The book's PyTorch-edition SSD training loop (Dive into Deep Learning, "Single Shot Multibox
Detection"), written as the book writes it: its ``multibox_prior`` recomputed on every forward,
its ``TinySSD`` (``setattr`` blocks, NCHW), ``calc_loss`` (cross-entropy + masked L1, per-image
means), SGD lr 0.2 wd 5e-4, and ``cls_eval`` / ``bbox_eval`` turned into Python floats after
every step (two host syncs). Target assignment is ``ssd_core.book.book_multibox_target``.

The baseline of ``bench/bench_train.py``. One deviation, invisible in the timing: the book feeds
``labels`` of a fixed object count; padding rows (class -1) are treated as objects here exactly
as the book's ``multibox_target`` would treat them.
"""

import torch
from torch import nn

from ssd_core.book import book_multibox_target

BOOK_SIZES = [[0.2, 0.272], [0.37, 0.447], [0.54, 0.619], [0.71, 0.79], [0.88, 0.961]]
BOOK_RATIOS = [[1, 2, 0.5]] * 5


def book_multibox_prior(data, sizes, ratios):
    """Anchors ``(1, h*w*(n+m-1), 4)`` centred on every pixel of ``data (B, C, h, w)``."""
    in_height, in_width = data.shape[-2:]
    device, num_sizes, num_ratios = data.device, len(sizes), len(ratios)
    boxes_per_pixel = num_sizes + num_ratios - 1
    size_tensor = torch.tensor(sizes, device=device)
    ratio_tensor = torch.tensor(ratios, device=device)
    offset_h, offset_w = 0.5, 0.5
    steps_h = 1.0 / in_height
    steps_w = 1.0 / in_width
    center_h = (torch.arange(in_height, device=device) + offset_h) * steps_h
    center_w = (torch.arange(in_width, device=device) + offset_w) * steps_w
    shift_y, shift_x = torch.meshgrid(center_h, center_w, indexing="ij")
    shift_y, shift_x = shift_y.reshape(-1), shift_x.reshape(-1)
    w = torch.cat((size_tensor * torch.sqrt(ratio_tensor[0]),
                   sizes[0] * torch.sqrt(ratio_tensor[1:]))) * in_height / in_width
    h = torch.cat((size_tensor / torch.sqrt(ratio_tensor[0]),
                   sizes[0] / torch.sqrt(ratio_tensor[1:])))
    anchor_manipulations = torch.stack((-w, -h, w, h)).T.repeat(in_height * in_width, 1) / 2
    out_grid = torch.stack([shift_x, shift_y, shift_x, shift_y],
                           dim=1).repeat_interleave(boxes_per_pixel, dim=0)
    output = out_grid + anchor_manipulations
    return output.unsqueeze(0)


def book_cls_predictor(num_inputs, num_anchors, num_classes):
    return nn.Conv2d(num_inputs, num_anchors * (num_classes + 1), kernel_size=3, padding=1)


def book_bbox_predictor(num_inputs, num_anchors):
    return nn.Conv2d(num_inputs, num_anchors * 4, kernel_size=3, padding=1)


def book_flatten_pred(pred):
    return torch.flatten(pred.permute(0, 2, 3, 1), start_dim=1)


def book_concat_preds(preds):
    return torch.cat([book_flatten_pred(p) for p in preds], dim=1)


def book_down_sample_blk(in_channels, out_channels):
    blk = []
    for _ in range(2):
        blk.append(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1))
        blk.append(nn.BatchNorm2d(out_channels))
        blk.append(nn.ReLU())
        in_channels = out_channels
    blk.append(nn.MaxPool2d(2))
    return nn.Sequential(*blk)


def book_base_net():
    blk = []
    num_filters = [3, 16, 32, 64]
    for i in range(len(num_filters) - 1):
        blk.append(book_down_sample_blk(num_filters[i], num_filters[i + 1]))
    return nn.Sequential(*blk)


def book_get_blk(i):
    if i == 0:
        blk = book_base_net()
    elif i == 1:
        blk = book_down_sample_blk(64, 128)
    elif i == 4:
        blk = nn.AdaptiveMaxPool2d((1, 1))
    else:
        blk = book_down_sample_blk(128, 128)
    return blk


def book_blk_forward(X, blk, size, ratio, cls_predictor, bbox_predictor):
    Y = blk(X)
    anchors = book_multibox_prior(Y, sizes=size, ratios=ratio)
    cls_preds = cls_predictor(Y)
    bbox_preds = bbox_predictor(Y)
    return (Y, anchors, cls_preds, bbox_preds)


class BookTinySSD(nn.Module):
    def __init__(self, num_classes, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        idx_to_in_channels = [64, 128, 128, 128, 128]
        num_anchors = len(BOOK_SIZES[0]) + len(BOOK_RATIOS[0]) - 1
        for i in range(5):
            # Equivalent to the assignment statement `self.blk_i = get_blk(i)`
            setattr(self, f"blk_{i}", book_get_blk(i))
            setattr(self, f"cls_{i}", book_cls_predictor(idx_to_in_channels[i], num_anchors,
                                                         num_classes))
            setattr(self, f"bbox_{i}", book_bbox_predictor(idx_to_in_channels[i], num_anchors))

    def forward(self, X):
        anchors, cls_preds, bbox_preds = [None] * 5, [None] * 5, [None] * 5
        for i in range(5):
            X, anchors[i], cls_preds[i], bbox_preds[i] = book_blk_forward(
                X, getattr(self, f"blk_{i}"), BOOK_SIZES[i], BOOK_RATIOS[i],
                getattr(self, f"cls_{i}"), getattr(self, f"bbox_{i}"))
        anchors = torch.cat(anchors, dim=1)
        cls_preds = book_concat_preds(cls_preds)
        cls_preds = cls_preds.reshape(cls_preds.shape[0], -1, self.num_classes + 1)
        bbox_preds = book_concat_preds(bbox_preds)
        return anchors, cls_preds, bbox_preds


cls_loss = nn.CrossEntropyLoss(reduction="none")
bbox_loss = nn.L1Loss(reduction="none")


def book_calc_loss(cls_preds, cls_labels, bbox_preds, bbox_labels, bbox_masks):
    batch_size, num_classes = cls_preds.shape[0], cls_preds.shape[2]
    cls = cls_loss(cls_preds.reshape(-1, num_classes),
                   cls_labels.reshape(-1)).reshape(batch_size, -1).mean(dim=1)
    bbox = bbox_loss(bbox_preds * bbox_masks, bbox_labels * bbox_masks).mean(dim=1)
    return cls + bbox


def book_cls_eval(cls_preds, cls_labels):
    # Because the class prediction results are on the final dimension, `argmax` needs to
    # specify this dimension
    return float((cls_preds.argmax(dim=-1).type(cls_labels.dtype) == cls_labels).sum())


def book_bbox_eval(bbox_preds, bbox_labels, bbox_masks):
    return float((torch.abs((bbox_labels - bbox_preds) * bbox_masks)).sum())


def book_trainer(net):
    return torch.optim.SGD(net.parameters(), lr=0.2, weight_decay=5e-4)


def book_train_step(net, trainer, features, target, device, metric=None, timer=None):
    """One iteration of the book's inner loop; ``metric`` (a list of 4 floats) accumulates
    the book's Accumulator. ``timer(name)`` (optional) is called after each phase, for the
    bench's profile: "data", "forward", "target", "loss", "backward", "optimizer", "metrics"."""
    tick = timer or (lambda name: None)
    trainer.zero_grad()
    X, Y = features.to(device), target.to(device)
    tick("data")
    # Generate multiscale anchor boxes and predict their classes and offsets
    anchors, cls_preds, bbox_preds = net(X)
    tick("forward")
    # Label the classes and offsets of these anchor boxes
    bbox_labels, bbox_masks, cls_labels = book_multibox_target(anchors, Y)
    tick("target")
    # Calculate the loss function using the predicted and labeled values of the classes and
    # offsets
    l = book_calc_loss(cls_preds, cls_labels, bbox_preds, bbox_labels, bbox_masks)  # noqa: E741
    tick("loss")
    l.mean().backward()
    tick("backward")
    trainer.step()
    tick("optimizer")
    values = (book_cls_eval(cls_preds, cls_labels), cls_labels.numel(),
              book_bbox_eval(bbox_preds, bbox_labels, bbox_masks), bbox_labels.numel())
    if metric is not None:
        for i, v in enumerate(values):
            metric[i] += v
    tick("metrics")
    return values


__all__ = ["BookTinySSD", "book_multibox_prior", "book_calc_loss", "book_cls_eval",
           "book_bbox_eval", "book_trainer", "book_train_step"]
