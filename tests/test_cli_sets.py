"""``python -m ssd_core set ...`` (the Teach page's photo sets from the command line) on tiny
generated photos: a full round new -> add -> box -> show -> export -> import, training the teach
recipe on a set by its name, and every bad input a one-line error with exit status 2 that
leaves the set as it was."""

from __future__ import annotations

import contextlib
import io
import zipfile

import pytest
from PIL import Image

from ssd_core.cli import main
from ssd_core.userdata import TARGET_BOXES_PER_CLASS, list_datasets
from tests.test_cli import run


def photo(path, colour=(200, 40, 40), size=(96, 64)):
    img = Image.new("RGB", size, (235, 235, 235))
    img.paste(colour, (20, 10, 60, 50))
    img.save(path)
    return path


def cli(*args):
    """The CLI in this process -> (exit status, stdout, stderr), argparse's exits included."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:
            code = e.code
    return code, out.getvalue(), err.getvalue()


def one_line_error(code, err, words):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for w in words if isinstance(words, tuple) else (words,):
        assert w in lines[0], lines[0]


def the_set(runs, name):
    return next(d for d in list_datasets(runs) if d.name == name)


def test_a_full_round_new_add_box_show_export_import(tmp_path):
    runs = tmp_path / "runs"
    r = ["--runs", runs]
    p = run("set", *r, "new", "My desk")
    assert "made the photo set 'My desk'" in p.stdout
    a, b = photo(tmp_path / "a.png"), photo(tmp_path / "b.jpg", (30, 90, 200), (80, 80))
    p = run("set", "add", "My desk", a, b, *r)  # --runs after the command works too
    assert "added photo 1 (a.png, stored 96x64 px" in p.stdout
    assert "added photo 2 (b.jpg, stored 80x80 px" in p.stdout
    run("set", *r, "box", "My desk", 1, "mug", 20, 10, 60, 50)
    p = run("set", *r, "box", "My desk", 2, "ball", 20.5, 10, 60, 50)
    assert "photo 2 of 'My desk' has 1 box(es): ball (20.5, 10, 60, 50)" in p.stdout
    run("set", *r, "box", "My desk", 2, "mug", 0, 0, 200, 30)  # clipped to the photo
    p = run("set", *r, "show", "my desk")  # any case
    out = p.stdout
    assert "2 photos, classes: mug, ball" in out
    assert "photo 1: 000001.png 96x64 px: mug (20, 10, 60, 50)" in out
    assert "photo 2: 000002.jpg 80x80 px: ball (20.5, 10, 60, 50); mug (0, 0, 80, 30)" in out
    assert "boxes per class: mug 2, ball 1" in out
    assert (f"still needed for a first model: {TARGET_BOXES_PER_CLASS - 2} more mug, "
            f"{TARGET_BOXES_PER_CLASS - 1} more ball") in out
    assert "problems: none; train it with `python -m ssd_core train --recipe teach --data " \
           "'My desk'`" in out
    p = run("set", *r, "list")
    assert "My desk: 2 photos; boxes: mug 2, ball 1; ready to train" in p.stdout
    for fmt in ("coco", "voc", "yolo", "csv"):  # one through a process, all through main()
        zpath = tmp_path / f"desk-{fmt}.zip"
        go = (lambda *a: run(*a).stdout) if fmt == "coco" else (lambda *a: cli(*a)[1])
        out = go("set", *r, "export", "My desk", "--format", fmt, "--out", zpath)
        assert f"as {fmt} to {zpath}" in out and zipfile.is_zipfile(zpath)
        out = go("set", *r, "import", f"desk {fmt}", zpath)
        assert "imported 2 photos (" in out and f"as the set 'desk {fmt}'" in out
        back = the_set(runs, f"desk {fmt}")
        assert sorted(back.counts().items()) == [("ball", 1), ("mug", 2)], fmt
        boxes = sorted((b.label, b.x1, b.y1, b.x2, b.y2) for im in back.images for b in im.boxes)
        assert boxes == [("ball", 20.5, 10, 60, 50), ("mug", 0, 0, 80, 30),
                         ("mug", 20, 10, 60, 50)], (fmt, boxes)
    assert "renamed 'desk coco' to 'desk again'" in cli("set", *r, "rename", "desk coco",
                                                         "desk again")[1]
    assert "deleted the set 'desk again' and its 2 photos" in cli(
        "set", *r, "delete", "desk again", "--yes")[1]
    assert "desk again" not in [d.name for d in list_datasets(runs)]
    assert cli("set", *r, "box", "My desk", 1, "--clear")[0] == 0
    assert the_set(runs, "My desk").image(1).boxes == []


def test_the_runs_folder_is_the_apps(tmp_path, monkeypatch):
    monkeypatch.setenv("SSD_RUNS_DIR", str(tmp_path / "shared"))
    code, out, _ = cli("set", "new", "cups")
    assert code == 0
    assert [d.name for d in list_datasets(tmp_path / "shared")] == ["cups"]
    monkeypatch.syspath_prepend(str(tmp_path))  # app.job_queue reads the same variable
    from app import job_queue

    assert job_queue.runs_dir() == tmp_path / "shared"


def test_train_recipe_teach_on_a_set_by_name(tmp_path):
    from ssd_core import load_checkpoint
    from ssd_core.data.fewshot import write_fewshot

    runs = tmp_path / "runs"
    write_fewshot(tmp_path / "fewshot", 6, seed=0, photo_size=80)
    run("set", "--runs", runs, "import", "three things", tmp_path / "fewshot")
    p = run("train", "--recipe", "teach", "--data", "three things", "--runs", runs,
            "--out", tmp_path / "t", "--epochs", 1, "--input-size", 64, "--batch-size", 4)
    assert "--data three things: the photo set, a frozen copy in" in p.stdout
    assert "held out 1 of 6 images for validation" in p.stdout and "finished" in p.stdout
    assert load_checkpoint(tmp_path / "t" / "checkpoint.pt").class_names == ["mug", "book",
                                                                             "ball"]
    frozen = [f for f in (runs / "_uploads").iterdir() if f.name.startswith("teach-three-")]
    assert len(frozen) == 1 and (frozen[0] / "annotations.json").is_file()
    # eval reads a set by name too (its own folder, no copy)
    p = run("eval", tmp_path / "t" / "checkpoint.pt", "--data", "three things",
            "--runs", runs)
    assert "all (mean)" in p.stdout


@pytest.fixture
def desk(tmp_path):
    """A runs folder with the set 'desk': photo 1 (96x64) boxed 'mug', photo 2 with no box,
    and an empty set 'bare'."""
    runs = tmp_path / "runs"
    assert cli("set", "--runs", runs, "new", "desk")[0] == 0
    assert cli("set", "--runs", runs, "new", "bare")[0] == 0
    assert cli("set", "--runs", runs, "add", "desk", photo(tmp_path / "a.png"),
               photo(tmp_path / "b.png"))[0] == 0
    assert cli("set", "--runs", runs, "box", "desk", 1, "mug", 20, 10, 60, 50)[0] == 0
    return runs


BAD = [
    (["show", "nope"], ("No photo set named 'nope'", "set list")),
    (["new", "desk"], "A photo set named 'desk' already exists"),
    (["new", "  "], "Give the set a name"),
    (["new", "!!!"], "has no letters or digits"),
    (["add", "desk", "missing.png"], "No photo at 'missing.png'"),
    (["add", "desk", "CORRUPT"], "corrupt.png"),
    (["add", "desk", "GOOD", "CORRUPT"], "corrupt.png"),  # the good one is not added either
    (["add", "desk", "FOLDER"], ("is not a file", "set import")),
    (["box", "desk", 1, "mug", 5, 5], "A box is CLASS X1 Y1 X2 Y2 (five values"),
    (["box", "desk", 1, "mug", 5, 5, 5, 20], "has no area"),
    (["box", "desk", 1, "mug", 5, "x", 20, 20], "Y1 must be a number of pixels, got 'x'"),
    (["box", "desk", 1, "mug", 500, 500, 600, 600], "lies outside the 96x64 image"),
    (["box", "desk", 1, " ", 5, 5, 20, 20], "the class name is empty"),
    (["box", "desk", 9, "mug", 5, 5, 20, 20], ("has no photo 9", "photos: 1, 2")),
    (["box", "desk", 1, "mug", 5, 5, 20, 20, "--clear"], "not both"),
    (["box", "desk", 1, "--clear", "mug", 5, 5, 20, 20], "unrecognized arguments"),
    (["box", "desk"], ("required: PHOTO_ID (see", "set box --help")),
    (["box", "desk", "one", "mug", 5, 5, 20, 20], ("invalid int value: 'one'", "--help")),
    (["export", "desk", "--format", "coco", "--out", "desk.tar"], "must name a .zip"),
    (["export", "desk", "--format", "coco", "--out", "no/such/dir/d.zip"], "No folder"),
    (["export", "desk", "--format", "pdf", "--out", "d.zip"], "invalid choice: 'pdf'"),
    (["export", "bare", "--format", "coco", "--out", "OUT"], "is empty"),
    (["rename", "desk", "BARE"], "A photo set named 'bare' already exists"),
    (["delete", "desk"], ("removes its 2 photos", "--yes")),
    (["import", "new one", "missing.zip"], "No dataset at 'missing.zip'"),
    (["import", "new one", "CORRUPT"], "corrupt.png"),
    (["import", "desk", "ZIP"], "already exists"),
    ([], ("required: SET_COMMAND", "set --help")),
]


@pytest.mark.parametrize("args,words", BAD, ids=[" ".join(map(str, a)) or "nothing"
                                                 for a, _ in BAD])
def test_bad_input_is_one_clear_line_and_changes_nothing(desk, tmp_path, args, words):
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp_path / "folder").mkdir()
    zpath = tmp_path / "desk.zip"
    assert cli("set", "--runs", desk, "export", "desk", "--format", "coco", "--out", zpath)[0] == 0
    subs = {"CORRUPT": tmp_path / "corrupt.png", "GOOD": photo(tmp_path / "good.png"),
            "FOLDER": tmp_path / "folder", "ZIP": zpath, "OUT": tmp_path / "out.zip"}
    before = {d.name: (len(d), d.counts(), d.class_names) for d in list_datasets(desk)}
    code, _, err = cli("set", "--runs", desk, *[subs.get(a, a) for a in args])
    one_line_error(code, err, words)
    after = {d.name: (len(d), d.counts(), d.class_names) for d in list_datasets(desk)}
    assert after == before


def test_train_on_a_set_that_cannot_train_says_why(desk):
    code, _, err = cli("train", "--recipe", "teach", "--data", "bare", "--runs", desk)
    one_line_error(code, err, ("The photo set 'bare' cannot be used yet", "no photos",
                               "set show bare"))
    code, _, err = cli("train", "--recipe", "teach", "--data", "nothing here", "--runs", desk)
    one_line_error(code, err, ("No dataset at 'nothing here'", "set list"))
