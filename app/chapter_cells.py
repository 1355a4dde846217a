"""The chapter's code cells as the Chapter page shows them: the book's PyTorch-flavoured code
with ssd_core's names, and which page explores each cell (paths as in ``pages.PAGES``).

Data only; ``views/chapter.py`` runs each cell through ``ssd_core.chapter`` and prints its output.
"""

from __future__ import annotations

from typing import NamedTuple

ANCHORS, LABELING, LOSSES = "views/anchors.py", "views/labeling.py", "views/losses.py"
MODEL, TRAINING, DETECTION = "views/model.py", "views/training.py", "views/detection.py"
EVALUATION, EXPERIMENTS = "views/evaluation.py", "views/experiments.py"


class Cell(NamedTuple):
    """``In [number]``: a heading, the code, the output key ``views/chapter.py`` fills in (None:
    the book prints nothing), and ``links``: (page path, what it shows there)."""

    number: str
    title: str
    code: str
    output: str | None
    links: tuple


CELLS = [
    Cell("1", "Category prediction layer", """\
import torch
from torch import nn
from ssd_core.model import cls_predictor  # as below

def cls_predictor(num_inputs, num_anchors, num_classes):
    return nn.Conv2d(num_inputs, num_anchors * (num_classes + 1),
                     kernel_size=3, padding=1)""", None,
         ((MODEL, "the class head of every block and its parameters"),)),
    Cell("2", "Bounding box prediction layer", """\
from ssd_core.model import bbox_predictor  # as below

def bbox_predictor(num_inputs, num_anchors):
    return nn.Conv2d(num_inputs, num_anchors * 4, kernel_size=3, padding=1)""", None,
         ((MODEL, "the offset head of every block"),)),
    Cell("3", "Predictions at two scales", """\
from ssd_core.chapter import forward  # block(x) without gradients

def forward(x, block):
    return block(x)

Y1 = forward(torch.zeros((2, 8, 20, 20)), cls_predictor(8, 5, 10))
Y2 = forward(torch.zeros((2, 16, 10, 10)), cls_predictor(16, 3, 10))
Y1.shape, Y2.shape""", "predictor_shapes",
         ((ANCHORS, "anchors per cell: a = len(sizes) + len(ratios) - 1"),)),
    Cell("4", "Concatenating predictions for multiple scales", """\
from ssd_core.model import flatten_pred, concat_preds  # as below

def flatten_pred(pred):
    return torch.flatten(pred.permute(0, 2, 3, 1), start_dim=1)

def concat_preds(preds):
    return torch.cat([flatten_pred(p) for p in preds], dim=1)""", None,
         ((MODEL, "the five blocks whose predictions are concatenated"),)),
    Cell("5", "Concatenated shape", "concat_preds([Y1, Y2]).shape", "concat_shape",
         ((MODEL, "anchors per block: h × w × a"),)),
    Cell("6", "Height and width downsample block", """\
from ssd_core.model import down_sample_blk  # as below

def down_sample_blk(in_channels, out_channels):
    blk = []
    for _ in range(2):
        blk.append(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1))
        blk.append(nn.BatchNorm2d(out_channels))
        blk.append(nn.ReLU())
        in_channels = out_channels
    blk.append(nn.MaxPool2d(2))
    return nn.Sequential(*blk)""", None,
         ((MODEL, "receptive fields: 1×2 + (3-1) + (3-1) = 6 per block, click a cell"),)),
    Cell("7", "A downsample block halves height and width",
         "forward(torch.zeros((2, 3, 20, 20)), down_sample_blk(3, 10)).shape",
         "down_sample_shape", ((MODEL, "each block's output shape and stride"),)),
    Cell("8", "Base network block", """\
from ssd_core.model import base_net  # as below

def base_net():
    blk = []
    num_filters = [3, 16, 32, 64]
    for i in range(len(num_filters) - 1):
        blk.append(down_sample_blk(num_filters[i], num_filters[i + 1]))
    return nn.Sequential(*blk)

forward(torch.zeros((2, 3, 256, 256)), base_net()).shape""", "base_net_shape",
         ((MODEL, "the base net's 32×32 map and its activations"),)),
    Cell("9", "The five modules", """\
from ssd_core.model import get_blk  # as below (channels configurable)

def get_blk(i):
    if i == 0:
        blk = base_net()
    elif i == 1:
        blk = down_sample_blk(64, 128)
    elif i == 4:
        blk = nn.AdaptiveMaxPool2d((1, 1))
    else:
        blk = down_sample_blk(128, 128)
    return blk""", None, ((MODEL, "the TinySSD diagram"),)),
    Cell("10", "Forward computation of one module", """\
from ssd_core.model import blk_forward  # as below
from ssd_core.anchors import multibox_prior

def blk_forward(X, blk, size, ratio, cls_predictor, bbox_predictor):
    Y = blk(X)
    anchors = multibox_prior(Y, sizes=size, ratios=ratio)
    cls_preds = cls_predictor(Y)
    bbox_preds = bbox_predictor(Y)
    return (Y, anchors, cls_preds, bbox_preds)""", None,
         ((ANCHORS, "multibox_prior's anchors at each scale"),)),
    Cell("11", "Anchor sizes and ratios", """\
from ssd_core.anchors import TINYSSD_SIZES as sizes, TINYSSD_RATIOS as ratios

sizes = [[0.2, 0.272], [0.37, 0.447], [0.54, 0.619], [0.71, 0.79],
         [0.88, 0.961]]
ratios = [[1, 2, 0.5]] * 5
num_anchors = len(sizes[0]) + len(ratios[0]) - 1
num_anchors""", "sizes",
         ((ANCHORS, "edit the sizes and ratios per scale"),
          (LABELING, "which anchors these sizes make positive for real objects"))),
    Cell("12", "The complete model", """\
from ssd_core.model import TinySSD  # blocks in nn.ModuleLists instead of setattr

class TinySSD(nn.Module):
    def __init__(self, num_classes, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        idx_to_in_channels = [64, 128, 128, 128, 128]
        for i in range(5):
            setattr(self, f'blk_{i}', get_blk(i))
            setattr(self, f'cls_{i}', cls_predictor(idx_to_in_channels[i],
                                                    num_anchors, num_classes))
            setattr(self, f'bbox_{i}', bbox_predictor(idx_to_in_channels[i],
                                                      num_anchors))

    def forward(self, X):
        anchors, cls_preds, bbox_preds = [None] * 5, [None] * 5, [None] * 5
        for i in range(5):
            X, anchors[i], cls_preds[i], bbox_preds[i] = blk_forward(
                X, getattr(self, f'blk_{i}'), sizes[i], ratios[i],
                getattr(self, f'cls_{i}'), getattr(self, f'bbox_{i}'))
        anchors = torch.cat(anchors, dim=1)
        cls_preds = concat_preds(cls_preds)
        cls_preds = cls_preds.reshape(cls_preds.shape[0], -1, self.num_classes + 1)
        bbox_preds = concat_preds(bbox_preds)
        return anchors, cls_preds, bbox_preds""", None,
         ((MODEL, "blocks, shapes, parameters, receptive fields"),)),
    Cell("13", "Output shapes of TinySSD", """\
net = TinySSD(num_classes=1)
X = torch.zeros((32, 3, 256, 256))
anchors, cls_preds, bbox_preds = net(X)
print('output anchors:', anchors.shape)
print('output class preds:', cls_preds.shape)
print('output bbox preds:', bbox_preds.shape)""", "tinyssd",
         ((ANCHORS, "the anchors scale by scale (scale \"all\": the 5444 at once)"),
          (MODEL, "the count at other input sizes"))),
    Cell("14", "Data reading", """\
from ssd_core.data import SyntheticDetection, detection_collate

# The book reads the Pikachu set; here: synthetic images, one banana each ('book' preset).
batch_size = 32
train_data = SyntheticDetection(512, seed=0, image_size=256, preset='book')
train_iter = torch.utils.data.DataLoader(train_data, batch_size, shuffle=True,
                                         collate_fn=detection_collate)""", None,
         ((TRAINING, "the data sources and presets"),
          (LABELING, "one image's ground truth and its positive anchors"))),
    Cell("15", "Initialization and the optimizer", """\
device, net = torch.device('cpu'), TinySSD(num_classes=1)
trainer = torch.optim.SGD(net.parameters(), lr=0.2, weight_decay=5e-4)""", None,
         ((TRAINING, "optimizer, learning rate, schedule"),)),
    Cell("16", "Loss function", """\
from ssd_core.losses import ssd_loss  # L1 + cross-entropy, 'mean' as below

cls_loss = nn.CrossEntropyLoss(reduction='none')
bbox_loss = nn.L1Loss(reduction='none')

def calc_loss(cls_preds, cls_labels, bbox_preds, bbox_labels, bbox_masks):
    batch_size, num_classes = cls_preds.shape[0], cls_preds.shape[2]
    cls = cls_loss(cls_preds.reshape(-1, num_classes),
                   cls_labels.reshape(-1)).reshape(batch_size, -1).mean(dim=1)
    bbox = bbox_loss(bbox_preds * bbox_masks,
                     bbox_labels * bbox_masks).mean(dim=1)
    return cls + bbox""", None,
         ((LOSSES, "L1 vs smooth-L1, cross-entropy vs focal"),
          (TRAINING, "the loss switches of a run"))),
    Cell("17", "Evaluation functions", """\
from ssd_core.losses import cls_eval, bbox_eval  # as below

def cls_eval(cls_preds, cls_labels):
    return float((cls_preds.argmax(dim=-1).type(cls_labels.dtype) == cls_labels).sum())

def bbox_eval(bbox_preds, bbox_labels, bbox_masks):
    return float((torch.abs((bbox_labels - bbox_preds) * bbox_masks)).sum())""", None,
         ((TRAINING, "class error and bbox MAE curves of a run"),)),
    Cell("18", "Training", """\
from ssd_core.matching import multibox_target
from ssd_core.engine import Trainer  # this loop, batched, with validation and checkpoints

for epoch in range(num_epochs):
    acc, mae, n_cls, n_box, start = 0, 0, 0, 0, time.time()
    net.train()
    for X, Y in train_iter:
        trainer.zero_grad()
        anchors, cls_preds, bbox_preds = net(X)
        bbox_labels, bbox_masks, cls_labels = multibox_target(anchors, Y)
        l = calc_loss(cls_preds, cls_labels, bbox_preds, bbox_labels, bbox_masks)
        l.mean().backward()
        trainer.step()
        acc += cls_eval(cls_preds, cls_labels); n_cls += cls_labels.numel()
        mae += bbox_eval(bbox_preds, bbox_labels, bbox_masks); n_box += bbox_labels.numel()
    if (epoch + 1) % 5 == 0:
        print('epoch %2d, class err %.2e, bbox mae %.2e, time %.1f sec' % (
            epoch + 1, 1 - acc / n_cls, mae / n_box, time.time() - start))
print(f'class err {1 - acc / n_cls:.2e}, bbox mae {mae / n_box:.2e}')
print(f'{examples / seconds:.1f} examples/sec on {str(device)}')""", "training",
         ((TRAINING, "train TinySSD in the background and watch the curves"),)),
    Cell("19-21", "Prediction", """\
from ssd_core.detection import multibox_detection
from ssd_core.images import load_image, image_to_tensor

img = load_image('assets/samples/shapes-1.jpg')
X = image_to_tensor(img, 256).unsqueeze(0)

def predict(X):
    net.eval()
    anchors, cls_preds, bbox_preds = net(X)
    cls_probs = torch.softmax(cls_preds, dim=2).permute(0, 2, 1)
    output = multibox_detection(cls_probs, bbox_preds, anchors)
    idx = [i for i, row in enumerate(output[0]) if row[0] != -1]
    return output[0, idx]

output = predict(X)

def display(img, output, threshold):
    for row in output:
        score = float(row[1])
        if score < threshold:
            continue
        w, h = img.size
        bbox = [row[2:6] * torch.tensor((w, h, w, h))]
        show_bboxes(bbox, '%.2f' % score)

display(img, output, threshold=0.3)""", "predict",
         ((DETECTION, "any image, thresholds, NMS on and off"),
          (EVALUATION, "AP50 and mAP of the shipped model"))),
]

PROBLEM_CELLS = [
    Cell("22", "Smooth-L1 loss", """\
from ssd_core.losses import smooth_l1

sigmas = [10, 1, 0.5]
x = torch.arange(-2, 2, 0.1)
for s in sigmas:
    y = smooth_l1(x, sigma=s)
    plt.plot(x, y, label='sigma=%.1f' % s)""", "smooth_l1",
         ((LOSSES, "scrub sigma and see the gradient"),
          (TRAINING, "train with box loss smooth_l1 and its sigma"))),
    Cell("23", "Focal loss", """\
from ssd_core.losses import focal_loss  # -alpha (1 - p)^gamma log p

def focal_loss(gamma, x):
    return -(1 - x) ** gamma * torch.log(x)

x = torch.arange(0.01, 1, 0.01)
for gamma in [0, 1, 5]:
    plt.plot(x, focal_loss(gamma, x), label='gamma=%.1f' % gamma)""", "focal",
         ((LOSSES, "cross-entropy vs focal, gamma and alpha"),
          (TRAINING, "train with class loss focal"))),
]

# The chapter's "Training and Prediction" problems: (the problem, links).
PROBLEMS = [
    ("When an object is large compared to the image, use a larger input size.",
     ((MODEL, "input size: feature maps, anchors, receptive fields"),
      (TRAINING, "train at another input size"))),
    ("Sample the many negative anchors to balance the classes (negative mining).",
     ((TRAINING, "the hard negative mining switch and its ratio"),
      (LABELING, "positives and negatives of one image"))),
    ("Weight the class loss and the offset loss differently.",
     ((TRAINING, "class and box loss weights"),)),
    ("How is the precision of an object detector evaluated?",
     ((EVALUATION, "AP50, mAP and precision-recall curves"),)),
]
