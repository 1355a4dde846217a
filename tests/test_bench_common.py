"""bench/_common.py, the pieces the bench scripts share (fast: nothing is trained or timed
for real)."""

from __future__ import annotations

import pytest

from bench._common import Milestones, interleaved, load_note, machine, parse_sets


def test_set_values_are_json_or_else_text():
    assert parse_sets(["lr=0.1", "epochs=3", "schedule=cosine", "anchor_sizes=[[0.2, 0.3]]",
                       "amp=true", "note=a=b"]) == {
        "lr": 0.1, "epochs": 3, "schedule": "cosine", "anchor_sizes": [[0.2, 0.3]],
        "amp": True, "note": "a=b"}
    assert parse_sets([]) == {}


def test_interleaved_runs_each_function_once_to_warm_up_then_alternately():
    calls = []
    times = interleaved([lambda: calls.append("a"), lambda: calls.append("b")], 3, unit=1000)
    assert calls == ["a", "b"] * 4 and len(times) == 2 and all(t >= 0 for t in times)


@pytest.mark.parametrize("line, words", [(machine, ("cores", "torch", "load average at start")),
                                         (load_note, ("load average at the end", "pessimistic"))])
def test_machine_and_load_lines(line, words):
    text = line()
    assert all(w in text for w in words) and "\n" not in text


def test_milestones_keep_the_first_epoch_past_each_threshold_and_the_best():
    m = Milestones([0.5, 0.8], (0.0, 0.0))
    assert not m.see(0.3, (1.0, 2.0)) and m.reached == {0.5: None, 0.8: None}
    assert not m.see(0.6, (2.0, 4.0)) and m.reached == {0.5: (2.0, 4.0), 0.8: None}
    assert not m.see(0.55, (3.0, 6.0)) and m.reached[0.5] == (2.0, 4.0)  # the first, kept
    assert m.best == (0.6, 2.0, 4.0)
    assert m.see(0.9, (4.0, 8.0)) and m.reached == {0.5: (2.0, 4.0), 0.8: (4.0, 8.0)}
    assert m.best == (0.9, 4.0, 8.0)
    assert Milestones([0.5], (0.0, 0.0, 0)).best == (0.0, 0.0, 0.0, 0)
