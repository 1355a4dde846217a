"""A mouse box editor: a photo with its labeled boxes, where a drag on the photo draws a box, a
drag inside a box moves it, its handles resize it and Delete (or the x in its tag) removes it.

Built with Streamlit's public Custom Components v2 API (``st.components.v2.component``) from two
package files, ``box_editor.js`` (an ES module) and ``box_editor.css``, passed inline: no build
step, no third-party code, nothing fetched (the photo travels as a JPEG data URL), so it works
offline. The component sits in a shadow root of the page (``stBidiComponentIsolated``).

The contract: Python sends the photo, its boxes in image pixels, the class of the next box and
the class colours; when a gesture that changed the boxes ends, the editor sends the whole list
back as the trigger ``edit`` (``{"image_id", "boxes": [{"label", "x1", "y1", "x2", "y2"}]}``)
and :func:`editor` hands it to ``on_edit`` in a callback, before the script runs again, so the
next run draws what was saved. :func:`boxes_from_payload` is the check of that payload, a plain
function. ``streamlit.testing.v1.AppTest`` does not run component JavaScript: there the editor is
an element with its data and nothing else (tests call the callback's pieces directly).
"""

from __future__ import annotations

import base64
import functools
import io
import math
from collections.abc import Callable
from pathlib import Path

import streamlit as st
from PIL import Image

from ssd_core.userdata import Box

NAME = "ssd_explorer_box_editor"
EVENT = "edit"
MIN_SIDE = 2.0  # image px: a smaller drag is a click, not a box
MAX_BOXES = 500  # per photo: more is not a drawing, it is a broken payload
NO_CLASS = "Choose or type the class name first, then draw the box again."

_HERE = Path(__file__).resolve().parent
_render = st.components.v2.component(
    NAME, js=(_HERE / "box_editor.js").read_text(encoding="utf-8"),
    css=(_HERE / "box_editor.css").read_text(encoding="utf-8"))


class EditError(ValueError):
    """A payload from the editor that cannot be saved; the message says what to do."""


@st.cache_data(max_entries=16, show_spinner=False)
def photo_url(raw: bytes, max_side: int = 1280) -> tuple[str, int, int]:
    """A photo's file bytes -> (JPEG data URL no larger than ``max_side`` px, width, height of
    the photo itself). Boxes stay in the photo's pixels; only the picture sent is smaller."""
    from app import sample_images

    img = sample_images.open_png(sample_images.decode_image(raw, max_side=100_000))
    w, h = img.size
    img = img.convert("RGB")
    scale = min(1.0, max_side / max(w, h))
    if scale < 1.0:
        img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii"), w, h


def _number(v, where: str) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        x = math.nan
    if not math.isfinite(x) or isinstance(v, bool):
        raise EditError(f"{where}: a corner is not a number ({v!r}); draw the box again.")
    return x


def boxes_from_payload(payload, width: int, height: int) -> list[Box]:
    """The editor's ``edit`` payload -> the photo's boxes (``Box``, corners in image pixels,
    clamped to ``width`` x ``height``, in the order sent). EditError, saying what to do, when a
    box has no class (:data:`NO_CLASS`), is smaller than MIN_SIDE or the payload is malformed."""
    boxes = payload.get("boxes") if isinstance(payload, dict) else None
    if not isinstance(boxes, list):
        raise EditError("The box editor sent no box list; reload the page and draw again.")
    if len(boxes) > MAX_BOXES:
        raise EditError(f"{len(boxes)} boxes on one photo is more than {MAX_BOXES}; "
                        "delete some in the table.")
    out = []
    for k, b in enumerate(boxes, 1):
        where = f"Box {k}"
        if not isinstance(b, dict):
            raise EditError(f"{where} is not a box; reload the page and draw again.")
        label = b.get("label")
        if not isinstance(label, str) or not label.strip():
            raise EditError(NO_CLASS)
        x1, y1, x2, y2 = (_number(b.get(c), where) for c in ("x1", "y1", "x2", "y2"))
        x1, x2 = sorted((min(max(x1, 0.0), width), min(max(x2, 0.0), width)))
        y1, y2 = sorted((min(max(y1, 0.0), height), min(max(y2, 0.0), height)))
        if x2 - x1 < MIN_SIDE or y2 - y1 < MIN_SIDE:
            raise EditError(f"{where} ({label.strip()}) is smaller than {MIN_SIDE:g} px inside "
                            "the photo; drag a larger box around the object.")
        out.append(Box(label.strip(), x1, y1, x2, y2))
    return out


def _on_edit(key: str, on_edit: Callable[[dict], None]) -> None:
    """The component's callback: the trigger's payload (None when there is none) to on_edit."""
    payload = (st.session_state.get(key) or {}).get(EVENT)
    if payload is not None:
        on_edit(payload)


def editor(raw: bytes, image_id: int, boxes: list[Box], label: str | None,
           colors: dict[str, str], key: str, on_edit: Callable[[dict], None], rev: int = 0,
           max_height: int = 520, font_px: int = 14) -> None:
    """Mount the editor on the photo ``raw`` (its file bytes) with ``boxes`` (image pixels);
    ``label``: the class of a new box (None: none chosen yet, the payload then says so);
    ``colors``: class name -> CSS colour; ``on_edit(payload)`` runs in the widget callback when
    the user changed the boxes; ``rev`` must change whenever an edit was handled (saved or
    refused), so the editor drops its own copy and shows the saved boxes; ``max_height``: CSS
    px of the drawn photo at most; ``font_px``: the tags' text size."""
    url, w, h = photo_url(raw)
    data = {"image_id": image_id, "rev": rev, "url": url, "width": w, "height": h,
            "boxes": [{"label": b.label, "x1": b.x1, "y1": b.y1, "x2": b.x2, "y2": b.y2}
                      for b in boxes],
            "label": label or None, "colors": colors, "max_height": max_height,
            "font_px": font_px, "min_side": MIN_SIDE}
    _render(key=key, data=data, height="content",
            **{f"on_{EVENT}_change": functools.partial(_on_edit, key, on_edit)})
