"""Training page through AppTest: a tiny job started from the form trains in the background,
its metrics reach the page, Stop ends a run with a checkpoint, a finished run becomes the
active model. Runs go to a temporary SSD_RUNS_DIR."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from ssd_core import load_checkpoint
from ssd_core.jobs import read_metrics

from .conftest import app_on_page

APP = Path(__file__).resolve().parents[2] / "app"
TIMEOUT = 120


@pytest.fixture
def at(tmp_path, monkeypatch):
    app = app_on_page("training", tmp_path / "runs", monkeypatch)
    return app


def start_tiny(app, epochs: int) -> str:
    app.run()
    assert not app.exception
    app.number_input(key="training.n").set_value(8)
    app.number_input(key="training.val_n").set_value(4)
    app.number_input(key="training.epochs").set_value(epochs)
    app.number_input(key="training.batch").set_value(4)
    app.select_slider(key="training.input_size").set_value(64)
    next(b for b in app.button if b.label == "Start training").click().run()
    assert not app.exception and not app.error
    return app.session_state["training.run"]


def status_line(app) -> str:
    return next(m.value for m in app.markdown if "· run `" in m.value)


def metric(app, label: str) -> str:
    return next(m.value for m in app.metric if m.label == label)


def poll(app, until, timeout: float = 120.0) -> None:
    """Rerun the page (as the fragment's run_every would) until ``until(app)`` holds."""
    deadline = time.time() + timeout
    while True:
        app.run()
        assert not app.exception
        if until(app):
            return
        if time.time() > deadline:
            raise AssertionError(f"timed out; last status: {status_line(app)}")
        time.sleep(0.5)


def test_tiny_run_shows_metrics_preview_and_becomes_active_model(at, tmp_path):
    run_id = start_tiny(at, epochs=2)
    run_dir = tmp_path / "runs" / run_id
    assert json.loads((run_dir / "config.json").read_text())["input_size"] == 64
    # the run's id in the URL, once (AppTest gives a single value as str, a repeated key as list)
    assert at.query_params["run"] == run_id and type(at.query_params["run"]) is str
    poll(at, lambda a: "finished" in status_line(a))

    records = read_metrics(run_dir / "metrics.jsonl")
    last, epochs = records[-1], [r for r in records if r["kind"] == "epoch"]
    assert len(epochs) == 2 and last["step"] == 4  # 8 images / batch 4 * 2 epochs
    assert metric(at, "Loss") == f"{last['loss']:.4f}"
    assert metric(at, "Val AP50") == f"{epochs[-1]['val_ap50']:.3f}"
    assert at.get("progress")[0].proto.value == 100
    charts = {c.proto.id: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    curves = next(s for s in charts.values() if "Learning rate" in json.dumps(s["layout"]))
    names = {t["name"] for t in curves["data"]}
    assert {"total loss", "class error", "box MAE", "val AP50", "images/s"} <= names
    preview = next(s for s in charts.values() if "Epoch 2" in json.dumps(s["layout"]))
    assert any(t["name"] == "ground truth" for t in preview["data"])

    at.button(key="training.use").click().run()
    assert at.session_state["active_checkpoint"] == str(run_dir / "best.pt")
    ck = load_checkpoint(run_dir / "best.pt")
    assert ck.config.input_size == 64 and ck.class_names == ["banana", "ring", "star"]
    # the Detection page now runs this checkpoint
    at.switch_page("views/detection.py").run()
    assert not at.exception
    assert at.selectbox(key="detection.model").value == str(run_dir / "best.pt")
    assert "64×64" in " ".join(c.value for c in at.caption)


def test_stop_saves_a_checkpoint_and_the_run_can_resume(at, tmp_path):
    run_id = start_tiny(at, epochs=300)
    poll(at, lambda a: metric(a, "Loss") != "–")
    at.button(key="training.stop").click().run()
    poll(at, lambda a: "stopped" in status_line(a))
    run_dir = tmp_path / "runs" / run_id
    assert (run_dir / "checkpoint.pt").exists()
    steps = read_metrics(run_dir / "metrics.jsonl")[-1]["step"]
    assert 0 < steps < 300 * 2
    assert load_checkpoint(run_dir / "checkpoint.pt").config.epochs == 300
    # stopped and resumable: Resume continues the same run, which we stop again
    at.button(key="training.resume").click().run()
    poll(at, lambda a: any(s in status_line(a) for s in ("running", "queued")))
    at.button(key="training.stop").click().run()
    poll(at, lambda a: "stopped" in status_line(a))
    assert read_metrics(run_dir / "metrics.jsonl")[-1]["step"] >= steps


def form_is_open(app) -> bool:
    return next(e for e in app.expander if e.label == "New run").proto.expanded


def test_second_run_waits_in_the_queue_with_its_position(at, monkeypatch):
    monkeypatch.setenv("SSD_MAX_TRAINING_JOBS", "1")
    at.run()
    assert form_is_open(at)  # no run yet: the form is what there is to see
    first = start_tiny(at, epochs=300)
    poll(at, lambda a: "running" in status_line(a))
    assert not form_is_open(at)  # this session started a run: its panel comes first
    second = start_tiny(at, epochs=1)
    assert second != first and at.session_state["training.run"] == second
    assert "queued" in status_line(at)
    assert any("Queued: position 1" in i.value for i in at.info)
    at.button(key="training.stop").click().run()  # cancels the queued run
    poll(at, lambda a: "stopped" in status_line(a) and "cancelled" in status_line(a))
    # A new session (browser refresh, shared link) with ?run= shows that run, still running,
    # though it is not the newest: the JobManager is shared by the whole server process.
    other = AppTest.from_file(str(APP / "main.py"), default_timeout=TIMEOUT)
    other.switch_page("views/training.py")
    other.query_params["run"] = first
    other.run()
    assert f"run `{first}`" in status_line(other) and "running" in status_line(other)
    assert not form_is_open(other)
    # a classmate arriving without ?run= sees the newest run first, the form folded below it
    newcomer = AppTest.from_file(str(APP / "main.py"), default_timeout=TIMEOUT)
    newcomer.switch_page("views/training.py")
    newcomer.run()
    assert not newcomer.exception and not form_is_open(newcomer)
    assert f"run `{second}`" in status_line(newcomer)
    assert f"run `{second}`" in status_line(newcomer)  # the newest run is shown below it
    other.button(key="training.stop").click().run()
    poll(other, lambda a: "stopped" in status_line(a))


def zip_dataset(tmp_path, n: int) -> bytes:
    import shutil

    from ssd_core.data import SyntheticDetection, export_dataset

    folder = export_dataset(SyntheticDetection(n, seed=7, image_size=96, preset="book"),
                            tmp_path / "bananas", "csv")
    return Path(shutil.make_archive(str(tmp_path / "bananas"), "zip", folder)).read_bytes()


def test_uploaded_dataset_zip_trains_and_a_bad_zip_is_an_error(at, tmp_path):
    at.run()
    at.radio(key="training.data").set_value("Upload a dataset (.zip)").run()
    at.file_uploader(key="training.zip").upload("junk.zip", b"PK\x03\x04 not a zip",
                                                "application/zip").run()
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception
    assert at.error and "could not be used" in at.error[0].value
    assert "training.run" not in at.session_state

    at.file_uploader(key="training.zip").upload("bananas.zip", zip_dataset(tmp_path, 6),
                                                "application/zip").run()
    at.number_input(key="training.epochs").set_value(1)
    at.number_input(key="training.batch").set_value(5)
    at.select_slider(key="training.input_size").set_value(64)
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception and not at.error
    run_id = at.session_state["training.run"]
    poll(at, lambda a: "finished" in status_line(a))
    ck = load_checkpoint(tmp_path / "runs" / run_id / "checkpoint.pt")
    assert ck.class_names == ["banana"]  # the dataset's classes, not the synthetic three
    data = json.loads((tmp_path / "runs" / run_id / "data.json").read_text())
    assert data["kind"] == "path" and Path(data["path"]).exists()
