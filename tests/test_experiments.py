"""Experiments (the chapter's Problems as matched runs), the training replay (every epoch's
preview kept) and the object-only accuracy next to the book's class error."""

import json

import pytest
import torch

from ssd_core.errors import ConfigError
from ssd_core.experiments import (
    EXPERIMENTS,
    arm_configs,
    experiment_results,
    list_experiments,
    submit_experiment,
    verdict,
)
from ssd_core.jobs import JobManager
from ssd_core.runs import DataSpec, append_preview, read_previews
from tests.helpers import tiny_config
from tests.test_losses import book_record


@pytest.mark.parametrize("key", sorted(EXPERIMENTS))
def test_arms_differ_only_in_their_changes(key):
    base = tiny_config()
    arms = arm_configs(key, base)
    assert len(arms) >= 2
    for arm, cfg in arms:
        flat, ref = cfg.flat(), base.flat()
        changed = {k for k in flat if flat[k] != ref[k]}
        assert changed <= set(arm.changes)
        assert all(flat[k] == v for k, v in arm.changes.items())
        assert cfg.seed == base.seed
    # every experiment really compares something
    assert len({json.dumps(c.flat(), sort_keys=True) for _, c in arms}) == len(arms)


def test_unknown_experiment_is_a_config_error():
    with pytest.raises(ConfigError, match="Unknown experiment") as e:
        arm_configs("nope", tiny_config())
    assert e.value.field == "experiment"


def test_a_pair_trains_on_the_same_data_and_is_tabulated(tmp_path):
    jm = JobManager(tmp_path, max_running=1)
    data = DataSpec(n=8, seed=5, val_n=4, val_seed=77)
    group = submit_experiment(jm, "box_loss", tiny_config(epochs=2), data)
    groups = list_experiments(tmp_path)
    assert [g["group"] for g in groups] == [group]
    runs = groups[0]["runs"]
    assert [r["label"] for r in runs] == [a.label for a in EXPERIMENTS["box_loss"].arms]
    for r in runs:
        assert jm.wait(r["run_id"], 300)
    datas = [json.loads((tmp_path / r["run_id"] / "data.json").read_text()) for r in runs]
    assert {(d["seed"], d["n"], d["val_seed"], d["val_n"]) for d in datas} == {(5, 8, 77, 4)}
    configs = [json.loads((tmp_path / r["run_id"] / "config.json").read_text()) for r in runs]
    assert [c["loss"]["box_loss"] for c in configs] == ["l1", "smooth_l1"]
    assert configs[0]["seed"] == configs[1]["seed"]
    rows = experiment_results(jm, groups[0])
    assert [r["state"] for r in rows] == ["finished", "finished"]
    assert all(r["ap50"] is not None and 0 <= r["ap50"] <= 1 for r in rows)
    assert rows[0]["d_ap50"] == 0.0
    assert rows[1]["d_ap50"] == pytest.approx(rows[1]["ap50"] - rows[0]["ap50"])
    # the training replay: one preview per epoch, in memory and on disk after a restart
    snap = jm.snapshot(runs[0]["run_id"])
    assert [p["epoch"] for p in snap.previews] == [1, 2]
    again = JobManager(tmp_path).snapshot(runs[0]["run_id"])
    assert again.previews == snap.previews
    assert again.previews[-1] == snap.preview


def test_replay_keeps_one_timeline_after_a_resume(tmp_path):
    previews = []
    for epoch in (1, 2, 3, 2, 3):  # crashed after epoch 3's preview, resumed from epoch 1
        append_preview(previews, {"epoch": epoch, "detections": [[0, 0.5, 0, 0, 1, epoch]]})
    assert [p["epoch"] for p in previews] == [1, 2, 3]
    assert previews[1]["detections"][0][-1] == 2
    path = tmp_path / "previews.jsonl"
    path.write_text("\n".join(json.dumps({"epoch": e}) for e in (1, 2, 1, 2)) + "\n{torn")
    assert [p["epoch"] for p in read_previews(path)] == [1, 2]


def test_object_accuracy_counts_positive_anchors_only():
    # 6 anchors, 1 positive: predicting background everywhere is 5/6 "correct".
    cls_labels = torch.tensor([[0, 0, 1, 0, 0, 0]])
    cls_preds = torch.zeros(1, 6, 2)
    cls_preds[..., 0] = 1.0
    z = torch.zeros(1, 24)
    m = book_record(cls_preds, cls_labels, z, z, z)
    assert m["class_error"] == pytest.approx(1 / 6)
    assert m["object_accuracy"] == 0.0
    cls_preds[0, 2] = torch.tensor([0.0, 1.0])
    assert book_record(cls_preds, cls_labels, z, z, z)["object_accuracy"] == 1.0
    # Without positives: 0.0, the records' one rule (no record holds None or NaN).
    assert book_record(cls_preds, torch.zeros(1, 6, dtype=torch.long), z, z, z)[
        "object_accuracy"] == 0.0


def test_a_failed_job_records_its_error_as_fields():
    from ssd_core.errors import AnnotationError
    from ssd_core.images import load_image
    from ssd_core.jobs import failure

    try:
        load_image(b"not an image")
    except Exception as e:  # noqa: BLE001
        direct = failure(AnnotationError(f"a.png: {e}", path="a.png"))
    assert direct["type"] == "AnnotationError" and direct["path"] == "a.png"
    assert direct["bad_image"] and "Accepted" not in direct["message"]
    # as torch re-raises an error from a DataLoader worker: the type, the traceback as text
    worker = AnnotationError(
        "Caught AnnotationError in DataLoader worker process 0.\nOriginal Traceback (most "
        "recent call last):\n  File \"x.py\", line 1, in f\n    raise e\n"
        "ssd_core.errors.AnnotationError: b.png: truncated. Accepted: an image file")
    w = failure(worker)
    assert w == {"type": "AnnotationError", "message": "b.png: truncated.", "path": None,
                 "bad_image": True}
    assert failure(RuntimeError("boom")) == {"type": "RuntimeError",
                                             "message": "RuntimeError: boom", "path": None,
                                             "bad_image": False}


def test_two_seeds_per_arm_repeat_every_arm_with_the_next_seed(tmp_path):
    jm = JobManager(tmp_path, max_running=1)
    data = DataSpec(n=8, seed=5, val_n=4, val_seed=77)
    group = submit_experiment(jm, "box_loss", tiny_config(epochs=1, seed=3), data, seeds=2)
    (g,) = [x for x in list_experiments(tmp_path) if x["group"] == group]
    labels = [a.label for a in EXPERIMENTS["box_loss"].arms]
    assert [(r["label"], r["seed"]) for r in g["runs"]] == [
        (labels[0], 3), (labels[1], 3), (labels[0], 4), (labels[1], 4)]
    for r in g["runs"]:
        assert jm.wait(r["run_id"], 300)
    datas = [json.loads((tmp_path / r["run_id"] / "data.json").read_text()) for r in g["runs"]]
    assert [d["seed"] for d in datas] == [5, 5, 6, 6]  # the data's seed moves with the model's
    assert {d["val_seed"] for d in datas} == {77}  # one validation set for every run
    rows = experiment_results(jm, g)
    assert [r["seed"] for r in rows] == [3, 3, 4, 4]


def test_verdict_names_a_best_arm_only_beyond_the_spread():
    def rows(*pairs):
        return [{"label": label, "ap50": ap, "seed": seed} for label, ap, seed in pairs]

    one_seed = rows(("L1", 0.80, 0), ("smooth", 0.83, 0))
    v = verdict(one_seed, spread=0.05)
    assert not v["clear"] and v["best"] is None and not v["measured"]
    assert v["difference"] == pytest.approx(0.03) and v["spread"] == 0.05
    v = verdict(one_seed, spread=0.01)
    assert v["clear"] and v["best"] == "smooth"
    # with two seeds per arm the group's own spread decides: the larger range of one arm
    two = rows(("L1", 0.80, 0), ("smooth", 0.90, 0), ("L1", 0.70, 1), ("smooth", 0.88, 1))
    v = verdict(two, spread=0.5)
    assert v["measured"] and v["spread"] == pytest.approx(0.10)
    assert v["means"] == pytest.approx({"L1": 0.75, "smooth": 0.89})
    assert v["clear"] and v["best"] == "smooth"
    # unfinished runs (no AP50 yet) are left out; one arm alone is never a verdict
    assert not verdict(rows(("L1", 0.8, 0), ("smooth", None, 0)), 0.0)["clear"]
