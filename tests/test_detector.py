"""Detector: any image in, boxes in the image's own pixels out; cached output re-filtered."""

import io

import pytest
import torch
from PIL import Image
from torch import nn

from ssd_core import TrainConfig, save_checkpoint
from ssd_core.anchors import TINYSSD_RATIOS, TINYSSD_SIZES, multibox_prior
from ssd_core.detection import Detector, multibox_detection
from ssd_core.errors import CheckpointError, InvalidImageError
from ssd_core.model import TinySSD


class FixedNet(nn.Module):
    """Stands in for TinySSD: fixed anchors, chosen class logits, zero box offsets."""

    def __init__(self, anchors, logits):
        super().__init__()
        self.anchors, self.logits = anchors, logits
        self.dummy = nn.Parameter(torch.zeros(1))
        self.calls = 0

    def forward(self, X):
        self.calls += 1
        n = self.anchors.shape[0]
        return (self.anchors[None], self.logits[None].expand(X.shape[0], -1, -1),
                torch.zeros(X.shape[0], n * 4))


def _fixed_detector():
    anchors = torch.tensor([[0.1, 0.2, 0.5, 0.6], [0.12, 0.22, 0.5, 0.6], [0.6, 0.1, 0.9, 0.4]])
    # Probabilities (background, cat, dog) per anchor, as logits.
    probs = torch.tensor([[0.1, 0.8, 0.1], [0.2, 0.7, 0.1], [0.3, 0.1, 0.6]])
    return Detector(FixedNet(anchors, probs.log()), ["cat", "dog"], input_size=64), anchors


def test_boxes_map_back_to_the_original_pixels_for_any_aspect():
    det, anchors = _fixed_detector()
    out = det.predict(Image.new("RGB", (400, 100)), conf_threshold=0.5, nms_threshold=0.5)
    # Anchor 1 overlaps anchor 0 (IoU > 0.5) and scores lower: suppressed.
    assert out.labels.tolist() == [0, 1]
    assert out.scores.tolist() == pytest.approx([0.8, 0.6])
    assert out.anchor_index.tolist() == [0, 2]
    scale = torch.tensor([400.0, 100.0, 400.0, 100.0])
    assert torch.allclose(out.boxes, anchors[[0, 2]] * scale)
    assert out.image_size == (400, 100)
    rec = out.to_records()[0]
    assert rec["class"] == "cat" and rec["box"] == [40.0, 20.0, 200.0, 60.0]


def test_thresholds_nms_off_per_class_and_class_filter():
    det, _ = _fixed_detector()
    raw = det.raw(Image.new("RGB", (64, 64)))
    assert len(det.filter(raw, conf_threshold=0.65)) == 1
    assert len(det.filter(raw, conf_threshold=0.5, apply_nms=False)) == 3
    only_dog = det.filter(raw, conf_threshold=0.5, classes=[1])
    assert only_dog.labels.tolist() == [1]
    with pytest.raises(ValueError, match="conf_threshold"):
        det.filter(raw, conf_threshold=1.5)


def test_refilter_equals_fresh_predict_and_runs_the_network_once():
    torch.manual_seed(0)
    net = TinySSD(3).eval()
    det = Detector(net, ["banana", "ring", "star"], input_size=128)
    calls = []
    net.register_forward_hook(lambda *a: calls.append(1))
    img = Image.effect_noise((300, 180), 60).convert("RGB")
    raw = det.raw(img)
    for i, (conf, nms_t, per_class) in enumerate([(0.3, 0.5, False), (0.2, 0.3, True),
                                                   (0.4, 0.7, False)]):
        cached = det.filter(raw, conf, nms_t, per_class)
        assert len(calls) == 1 + i  # filtering never runs the network; each predict does
        fresh = det.predict(img, conf, nms_t, per_class)
        for a, b in [(cached.boxes, fresh.boxes), (cached.scores, fresh.scores),
                     (cached.labels, fresh.labels), (cached.anchor_index, fresh.anchor_index)]:
            assert torch.equal(a, b)


def test_filter_agrees_with_the_books_multibox_detection():
    torch.manual_seed(1)
    net = TinySSD(2).eval()
    det = Detector(net, ["a", "b"], input_size=64)
    img = Image.effect_noise((64, 64), 90).convert("RGB")
    raw = det.raw(img)
    conf = 0.34
    mine = det.filter(raw, conf_threshold=conf, nms_threshold=0.5)
    from ssd_core.images import image_to_tensor

    with torch.no_grad():
        anc, cls_preds, bbox_preds = net(image_to_tensor(img, 64)[None])
    rows = multibox_detection(torch.softmax(cls_preds, 2).permute(0, 2, 1), bbox_preds, anc,
                              nms_threshold=0.5, pos_threshold=conf)[0]
    book = rows[rows[:, 0] >= 0]
    assert len(mine) == len(book) > 0
    assert torch.equal(mine.labels, book[:, 0].long())
    assert torch.allclose(mine.scores, book[:, 1])
    assert torch.allclose(mine.boxes, (book[:, 2:] * 64).clamp(0, 64), atol=1e-4)


def test_anchor_info_follows_multibox_prior_order():
    det = Detector(TinySSD(1), ["x"], input_size=256)
    fmap = torch.zeros(1, 1, 32, 32)
    anchors = multibox_prior(fmap, TINYSSD_SIZES[0], TINYSSD_RATIOS[0])[0]
    i = (5 * 32 + 7) * 4 + 2  # row 5, col 7, third shape (size 0.2, ratio 2)
    info = det.anchor_info(i)
    assert info == {"scale": 0, "feature_map": 32, "row": 5, "col": 7, "shape": 2,
                    "size": 0.2, "ratio": 2}
    cx, cy = (anchors[i, 0] + anchors[i, 2]) / 2, (anchors[i, 1] + anchors[i, 3]) / 2
    assert (cx.item(), cy.item()) == pytest.approx(((7 + 0.5) / 32, (5 + 0.5) / 32))
    assert det.anchor_info(5443)["scale"] == 4
    with pytest.raises(IndexError):
        det.anchor_info(5444)


def test_from_checkpoint_round_trip_and_errors(tmp_path):
    net = TinySSD(2)
    config = TrainConfig(input_size=128, num_classes=2, class_names=["a", "b"])
    path = tmp_path / "model.pt"
    save_checkpoint(path, net, config, ["a", "b"], {"val_ap50": 0.5})
    det = Detector.from_checkpoint(path)
    assert det.class_names == ["a", "b"] and det.input_size == 128
    buf = io.BytesIO()
    Image.new("RGB", (50, 70), "white").save(buf, "PNG")
    out = det.predict(buf.getvalue(), conf_threshold=0.0)
    assert out.image_size == (50, 70)
    assert (out.boxes[:, 2] <= 50).all() and (out.boxes[:, 3] <= 70).all()
    with pytest.raises(CheckpointError):
        Detector.from_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(InvalidImageError):
        det.predict(b"not an image")


def test_the_shipped_model_detects_held_out_synthetic_objects():
    """Detector.from_checkpoint() is the shipped model; on held-out images (a seed never used
    in training) it keeps its promise. The README's table is on 300 images; 60 keep this fast."""
    from ssd_core.data import SyntheticDetection
    from ssd_core.evaluate import evaluate_detections

    det = Detector.from_checkpoint()
    assert det.class_names == ["banana", "ring", "star"] and det.input_size == 256
    assert det.model.sizes[0] == [0.1, 0.17]  # small anchors for the 10%-of-the-side objects
    data = SyntheticDetection(60, seed=424242)
    dets, gts = [], []
    for i in range(len(data)):
        image, boxes, labels = data.sample(i)
        d = det.predict(image, conf_threshold=0.009, nms_threshold=0.5)
        dets.append((d.boxes, d.scores, d.labels))
        gts.append((boxes, labels))
    result = evaluate_detections(dets, gts, 3, det.class_names)
    assert result.ap50 >= 0.90 and result.map >= 0.55, (result.ap50, result.map)
    # anchor_info follows the model's own anchors, not the book's defaults
    info = det.anchor_info(2)
    assert info["scale"] == 0 and (info["size"], info["ratio"]) == (0.1, 2)
