"""Zip uploads: byte-level mutations of a valid zip load as a valid dataset or are refused
with an ``AnnotationError`` (both occur), never another exception or a hang; members that point
outside the folder are refused.
"""

from __future__ import annotations

import io
import warnings
import zipfile

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from PIL import Image

from ssd_core.data import load_dataset
from ssd_core.data.archive import extract_zip
from ssd_core.errors import AnnotationError
from tests.helpers import (
    FUZZ,
    IMAGES,
    OPS,
    assert_both_outcomes,
    check_dataset,
    encode,
    note,
    watchdog,
)

# Pillow warns (corrupt EXIF, skipped TIFF tags) on the mutated files it still decodes.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL")


def _valid_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, size in IMAGES.items():
            zf.writestr(f"data/{name}", encode(Image.new("RGB", size, (9, 99, 199)),
                                               "PNG" if name.endswith("png") else "JPEG"))
        zf.writestr("data/label.csv", "img_name,label,xmin,ymin,xmax,ymax\na.png,0,1,1,5,5\n"
                                      "b.jpg,0,2,2,9,9\n")
    return buf.getvalue()


VALID_ZIP = _valid_zip()


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 1 << 16), st.integers(0, 255)),
                min_size=1, max_size=3))
@example([])  # no mutation: the valid zip loads
def fuzz_mutated_zip(ops):
    data = bytearray(VALID_ZIP)
    for op, pos, val in ops:
        if not data:
            break
        p = pos % len(data)
        if op == "flip":
            data[p] ^= val or 1
        elif op == "truncate":
            del data[p:]
        elif op == "big-number":
            data[p:p + 4] = b"\xff\xff\xff\x7f"
        else:
            data[p:p] = bytes([val]) * (1 + val % 5)
    try:
        with watchdog(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = load_dataset(bytes(data), image_size=32)
            check_dataset(ds)
    except AnnotationError as e:
        assert str(e)
        note("refused")
        return
    note("loaded")


def test_mutated_zip_upload():
    assert_both_outcomes(fuzz_mutated_zip)


def test_valid_zip_loads():
    ds = load_dataset(VALID_ZIP, image_size=32)
    check_dataset(ds)
    assert len(ds) == 2 and ds.class_names == ["banana"]


@pytest.mark.parametrize("member", ["../evil.txt", "/abs.txt", "a/../../evil.txt"])
def test_zip_members_outside_the_folder_are_refused(member, tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(member, "x")
    with pytest.raises(AnnotationError):
        extract_zip(buf.getvalue(), tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()

