"""The shipped files (the pretrained TinySSD and the sample images) from any folder.

``pip install .`` installs the repository's ``assets/`` folder as the package
``ssd_explorer_assets``; in a checkout that is not installed they are read from ``assets/``
next to ``ssd_core/``. Paths are real files (pip installs wheels unpacked), so they can be
given to ``torch.load`` or ``PIL.Image.open`` as they are.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

ASSETS_PACKAGE = "ssd_explorer_assets"
CHECKOUT_ASSETS = Path(__file__).resolve().parent.parent / "assets"
SHIPPED_CHECKPOINT = "tinyssd_synthetic.pt"


def _roots() -> list[Path]:
    """Folders that may hold the assets, most preferred first: the installed package data,
    then the checkout's ``assets/``."""
    roots = []
    try:
        installed = resources.files(ASSETS_PACKAGE)
    except ModuleNotFoundError:
        installed = None
    if isinstance(installed, Path):  # a zipped install has no real paths: use the checkout
        roots.append(installed)
    if CHECKOUT_ASSETS not in roots:
        roots.append(CHECKOUT_ASSETS)
    return roots


def asset_path(*parts: str) -> Path:
    """``assets/<parts...>`` in the first root where it exists; if in none, the path where it
    was expected first (so an error message can name it)."""
    candidates = [root.joinpath(*parts) for root in _roots()]
    return next((p for p in candidates if p.exists()), candidates[0])


def shipped_checkpoint() -> Path:
    """The pretrained TinySSD checkpoint (its ``.config.json`` and ``.metrics.json`` sit next
    to it)."""
    return asset_path(SHIPPED_CHECKPOINT)


def samples_dir() -> Path:
    """The folder of sample images (``shapes-*.jpg``)."""
    return asset_path("samples")
