"""Background training jobs: queueing, stop, resume, runs that outlive their process."""

import json
import os
import subprocess
import sys
import time

import pytest
import torch

from ssd_core import DataSpec, JobManager, SyntheticDetection, export_dataset, load_checkpoint
from ssd_core.errors import ConfigError
from ssd_core.jobs import read_metrics
from tests.helpers import tiny_config


def test_one_job_at_a_time_others_queued_in_order(tmp_path):
    jm = JobManager(tmp_path, max_running=1)
    first = jm.submit(tiny_config(epochs=1), DataSpec(n=8, val_n=4))
    second = jm.submit(tiny_config(epochs=1), DataSpec(n=4, val_n=0))
    third = jm.submit(tiny_config(epochs=1), DataSpec(n=4, val_n=0))
    assert jm.snapshot(second).queue_position == 1
    assert jm.snapshot(third).queue_position == 2
    assert jm.snapshot(third).state == "queued"
    for run in (first, second, third):
        assert jm.wait(run, 240)
    snaps = [jm.snapshot(r) for r in (first, second, third)]
    assert [s.state for s in snaps] == ["finished"] * 3
    # newest first by creation, though the first run's folder was written to last
    (snaps[0].path / "late.txt").write_text("a file written into the oldest run's folder")
    assert [s.run_id for s in jm.list_runs()] == [third, second, first]
    assert [s.run_id for s in JobManager(tmp_path).list_runs()] == [third, second, first]
    first_snap = snaps[0]
    assert first_snap.epochs and "val_ap50" in first_snap.epochs[-1]
    assert first_snap.progress == 1.0
    # The epoch preview: detections of the current model on the first validation image.
    assert first_snap.preview["epoch"] == 1 and first_snap.preview["ground_truth"]
    ckpt = load_checkpoint(first_snap.checkpoint)
    assert ckpt.class_names == SyntheticDetection(1).class_names
    # Records on disk equal the live ones.
    assert read_metrics(first_snap.path / "metrics.jsonl") == first_snap.records


def test_runs_are_listed_by_the_stamp_submit_wrote_not_by_file_times(tmp_path):
    jm = JobManager(tmp_path, max_running=1)
    runs = [jm.submit(tiny_config(epochs=1), DataSpec(n=4, val_n=0)) for _ in range(3)]
    for run in runs:
        jm.stop(run)
    assert jm.wait(runs[0], 120)
    # File times are coarse and move: make the oldest run's files look the newest.
    for age, run in enumerate(runs):
        for name in ("config.json", "data.json"):
            os.utime(tmp_path / run / name, (2e9 - age, 2e9 - age))
    assert [s.run_id for s in JobManager(tmp_path).list_runs()] == runs[::-1]
    stamps = [json.loads((tmp_path / r / "data.json").read_text())["created_ns"] for r in runs]
    assert stamps == sorted(set(stamps))  # strictly increasing, even within one millisecond
    assert DataSpec.from_dict(json.loads((tmp_path / runs[0] / "data.json").read_text())) == \
        DataSpec(n=4, val_n=0)


def test_stop_queued_and_running_then_resume(tmp_path):
    jm = JobManager(tmp_path, max_running=1)
    run = jm.submit(tiny_config(epochs=3), DataSpec(n=16, val_n=0))
    queued = jm.submit(tiny_config(epochs=1), DataSpec(n=4, val_n=0))
    jm.stop(queued)
    assert jm.snapshot(queued).state == "stopped"
    jm.stop(run)  # stops after the current step with a checkpoint
    assert jm.wait(run, 120)
    snap = jm.snapshot(run)
    assert snap.state == "stopped", snap.message
    assert snap.resumable and (snap.path / "checkpoint.pt").exists()
    # The cancelled run is the newer one and stays first, though the older run began training
    # (and rewrote its config.json with the class names) after it was queued.
    assert [s.run_id for s in jm.list_runs()] == [queued, run]
    steps_before = snap.records[-1]["step"]
    jm.resume(run)
    assert jm.wait(run, 240)
    snap = jm.snapshot(run)
    assert snap.state == "finished", snap.message
    assert snap.records[-1]["step"] == 3 * 4 > steps_before  # 16 images / batch 4, 3 epochs


def test_interrupted_run_is_listed_and_resumable(tmp_path):
    jm = JobManager(tmp_path)
    run = jm.submit(tiny_config(epochs=1), DataSpec(n=4, val_n=0))
    assert jm.wait(run, 120)
    path = tmp_path / run
    # Pretend a server process died mid-run: status running, owner a dead pid.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    (path / "owner.json").write_text(json.dumps({"pid": int(dead.stdout),
                                                 "host": __import__("socket").gethostname()}))
    (path / "status.json").write_text(json.dumps({"state": "running", "message": "training"}))
    fresh = JobManager(tmp_path)  # a restarted server
    listed = {s.run_id: s for s in fresh.list_runs()}
    assert listed[run].state == "interrupted"
    assert listed[run].resumable
    assert "resume" in listed[run].message


def test_dataset_on_disk_is_split_for_validation(tmp_path):
    export_dataset(SyntheticDetection(10, seed=3, image_size=64), tmp_path / "ds", "csv")
    train, val = DataSpec(kind="path", path=str(tmp_path / "ds"), val_fraction=0.2).build(64)
    assert (len(train), len(val)) == (8, 2)
    img, target = val[1]
    assert img.shape == (3, 64, 64) and target.shape[1] == 5
    with pytest.raises(IndexError):
        val.sample(2)


@pytest.mark.parametrize("spec, words", [
    (DataSpec(n=0), "at least 1 image"),
    (DataSpec(kind="path"), "path is needed"),
    (DataSpec(kind="web"), "'synthetic' or 'path'"),
])
def test_bad_data_spec_is_refused_before_anything_runs(tmp_path, spec, words):
    jm = JobManager(tmp_path)
    with pytest.raises(ConfigError, match=words):
        jm.submit(tiny_config(), spec)
    assert list(tmp_path.iterdir()) == []


def test_failed_job_reports_the_message(tmp_path):
    jm = JobManager(tmp_path)
    run = jm.submit(tiny_config(epochs=1),
                    DataSpec(kind="path", path=str(tmp_path / "missing.zip")))
    assert jm.wait(run, 60)
    snap = jm.snapshot(run)
    assert snap.state == "failed"
    assert "not found" in snap.message


@pytest.mark.parametrize("how", ["stopped", "finished"])
def test_stopped_or_finished_run_reloads_with_the_same_detections(tmp_path, how):
    """The checkpoint a run leaves behind is the model it trained: the same detections."""
    from ssd_core.detection import Detector

    jm = JobManager(tmp_path, max_running=1)
    epochs = 50 if how == "stopped" else 2
    run = jm.submit(tiny_config(epochs=epochs), DataSpec(n=16, val_n=0))
    if how == "stopped":
        deadline = time.time() + 300
        while jm.snapshot(run).last_step is None or jm.snapshot(run).last_step["step"] < 3:
            assert time.time() < deadline, jm.snapshot(run).message
            time.sleep(0.05)
        jm.stop(run)
    assert jm.wait(run, 240)
    snap = jm.snapshot(run)
    assert snap.state == how, snap.message
    trained = jm._jobs[run].trainer.model  # the model in memory when the run ended
    names = SyntheticDetection(1).class_names
    live = Detector(trained, names, 64, device="cpu")
    reloaded = Detector.from_checkpoint(snap.path / "checkpoint.pt", device="cpu")
    assert reloaded.class_names == names and reloaded.input_size == 64
    images = [SyntheticDetection(3, seed=99, image_size=96).sample(i)[0] for i in range(3)]
    for image in images:
        a = live.predict(image, conf_threshold=0.0, nms_threshold=0.5)
        b = reloaded.predict(image, conf_threshold=0.0, nms_threshold=0.5)
        assert len(a) == len(b) > 0
        assert torch.equal(a.labels, b.labels)
        assert torch.allclose(a.scores, b.scores, atol=1e-5)
        assert torch.allclose(a.boxes, b.boxes, atol=1e-3)  # pixels


def test_metrics_of_a_resumed_crash_keep_only_the_timeline_that_led_to_the_model(tmp_path):
    def rec(kind, step, loss):
        return json.dumps({"kind": kind, "step": step, "loss": loss})

    lines = [rec("step", 1, 9.0), rec("step", 2, 8.0), rec("epoch", 2, 8.0),
             rec("step", 3, 7.0), rec("step", 4, 6.5),  # died here; checkpoint was step 2
             rec("step", 3, 7.1), rec("step", 4, 6.6), rec("epoch", 4, 6.6), '{"kind": "st']
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines))
    got = [(r["kind"], r["step"], r["loss"]) for r in read_metrics(tmp_path / "metrics.jsonl")]
    assert got == [("step", 1, 9.0), ("step", 2, 8.0), ("epoch", 2, 8.0), ("step", 3, 7.1),
                   ("step", 4, 6.6), ("epoch", 4, 6.6)]


def test_a_resumed_crash_shows_one_timeline_while_it_trains(tmp_path):
    """The live records of a resumed run (what the Training page draws) drop the steps that
    died with the old process, like read_metrics does for the file."""
    jm = JobManager(tmp_path)
    run = jm.submit(tiny_config(epochs=3), DataSpec(n=16, val_n=0))
    deadline = time.time() + 120
    while not jm.snapshot(run).records and time.time() < deadline:
        time.sleep(0.05)
    jm.stop(run)
    assert jm.wait(run, 120)
    path = tmp_path / run
    k = read_metrics(path / "metrics.jsonl")[-1]["step"]  # the stop saved a checkpoint here
    assert 0 < k < 3 * 4
    # steps the dead process logged after its last checkpoint
    with open(path / "metrics.jsonl", "a") as f:
        for step in (k + 1, k + 2):
            f.write(json.dumps({"kind": "step", "step": step, "loss": 99.0}) + "\n")
    fresh = JobManager(tmp_path)
    fresh.resume(run)
    assert fresh.wait(run, 240)
    live = fresh.snapshot(run).records
    assert fresh.snapshot(run).state == "finished"
    steps = [r["step"] for r in live if r["kind"] == "step"]
    assert steps == sorted(set(steps)) and steps[-1] == 3 * 4
    assert all(r.get("loss") != 99.0 for r in live)
    assert live == read_metrics(path / "metrics.jsonl")


def test_the_preview_cut_and_count_are_the_managers_settings(tmp_path):
    """An untrained model scores every anchor low: with no cut and 3 boxes the preview holds
    exactly 3 detections, best first; the defaults are 0.3 and 20."""
    assert (JobManager(tmp_path).preview_score, JobManager(tmp_path).preview_boxes) == (0.3, 20)
    jm = JobManager(tmp_path, max_running=1, preview_score=0.0, preview_boxes=3)
    run = jm.submit(tiny_config(epochs=1), DataSpec(n=4, val_n=2))
    assert jm.wait(run, 240)
    rows = jm.snapshot(run).preview["detections"]
    assert len(rows) == 3 and all(r[0] >= 0 and r[1] >= 0.0 for r in rows)
    assert [r[1] for r in rows] == sorted((r[1] for r in rows), reverse=True)
