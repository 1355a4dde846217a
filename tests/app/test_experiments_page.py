"""Experiments page through AppTest: one click queues a matched pair of runs on the same data
and seed through the real JobManager; the page then tabulates both runs' final AP50 / mAP with
the difference and overlays their curves."""

from __future__ import annotations

import json
import time

from ssd_core.experiments import EXPERIMENTS, list_experiments

from .conftest import app_on_page, charts


def test_a_pair_is_queued_then_tabulated_and_overlaid(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    at = app_on_page("experiments", runs, monkeypatch)
    at.run()
    assert not at.exception
    assert any("No experiments yet" in i.value for i in at.info)
    at.selectbox(key="experiments.key").set_value("box_loss")
    at.selectbox(key="experiments.recipe").set_value("classroom")
    at.number_input(key="experiments.epochs").set_value(1)
    at.number_input(key="experiments.images").set_value(16)
    at.number_input(key="experiments.val_n").set_value(4)
    at.number_input(key="experiments.seed").set_value(7)
    at.button(key="experiments.run").click().run()
    assert not at.exception and not at.error
    assert any("Queued 2 runs" in s.value for s in at.success)
    (group,) = list_experiments(runs)
    ids = [r["run_id"] for r in group["runs"]]
    datas = [json.loads((runs / i / "data.json").read_text()) for i in ids]
    assert {(d["n"], d["seed"], d["val_n"]) for d in datas} == {(16, 7, 4)}
    configs = [json.loads((runs / i / "config.json").read_text()) for i in ids]
    assert [c["loss"]["box_loss"] for c in configs] == ["l1", "smooth_l1"]
    assert {c["seed"] for c in configs} == {7}

    deadline = time.time() + 300
    while True:
        at.run()
        assert not at.exception
        table = at.dataframe[0].value
        if list(table["state"]) == ["finished", "finished"]:
            break
        assert time.time() < deadline, list(table["state"])
        time.sleep(1)
    assert list(table["run"]) == [a.label for a in EXPERIMENTS["box_loss"].arms]
    ap = [float(v) for v in table["val AP50"]]
    assert all(0 <= v <= 1 for v in ap)
    assert table["Δ AP50"][0] == "+0.000"
    assert float(table["Δ AP50"][1]) == round(ap[1] - ap[0], 3) or \
        abs(float(table["Δ AP50"][1]) - (ap[1] - ap[0])) < 2e-3
    (fig,) = charts(at)
    names = {t.get("name") for t in fig["data"]}
    assert names == set(table["run"])  # one colour per run, both on the same axes
    assert any("Best final validation AP50" in c.value for c in at.caption)
