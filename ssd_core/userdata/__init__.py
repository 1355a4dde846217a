"""A user's own photo set (the Teach flow) on disk, in one place: its layout, its one writer,
its checks, and the way in and out (a DetectionDataset for training; a zip in any of the four
formats; an import from any of them).

A runs folder holds the sets under ``datasets/`` (a folder the runs listing skips: no
``config.json``). One set::

    <runs>/datasets/<slug>/
        annotations.json   COCO (images, annotations, categories), the set's only record
        images/000001.png  the photos, re-encoded (PNG; JPEG q95 when a JPEG came in)
        .lock              the lock file that serialises writers across processes

Writes: every file is written to a temp file and renamed (``ssd_core.fileio``); a photo is
written before the annotations that name it and removed again if they fail, so a failed call
leaves the set as it was (at worst an unreferenced photo file after a crash, never a reference
to a missing one). A new or imported set is built in a hidden folder and renamed into place.
Concurrency: one lock per set (a ``threading.RLock`` per folder in this process, plus
``flock`` on ``.lock`` across processes where the OS has it), and every change re-reads
``annotations.json`` under the lock before it writes (reload-before-write), so two objects on
one folder (two browser sessions, two threads) never lose each other's changes. Reads
(``images``, ``class_names``...) reload when the file changed since they last looked.

The modules, one job each:
    names       set and class names: cleaned, checked, a set's folder name (slug)
    boxes       Box, ImageEntry and the check every box passes (corners in stored pixels)
    state       annotations.json in memory and on disk; the per-set lock
    photos      photos prepared, re-encoded and stored (MAX_SIDE)
    readiness   what stops training, what a set needs (TARGET_BOXES_PER_CLASS)
    folders     the datasets folder, names taken, a new set built and renamed into place
    dataset     UserDataset, the set's one reader and writer
    export      a set out: a DetectionDataset, a snapshot, a zip
    catalog     the sets listed; a set imported from a zip or folder
"""

from ssd_core.runfolder import DATASETS_DIR
from ssd_core.userdata.boxes import DECIMALS, MIN_BOX_SIDE, Box, ImageEntry
from ssd_core.userdata.catalog import import_dataset, list_datasets
from ssd_core.userdata.dataset import UserDataset
from ssd_core.userdata.names import MAX_LABEL, MAX_NAME, slugify
from ssd_core.userdata.photos import JPEG_QUALITY, MAX_SIDE
from ssd_core.userdata.readiness import TARGET_BOXES_PER_CLASS
from ssd_core.userdata.state import ANNOTATIONS, IMAGES_DIR, INFO_KEY, LOCK, SCHEMA

__all__ = [
    "ANNOTATIONS", "DATASETS_DIR", "DECIMALS", "IMAGES_DIR", "INFO_KEY", "JPEG_QUALITY", "LOCK",
    "MAX_LABEL", "MAX_NAME", "MAX_SIDE", "MIN_BOX_SIDE", "SCHEMA", "TARGET_BOXES_PER_CLASS",
    "Box", "ImageEntry", "UserDataset", "import_dataset", "list_datasets", "slugify",
]
