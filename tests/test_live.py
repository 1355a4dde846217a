"""The live frame pipeline: the Detector's detections on a video frame, drawn only where the boxes
are; thresholds set from another thread; bad frames refused; fps stats; the stream cap."""

import threading

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from ssd_core.data import SyntheticDetection
from ssd_core.detection import Detector
from ssd_core.errors import InvalidImageError
from ssd_core.live import FramePipeline, FrameStats, LiveSettings, StreamSlots, Thresholds


@pytest.fixture(scope="module")
def shipped():
    return Detector.from_checkpoint()


def frame(seed=0, size=(640, 480)):
    """A synthetic scene (bananas, rings, stars) stretched to a camera-sized RGB frame."""
    img = SyntheticDetection(1, seed=seed, image_size=256).sample(0)[0]
    return np.asarray(img.resize(size, Image.BILINEAR))


def assert_same_detections(got, want, box_atol, score_atol):
    assert got.labels.tolist() == want.labels.tolist()
    assert got.anchor_index.tolist() == want.anchor_index.tolist()
    torch.testing.assert_close(got.scores, want.scores, rtol=0, atol=score_atol)
    torch.testing.assert_close(got.boxes, want.boxes, rtol=0, atol=box_atol)
    assert got.image_size == want.image_size


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_detections_equal_detector_predict(shipped, seed):
    f = frame(seed)
    want = shipped.predict(f, conf_threshold=0.4, nms_threshold=0.45)
    assert len(want) >= 1  # the shipped model finds the synthetic objects
    # Unfolded, NCHW, torch's threads: the very same computation, bit for bit.
    plain = FramePipeline.from_detector(shipped, fold=False, channels_last=False, threads=None)
    assert_same_detections(plain(f, 0.4, 0.45).detections, want, 0, 0)
    # Folded, channels_last, one thread (the live default): float rounding only.
    live = FramePipeline.from_detector(shipped)
    assert live.folded and live.channels_last
    out = live(f, 0.4, 0.45)
    assert_same_detections(out.detections, want, box_atol=0.05, score_atol=1e-5)
    assert out.image.shape == f.shape and out.image.dtype == np.uint8
    assert set(out.timings) == {"convert", "network", "detection", "drawing", "total"}
    assert out.thresholds == Thresholds(0.4, 0.45)
    # The detector's own model is left as it was (BatchNorm still there).
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in shipped.model.modules())


def test_bf16_pipeline_finds_the_same_objects(shipped):
    # bf16 autocast (precision "fast" on CPUs with AVX512-BF16/AMX, what the live view runs):
    # measured on 8 scenes, scores moved by at most 0.009 and boxes by 0.37 px at 640x480.
    live = FramePipeline.from_detector(shipped, precision="bf16")
    assert live.precision == "bf16"
    for seed in range(4):
        f = frame(seed)
        got, want = live(f, 0.4, 0.45).detections, shipped.predict(f, 0.4, 0.45)
        assert got.labels.tolist() == want.labels.tolist()
        torch.testing.assert_close(got.scores, want.scores, rtol=0, atol=0.02)
        torch.testing.assert_close(got.boxes, want.boxes, rtol=0, atol=1.0)
    with pytest.raises(ValueError, match="precision"):
        FramePipeline.from_detector(shipped, precision="fp16")


def test_any_frame_size_maps_boxes_to_its_pixels(shipped):
    live = FramePipeline.from_detector(shipped)
    for size in [(320, 240), (1280, 720), (97, 301)]:
        f = frame(3, size)
        got = live(f, 0.4, 0.5).detections
        assert got.image_size == size
        assert_same_detections(got, shipped.predict(f, 0.4, 0.5), 0.05 * max(size) / 640, 1e-5)


def test_drawing_changes_pixels_only_at_the_boxes_and_their_captions(shipped):
    f = frame(1)
    before = f.copy()
    out = FramePipeline.from_detector(shipped)(f, 0.4, 0.5)
    assert np.array_equal(f, before)  # the input frame is not drawn on
    dets = out.detections
    assert len(dets) >= 1
    # Where drawing may touch: each box's outline band and its caption, as drawing.py lays out.
    allowed = np.zeros(f.shape[:2], bool)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    for (x1, y1, x2, y2), s, c in zip(dets.boxes.tolist(), dets.scores.tolist(),
                                      dets.labels.tolist()):
        allowed[max(0, int(y1) - 1):int(y2) + 2, max(0, int(x1) - 1):int(x2) + 2] = True
        text = f"{shipped.class_names[c]} {s:.2f}"
        l, t, r, b = measure.textbbox((x1 + 2, max(0.0, y1 - 12)), text)
        allowed[max(0, int(t) - 2):int(b) + 3, max(0, int(l) - 2):int(r) + 3] = True
        # Every box's outline is drawn: its left edge, inside the box, changed.
        ys = slice(int(y1) + 14, max(int(y1) + 15, int(y2) - 1))
        assert (out.image[ys, int(x1) + 1] != f[ys, int(x1) + 1]).any()
    changed = (out.image != f).any(axis=2)
    assert changed.any()
    assert not (changed & ~allowed).any(), "pixels changed away from every box"


def test_no_detections_leaves_the_frame_as_it_was(shipped):
    f = np.full((48, 64, 3), 127, np.uint8)
    out = FramePipeline.from_detector(shipped)(f, conf_threshold=1.0)
    assert len(out.detections) == 0 and np.array_equal(out.image, f)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((480, 640, 3), np.float32), "uint8"),
    (np.zeros((480, 640), np.uint8), r"shape \(H, W, 3\)"),
    (np.zeros((480, 640, 4), np.uint8), r"shape \(H, W, 3\)"),
    (np.zeros((0, 640, 3), np.uint8), "empty"),
    (np.zeros((480, 0, 3), np.uint8), "empty"),
    ([[1, 2, 3]], "numpy array"),
    (torch.zeros(480, 640, 3, dtype=torch.uint8), "numpy array"),
])
def test_bad_frames_are_refused_with_a_clear_error(shipped, bad, match):
    live = FramePipeline.from_detector(shipped)
    with pytest.raises(InvalidImageError, match=match):
        live(bad)


def test_thresholds_follow_the_settings_between_frames(shipped):
    settings = LiveSettings(conf=0.9, nms=0.5)
    live = FramePipeline.from_detector(shipped, settings=settings)
    f = frame(0)
    strict = live(f)
    assert strict.thresholds == Thresholds(0.9, 0.5)
    threading.Thread(target=settings.set, kwargs=dict(conf=0.2, nms=0.3)).start()
    for _ in range(100):
        if settings.get() == Thresholds(0.2, 0.3):
            break
        threading.Event().wait(0.01)
    loose = live(f)
    assert loose.thresholds == Thresholds(0.2, 0.3)
    assert len(loose.detections) >= len(strict.detections)
    assert_same_detections(loose.detections, shipped.predict(f, 0.2, 0.3), 0.05, 1e-5)
    with pytest.raises(ValueError, match="conf threshold"):
        settings.set(conf=1.5)
    assert settings.get() == Thresholds(0.2, 0.3)  # a refused value changes nothing


def test_settings_are_never_seen_half_changed():
    settings = LiveSettings(0.1, 0.1)
    pairs = {Thresholds(0.1, 0.1), Thresholds(0.9, 0.9)}
    seen, stop = set(), threading.Event()

    def writer():
        for i in range(20000):
            v = 0.9 if i % 2 else 0.1
            settings.set(conf=v, nms=v)
        stop.set()

    t = threading.Thread(target=writer)
    t.start()
    while not stop.is_set():
        seen.add(settings.get())
    t.join()
    assert seen <= pairs


def test_frame_stats_fps_and_medians():
    stats = FrameStats(window=2.0)
    for i in range(31):  # 30 intervals of 1/15 s
        stats.record({"network": 10.0 + i % 3, "total": 40.0}, now=100 + i / 15)
    snap = stats.snapshot(now=100 + 30 / 15)
    assert snap["fps"] == pytest.approx(15.0)
    assert snap["frames"] == 31
    assert snap["ms"]["total"] == 40.0 and snap["ms"]["network"] == 11.0
    assert stats.snapshot(now=200)["fps"] == 0.0  # nothing in the window: no fps


def test_stream_slots_cap_release_and_stale_streams():
    slots = StreamSlots(limit=2, stale_after=5.0)
    assert slots.acquire("a", now=0) and slots.acquire("b", now=0)
    assert not slots.acquire("c", now=1)  # the cap
    assert slots.acquire("a", now=1)  # a holder keeps its slot (the per-frame heartbeat)
    slots.release("b")
    assert slots.acquire("c", now=2) and slots.in_use(now=2) == 2
    # "a" stops sending frames (a closed tab): its slot frees after stale_after seconds.
    assert slots.acquire("c", now=6.5)
    assert slots.acquire("d", now=6.5) and not slots.holds("a")
    with pytest.raises(ValueError):
        StreamSlots(0)


def test_stream_slots_never_exceed_the_cap_under_threads():
    slots = StreamSlots(limit=3)
    most, lock = [0], threading.Lock()

    def stream(token):
        for _ in range(300):
            if slots.acquire(token):
                with lock:
                    most[0] = max(most[0], slots.in_use())
                slots.release(token)

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 1 <= most[0] <= 3 and slots.in_use() == 0


def test_the_thread_limit_applies_to_this_thread_only_and_is_restored():
    from ssd_core.device import this_thread_limited

    before = torch.get_num_threads()
    seen = {}
    with this_thread_limited(1) as ok:
        if not ok:
            pytest.skip("torch's OpenMP runtime was not found (not Linux/OpenMP)")
        seen["inside"] = torch.get_num_threads()
        t = threading.Thread(target=lambda: seen.setdefault("other", torch.get_num_threads()))
        t.start()
        t.join()
    assert seen["inside"] == 1
    assert seen["other"] == before  # a thread started meanwhile keeps torch's setting
    assert torch.get_num_threads() == before
