"""What a photo set is ready for: its boxes per class, what stops training, what it needs.

What stops training (``problems()``): no photos, no boxes, a class with no boxes. One class is
enough (the book's banana detector has one); images without boxes are fine (negatives).

The rule of thumb (``needs()``): TARGET_BOXES_PER_CLASS = 9 boxes per class for a first
model, measured with ``bench/boxes_needed.py``: the ``teach`` recipe (from the shipped model)
trained for 40 steps on N labelled photos per class of the few-shot mug/book/ball set, validated
on 36 other photos, two seeds. N = 8 photos per class was the smallest whose AP50 reached 0.8
in both seeds (0.884, 0.904); its rarest class had 9 boxes. With fewer the model already finds
things but less reliably (N = 1: AP50 0.42-0.57; N = 4 and 5, 5-6 boxes of the rarest class:
0.78-0.89, one seed below 0.8); 12 photos per class added little (0.87-0.93). For comparison,
hosted custom-detector services, which fine-tune large pretrained networks, ask for about as
many: Google AutoML Vision Object Detection 10 annotations per label minimum, Amazon
Rekognition Custom Labels and Oracle Cloud Vision 10 images, Azure Custom Vision 15 images per
tag. A floor for a first try on a few objects, not a promise of accuracy on harder ones.
"""

from __future__ import annotations

from ssd_core.userdata.state import _State

TARGET_BOXES_PER_CLASS = 9  # measured: see the module docstring


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
