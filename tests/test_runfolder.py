"""ssd_core.runfolder: the one owner of a run folder's layout, status schema and states.

The first test builds run folders exactly as the code before this module wrote them (two
status.json writers with two schemas: the JobManager's {"state", "message", "time", "error"?}
and the Trainer's {"state", "message", "step", "epoch", "total_steps", "time"}) and checks that
they are listed, read and opened, and that an interrupted one resumes.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

from ssd_core import DataSpec, JobManager, Trainer, load_checkpoint
from ssd_core import runfolder as rf
from ssd_core.errors import ConfigError
from ssd_core.fileio import write_json_atomic
from ssd_core.runs import read_metrics
from tests.helpers import tiny_config

DATA = DataSpec(n=4, val_n=2)


def _dead_pid() -> int:
    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                       capture_output=True, text=True, check=True)
    return int(p.stdout)


def _old(path, name, obj) -> None:
    """A JSON file as the old writers wrote it (write_json_atomic: indent 2, keys in order)."""
    write_json_atomic(path / name, obj)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real stopped run's files (checkpoint.pt at epoch 1 of 2, best.pt, metrics.jsonl): the
    checkpoint format is checkpoint.py's and did not change with the run folder's layout."""
    out = tmp_path_factory.mktemp("trained")
    train, val = DATA.build(64)
    trainer = Trainer(tiny_config(epochs=2), train, val, run_dir=out)
    for rec in trainer.fit():
        if rec["kind"] == "epoch":
            trainer.stop()
    assert trainer.state == "stopped" and (out / "checkpoint.pt").exists()
    return out, trainer.config


def _old_layout(root, trained):
    """Run folders in the layout and both status schemas of the code before ssd_core.runfolder,
    file for file -> {name: folder}."""
    src, config = trained
    host, runs = socket.gethostname(), {}

    def run(name, created, files=("checkpoint.pt", "best.pt", "metrics.jsonl"), owner=True,
            data=True):
        path = root / name
        path.mkdir(parents=True)
        _old(path, "config.json", config.to_dict())
        if data:
            _old(path, "data.json", {"kind": "synthetic", "n": 4, "seed": 0, "preset": "default",
                                     "path": None, "fmt": None, "val_n": 2, "val_seed": 10000,
                                     "val_fraction": 0.1, "augment": False,
                                     "created_ns": created})
        if owner:
            _old(path, "owner.json", {"pid": _dead_pid(), "host": host})
        for f in files:
            shutil.copy(src / f, path / f)
        runs[name] = path
        return path

    # JobManager runs: its schema (state, message, time; error when failed).
    p = run("20261207-110844-f096c0-old", 1_796_641_724_034_250_207)
    _old(p, "status.json", {"state": "finished", "message": "trained 2 epochs, 2 steps",
                            "time": 1796641728.5211465})
    preview = {"epoch": 1, "image_index": 0, "detections": [],
               "class_names": ["banana", "ring", "star"],
               "ground_truth": [[0.0, 0.203125, 0.28125, 0.859375, 0.796875]]}
    _old(p, "preview.json", preview)
    (p / "previews.jsonl").write_text(json.dumps(preview) + "\n")
    p = run("20261207-110848-53ca78", 1_796_641_725_000_000_000, files=())
    message = "Dataset not found: '/nonexistent.zip'. Give a folder or a .zip."
    _old(p, "status.json", {"state": "failed", "message": message, "time": 1796641729.3492749,
                            "error": {"type": "AnnotationError", "message": message,
                                      "path": None, "bad_image": False}})
    p = run("20261207-110848-f00d42", 1_796_641_726_000_000_000, files=())
    _old(p, "status.json", {"state": "stopped", "message": "cancelled before it started",
                            "time": 1796641729.3415213})
    # A server killed mid-run: the Trainer's schema, still "running", its owner gone.
    p = run("20261207-110850-aaaaaa-killed", 1_796_641_727_000_000_000)
    _old(p, "status.json", {"state": "running", "message": "epoch 1/2 done", "step": 1,
                            "epoch": 1, "total_steps": 2, "time": 1796641730.1})
    # A CLI run: no data.json, no owner.json, the Trainer's schema.
    p = run("cli-run", None, owner=False, data=False)
    _old(p, "status.json", {"state": "stopped", "message": "stopped after epoch 1", "step": 1,
                            "epoch": 1, "total_steps": 2, "time": 1796641730.2770274})
    # A folder that lost its status (a crash between writing config.json and status.json).
    run("20261207-110851-bbbbbb", 1_796_641_728_000_000_000, files=())
    return runs


def test_old_run_folders_are_listed_read_opened_and_resumed(tmp_path, trained):
    runs = _old_layout(tmp_path, trained)
    (tmp_path / "experiments").mkdir()  # the runs folder's other folders are not runs
    (tmp_path / "_uploads").mkdir()
    jm = JobManager(tmp_path)
    listed = {s.run_id: s for s in jm.list_runs()}
    assert set(listed) == set(runs)
    states = {k: (s.state, s.resumable, s.checkpoint.name if s.checkpoint else None)
              for k, s in listed.items()}
    assert states == {
        "20261207-110844-f096c0-old": ("finished", False, "best.pt"),
        "20261207-110848-53ca78": ("failed", False, None),
        "20261207-110848-f00d42": ("stopped", False, None),
        "20261207-110850-aaaaaa-killed": ("interrupted", True, "best.pt"),
        "cli-run": ("stopped", True, "best.pt"),
        "20261207-110851-bbbbbb": ("interrupted", False, None),
    }
    old = listed["20261207-110844-f096c0-old"]
    assert old.message == "trained 2 epochs, 2 steps" and old.created == 1_796_641_724.034250207
    assert old.preview["epoch"] == 1 and [p["epoch"] for p in old.previews] == [1]
    assert old.records == read_metrics(runs[old.run_id] / "metrics.jsonl") and old.epochs
    assert old.config["input_size"] == 64
    failed = listed["20261207-110848-53ca78"]
    assert failed.error["type"] == "AnnotationError" and "not found" in failed.message
    assert "resume it from its last checkpoint" in listed["20261207-110850-aaaaaa-killed"].message
    assert "no status.json" in listed["20261207-110851-bbbbbb"].message
    # Newest first by the stamp submit wrote; runs without one by their files' times.
    stamped = [k for k in listed if k.startswith("2026")]
    assert [s.run_id for s in jm.list_runs() if s.run_id in stamped] == sorted(stamped)[::-1]
    for snap in listed.values():
        if snap.checkpoint is not None:
            ckpt = load_checkpoint(snap.checkpoint)
            assert ckpt.class_names == ["banana", "ring", "star"]
            assert ckpt.config.input_size == 64
    assert load_checkpoint(runs["cli-run"] / "checkpoint.pt").train_state["step"] == 1

    # The killed run resumes where its checkpoint left off and ends in the new schema.
    killed = "20261207-110850-aaaaaa-killed"
    jm.resume(killed)
    assert jm.wait(killed, 120)
    snap = jm.snapshot(killed)
    assert snap.state == "finished", snap.message
    assert [r["epoch"] for r in snap.epochs] == [1, 2]
    status = rf.read_status(runs[killed])
    assert (status.state, status.step, status.epoch, status.total_steps) == \
        ("finished", 2, 2, 2)
    assert json.loads((runs[killed] / "status.json").read_text())["state"] == "finished"
    # A run cancelled before it started left no checkpoint: nothing to resume.
    with pytest.raises(ConfigError, match="no checkpoint"):
        jm.resume("20261207-110848-f00d42")


@pytest.mark.parametrize("text, words", [
    (None, "no status.json"),
    ('{"state": "runn', "could not be read"),
    ("", "could not be read"),
    ("[1, 2]", "could not be read"),
    ("\udcff", "could not be read"),
    ('{"message": "training"}', "unknown state None (training)"),
    ('{"state": "paused", "message": "by a newer version"}', "unknown state 'paused'"),
    ('{"state": 3}', "unknown state 3"),
])
def test_a_missing_torn_or_unknown_status_reads_as_interrupted(tmp_path, text, words):
    if text is not None:
        (tmp_path / "status.json").write_bytes(text.encode("utf-8", "surrogateescape"))
    status = rf.read_status(tmp_path)
    assert status.state == rf.INTERRUPTED and words in status.message, status
    assert rf.current_status(tmp_path).state == rf.INTERRUPTED


def test_status_fields_of_the_wrong_type_are_dropped_not_raised(tmp_path):
    (tmp_path / "status.json").write_text(json.dumps(
        {"state": "stopped", "message": 5, "step": "3", "epoch": True, "total_steps": 2.5,
         "error": "boom", "time": "late", "extra": 1}))
    assert rf.read_status(tmp_path) == rf.Status("stopped")


def test_one_writer_one_schema_and_it_refuses_unknown_states(tmp_path):
    written = rf.write_status(tmp_path, rf.FAILED, "it broke", step=3, epoch=1, total_steps=8,
                              error={"type": "X", "message": "it broke"})
    assert rf.read_status(tmp_path) == written
    assert list(json.loads((tmp_path / "status.json").read_text())) == [
        "state", "message", "step", "epoch", "total_steps", "error", "time"]
    with pytest.raises(ValueError, match="unknown run state 'done'"):
        rf.write_status(tmp_path, "done")
    assert rf.read_status(tmp_path) == written


def test_states_active_and_ended_partition_the_states():
    assert set(rf.STATES) == rf.ACTIVE | rf.ENDED and not rf.ACTIVE & rf.ENDED
    assert rf.STOPPABLE <= rf.ACTIVE and rf.RESUMABLE <= rf.ENDED
    assert rf.FINISHED not in rf.RESUMABLE


def test_an_active_run_of_another_live_process_stays_active_and_is_not_resumed(tmp_path,
                                                                               trained):
    src, config = trained
    path = tmp_path / "elsewhere"
    rf.write_config(path, config)
    shutil.copy(src / "checkpoint.pt", path / "checkpoint.pt")
    write_json_atomic(path / "owner.json", {"pid": os.getppid(), "host": socket.gethostname()})
    rf.write_status(path, rf.RUNNING, "training", step=1, epoch=1, total_steps=2)
    jm = JobManager(tmp_path)
    assert jm.snapshot("elsewhere").state == rf.RUNNING
    with pytest.raises(ConfigError, match="already running"):
        jm.resume("elsewhere")
    # Another host's run counts as alive while its status is fresh.
    write_json_atomic(path / "owner.json", {"pid": 1, "host": "another-host"})
    assert jm.snapshot("elsewhere").state == rf.RUNNING
    os.utime(path / "status.json", (1e9, 1e9))
    assert jm.snapshot("elsewhere").state == rf.INTERRUPTED and jm.snapshot("elsewhere").resumable


def test_the_manager_knows_its_jobs_states_without_reading_the_folder_back(tmp_path,
                                                                          monkeypatch):
    """The JobManager writes status.json for other readers but decides its own jobs' states
    from memory: with every status reader broken, its jobs still queue, stop and finish."""
    def broken(*args, **kwargs):
        raise AssertionError("the manager read a status back")

    monkeypatch.setattr(rf, "read_status", broken)
    monkeypatch.setattr(rf, "current_status", broken)
    jm = JobManager(tmp_path, max_running=1)
    first = jm.submit(tiny_config(epochs=1), DataSpec(n=4, val_n=0))
    second = jm.submit(tiny_config(epochs=1), DataSpec(n=4, val_n=0))
    jm.stop(second)
    assert jm.wait(first, 120) and jm.wait(second, 10)
    assert jm.snapshot(first).state == rf.FINISHED and jm.snapshot(second).state == rf.STOPPED
    assert [s.state for s in jm.list_runs()] == [rf.STOPPED, rf.FINISHED]
    monkeypatch.undo()
    # What it wrote for other readers: the one schema, with the trainer's progress.
    status = rf.read_status(tmp_path / first)
    assert (status.state, status.step, status.total_steps, status.error) == (
        rf.FINISHED, 1, 1, None)
    assert rf.read_status(tmp_path / second).message == "cancelled before it started"
    assert JobManager(tmp_path).snapshot(first).state == rf.FINISHED


def test_run_folders_are_the_folders_with_a_config(tmp_path):
    for name in ("a", "b", rf.EXPERIMENTS_DIR, rf.UPLOADS_DIR):
        (tmp_path / name).mkdir()
    for name in ("a", "b"):
        (tmp_path / name / rf.CONFIG).write_text("{}")
    (tmp_path / "stray.json").write_text("{}")
    assert sorted(p.name for p in rf.run_folders(tmp_path)) == ["a", "b"]
    assert rf.run_folders(tmp_path / "missing") == []
    assert rf.checkpoint(tmp_path / "a") is None and rf.resume_checkpoint(tmp_path / "a") is None
