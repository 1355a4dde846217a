"""The device-resident data path (ssd_core.data.device_data) and the Trainer on it, on CPU: the
same code runs on CUDA. Augmented boxes must agree with the augmented pixels."""

from __future__ import annotations

import pytest
import torch

from ssd_core import Trainer
from ssd_core.data import Augment, SyntheticDetection, detection_collate
from ssd_core.data.device_data import (
    DeviceData,
    apply_windows,
    augment_batch,
    hflip_batch,
    photometric_batch,
    zoom_crop_windows,
)
from ssd_core.engine import setup as engine_setup
from ssd_core.errors import ConfigError, TrainingDiverged
from tests.helpers import tiny_config, tiny_set

S = 64


def boxes_batch(B=16, M=3, seed=0):
    """Images (B,3,S,S) black with one white rectangle per object, targets (B,M,5) with
    padding rows; objects do not overlap (each in its own horizontal band)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.zeros(B, 3, S, S)
    Y = torch.full((B, M, 5), -1.0)
    for b in range(B):
        n = int(torch.randint(1, M + 1, (), generator=g))
        for j in range(n):
            band = S // M
            x0 = int(torch.randint(0, S // 2, (), generator=g))
            w = int(torch.randint(6, S // 2, (), generator=g))
            y0 = j * band + 1
            h = band - 2
            X[b, :, y0:y0 + h, x0:x0 + w] = 1.0
            Y[b, j] = torch.tensor([j % 2, x0 / S, y0 / S, (x0 + w) / S, (y0 + h) / S])
    return X, Y


def white_bbox(img):
    """Normalized bounding box of the pixels brighter than 0.5 in one (3,S,S) image."""
    on = img.mean(0) > 0.5
    ys, xs = torch.nonzero(on, as_tuple=True)
    return torch.tensor([xs.min() / S, ys.min() / S, (xs.max() + 1) / S, (ys.max() + 1) / S])


def test_hflip_of_image_and_boxes_agree_and_twice_is_identity():
    X, Y = boxes_batch()
    flip = torch.arange(len(X)) % 2 == 0
    Xf, Yf = hflip_batch(X, Y, flip)
    for b in range(len(X)):
        for row in Yf[b][Yf[b, :, 0] >= 0]:
            x0, y0, x1, y1 = (row[1:] * S).round().long().tolist()
            assert Xf[b, :, y0:y1, x0:x1].min() == 1.0  # the flipped box holds its object
        assert torch.equal(Yf[b, :, 0], Y[b, :, 0])
    assert torch.equal(Yf[1], Y[1]) and torch.equal(Xf[1], X[1])  # not flipped
    assert torch.equal(Yf[0][Y[0, :, 0] < 0], Y[0][Y[0, :, 0] < 0])  # padding untouched
    X2, Y2 = hflip_batch(Xf, Yf, flip)
    assert torch.equal(X2, X) and torch.allclose(Y2, Y)


def test_crop_keeps_only_boxes_whose_centre_is_inside():
    X, Y = boxes_batch(B=64, seed=1)
    g = torch.Generator().manual_seed(0)
    window, keep = zoom_crop_windows(Y, g, zoom_p=0.0, crop_p=1.0)
    valid = Y[..., 0] >= 0
    centres = (Y[..., 1:3] + Y[..., 3:5]) / 2
    inside = ((centres > window[:, None, :2]) & (centres < window[:, None, 2:])).all(-1)
    cropped = (window != torch.tensor([0.0, 0.0, 1.0, 1.0])).any(1)
    # About 29% of these images get a crop, as with transforms.random_iou_crop (measured): 1 in
    # 6 draws is "no crop" and high minimum IoUs are rarely met by these boxes.
    assert cropped.sum() >= 10
    assert torch.equal(keep[cropped], (inside & valid)[cropped])
    assert torch.equal(keep[~cropped], valid[~cropped])
    assert keep[cropped].any(1).all()  # an accepted crop keeps at least one object
    Xo, Yo = apply_windows(X, Y, window, keep)
    assert torch.equal((Yo[..., 0] >= 0).sum(1), keep.sum(1))
    assert Yo[..., 1:][Yo[..., 0] >= 0].min() >= 0 and Yo[..., 1:][Yo[..., 0] >= 0].max() <= 1
    # Kept labels are the original labels of the kept rows, objects first.
    for b in range(len(X)):
        assert torch.equal(Yo[b, : int(keep[b].sum()), 0], Y[b, keep[b], 0])


def test_zoom_and_crop_move_boxes_with_their_pixels():
    X, Y = boxes_batch(B=32, M=1, seed=2)  # one object: the white pixels are its box
    g = torch.Generator().manual_seed(3)
    for _ in range(3):
        window, keep = zoom_crop_windows(Y, g, zoom_p=1.0, zoom_max=2.0, crop_p=1.0)
        Xo, Yo = apply_windows(X, Y, window, keep, fill=torch.zeros(len(X), 3, 1, 1))
        for b in range(len(X)):
            if Yo[b, 0, 0] < 0:
                continue
            assert torch.allclose(white_bbox(Xo[b]), Yo[b, 0, 1:], atol=2.5 / S), b


def test_photometric_keeps_range_and_leaves_unselected_images():
    X, _ = boxes_batch()
    X = X * 0.6 + 0.2
    g = torch.Generator().manual_seed(0)
    apply = torch.arange(len(X)) % 2 == 0
    out = photometric_batch(X.clone(), apply, g)
    assert out.min() >= 0 and out.max() <= 1
    assert torch.allclose(out[~apply], X[~apply], atol=1e-5)
    assert not torch.allclose(out[apply], X[apply], atol=1e-3)


def test_same_seed_same_batch_other_seed_differs():
    data = DeviceData(*[t for t in _rendered(tiny_set(12))], augment=Augment())
    a = list(data.batches(range(12), 4, seed=7))
    b = list(data.batches(range(12), 4, seed=7))
    c = list(data.batches(range(12), 4, seed=8))
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b))
    assert any(not torch.equal(x[0], y[0]) for x, y in zip(a, c))
    assert [x[0].shape for x in a] == [(4, 3, S, S)] * 3


def _rendered(ds):
    d = DeviceData.from_dataset(ds, "cpu")
    return d.images, d.targets


def test_without_augmentation_a_batch_equals_the_host_path():
    ds = SyntheticDetection(10, seed=5, image_size=S, preset="default")
    data = DeviceData.from_dataset(ds, "cpu")
    assert data.images.dtype == torch.uint8 and data.images.shape == (10, 3, S, S)
    idx = [3, 0, 9, 4]
    X, Y = data.batch(idx)
    Xh, Yh = detection_collate([ds[i] for i in idx])
    assert torch.equal(X, Xh)
    m = Yh.shape[1]
    assert torch.equal(Y[:, :m], Yh) and (Y[:, m:] == -1).all()


def test_augmented_batch_keeps_shapes_and_valid_targets():
    ds = SyntheticDetection(16, seed=5, image_size=S, preset="default")
    data = DeviceData.from_dataset(ds, "cpu", augment=Augment())
    X, Y = data.batch(range(16), torch.Generator().manual_seed(0))
    assert X.shape == (16, 3, S, S) and X.dtype == torch.float32
    assert X.min() >= 0 and X.max() <= 1
    rows = Y[Y[..., 0] >= 0]
    assert (rows[:, 3] >= rows[:, 1]).all() and (rows[:, 4] >= rows[:, 2]).all()
    assert augment_batch(X, Y, Augment(0, 0, 0, 2.0, 0))[0] is X  # all off: unchanged


def _losses(trainer):
    return [r["loss"] for r in trainer.fit() if r["kind"] == "step"]


def test_trainer_on_device_data_matches_the_loader_without_augmentation():
    ds = tiny_set(12)
    on = Trainer(tiny_config(device_data="on"), ds)
    off = Trainer(tiny_config(device_data="off"), ds)
    a, b = _losses(on), _losses(off)
    assert on._batches.on_device is not None and off._batches.on_device is None
    assert len(a) == 3 and a == b
    auto = Trainer(tiny_config(), ds)  # CPU, no augmentation: rendered once
    assert _losses(auto) == a and auto._batches.on_device is not None


def test_trainer_trains_on_augmented_device_data_and_resumes_exactly(tmp_path):
    ds = tiny_set(12)
    ds.set_augment(True)
    cfg = tiny_config(device_data="on", epochs=2)
    full = Trainer(cfg, ds, run_dir=tmp_path / "full")
    ref = _losses(full)
    assert len(ref) == 6 and all(torch.isfinite(torch.tensor(ref)))
    first = Trainer(cfg, ds, run_dir=tmp_path / "a")
    got = []
    for rec in first.fit():
        if rec["kind"] == "step":
            got.append(rec["loss"])
        if rec["step"] == 2:  # mid-epoch: the rest of epoch 1 and all of epoch 2 resume
            first.stop()
    second = Trainer(cfg, ds, run_dir=tmp_path / "b", resume=first.checkpoint_path)
    got += _losses(second)
    assert got == ref


def test_auto_keeps_augmented_data_on_the_host_on_cpu():
    ds = tiny_set(8)
    ds.set_augment(True)
    cfg = tiny_config()
    dev = torch.device("cpu")
    assert engine_setup.device_data(cfg, ds, dev) is None
    ds.set_augment(lambda img, boxes, labels, rng: (img, boxes, labels))
    assert engine_setup.device_data(cfg, ds, dev) is None
    with pytest.raises(ConfigError, match="custom augmentation"):
        engine_setup.device_data(tiny_config(device_data="on"), ds, dev)


def test_deferred_host_reads_give_the_same_losses_and_catch_nan(monkeypatch):
    """The one-GPU loop reads the step sums every log_every steps only; forced here on CPU."""
    ds = tiny_set(12)
    ref = _losses(Trainer(tiny_config(log_every=3), ds))
    setup = Trainer._setup

    def deferred(self):
        setup(self)
        self._sync_every = self.config.log_every

    monkeypatch.setattr(Trainer, "_setup", deferred)
    assert _losses(Trainer(tiny_config(log_every=3), ds)) == ref

    class Poisoned(torch.utils.data.Dataset):
        class_names = ds.class_names

        def __len__(self):
            return len(ds)

        def __getitem__(self, i):
            img, target = ds[i]
            return (img * float("nan") if i == 5 else img), target

    with pytest.raises(TrainingDiverged, match="NaN/inf"):
        list(Trainer(tiny_config(log_every=3), Poisoned()).fit())


def test_bf16_autocast_runs_on_cpu():
    t = Trainer(tiny_config(precision="bf16"), tiny_set(8))
    losses = _losses(t)
    assert t.amp_dtype == torch.bfloat16 and not t.scaler.is_enabled()
    assert all(torch.isfinite(torch.tensor(losses)))


def test_fast_precision_is_bf16_only_where_the_hardware_has_it(monkeypatch):
    from ssd_core import device as devmod
    from ssd_core.engine.setup import autocast_dtype

    cpu = torch.device("cpu")
    for native, want in ((True, torch.bfloat16), (False, None)):
        monkeypatch.setattr(devmod, "native_bf16", lambda device, native=native: native)
        assert autocast_dtype(tiny_config(precision="fast"), cpu) is want
        assert autocast_dtype(tiny_config(precision="auto"), cpu) is None  # auto: fp32 on CPU
        assert autocast_dtype(tiny_config(precision="bf16"), cpu) is torch.bfloat16
    monkeypatch.undo()
    assert devmod.native_bf16(torch.device("meta")) is False
    t = Trainer(tiny_config(precision="fast"), tiny_set(8))
    _losses(t)
    assert t.amp_dtype == (torch.bfloat16 if devmod.native_bf16(cpu) else None)


def test_rendering_the_set_reports_progress():
    seen = []
    t = Trainer(tiny_config(device_data="on"), tiny_set(8))
    t.on_status = seen.append
    _losses(t)
    assert seen[0] == "rendering the 8 training images once: 0/8"
    assert seen[-1] == "rendering the 8 training images once: 8/8"


def test_the_crop_iou_is_box_iou_with_its_empty_union_rule():
    """The crop windows' IoU is ssd_core.boxes.box_iou at shapes (B,T,4) x (B,M,4): 0 where the
    union is empty; degenerate (point) objects crop without NaN."""
    from ssd_core.boxes import box_iou

    point = [0.3, 0.3, 0.3, 0.3]
    windows = torch.tensor([[point, [0.0, 0.0, 0.5, 0.5]]])
    boxes = torch.tensor([[point, [0.25, 0.25, 0.5, 0.5]]])
    assert torch.equal(box_iou(windows, boxes), torch.tensor([[[0.0, 0.0], [0.0, 0.25]]]))
    Y = torch.tensor([[[0.0, *point], [1.0, 0.6, 0.6, 0.6, 0.6], [-1.0, 0, 0, 0, 0]]] * 8)
    window, keep = zoom_crop_windows(Y, torch.Generator().manual_seed(0), crop_p=1.0)
    assert bool(torch.isfinite(window).all()) and not keep[:, 2].any()


def test_bf16_is_not_native_where_the_process_caps_the_cpu_below_it(monkeypatch):
    """ONEDNN_MAX_CPU_ISA=AVX2 (or ATEN_CPU_CAPABILITY=avx2) makes bf16 emulated on any CPU: the
    hardware flags alone would call it native, and 'fast' would then train in slow bf16."""
    from ssd_core import device as devmod

    cpu = torch.device("cpu")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    assert devmod.native_bf16(cpu) is True
    for isa, native in (("AVX2", False), ("avx512_core", False), ("AVX512_CORE_BF16", True),
                        ("AVX512_CORE_AMX", True), ("ALL", True)):
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
        assert devmod.native_bf16(cpu) is native, isa
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert devmod.native_bf16(cpu) is False
