"""fold_batchnorm: the folded inference copy computes the eval-mode model's outputs (within float
rounding), on random weights with non-trivial BatchNorm statistics and on the shipped model,
and leaves the original model untouched."""

import pytest
import torch
from torch import nn

from ssd_core.detection import Detector
from ssd_core.fold import fold_batchnorm, fold_conv_bn
from ssd_core.model import TinySSD

# float32 rounding of a few hundred products per output through ~10 layers: on the shipped
# model the worst difference measured was 7e-6 on class logits up to 17.6 (4e-7 of the scale).
# atol is taken relative to each output's largest magnitude.
RTOL, ATOL = 1e-5, 1e-5


def _randomize_bn(model, seed=0):
    """BatchNorm statistics and affine parameters far from their defaults, as after training."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.05)
                if m.affine:
                    m.weight.copy_(torch.randn(n, generator=g))
                    m.bias.copy_(torch.randn(n, generator=g) * 0.3)
    return model


def _outputs_close(a, b, scale_tol=True):
    for x, y in zip(a, b):
        assert x.shape == y.shape
        tol = ATOL * max(1.0, float(y.abs().max())) if scale_tol else ATOL
        torch.testing.assert_close(x, y, rtol=RTOL, atol=tol)


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_folded_random_tinyssd_equals_eval_model_and_original_is_untouched():
    torch.manual_seed(0)
    model = _randomize_bn(TinySSD(3)).train()  # a model still in training mode
    before = _state(model)
    folded = fold_batchnorm(model)
    assert model.training  # mode untouched too
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert not folded.training
    assert not any(p.requires_grad for p in folded.parameters())
    model.eval()
    with torch.no_grad():
        for seed, size in ((1, 256), (2, 128), (3, 64)):
            X = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(seed))
            _outputs_close(folded(X), model(X))


def test_folded_shipped_model_equals_its_eval_outputs_on_real_images():
    from ssd_core.data import SyntheticDetection

    det = Detector.from_checkpoint()
    before = _state(det.model)
    folded = fold_batchnorm(det.model)
    ds = SyntheticDetection(4, seed=5, image_size=256)
    X = torch.stack([ds[i][0] for i in range(4)])
    with torch.no_grad():
        want, got = det.model(X), folded(X)
        _outputs_close(got, want)
        # Class probabilities, which the detections threshold, agree to 1e-5.
        torch.testing.assert_close(torch.softmax(got[1], -1), torch.softmax(want[1], -1),
                                   rtol=0, atol=1e-5)
        # channels_last (what the live pipeline may run) computes the same function.
        cl = fold_batchnorm(det.model).to(memory_format=torch.channels_last)
        _outputs_close(cl(X.contiguous(memory_format=torch.channels_last)), want)
    assert all(torch.equal(v, det.model.state_dict()[k]) for k, v in before.items())


def test_fold_conv_bn_without_bias_or_affine():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, padding=1, bias=False)
    bn = _randomize_bn(nn.Sequential(nn.BatchNorm2d(6, affine=False)))[0].eval()
    X = torch.randn(2, 4, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(fold_conv_bn(conv, bn)(X), bn(conv(X)), rtol=RTOL, atol=ATOL)


def test_unfoldable_batchnorm_is_refused():
    with pytest.raises(ValueError, match="does not follow a Conv2d"):
        fold_batchnorm(nn.Sequential(nn.ReLU(), nn.BatchNorm2d(3)))
    with pytest.raises(ValueError, match="running statistics"):
        fold_batchnorm(nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(
            3, track_running_stats=False)))
