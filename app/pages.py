"""The one list of pages: ``main.py`` builds the navigation from it and the Overview page
links every entry, so a new page is added here once."""

from __future__ import annotations

from typing import NamedTuple


class PageSpec(NamedTuple):
    """A page: its script (relative to ``main.py``), menu title, Material icon and the one-line
    summary the Overview links show."""

    path: str
    title: str
    icon: str
    summary: str


PAGES = [
    PageSpec("views/overview.py", "Overview", ":material/home:",
             "SSD in a few sentences and the TinySSD diagram"),
    PageSpec("views/chapter.py", "Chapter", ":material/menu_book:",
             "the chapter's code cells, each output computed live"),
    PageSpec("views/anchors.py", "Anchors", ":material/grid_on:",
             "the five scales of anchor boxes"),
    PageSpec("views/labeling.py", "Labeling", ":material/label:",
             "how anchors become training targets"),
    PageSpec("views/losses.py", "Losses", ":material/show_chart:",
             "smooth-L1 and focal loss, interactive"),
    PageSpec("views/model.py", "Model", ":material/account_tree:",
             "blocks, shapes, receptive fields, activations"),
    PageSpec("views/training.py", "Training", ":material/model_training:",
             "train TinySSD in the background and watch it learn"),
    PageSpec("views/detection.py", "Detection", ":material/center_focus_strong:",
             "a trained model on any image, thresholds and NMS"),
    PageSpec("views/teach.py", "Teach", ":material/school:",
             "your own objects: photos, boxes, a model, live detection"),
    PageSpec("views/evaluation.py", "Evaluation", ":material/analytics:",
             "AP50, mAP, precision-recall and the worst images"),
    PageSpec("views/experiments.py", "Experiments", ":material/science:",
             "the chapter's Problems as matched training runs"),
]
DEFAULT = PAGES[0]  # the page a bare URL opens
