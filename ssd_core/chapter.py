"""The chapter's code cells, run by ssd_core: one function per cell (``In [n]`` of the book) that
does the cell's computation with this package's names and returns the values the book prints.

Shapes come back as plain tuples of ints, so ``cell_predictor_shapes() ==
((2, 55, 20, 20), (2, 33, 10, 10))`` compares against the book's printed output directly.
The book's MXNet layers infer their input channels; the PyTorch names here take them first
(``cls_predictor(8, 5, 10)`` is the book's ``cls_predictor(5, 10)`` applied to 8 channels).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ssd_core.anchors import TINYSSD_RATIOS, TINYSSD_SIZES, anchors_per_pixel, feature_map_sizes
from ssd_core.config import TrainConfig
from ssd_core.data import SyntheticDetection
from ssd_core.detection import predict_batch
from ssd_core.engine import Trainer
from ssd_core.images import image_to_tensor
from ssd_core.losses import focal_loss, smooth_l1
from ssd_core.model import (
    TinySSD,
    base_net,
    cls_predictor,
    concat_preds,
    down_sample_blk,
    seeded,
)

# The book's printed outputs (ssd-chapter: Out[3], Out[5], Out[7], Out[8], In[13]).
BOOK_OUTPUTS = {
    "predictor_shapes": ((2, 55, 20, 20), (2, 33, 10, 10)),
    "concat_shape": (2, 25300),
    "down_sample_shape": (2, 10, 10, 10),
    "base_net_shape": (2, 64, 32, 32),
    "num_anchors": 5444,
    "tinyssd_shapes": {"anchors": (1, 5444, 4), "cls_preds": (32, 5444, 2),
                       "bbox_preds": (32, 21776)},
}
# The book's training print-out: the MXNet edition's line every 5 epochs, and the PyTorch
# edition's two closing lines.
BOOK_EPOCH_LINE = "epoch %2d, class err %.2e, bbox mae %.2e, time %.1f sec"
TORCH_METRICS_LINE = "class err {:.2e}, bbox mae {:.2e}"
TORCH_SPEED_LINE = "{:.1f} examples/sec on {}"
# A live run of In [18]: small enough to finish in seconds on two CPU cores.
TRAIN_DEMO = {"num_images": 8, "epochs": 5, "batch_size": 8, "print_every": 1}
PREDICT_THRESHOLD = 0.3  # In [21]: display(img, output, threshold=0.3)


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(n) for n in t.shape)


def _seed0(make):
    """A layer built with the weights of a generator seeded 0 (its own, not torch's global)."""
    return seeded(make, torch.Generator().manual_seed(0))


def forward(x: torch.Tensor, block: torch.nn.Module) -> torch.Tensor:
    """The book's helper (``block.initialize(); return block(x)``); PyTorch layers come
    initialized, and no gradients are needed to read a shape."""
    with torch.no_grad():
        return block(x)


def predictor_outputs() -> tuple[torch.Tensor, torch.Tensor]:
    """In [3]: ``Y1`` (2, 55, 20, 20) with 5 anchors and ``Y2`` (2, 33, 10, 10) with 3 anchors
    per pixel, both for 10 classes."""
    Y1 = forward(torch.zeros((2, 8, 20, 20)), _seed0(lambda: cls_predictor(8, 5, 10)))
    Y2 = forward(torch.zeros((2, 16, 10, 10)), _seed0(lambda: cls_predictor(16, 3, 10)))
    return Y1, Y2


def cell_predictor_shapes() -> tuple[tuple[int, ...], tuple[int, ...]]:
    """In [3] -> ``(Y1.shape, Y2.shape)``."""
    Y1, Y2 = predictor_outputs()
    return _shape(Y1), _shape(Y2)


def cell_concat_shape() -> tuple[int, ...]:
    """In [5]: ``concat_preds([Y1, Y2]).shape`` -> (2, 25300) = 2 x (20*20*55 + 10*10*33)."""
    return _shape(concat_preds(list(predictor_outputs())))


def cell_down_sample_shape() -> tuple[int, ...]:
    """In [7]: ``forward(zeros((2, 3, 20, 20)), down_sample_blk(3, 10)).shape``."""
    return _shape(forward(torch.zeros((2, 3, 20, 20)), _seed0(lambda: down_sample_blk(3, 10))))


def cell_base_net_shape() -> tuple[int, ...]:
    """In [8]: ``forward(zeros((2, 3, 256, 256)), base_net()).shape``."""
    return _shape(forward(torch.zeros((2, 3, 256, 256)), _seed0(base_net)))


def cell_sizes() -> dict:
    """In [11]: the five scales' sizes and ratios and ``num_anchors`` per pixel (4)."""
    return {"sizes": [list(s) for s in TINYSSD_SIZES], "ratios": [list(r) for r in TINYSSD_RATIOS],
            "num_anchors": anchors_per_pixel(TINYSSD_SIZES[0], TINYSSD_RATIOS[0])}


def anchor_count(input_size: int = 256, per_pixel: int = 4) -> tuple[int, str]:
    """The chapter's count of anchors -> (5444, "(32² + 16² + 8² + 4² + 1²) × 4 = 5444")."""
    sides = feature_map_sizes(input_size)
    total = sum(s * s for s in sides) * per_pixel
    terms = " + ".join(f"{s}²" for s in sides)
    return total, f"({terms}) × {per_pixel} = {total}"


def cell_tinyssd(batch_size: int = 32, input_size: int = 256, device="meta") -> dict:
    """In [13]: ``TinySSD(num_classes=1)`` on ``zeros((32, 3, 256, 256))`` -> the shapes of
    ``{"anchors", "cls_preds", "bbox_preds"}``.

    The default ``device="meta"`` runs the same forward code on shapes alone (no arithmetic),
    so the book's 32-image batch costs milliseconds; ``device="cpu"`` computes it for real.
    """
    net = _seed0(lambda: TinySSD(num_classes=1)).to(device).eval()
    X = torch.zeros((batch_size, 3, input_size, input_size), device=device)
    anchors, cls_preds, bbox_preds = forward(X, net)
    return {"anchors": _shape(anchors), "cls_preds": _shape(cls_preds),
            "bbox_preds": _shape(bbox_preds)}


# ---------------------------------------------------------------- In [18]: the training loop


def book_epoch_line(epoch: int, class_err: float, bbox_mae: float, seconds: float) -> str:
    """The MXNet edition's print: ``epoch  5, class err 2.91e-03, bbox mae 3.09e-03, time 11.6
    sec``."""
    return BOOK_EPOCH_LINE % (epoch, class_err, bbox_mae, seconds)


def torch_lines(class_err: float, bbox_mae: float, examples_per_sec: float, device) -> list[str]:
    """The PyTorch edition's closing print: ``class err 3.22e-03, bbox mae 3.16e-03`` and
    ``3353.7 examples/sec on cuda:0``."""
    return [TORCH_METRICS_LINE.format(class_err, bbox_mae),
            TORCH_SPEED_LINE.format(examples_per_sec, device)]


@dataclass
class TrainingPrintout:
    """What In [18] prints, from real epoch records: ``epoch_lines`` (every ``print_every``
    epochs, the MXNet edition), ``torch_lines`` (the PyTorch edition's two lines), the records
    themselves and ``source`` (what produced them, in words)."""

    epoch_lines: list[str]
    torch_lines: list[str]
    records: list[dict] = field(default_factory=list)
    source: str = ""


def printout(records: list[dict], print_every: int = 5, device="cpu",
             source: str = "") -> TrainingPrintout:
    """Epoch records (``class_error``, ``box_mae``, ``epoch``, ``epoch_time``, ``images``) ->
    the book's print-out. examples/sec = images trained / seconds spent in the epochs."""
    epochs = [r for r in records if r.get("kind", "epoch") == "epoch"]
    if not epochs:
        raise ValueError("no epoch records to print")
    lines = [book_epoch_line(r["epoch"], r["class_error"], r["box_mae"], r.get("epoch_time", 0))
             for r in epochs if r["epoch"] % print_every == 0 or r is epochs[-1]]
    seconds = sum(r.get("epoch_time", 0.0) for r in epochs)
    images = sum(r.get("images", 0) for r in epochs)
    speed = images / seconds if seconds > 0 else float(epochs[-1].get("images_per_s", 0.0))
    last = epochs[-1]
    return TrainingPrintout(lines, torch_lines(last["class_error"], last["box_mae"], speed, device),
                            epochs, source)


def cell_training(num_images: int = 8, epochs: int = 5, batch_size: int = 8, seed: int = 0,
                  print_every: int = 5, preset: str = "book") -> TrainingPrintout:
    """In [18] for real, on tiny data: the book's settings (SGD lr 0.2, weight decay 5e-4, L1,
    cross-entropy, mean) on ``num_images`` synthetic images of ``preset``, on the CPU."""
    data = SyntheticDetection(num_images, seed=seed, image_size=256, preset=preset)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed, device="cpu",
                         num_workers=0, log_every=10**6)
    trainer = Trainer(config, data)
    records = [r for r in trainer.fit() if r["kind"] == "epoch"]
    return printout(records, print_every, trainer.device,
                    f"a real run: {num_images} synthetic '{preset}' images, {epochs} epochs of "
                    f"batch {batch_size}, the book's settings, on {trainer.device}")


SPEED_RUN = {"num_images": 16, "batch_size": 8, "epochs": 2}  # measured_speed's defaults


def measured_speed(num_images: int = 16, batch_size: int = 8, epochs: int = 2) -> float:
    """examples/sec of In [18]'s loop (the book's settings, synthetic 'book' images, 256 px) on
    this machine now: the last of ``epochs`` short epochs (the first one warms up)."""
    last = cell_training(num_images, epochs, batch_size, print_every=1).records[-1]
    return last["images"] / last["epoch_time"] if last.get("epoch_time") else float(
        last.get("images_per_s", 0.0))


def shipped_printout(metrics: dict, device="cpu") -> TrainingPrintout:
    """The shipped checkpoint's saved epoch record (``Checkpoint.metrics``) as the book's
    print-out (one epoch line and the PyTorch lines)."""
    return printout([metrics], print_every=1, device=device,
                    source=f"the shipped model's saved record (epoch {metrics['epoch']} of "
                           f"{metrics['epochs']}, {metrics.get('images', 0)} images)")


# ---------------------------------------------------------------- In [19]-[21]: prediction


@torch.no_grad()
def cell_predict(model: TinySSD, image, input_size: int = 256,
                 threshold: float = PREDICT_THRESHOLD) -> dict:
    """In [19]-[21]: a PIL image resized to the input, ``predict(X)`` (the book's
    multibox_detection, rows with class -1 dropped) and the rows ``display`` draws
    (score >= threshold) -> {"output" (K, 6), "shown" (k, 6), "pixels" (k, 4) in the image's
    own pixels, "threshold"}. Rows are [class_id, score, x1, y1, x2, y2], normalized."""
    param = next(model.parameters())
    X = image_to_tensor(image.convert("RGB"), input_size)[None].to(param.device)
    out = predict_batch(model.eval(), X)[0].cpu()
    output = out[out[:, 0] != -1]
    shown = output[output[:, 1] >= threshold]
    w, h = image.size
    pixels = shown[:, 2:6] * torch.tensor([w, h, w, h], dtype=shown.dtype)
    return {"output": output, "shown": shown, "pixels": pixels, "threshold": threshold}


# ---------------------------------------------------------------- In [22]-[23]: the problems


def cell_smooth_l1(sigmas=(10, 1, 0.5)) -> tuple[torch.Tensor, dict]:
    """In [22]: x = arange(-2, 2, 0.1) and smooth_l1(x, sigma) per sigma -> (x, {label: y})."""
    x = torch.arange(-2, 2, 0.1)
    return x, {f"sigma={s:.1f}": smooth_l1(x, s) for s in sigmas}


def cell_focal(gammas=(0, 1, 5)) -> tuple[torch.Tensor, dict]:
    """In [23]: x = arange(0.01, 1, 0.01) and -(1-x)^gamma log x per gamma -> (x, {label: y})."""
    x = torch.arange(0.01, 1, 0.01)
    return x, {f"gamma={g:.1f}": focal_loss(x, g) for g in gammas}

