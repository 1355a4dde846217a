"""The training step resizes its batch with the one batch resize evaluation uses
(ssd_core.evaluate.resize_batch): the same pixels as F.interpolate, bilinear, no corner
alignment, for square and non-square batches."""

from __future__ import annotations

import threading

import pytest
import torch
import torch.nn.functional as F

from ssd_core.config import TrainConfig
from ssd_core.engine.step import TrainStep
from ssd_core.evaluate import resize_batch


def train_step(**config) -> TrainStep:
    return TrainStep(None, None, None, TrainConfig(**config), torch.device("cpu"), None,
                     threading.Event(), lambda name: None, None)


@pytest.mark.parametrize("hw", [(96, 96), (64, 96), (96, 64), (40, 50), (64, 64)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_the_training_batch_is_resized_as_evaluation_resizes_it(hw, channels_last):
    X = torch.rand((2, 3, *hw), generator=torch.Generator().manual_seed(0))
    Y = torch.tensor([[[0, 0.1, 0.2, 0.5, 0.6]], [[-1, 0, 0, 0, 0]]], dtype=torch.float32)
    got, y = train_step(input_size=64, channels_last=channels_last).prepare(X, Y)
    expected = X if hw == (64, 64) else F.interpolate(
        X, size=(64, 64), mode="bilinear", align_corners=False)
    assert got.shape == (2, 3, 64, 64)
    assert torch.equal(got, expected) and torch.equal(got, resize_batch(X, 64))
    if channels_last:
        assert got.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(y, Y)  # normalized boxes: the targets stay as they are


def test_resize_batch_leaves_a_batch_of_the_right_size_alone():
    X = torch.rand(2, 3, 64, 64)
    assert resize_batch(X, 64) is X and resize_batch(X, None) is X
    # only the width right (the old check looked at the width alone): resized all the same
    assert resize_batch(torch.rand(1, 3, 80, 64), 64).shape == (1, 3, 64, 64)
