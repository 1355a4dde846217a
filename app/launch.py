"""``ssd-explorer``: start the app from any folder (``streamlit run`` on this package's main.py).

Arguments are passed on to ``streamlit run`` after the defaults below, so they win:
``ssd-explorer --server.port 8600 --server.headless false``.
"""

from __future__ import annotations

import sys
from pathlib import Path

MAIN = Path(__file__).resolve().with_name("main.py")

# The settings of the repository's .streamlit/config.toml, which `streamlit run app/main.py`
# reads from a checkout; an installed app has no such folder in the working directory.
# tests/test_install.py checks that the two agree.
OPTIONS = {
    "server.fileWatcherType": "none",  # the watcher can crash on torch.classes
    "server.maxUploadSize": 50,
    "server.headless": True,
    "browser.gatherUsageStats": False,
    "theme.base": "light",
    "theme.primaryColor": "#d6336c",
    "client.toolbarMode": "minimal",
}

USAGE = """usage: ssd-explorer [STREAMLIT-RUN-OPTIONS]

Start SSD Explorer (Streamlit) and print its local URL. Options are those of `streamlit run`,
e.g. --server.port 8600, --server.address 0.0.0.0, --server.headless false (open a browser);
`streamlit run --help` lists them all."""


def _value(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def streamlit_argv(extra: list[str]) -> list[str]:
    """The ``streamlit`` command line: ``run MAIN --defaults... extra...``."""
    defaults = [f"--{name}={_value(value)}" for name, value in OPTIONS.items()]
    return ["streamlit", "run", str(MAIN), *defaults, *extra]


def main(argv: list[str] | None = None) -> int:
    extra = sys.argv[1:] if argv is None else list(argv)
    if extra in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    from streamlit.web import cli

    sys.argv = streamlit_argv(extra)
    return cli.main()


if __name__ == "__main__":
    sys.exit(main())
