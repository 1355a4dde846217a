"""The shipped TinySSD checkpoint (with its config and metrics) and the sample images.

Installed as the package ``ssd_explorer_assets``; find files with ``ssd_core.resources``."""
