"""Ten concurrent browser sessions against one real server (the bench runs 30): no errors, the
model is loaded once per process, slider moves stay fragment-only, the training queue runs one
job at a time and finishes them all, and the server's memory stays bounded. The figures it
measures are printed (run with -s) and written to test-artifacts/load-10.json."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
import time

import pytest

from app.serve import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SESSIONS, MOVES, TRAIN_EVERY = 10, 4, 5


def load_bench():
    spec = importlib.util.spec_from_file_location("load_app", ROOT / "bench" / "load_app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_ten_sessions_at_once(chromium_path, tmp_path):
    bench = load_bench()
    t0 = time.time()
    report = bench.run_load(SESSIONS, moves=MOVES, train_every=TRAIN_EVERY, timeout=240,
                            deadline=900, work=tmp_path, settle_runs=True)
    figures = report.as_dict()
    out = ROOT / "test-artifacts" / f"load-{SESSIONS}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(figures, indent=1))
    print(bench.table([report]), f"\n(test wall {time.time() - t0:.0f} s)")

    assert report.errors == [], report.errors
    assert report.completed == SESSIONS and report.waves == 1
    # every slider move reran only the results fragment, on the server, once per move
    assert len(report.slider_server_ms) == SESSIONS * MOVES
    assert all(math.isfinite(ms) and ms > 0 for ms in report.slider_server_ms)
    # the shipped model was loaded into the process once, not once per session
    assert report.model_loads.get("shipped") == 1, report.model_loads
    # the queue: two runs asked for, never more than one training at a time, both finished
    assert report.trainings_started == SESSIONS // TRAIN_EVERY
    assert report.max_running <= 1
    assert report.run_states == {"finished": SESSIONS // TRAIN_EVERY}, report.run_states
    # memory stays bounded: well under what 10 copies of the model and images would need
    assert report.peak_rss_mb < 2500, figures
