"""What a photo set is ready for: its boxes per class, what stops training, what it needs.

What stops training (``problems()``): no photos, no boxes, a class with no boxes. One class is
enough (the book's banana detector has one); images without boxes are fine (negatives).

The rule of thumb (``needs()``): TARGET_BOXES_PER_CLASS = 10 boxes per class for a first
model. Unmeasured here; it is the floor the hosted custom-detector services ask for: Google
AutoML Vision Object Detection "10 annotations (instances) minimum" per label (about 1000
recommended), Oracle Cloud Vision "at least 10 images for the label, ideally 50 or more",
Amazon Rekognition Custom Labels "at least 10 images", Azure Custom Vision 15 images per tag.
Those fine-tune large pretrained networks; a TinySSD trained from scratch needs more, so 10 is a
floor for a first try, not a promise of accuracy. A measurement was tried (the synthetic "book"
preset, a tests/helpers.py TINY TinySSD with hard negative mining and augmentation, 200 steps of
4 images for N = 4, 8, 16 training boxes, AP50 on 64 held-out images) and said nothing: after
200 steps the model had learned too little for N to matter (AP50 0.005 at N = 4, 0.010 at
N = 8) and longer runs did not fit the shared CPUs.
"""

from __future__ import annotations

from ssd_core.userdata.state import _State

TARGET_BOXES_PER_CLASS = 10  # see the module docstring


def counts(state: _State) -> dict[str, int]:
    """Boxes per class, every class (0 for one with none), in class order."""
    out = dict.fromkeys(state.class_names, 0)
    for im in state.images:
        for b in im.boxes:
            out[b.label] += 1
    return out


def needs(state: _State) -> dict[str, int]:
    """How many more boxes each class needs for a first model (TARGET_BOXES_PER_CLASS)."""
    return {c: max(0, TARGET_BOXES_PER_CLASS - n) for c, n in counts(state).items()}


def problems(state: _State) -> list[str]:
    """What stops training now, in plain words ([] when it can train)."""
    if not state.images:
        return ["The set has no photos yet: take or upload some."]
    per_class = counts(state)
    if not any(per_class.values()):
        return ["No boxes yet: draw a box around each object on your photos."]
    return [f"The class {c!r} has no boxes: draw at least one, or remove the class."
            for c, n in per_class.items() if n == 0]
