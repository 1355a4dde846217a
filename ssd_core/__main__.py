"""``python -m ssd_core``: see :mod:`ssd_core.cli`."""

import sys

from ssd_core.cli import main

if __name__ == "__main__":
    sys.exit(main())
