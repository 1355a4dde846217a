"""What the pages share: query-parameter-backed widget state, the image picker, cached
samples and models. Pages stay thin: read widgets, call ssd_core, draw app.figures."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import streamlit as st
import timing
import torch
from PIL import Image

from ssd_core.errors import CheckpointError, InvalidImageError
from ssd_core.resources import samples_dir

ROOT = Path(__file__).resolve().parent.parent
SAMPLES_DIR = samples_dir()
INPUT_SIZES = list(range(64, 513, 32))
DEFAULT_INPUT_SIZE = 256

# ---------------------------------------------------------------- query parameters


def _param(key: str) -> str:
    """Widget keys are page-scoped ("anchors.size"); the URL uses the short name ("size")."""
    return key.split(".", 1)[-1]


def qp_init(key: str, default, cast=str, valid=None):
    """Seed ``st.session_state[key]`` (a widget key) from ``?<param>=`` once per session,
    where the param is the key without its "page." prefix.

    A malformed or out-of-range value falls back to ``default`` (a shared link must never crash
    a page). Call before creating the widget with the same ``key`` and no ``value=``.
    """
    if key in st.session_state:
        return
    value = default
    raw = st.query_params.get(_param(key))
    if raw is not None:
        try:
            cand = cast(raw)
            if valid is None or valid(cand):
                value = cand
        except (TypeError, ValueError):
            pass
    st.session_state[key] = value


def qp_sync(*keys: str) -> None:
    """Write the current values of widget ``keys`` back to the URL so the view can be shared
    (booleans as 1/0, read back by ``as_bool``; floats in short form)."""
    for key in keys:
        if key in st.session_state:
            value = st.session_state[key]
            if isinstance(value, bool):
                text = "1" if value else "0"
            elif isinstance(value, float):
                text = f"{value:g}"
            else:
                text = str(value)
            if st.query_params.get(_param(key)) != text:
                st.query_params[_param(key)] = text


def qp_drop(key: str) -> None:
    """Remove the key's parameter from the URL (e.g. when it equals the default)."""
    if _param(key) in st.query_params:
        del st.query_params[_param(key)]


def as_bool(text: str) -> bool:
    if str(text).lower() in ("1", "true", "yes", "on"):
        return True
    if str(text).lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def input_size_select(key: str, label: str = "Input size (pixels)",
                      help: str | None = None) -> int:
    """A select slider over multiples of 32 (64..512), 256 by default, mirrored in the URL."""
    qp_init(key, DEFAULT_INPUT_SIZE, int, lambda v: v in INPUT_SIZES)
    size = st.select_slider(label, INPUT_SIZES, key=key,
                            help=help or "TinySSD needs a multiple of 32; the book uses 256.")
    qp_sync(key)
    return int(size)


# ---------------------------------------------------------------- images


@st.cache_data(show_spinner=False, max_entries=64)
def synthetic_sample(index: int, image_size: int = 256, preset: str = "default"):
    """(PNG bytes, boxes (M, 4) pixel corners ndarray, labels (M,) ndarray, class names)."""
    from ssd_core.data import SyntheticDetection

    ds = SyntheticDetection(index + 1, seed=0, image_size=image_size, preset=preset)
    img, boxes, labels = ds.sample(index)
    return png_bytes(img), boxes.numpy(), labels.numpy(), list(ds.class_names)


@st.cache_data(show_spinner=False, max_entries=16)
def decode_image(data: bytes, max_side: int = 1024) -> bytes:
    """User bytes -> PNG bytes of an RGB image no larger than ``max_side`` (display copy).

    Raises InvalidImageError with ssd_core's message for anything that is not an image.
    """
    from ssd_core.images import load_image

    img = load_image(data)
    img.thumbnail((max_side, max_side))
    return png_bytes(img)


def png_bytes(img: Image.Image) -> bytes:
    """PIL image -> PNG bytes (hashable input for st.cache_data)."""
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


_png = png_bytes  # old name, still used by part 2's pages


def open_png(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def sample_files() -> list[Path]:
    """Shipped sample images (assets/samples/*.png|jpg), sorted by name."""
    if not SAMPLES_DIR.is_dir():
        return []
    return sorted(p for p in SAMPLES_DIR.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))


def gradient_image(size: int = 256) -> Image.Image:
    """A plain two-way gradient (fallback sample)."""
    t = np.linspace(0, 1, size)
    r = np.tile(t, (size, 1))
    g = r.T
    b = np.full_like(r, 0.6)
    return Image.fromarray((np.stack([r, g, b], -1) * 200 + 30).astype(np.uint8), "RGB")


IMAGE_SOURCES = ["Synthetic sample", "Shipped sample", "Upload", "Blank canvas"]


def upload_hint(text: str) -> None:
    """``st.info`` under an empty uploader, with the upload limit: Streamlit refuses a larger
    file in the browser (a red file chip, its reason only on hover) and the page never sees it."""
    mb = st.get_option("server.maxUploadSize")
    st.info(f"{text} At most {mb} MB per file: a larger file turns red above and is not "
            "uploaded.")


def image_error(name: str, error: Exception) -> None:
    """``st.error`` for a file that is not a usable image: which file, ssd_core's reason, and
    what to choose instead (the library's note on PIL images and numpy arrays is for code)."""
    from ssd_core.images import ACCEPTED_TEXT, DEFAULT_MAX_PIXELS

    reason = str(error).split(" Accepted:")[0].replace("The image data", "The file", 1)
    shown = " ".join(str(name).replace("`", "'").split())[:100] or "the file"  # a code span
    st.error(f"`{shown}` could not be used: {reason} Choose an image file in one of "
             f"{ACCEPTED_TEXT} (at most {DEFAULT_MAX_PIXELS // 1_000_000} megapixels).")


def image_picker(key: str, default: str = "Synthetic sample",
                 sources=IMAGE_SOURCES) -> tuple[Image.Image | None, str, dict]:
    """Sidebar-free image chooser used by several pages.

    Returns ``(image or None, description, extra)``; ``extra`` holds ``boxes``, ``labels`` and
    ``class_names`` for a synthetic sample. An unreadable upload shows ``st.error`` and returns
    None so the page can carry on with a hint.
    """
    files = sample_files()
    sources = [s for s in sources if s != "Shipped sample" or files]
    src_key, idx_key = f"{key}.image", f"{key}.sample"
    qp_init(src_key, default if default in sources else sources[0], str, lambda v: v in sources)
    source = st.radio("Image", sources, key=src_key, horizontal=True)
    qp_sync(src_key)
    extra: dict = {}
    if source == "Synthetic sample":
        qp_init(idx_key, 0, int, lambda v: 0 <= v <= 999)
        i = st.number_input("Sample number", 0, 999, key=idx_key, step=1,
                            help="Deterministic synthetic images (seed 0): bananas, rings, stars.")
        qp_sync(idx_key)
        data, boxes, labels, names = synthetic_sample(int(i))
        extra = {"boxes": boxes, "labels": labels, "class_names": names}
        return open_png(data), f"synthetic sample {int(i)}", extra
    if source == "Shipped sample":
        names = [p.name for p in files]
        qp_init(f"{key}.file", names[0], str, lambda v: v in names)
        name = st.selectbox("Sample image", names, key=f"{key}.file")
        qp_sync(f"{key}.file")
        try:
            return open_png(decode_image(files[names.index(name)].read_bytes())), name, extra
        except InvalidImageError as e:
            st.error(f"The shipped sample could not be read: {e}")
            return None, name, extra
    if source == "Upload":
        up = st.file_uploader("Upload an image", type=None, key=f"{key}.upload",
                              help="PNG, JPEG, GIF, BMP, TIFF, WebP ... (first frame is used)")
        if up is None:
            upload_hint("Choose an image file to upload; until then a gradient is shown.")
            return gradient_image(), "gradient (no upload yet)", extra
        try:
            return open_png(decode_image(up.getvalue())), up.name, extra
        except InvalidImageError as e:
            image_error(up.name, e)
            return None, up.name, extra
    return Image.new("RGB", (256, 256), (245, 245, 245)), "blank canvas", extra


# ---------------------------------------------------------------- models


def active_checkpoint() -> str | None:
    """The checkpoint path part 2's Training page sets, or None."""
    path = st.session_state.get("active_checkpoint")
    return str(path) if path else None


@st.cache_resource(show_spinner="Loading model ...", max_entries=4)
def load_model(checkpoint: str | None, num_classes: int = 3):
    """``(TinySSD in eval mode, class names, note)``; an untrained seeded model when
    ``checkpoint`` is None. Raises CheckpointError for a bad checkpoint."""
    if checkpoint:
        from ssd_core.train import load_checkpoint

        ck = load_checkpoint(checkpoint)
        return ck.model.eval(), list(ck.class_names), f"checkpoint {checkpoint}"
    from ssd_core.data import CLASS_NAMES
    from ssd_core.model import TinySSD

    torch.manual_seed(0)
    model = TinySSD(num_classes=num_classes).eval()
    return model, list(CLASS_NAMES)[:num_classes], "untrained TinySSD (random weights, seed 0)"


def model_or_untrained():
    """``(model, class names, note, checkpoint path or None)`` for the active checkpoint, or the
    untrained model with an st.warning when the checkpoint cannot be loaded."""
    path = active_checkpoint()
    if path:
        try:
            return (*load_model(path), path)
        except CheckpointError as e:
            st.warning(f"The active checkpoint could not be loaded ({e}); "
                       "using an untrained TinySSD instead.")
    return (*load_model(None), None)


# ---------------------------------------------------------------- part 2: jobs and detectors

UNTRAINED = "untrained"
SHIPPED = "shipped"


def runs_dir() -> Path:
    """The runs folder: ``$SSD_RUNS_DIR`` if set, else ``<repo>/runs`` (gitignored)."""
    import os

    return Path(os.environ.get("SSD_RUNS_DIR") or ROOT / "runs")


@st.cache_resource(show_spinner=False)
def _job_manager(path: str):
    from ssd_core.jobs import JobManager

    return JobManager(path)  # reads SSD_MAX_TRAINING_JOBS (1 by default)


def job_manager():
    """The process-wide JobManager of the current runs folder: every session and every browser
    refresh sees the same jobs (the worker threads live as long as the server)."""
    return _job_manager(str(runs_dir()))


def shipped_checkpoint() -> Path:
    from ssd_core.detection import DEFAULT_CHECKPOINT

    return Path(DEFAULT_CHECKPOINT)


def _mtime(path: str) -> int:
    try:
        return Path(path).stat().st_mtime_ns
    except OSError:
        return 0


@st.cache_resource(show_spinner="Loading model ...", max_entries=4)
def _detector(choice: str, mtime: int):
    from ssd_core.detection import Detector

    timing.event("model load", model=choice)

    if choice == UNTRAINED:
        from ssd_core.data import CLASS_NAMES
        from ssd_core.model import TinySSD

        torch.manual_seed(0)
        return Detector(TinySSD(len(CLASS_NAMES)), list(CLASS_NAMES), DEFAULT_INPUT_SIZE,
                        device="cpu")
    return Detector.from_checkpoint(None if choice == SHIPPED else choice)


def detector(choice: str):
    """A cached Detector for a model choice: ``SHIPPED``, ``UNTRAINED`` or a checkpoint path.
    Reloaded when the file changes (a run's checkpoint.pt is rewritten while it trains).
    Raises CheckpointError for a missing or bad checkpoint."""
    path = str(shipped_checkpoint()) if choice == SHIPPED else choice
    return _detector(choice, 0 if choice == UNTRAINED else _mtime(path))


def model_key(choice: str) -> str:
    """A string that changes whenever the chosen model's weights do (for st.cache_data keys)."""
    path = str(shipped_checkpoint()) if choice == SHIPPED else choice
    return f"{choice}@{0 if choice == UNTRAINED else _mtime(path)}"


def model_choices() -> dict[str, str]:
    """Model choice -> label: the active checkpoint, the shipped model (when present), every
    run with a checkpoint (newest first), and an untrained TinySSD (always available)."""
    choices: dict[str, str] = {}
    active = active_checkpoint()
    if active and Path(active).exists():
        choices[active] = f"active: {Path(active).parent.name}/{Path(active).name}"
    if shipped_checkpoint().exists():
        choices[SHIPPED] = "shipped TinySSD (trained on synthetic shapes)"
    try:
        runs = job_manager().list_runs()
    except OSError:
        runs = []
    for run in runs:
        ckpt = run.checkpoint
        if ckpt is not None and run.state not in ("queued",):
            choices.setdefault(str(ckpt), f"run {run.run_id} ({run.state}, {ckpt.name})")
    choices[UNTRAINED] = "untrained TinySSD (random weights)"
    return choices


def model_picker(key: str):
    """A model selectbox -> ``(Detector, label)``. Follows the Training page's active
    checkpoint when it changes; explains a missing shipped model; never raises."""
    from ssd_core.errors import CheckpointError

    choices = model_choices()
    options = list(choices)
    active = active_checkpoint()
    seen = f"{key}.seen_active"
    if st.session_state.get(seen) != active and active in choices:
        st.session_state[key] = active  # "Use for detection" on the Training page wins
    st.session_state[seen] = active
    if st.session_state.get(key) not in choices:
        st.session_state[key] = options[0]
    choice = st.selectbox("Model", options, key=key, format_func=choices.get)
    if not shipped_checkpoint().exists() and choice == UNTRAINED:
        st.info(f"The shipped model `assets/{shipped_checkpoint().name}` is not installed yet, "
                "so this is an **untrained** TinySSD: its boxes are random. Train one on the "
                "Training page (or choose a finished run) to see real detections.")
    try:
        return detector(choice), choices[choice]
    except CheckpointError as e:
        st.warning(f"That model could not be loaded ({e}); using an untrained TinySSD instead.")
        return detector(UNTRAINED), choices[UNTRAINED]


# ---------------------------------------------------------------- anchors


@st.cache_data(show_spinner=False, max_entries=16)
def tinyssd_anchors(input_size: int) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """TinySSD's anchors for a square input: ``(N, 4)`` normalized corners (book order, the
    model's concatenation order) and per scale ``(start index, side, anchors per pixel)``."""
    from ssd_core.anchors import TINYSSD_RATIOS, TINYSSD_SIZES, anchors_per_pixel, multibox_prior
    from ssd_core.model import feature_map_sizes

    parts, layout, start = [], [], 0
    for side, sizes, ratios in zip(feature_map_sizes(input_size), TINYSSD_SIZES, TINYSSD_RATIOS):
        a = multibox_prior(torch.empty((1, 1, side, side)), sizes, ratios)[0].numpy()
        parts.append(a)
        layout.append((start, side, anchors_per_pixel(sizes, ratios)))
        start += len(a)
    return np.concatenate(parts), layout
