"""Training replay through AppTest: every epoch's detections on the fixed validation image are
kept with the run, a slider scrubs them without running the network, and the class-error plot
carries the objects' accuracy (positive anchors only) beside the book's metric."""

from __future__ import annotations

import json
import time

from ssd_core.runs import read_previews

from .conftest import app_on_page


def figures(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def test_the_replay_slider_scrubs_the_kept_epochs_without_the_network(
        tmp_path, monkeypatch, count_forwards):
    at = app_on_page("training", tmp_path / "runs", monkeypatch)
    at.run()
    assert not at.exception
    for key, value in (("training.n", 8), ("training.val_n", 4), ("training.epochs", 3),
                       ("training.batch", 4)):
        at.number_input(key=key).set_value(value)
    at.select_slider(key="training.input_size").set_value(64)
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception and not at.error
    run_id = at.session_state["training.run"]
    deadline = time.time() + 180
    while len(read_previews(tmp_path / "runs" / run_id / "previews.jsonl")) < 3 or not any(
            "finished" in m.value for m in at.markdown):
        assert time.time() < deadline
        time.sleep(0.5)
        at.run()
        assert not at.exception
    key = f"training.replay.{run_id}"
    slider = at.select_slider(key=key)
    assert list(slider.options) == ["1", "2", "3"] and slider.value == 3
    assert any("Epoch 3:" in json.dumps(f["layout"]) for f in figures(at))
    curves = next(f for f in figures(at) if "Learning rate" in json.dumps(f["layout"]))
    assert "object accuracy" in {t["name"] for t in curves["data"]}

    previews = read_previews(tmp_path / "runs" / run_id / "previews.jsonl")
    before = count_forwards["n"]
    slider.set_value(1).run()
    assert not at.exception
    (first,) = [f for f in figures(at) if "Epoch 1:" in json.dumps(f["layout"])]
    assert count_forwards["n"] == before  # scrubbing redraws stored detections only
    assert any(t.get("name") == "ground truth" for t in first["data"])
    assert len(previews) == 3 and [p["epoch"] for p in previews] == [1, 2, 3]
    at.run()  # the choice sticks on the next poll
    assert at.select_slider(key=key).value == 1
