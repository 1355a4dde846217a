"""Server-side timing of script runs, for the load test (bench/load_app.py, tests/load).

Off unless the environment variable ``SSD_TIMING_LOG`` names a file: then every timed block
appends one JSON line ``{"what", "ms", "session", "fragment", "t"}`` to it (one ``write`` per
line on a file opened with O_APPEND, so concurrent sessions' lines never interleave), and
:func:`event` records one-off happenings such as a model being loaded into the process cache.
"""

from __future__ import annotations

import contextlib
import json
import os
import time

LOG = os.environ.get("SSD_TIMING_LOG")


def _context() -> dict:
    """The session id, and whether this is a fragment-only rerun (e.g. a slider move)."""
    try:
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        ctx = get_script_run_ctx()
    except Exception:  # noqa: BLE001 (timing must never break a page)
        ctx = None
    if ctx is None:
        return {"session": None, "fragment": False}
    return {"session": ctx.session_id, "fragment": bool(ctx.fragment_ids_this_run)}


def _write(record: dict) -> None:
    try:
        fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (json.dumps(record) + "\n").encode())
        finally:
            os.close(fd)
    except OSError:
        pass


def event(what: str, **extra) -> None:
    if LOG:
        _write({"what": what, **_context(), "t": time.time(), **extra})


@contextlib.contextmanager
def timed(what: str):
    """Time the block (when SSD_TIMING_LOG is set); exceptions pass through untouched, and
    Streamlit's own rerun/stop exceptions still end the timing."""
    if not LOG:
        yield
        return
    t0 = time.perf_counter()
    try:
        yield
    finally:
        _write({"what": what, "ms": (time.perf_counter() - t0) * 1000, **_context(),
                "t": time.time()})
