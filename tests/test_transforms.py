"""Box-aware augmentations keep boxes valid and on the pixels they describe."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from ssd_core.data import Augment, SyntheticDetection, hflip, photometric, random_iou_crop, zoom_out
from ssd_core.data.device_data import device_augment
from ssd_core.data.transforms import STRONG, blur, resolve_augment, rotate
from ssd_core.errors import ConfigError


def solid_scene(w=120, h=80, rects=((10, 20, 40, 50), (70, 5, 110, 30))):
    """A black image with white filled rectangles; boxes (M,4) are exactly those rectangles."""
    img = Image.new("RGB", (w, h), (0, 0, 0))
    draw = ImageDraw.Draw(img)
    for x1, y1, x2, y2 in rects:
        draw.rectangle((x1, y1, x2 - 1, y2 - 1), fill=(255, 255, 255))
    boxes = torch.tensor(rects, dtype=torch.float32)
    return img, boxes, torch.arange(len(rects))


def pixel_box(img: Image.Image, box) -> np.ndarray:
    """The tight pixel box of white pixels inside ``box`` (rounded outward), as x1,y1,x2,y2."""
    arr = np.asarray(img)[..., 0] > 127
    x1, y1, x2, y2 = (int(np.floor(box[0])), int(np.floor(box[1])), int(np.ceil(box[2])),
                      int(np.ceil(box[3])))
    sub = arr[y1:y2, x1:x2]
    cols, rows = np.flatnonzero(sub.any(0)), np.flatnonzero(sub.any(1))
    return np.array([x1 + cols[0], y1 + rows[0], x1 + cols[-1] + 1, y1 + rows[-1] + 1])


def assert_boxes_on_pixels(img, boxes):
    for b in boxes.tolist():
        np.testing.assert_allclose(pixel_box(img, b), b, atol=1)


def assert_valid(img, boxes, labels):
    w, h = img.size
    assert boxes.shape == (labels.shape[0], 4)
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
    assert (boxes[:, 2:] > boxes[:, :2]).all()


def test_hflip_matches_pixels_and_twice_is_identity():
    img, boxes, _ = solid_scene()
    f_img, f_boxes = hflip(img, boxes)
    assert f_boxes.tolist() == [[80, 20, 110, 50], [10, 5, 50, 30]]
    assert_boxes_on_pixels(f_img, f_boxes)
    np.testing.assert_array_equal(np.asarray(f_img), np.asarray(img)[:, ::-1])
    back_img, back_boxes = hflip(f_img, f_boxes)
    assert torch.equal(back_boxes, boxes) and back_img.tobytes() == img.tobytes()


def test_zoom_out_moves_boxes_with_pixels():
    img, boxes, _ = solid_scene()
    rng = np.random.default_rng(0)
    for _ in range(10):
        z_img, z_boxes = zoom_out(img, boxes, rng, max_scale=3.0, fill=(0, 0, 0))
        assert z_img.width >= img.width and z_img.height >= img.height
        assert_boxes_on_pixels(z_img, z_boxes)
        np.testing.assert_allclose((z_boxes[:, 2:] - z_boxes[:, :2]).numpy(),
                                   (boxes[:, 2:] - boxes[:, :2]).numpy())  # sizes unchanged


def test_iou_crop_keeps_boxes_valid_and_on_pixels():
    img, boxes, labels = solid_scene()
    rng = np.random.default_rng(1)
    changed = 0
    for _ in range(60):
        c_img, c_boxes, c_labels = random_iou_crop(img, boxes, labels, rng)
        assert_valid(c_img, c_boxes, c_labels)
        assert len(c_labels) >= 1
        changed += c_img.size != img.size
        for b, lab in zip(c_boxes.tolist(), c_labels.tolist()):
            np.testing.assert_allclose(pixel_box(c_img, b), b, atol=1)
            orig = boxes[lab]
            assert (b[2] - b[0]) <= float(orig[2] - orig[0]) + 1e-6  # clipped, never grown
    assert changed > 10


def test_iou_crop_with_no_boxes():
    img = Image.new("RGB", (50, 40))
    out = random_iou_crop(img, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long),
                          np.random.default_rng(0), min_ious=(0.5,))
    assert out[1].shape == (0, 4) and out[2].shape == (0,)


def test_photometric_keeps_size_and_changes_colours():
    img, _, _ = solid_scene()
    img = Image.fromarray((np.asarray(img) * np.array([0.8, 0.5, 0.3])).astype(np.uint8))
    rng = np.random.default_rng(3)
    outs = [photometric(img, rng) for _ in range(5)]
    assert all(o.size == img.size and o.mode == "RGB" for o in outs)
    assert any(o.tobytes() != img.tobytes() for o in outs)


def test_augment_on_dataset_items_keeps_targets_valid():
    ds = SyntheticDetection(12, seed=0, image_size=96, augment=Augment(
        hflip=0.5, iou_crop=1.0, zoom_out=0.5, photometric=0.5))
    for i in range(len(ds)):
        img, target = ds[(i, i)]
        assert img.shape == (3, 96, 96)
        assert target.shape[1] == 5 and target.shape[0] >= 1
        assert (target[:, 1:] >= 0).all() and (target[:, 1:] <= 1).all()
        assert (target[:, 3:] > target[:, 1:3]).all()
    # the item's own seed decides its augmentation, whatever torch's global generator does
    torch.manual_seed(5)
    a = ds[(3, 11)]
    torch.manual_seed(6)
    b = ds[(3, 11)]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    others = [ds[(3, s)] for s in range(12, 20)]
    assert any(not torch.equal(a[0], o[0]) for o in others)


def test_flip_only_augment_matches_flipped_sample():
    ds = SyntheticDetection(4, seed=1, image_size=64, augment=Augment(
        hflip=1.0, iou_crop=0, zoom_out=0, photometric=0))
    img, target = ds[0]
    pil, boxes, labels = ds.sample(0)
    ref = torch.from_numpy(np.asarray(pil)[:, ::-1].astype(np.float32) / 255).permute(2, 0, 1)
    assert torch.equal(img, ref)
    expect = torch.stack([64 - boxes[:, 2], boxes[:, 1], 64 - boxes[:, 0], boxes[:, 3]], 1) / 64
    assert torch.allclose(target[:, 1:], expect)


@pytest.mark.parametrize("kwargs", [dict(hflip=1.5), dict(zoom_max=0.5), dict(photometric=-1),
                                    dict(rotate=2), dict(rotate_max=90), dict(blur_max=-1)])
def test_bad_augment_settings(kwargs):
    with pytest.raises(ConfigError):
        Augment(**kwargs)


def test_crop_iou_follows_box_iou_and_its_empty_union_rule():
    """The host IoU of random_iou_crop and the synthetic placement (boxes.box_iou_numpy):
    box_iou's values (the same bits) and 0, not NaN, where the union is empty."""
    from ssd_core.boxes import box_iou, box_iou_numpy

    point = np.array([3.0, 3.0, 3.0, 3.0])
    boxes = np.array([[3.0, 3.0, 3.0, 3.0], [0.0, 0.0, 10.0, 10.0], [2.0, 2.0, 5.0, 4.0]])
    assert box_iou_numpy(point, boxes).tolist() == [0.0, 0.0, 0.0]
    crop = np.array([1.0, 1.0, 6.0, 8.0])
    want = box_iou(torch.from_numpy(crop[None]), torch.from_numpy(boxes))[0].numpy()
    assert np.array_equal(box_iou_numpy(crop, boxes), want)


# ---- the teach recipe's rotation and blur


def test_rotation_0_and_blur_0_are_the_identity():
    img, boxes, _ = solid_scene()
    out, b = rotate(img, boxes, 0.0)
    assert out is img and torch.equal(b, boxes)
    assert blur(img, 0.0) is img


@pytest.mark.parametrize("degrees", [-10.0, -3.0, 4.5, 10.0, 30.0])
def test_rotation_encloses_the_rotated_object_inside_the_image(degrees):
    img, boxes, _ = solid_scene(rects=((10, 20, 40, 50), (70, 5, 110, 30), (100, 60, 125, 80)),
                                w=125)
    out, new = rotate(img, boxes, degrees, fill=(0, 0, 0))
    assert out.size == img.size
    w, h = img.size
    assert (new[:, :2] >= 0).all() and (new[:, 2] <= w).all() and (new[:, 3] <= h).all()
    assert (new[:, 2:] > new[:, :2]).all()
    arr = np.asarray(out)[..., 0] > 127
    for b in new.tolist():  # every white pixel of an object lies inside its enclosing box
        x1, y1, x2, y2 = b
        pb = pixel_box(out, b)
        assert pb[0] >= np.floor(x1) - 1 and pb[2] <= np.ceil(x2) + 1
        assert pb[1] >= np.floor(y1) - 1 and pb[3] <= np.ceil(y2) + 1
    assert arr.any()
    # the enclosing box of a box turned by d degrees is at most (|cos|+|sin|) times as wide
    t = np.deg2rad(abs(degrees))
    widths = (boxes[:, 2] - boxes[:, 0]) * np.cos(t) + (boxes[:, 3] - boxes[:, 1]) * np.sin(t)
    assert ((new[:, 2] - new[:, 0]) <= widths + 1e-3).all()


def test_rotation_turns_the_right_way():
    img, boxes, _ = solid_scene(w=100, h=100, rects=((70, 45, 90, 55),))  # right of centre
    out, new = rotate(img, boxes, 90.0, fill=(0, 0, 0))  # counter-clockwise: to the top
    np.testing.assert_allclose(new[0].tolist(), [45, 10, 55, 30], atol=1e-3)
    np.testing.assert_allclose(pixel_box(out, new[0].tolist()), [45, 10, 55, 30], atol=1)


def test_blur_smooths_and_keeps_size():
    img, _, _ = solid_scene()
    out = blur(img, 1.5)
    a = np.asarray(out)[..., 0].astype(int)
    assert out.size == img.size and 0 < a[20, 9] < 255  # the edge is soft now


def test_strong_augment_keeps_boxes_valid_and_is_deterministic_per_seed():
    aug = resolve_augment("strong")
    assert aug == Augment(**STRONG) and aug.rotate > 0 and aug.blur > 0
    img, boxes, labels = solid_scene()
    for seed in range(40):
        out, b, lab = aug(img, boxes, labels, np.random.default_rng(seed))
        assert_valid(out, b, lab)
        again = aug(img, boxes, labels, np.random.default_rng(seed))
        assert np.array_equal(np.asarray(out), np.asarray(again[0]))
        assert torch.equal(b, again[1]) and torch.equal(lab, again[2])
    torch.manual_seed(1)
    np.random.seed(1)
    a = aug(img, boxes, labels, np.random.default_rng(3))
    torch.manual_seed(2)
    np.random.seed(2)
    b = aug(img, boxes, labels, np.random.default_rng(3))
    assert np.array_equal(np.asarray(a[0]), np.asarray(b[0]))  # no global generator used


def test_an_augment_without_rotation_and_blur_draws_as_before():
    """Rotation and blur draw nothing when off: the SSD Augment's images are unchanged."""
    img, boxes, labels = solid_scene()
    old, new = Augment(), Augment(rotate=0, blur=0, rotate_max=5, blur_max=3)
    for seed in range(10):
        a = old(img, boxes, labels, np.random.default_rng(seed))
        b = new(img, boxes, labels, np.random.default_rng(seed))
        assert np.array_equal(np.asarray(a[0]), np.asarray(b[0])) and torch.equal(a[1], b[1])


def test_device_path_refuses_rotation_and_blur():
    ds = SyntheticDetection(2, seed=0, image_size=64, augment="strong")
    with pytest.raises(ConfigError, match="rotate and blur"):
        device_augment(ds)
    ds.set_augment(Augment(rotate=0.5))
    with pytest.raises(ConfigError, match="rotate"):
        device_augment(ds)
    ds.set_augment(True)
    assert device_augment(ds) == Augment()
