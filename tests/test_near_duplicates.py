"""near_duplicates: the kept detections of one class that overlap just under the NMS
threshold (the shipped model's "banana 0.69" beside "banana 0.96", IoU 0.48 under 0.5)."""

import torch

from ssd_core.suppression import near_duplicates


def test_pairs_of_one_class_between_the_floor_and_the_threshold():
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 5.2], [20, 20, 30, 30], [0, 0, 10, 4.0],
                          [0, 0, 10, 10.0]])
    labels = torch.tensor([0, 0, 0, 0, 1])
    # IoU (0, 1) 0.52, (0, 3) 0.40, (1, 3) 0.77; box 2 overlaps nothing, box 4 is class 1
    pairs = near_duplicates(boxes, labels, 0.5)
    assert [(i, j) for i, j, _ in pairs] == [(0, 3)]
    assert abs(pairs[0][2] - 0.4) < 1e-6
    pairs = near_duplicates(boxes, labels, 0.6)  # highest IoU first
    assert [(i, j) for i, j, _ in pairs] == [(0, 1), (0, 3)]
    assert abs(pairs[0][2] - 0.52) < 1e-6
    assert near_duplicates(boxes, labels, 0.6, floor=0.45) == pairs[:1]
    assert near_duplicates(boxes[:1], labels[:1], 0.5) == []
