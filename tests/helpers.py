"""Helpers shared by the test modules: the tiny training setup, image files made by hand, and
the fuzzers' settings, watchdog, outcome counts and dataset contract. A plain module
(``from tests.helpers import TINY``); ``tests/conftest.py`` holds the shared fixtures.
"""

from __future__ import annotations

import contextlib
import io
import signal
import struct
import zlib
from collections import Counter
from pathlib import Path

import torch
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from PIL import Image

from ssd_core import SyntheticDetection, TrainConfig

# ============================================================================ training

# A small TinySSD (same structure, fewer channels) at 64x64 keeps a step ~10 ms. Flat names:
# build configs with tiny_config(), give it to the CLI with flags(TINY).
TINY = dict(input_size=64, batch_size=4, epochs=1, log_every=1, base_channels=(8, 16, 16),
            channels=16, optimizer="adam", lr=3e-3, normalize="positives")


def tiny_config(**changes) -> TrainConfig:
    """The TINY TrainConfig with ``changes`` (flat setting names, loss settings included)."""
    return TrainConfig.from_dict({**TINY, **changes})


def tiny_set(n: int, seed: int = 3) -> SyntheticDetection:
    """``n`` synthetic 64x64 images of the book's banana preset (one class)."""
    return SyntheticDetection(n, seed=seed, image_size=64, preset="book")


def flags(values: dict) -> list[str]:
    """Command-line flags of flat settings: {"lr": 0.003, "base_channels": (8, 16)} ->
    ["--lr", "0.003", "--base-channels", "8,16"]."""
    out = []
    for name, value in values.items():
        if isinstance(value, (list, tuple)):
            value = ",".join(map(str, value))
        out += ["--" + name.replace("_", "-"), str(value)]
    return out


# ============================================================================ image files


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    """The bytes of ``img`` saved as ``fmt``."""
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return (struct.pack(">I", len(body)) + kind + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))


def png_claiming(w: int, h: int) -> bytes:
    """A tiny PNG whose IHDR claims w x h pixels (a decompression bomb header)."""
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _png_chunk(b"IEND", b""))


# ============================================================================ fuzzing

FUZZ = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])
# Byte-level mutations of valid files (images, zip uploads).
OPS = ("flip", "truncate", "insert", "duplicate", "big-number", "delete")


class Hang(BaseException):
    """Raised by the watchdog; a BaseException so no ``except Exception`` can swallow it."""


@contextlib.contextmanager
def watchdog(seconds: float = 30.0):
    """Fail (instead of hanging the suite) when the block runs longer than ``seconds``."""

    def fire(signum, frame):
        raise Hang(f"still running after {seconds} s: a hang on hostile input")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


_tallies: list[Counter] = []


def note(outcome: str) -> None:
    """Count an outcome ("refused", "loaded", ...): a Hypothesis event (pytest
    --hypothesis-show-statistics) and a count for every ``assert_both_outcomes`` running."""
    if currently_in_test_context():
        event(outcome)
    for tally in _tallies:
        tally[outcome] += 1


def assert_both_outcomes(fuzz, accepted: str = "loaded", refused: str = "refused",
                         at_least: int = 1) -> Counter:
    """Run the Hypothesis test ``fuzz`` and check that its cases were both accepted (outcomes
    starting with ``accepted``) and refused, each ``at_least`` times: a function that refuses
    everything (or nothing) passes every single case, but not this.

    Derandomized runs still draw different cases when other modules are loaded (Hypothesis
    mixes constants from every local module it sees into its choices), so exact counts vary
    with the tests collected: give ``fuzz`` an explicit ``@example`` of each rarer outcome."""
    tally = Counter()
    _tallies.append(tally)
    try:
        fuzz()
    finally:
        _tallies.remove(tally)
    got = sum(n for outcome, n in tally.items() if outcome.startswith(accepted))
    assert got >= at_least, f"too few cases were {accepted!r}: {dict(tally)}"
    assert tally[refused] >= at_least, f"too few cases were {refused!r}: {dict(tally)}"
    return tally


# Two real images every fuzzed dataset can point at; c.png is named but never written.
IMAGES = {"a.png": (24, 20), "b.jpg": (20, 24)}


def write_images(root: Path) -> None:
    for name, size in IMAGES.items():
        Image.new("RGB", size, (200, 40, 40)).save(root / name)


def write_file(path: Path, content) -> None:
    """Write text (lone surrogates kept) or bytes, making the folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", errors="surrogatepass")


def check_dataset(ds) -> None:
    """The contract of a loaded dataset: distinct class names, every box valid and inside its
    image, every label a class index, every item a finite normalized target."""
    names = ds.class_names
    assert isinstance(names, list) and names, names
    assert all(isinstance(n, str) for n in names) and len(set(names)) == len(names), names
    for rec in ds.records:
        w, h = rec.size
        assert w >= 1 and h >= 1
        b, lab = rec.boxes, rec.labels
        assert b.dtype == torch.float32 and b.shape == (lab.shape[0], 4), (b.shape, lab.shape)
        assert lab.dtype == torch.int64
        assert bool(torch.isfinite(b).all()), b
        assert bool((b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()), b
        assert bool((b[:, :2] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 3] <= h).all()), b
        assert bool(((lab >= 0) & (lab < len(names))).all()), (lab, names)
        rel = Path(rec.file)
        assert not rel.is_absolute() and ".." not in rel.parts and (ds.root / rel).is_file()
    for i in range(len(ds)):
        x, target = ds[i]
        assert x.shape == (3, ds.image_size, ds.image_size)
        assert bool(torch.isfinite(target).all())
        assert bool(((target[:, 1:] >= 0) & (target[:, 1:] <= 1)).all())


@st.composite
def boxes(draw, n, degenerate=True, min_side=0.0):
    """``(n, 4)`` float32 corner boxes in [0, 1]; some zero-width/height when degenerate."""
    out = []
    for _ in range(n):
        x, y = draw(st.floats(0, 1)), draw(st.floats(0, 1))
        side = st.floats(min_side, 1) if min_side > 0 else st.floats(0, 1)
        if degenerate:
            side = st.one_of(side, st.just(0.0))
        w, h = draw(side), draw(side)
        out.append([x, y, min(x + w, 1.5), min(y + h, 1.5)])
    return torch.tensor(out, dtype=torch.float32).reshape(n, 4)


def zip_bytes(folder) -> bytes:
    """The files under ``folder`` as a zip archive (paths relative to it), e.g. an upload."""
    import zipfile

    folder = Path(folder)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for p in folder.rglob("*"):
            if p.is_file():
                z.write(p, p.relative_to(folder))
    return buf.getvalue()
