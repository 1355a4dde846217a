"""The synthetic generator: determinism, sizes, counts, overlap, boxes vs pixels, the torch side."""

import numpy as np
import pytest
import torch
from PIL import Image

from ssd_core.data import SyntheticDetection, detection_collate, make_loader
from ssd_core.data.synthetic import _draw_mask
from ssd_core.errors import ConfigError

S = 256


@pytest.fixture(scope="module")
def ds():
    return SyntheticDetection(200, seed=7)


@pytest.fixture(scope="module")
def samples(ds):
    return [ds.sample(i) for i in range(len(ds))]


def test_same_seed_same_pixels_and_boxes(samples):
    again = SyntheticDetection(200, seed=7)
    for i in (0, 1, 57, 199):  # random access, in any order
        img, boxes, labels = again.sample(i)
        assert img.tobytes() == samples[i][0].tobytes()
        assert torch.equal(boxes, samples[i][1]) and torch.equal(labels, samples[i][2])


def test_different_seeds_differ(samples):
    other = SyntheticDetection(10, seed=8)
    assert all(other.sample(i)[0].tobytes() != samples[i][0].tobytes() for i in range(10))
    # and different images within one seed differ
    assert samples[0][0].tobytes() != samples[1][0].tobytes()


def test_sample_types_and_boxes_inside(samples, ds):
    assert ds.class_names == ["banana", "ring", "star"]
    for img, boxes, labels in samples:
        assert img.mode == "RGB" and img.size == (S, S)
        assert boxes.dtype == torch.float32 and boxes.shape[1] == 4
        assert labels.dtype == torch.int64 and labels.shape == (boxes.shape[0],)
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= S).all()
        assert (boxes[:, 2:] > boxes[:, :2]).all()
        assert ((labels >= 0) & (labels < 3)).all()


def test_object_count_bounds_and_spread(samples):
    counts = [len(lab) for _, _, lab in samples]
    assert min(counts) >= 1 and max(counts) <= 6
    assert len(set(counts)) >= 5  # the range is really used, not one fixed count
    labels = torch.cat([lab for _, _, lab in samples])
    assert set(labels.tolist()) == {0, 1, 2}
    assert torch.bincount(labels).min() > 0.2 * len(labels)  # classes roughly balanced


def test_object_sizes_span_10_to_85_percent(samples):
    sizes = torch.cat([(b[:, 2:] - b[:, :2]).max(1).values for _, b, _ in samples]) / S
    assert sizes.min() >= 0.1 - 1.5 / S and sizes.max() <= 0.85 + 1 / S
    assert sizes.min() < 0.13 and sizes.max() > 0.7  # both ends appear
    assert ((sizes > 0.3) & (sizes < 0.5)).any()


def test_overlap_bounded(samples):
    from ssd_core.boxes import box_iou_numpy
    for _, boxes, _ in samples:
        b = boxes.double().numpy()
        for k in range(len(b)):
            others = np.delete(b, k, 0)
            if len(others):
                assert box_iou_numpy(b[k], others).max() <= 0.3 + 1e-9


def test_objects_mostly_visible(ds, samples):
    fractions = [ds.visible_fraction(i) for i in range(len(ds))]
    assert all(len(f) == len(s[2]) for f, s in zip(fractions, samples))
    allf = torch.cat(fractions)
    assert allf.min() >= 0.75 and (allf < 1).any()  # occlusion happens, but is bounded


def test_box_is_tight_around_the_mask():
    rng = np.random.default_rng(0)
    for name in ("banana", "ring", "star"):
        for side in (26.0, 100.0, 217.0):
            mask_img, m = _draw_mask(name, rng, side)
            assert m.shape == (mask_img.height, mask_img.width)
            # every border row/column of the cropped mask touches the shape
            assert m[0].any() and m[-1].any() and m[:, 0].any() and m[:, -1].any()
            assert abs(max(m.shape) - side) <= 1.5


def test_box_matches_pixels_on_a_plain_background():
    """With a flat background and no clutter, object pixels lie inside boxes, and every box edge
    has changed pixels on it (tight)."""
    flat = Image.new("RGB", (64, 64), (128, 128, 128))
    ds = SyntheticDetection(15, seed=3, backgrounds=[flat], clutter=0, grain=False)
    for i in range(len(ds)):
        img, boxes, _ = ds.sample(i)
        diff = np.abs(np.asarray(img).astype(int) - 128).sum(2) > 0
        inside = np.zeros_like(diff)
        for x1, y1, x2, y2 in boxes.int().tolist():
            inside[y1:y2, x1:x2] = True
            assert diff[y1:y2, x1].any() and diff[y1:y2, x2 - 1].any()
            assert diff[y1, x1:x2].any() and diff[y2 - 1, x1:x2].any()
        assert not (diff & ~inside).any()


def test_objects_contrast_with_ground():
    flat = Image.new("RGB", (64, 64), (128, 128, 128))
    ds = SyntheticDetection(20, seed=4, backgrounds=[flat], clutter=0, grain=False)
    for i in range(len(ds)):
        img, boxes, _ = ds.sample(i)
        arr = np.asarray(img).astype(float)
        x1, y1, x2, y2 = boxes[-1].int().tolist()  # the topmost object is fully visible
        patch = arr[y1:y2, x1:x2].reshape(-1, 3)
        dist = np.linalg.norm(patch - 128, axis=1)
        changed = dist > 0  # object pixels (earlier objects below it included)
        assert (dist[changed] >= 0.7 * 120 - 1).mean() > 0.99


def test_book_preset():
    ds = SyntheticDetection(30, seed=0, preset="book")
    assert ds.class_names == ["banana"]
    for i in range(len(ds)):
        _, boxes, labels = ds.sample(i)
        assert boxes.shape == (1, 4) and labels.tolist() == [0]


def test_user_backgrounds_are_used():
    red = Image.new("RGB", (300, 200), (255, 0, 0))
    ds = SyntheticDetection(5, seed=1, backgrounds=[red], clutter=0)
    img, boxes, _ = ds.sample(0)
    arr = np.asarray(img)
    outside = np.ones(arr.shape[:2], bool)
    for x1, y1, x2, y2 in boxes.int().tolist():
        outside[y1:y2, x1:x2] = False
    bg = arr[outside].astype(int)
    assert (np.abs(bg - [255, 0, 0]).max(1) <= 12).mean() > 0.99  # red up to film grain


def test_cache_returns_equal_independent_copies():
    ds = SyntheticDetection(3, seed=2, cache=True)
    a = ds.sample(1)
    a[1][:] = -5  # mutating the returned tensor must not corrupt the cache
    b = ds.sample(1)
    fresh = SyntheticDetection(3, seed=2).sample(1)
    assert torch.equal(b[1], fresh[1]) and b[0].tobytes() == fresh[0].tobytes()


def test_torch_items_and_collate():
    ds = SyntheticDetection(6, seed=5, image_size=128)
    img, target = ds[2]
    pil, boxes, labels = ds.sample(2)
    assert img.shape == (3, 128, 128) and img.dtype == torch.float32
    assert float(img.min()) >= 0 and float(img.max()) <= 1
    assert target.shape == (len(labels), 5)
    assert torch.equal(target[:, 0], labels.float())
    assert torch.allclose(target[:, 1:], boxes / 128)
    images, targets = detection_collate([ds[i] for i in range(4)])
    m = max(len(ds.sample(i)[2]) for i in range(4))
    assert images.shape == (4, 3, 128, 128) and targets.shape == (4, m, 5)
    for i in range(4):
        n = len(ds.sample(i)[2])
        assert torch.equal(targets[i, :n], ds[i][1])
        assert (targets[i, n:] == -1).all()
    loader = make_loader(ds, batch_size=3, shuffle=False)
    x, y = next(iter(loader))
    assert x.shape == (3, 3, 128, 128) and y.shape[0] == 3 and y.shape[2] == 5
    with pytest.raises(IndexError):
        ds[6]


def test_collate_pads_empty_targets_to_one_row():
    batch = [(torch.zeros(3, 8, 8), torch.zeros(0, 5)), (torch.zeros(3, 8, 8), torch.zeros(0, 5))]
    _, targets = detection_collate(batch)
    assert targets.shape == (2, 1, 5) and (targets == -1).all()


@pytest.mark.parametrize("kwargs", [dict(preset="nope"), dict(classes=["cat"]),
                                    dict(num_objects=(0, 3)), dict(size_range=(0.5, 0.2))])
def test_bad_settings(kwargs):
    with pytest.raises(ConfigError):
        SyntheticDetection(3, **kwargs)
