"""Every page through Streamlit's AppTest: renders without exception, and widgets change what
is drawn (anchor counts, positives, curves, activations)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from PIL import Image

from .conftest import MAIN, AppTest, arr, charts, metric, open_page, registered_pages


def total(sides, per_pixel=4):
    return sum(s * s for s in sides) * per_pixel


# ---------------------------------------------------------------- shell


def test_the_shell_imports_pandas_before_any_page_runs():
    """Plotly reads pandas from sys.modules without importing it: a figure built while another
    session's thread is mid-import met a half-made module (the load test, once). The shell's
    first statements import it in full, before anything that runs a page."""
    import ast

    body = ast.parse(Path(MAIN).read_text(encoding="utf-8")).body
    first_other = next(i for i, node in enumerate(body)
                       if not isinstance(node, (ast.Import, ast.ImportFrom, ast.Expr)))
    imported = {a.name for node in body[:first_other] if isinstance(node, ast.Import)
                for a in node.names}
    assert "pandas" in imported


def test_overview_and_sidebar():
    at = open_page()
    assert any("5444" in c.value for c in at.caption)
    # the model the pages use: with no active checkpoint, the shipped one
    assert "**shipped TinySSD (trained on synthetic shapes)**" in [
        m.value for m in at.sidebar.markdown]
    assert any(m.value.startswith("**CPU") or m.value.startswith("**CUDA")
               for m in at.sidebar.markdown)
    # every page of the registry (app/pages.py), each once, with the path the menu uses
    pages = registered_pages()
    assert len(pages) >= 8
    links = sorted((link.proto.label.split(":")[0], link.proto.page)
                   for link in at.get("page_link"))
    assert links == sorted((p.title, "" if i == 0 else Path(p.path).stem)  # "": the home page
                           for i, p in enumerate(pages))
    at.select_slider(key="overview.size").set_value(320).run()
    assert any(str(total([40, 20, 10, 5, 1])) in c.value for c in at.caption)
    assert at.query_params["size"] == "320"
    # the diagram lists the five blocks' shapes for that size
    texts = [a["text"] for a in charts(at)[0]["layout"]["annotations"]]
    assert "<b>64×40×40</b>" in texts and "<b>128×1×1</b>" in texts


def test_sidebar_shows_active_checkpoint(tmp_path):
    import shutil

    from ssd_core.resources import shipped_checkpoint

    ckpt = tmp_path / "demo" / "best.pt"
    ckpt.parent.mkdir()
    shutil.copy(shipped_checkpoint(), ckpt)
    # Set before the first run: AppTest 1.67 drops the sidebar of an st.navigation app on
    # reruns (the browser keeps it; see the e2e screenshots).
    at = AppTest.from_file(MAIN, default_timeout=60)
    at.session_state["active_checkpoint"] = str(ckpt)
    at.run()
    shown = [m.value for m in at.sidebar.markdown]
    assert "**active: demo/best.pt**" in shown and f"`{ckpt}`" in shown
    # a missing active checkpoint is said so; the pages use the shipped model
    at = AppTest.from_file(MAIN, default_timeout=60)
    at.session_state["active_checkpoint"] = "runs/gone/best.pt"
    at.run()
    assert "**shipped TinySSD (trained on synthetic shapes)**" in [
        m.value for m in at.sidebar.markdown]
    assert any("`runs/gone/best.pt` is missing" in c.value for c in at.sidebar.caption)


# ---------------------------------------------------------------- anchors


def test_anchors_counts_follow_size_and_spec():
    at = open_page("anchors")
    assert metric(at, "Total anchors") == "5444"
    assert [metric(at, f"Scale {k}") for k in range(1, 6)] == ["4096", "1024", "256", "64", "4"]
    at.radio(key="anchors.scale").set_value("all").run()  # the page opens on one scale
    fig = charts(at)[0]
    # "all": one NaN-separated line trace per scale, 5 points + NaN per anchor
    lines = [d for d in fig["data"] if d.get("mode") == "lines"]
    assert len(lines) == 5
    assert sum(len(arr(d["x"])) for d in lines) == 6 * 5444

    at.select_slider(key="anchors.size").set_value(320).run()
    assert metric(at, "Total anchors") == str(total([40, 20, 10, 5, 1]))
    at.text_input(key="anchors.s0").input("0.2").run()  # one size: 3 anchors per pixel
    assert metric(at, "Scale 1") == str(40 * 40 * 3)
    assert at.query_params["s0"] == "0.2"
    at.text_input(key="anchors.r1").input("1, two").run()
    assert any("not a number" in e.value for e in at.error)
    assert metric(at, "Scale 2") == str(20 * 20 * 4)  # falls back to the book's spec
    at.button[0].click().run()  # reset to the book's defaults
    assert metric(at, "Total anchors") == str(total([40, 20, 10, 5, 1]))
    assert not at.error


def test_anchors_one_scale_and_cell():
    at = open_page("anchors")
    at.radio(key="anchors.scale").set_value("2").run()
    fig = charts(at)[0]
    names = [d["name"] for d in fig["data"]]
    assert names[:4] == ["s=0.37, r=1", "s=0.447, r=1", "s=0.37, r=2", "s=0.37, r=0.5"]
    assert "anchor centres" in names
    centres = next(d for d in fig["data"] if d["name"] == "anchor centres")
    assert len(arr(centres["x"])) == 16 * 16
    at.checkbox(key="anchors.cell").check().run()
    at.slider(key="anchors.row").set_value(3).run()
    at.slider(key="anchors.col").set_value(5).run()
    fig = charts(at)[0]
    hl = [d for d in fig["data"] if d["name"].startswith("cell (3, 5)")]
    assert len(hl) == 4
    # the highlighted anchors are centred on cell (3, 5) of the 16x16 map (image 256 px)
    for d in hl:
        xs, ys = arr(d["x"])[:4], arr(d["y"])[:4]
        assert math.isclose(xs.mean(), (5 + 0.5) / 16 * 256, abs_tol=1e-3)
        assert math.isclose(ys.mean(), (3 + 0.5) / 16 * 256, abs_tol=1e-3)
    assert at.query_params["row"] == "3" and at.query_params["scale"] == "2"


def test_anchors_from_shared_link():
    at = open_page("anchors", query={"scale": "3", "cell": "1", "row": "2", "col": "7",
                                     "size": "oops"})
    assert at.radio(key="anchors.scale").value == "3"
    assert at.select_slider(key="anchors.size").value == 256  # bad value -> default
    names = [d["name"] for d in charts(at)[0]["data"]]
    assert sum(n.startswith("cell (2, 7)") for n in names) == 4


def test_anchors_upload_errors_and_images():
    at = open_page("anchors")
    at.radio(key="anchors.image").set_value("Upload").run()
    at.file_uploader[0].upload("notes.png", b"this is not an image", "image/png").run()
    assert not at.exception
    assert any("could not be used" in e.value for e in at.error)
    assert metric(at, "Total anchors") == "5444"  # the page keeps working

    buf = io.BytesIO()
    Image.new("RGB", (400, 200), (10, 200, 30)).save(buf, format="PNG")
    at.file_uploader[0].upload("wide.png", buf.getvalue(), "image/png").run()
    assert not at.error
    fig = charts(at)[0]
    assert fig["layout"]["images"][0]["sizex"] == 400
    at.radio(key="anchors.image").set_value("Blank canvas").run()
    assert not at.exception


# ---------------------------------------------------------------- labeling


def test_labeling_threshold_and_negative_mining(count_forwards):
    at = open_page("labeling")
    pos_05 = int(metric(at, "Positives"))
    greedy = int(metric(at, "Greedy best anchors"))
    assert greedy == 2  # synthetic sample 0 has two objects
    assert int(metric(at, "Negatives (background)")) == 5444 - pos_05
    at.slider(key="labeling.iou").set_value(0.3).run()
    pos_03 = int(metric(at, "Positives"))
    assert pos_03 > pos_05
    at.toggle(key="labeling.hnm").set_value(True).run()
    assert int(metric(at, "Kept negatives")) == 3 * pos_03
    names = [d["name"] for d in charts(at)[0]["data"]]
    assert f"kept negatives ({3 * pos_03})" in names
    assert count_forwards["n"] == 0  # the IoU stand-in needs no network
    at.radio(key="labeling.loss").set_value(at.radio(key="labeling.loss").options[1]).run()
    assert int(metric(at, "Kept negatives")) == 3 * pos_03
    assert count_forwards["n"] == 1
    at.slider(key="labeling.iou").set_value(0.6).run()
    at.slider(key="labeling.ratio").set_value(5).run()
    assert count_forwards["n"] == 1  # sliders never rerun the network
    assert int(metric(at, "Kept negatives")) == 5 * int(metric(at, "Positives"))


def test_labeling_positives_table_and_heatmaps():
    at = open_page("labeling")
    n_pos = int(metric(at, "Positives"))
    df = at.dataframe[-1].value
    assert len(df) == n_pos
    assert set(df["match"]) <= {"greedy", "threshold"}
    assert (df["match"] == "greedy").sum() == 2
    assert (df.loc[df["match"] == "threshold", "IoU"] >= 0.5).all()
    heat = charts(at)[1]
    assert [arr(d["z"]).shape for d in heat["data"]] == [(s, s) for s in (32, 16, 8, 4, 1)]
    assert len(at.get("latex")) >= 1


# ---------------------------------------------------------------- losses


def test_losses_curves_sliders_and_errors():
    at = open_page("losses")
    l1_fig, focal_fig = charts(at)[:2]
    names = [d["name"] for d in l1_fig["data"]]
    assert names[:4] == ["L1 |x|", "smooth L1, σ=10", "smooth L1, σ=1", "smooth L1, σ=0.5"]
    steps = l1_fig["layout"]["sliders"][0]["steps"]
    assert all(s["method"] == "restyle" for s in steps)
    assert {"0.50", "1.00", "10.00"} <= {s["label"] for s in steps}
    # the σ=1 step restyles the scrub trace with exactly the σ=1 curve
    one = next(s for s in steps if s["label"] == "1.00")
    assert np.allclose(arr(one["args"][0]["y"][0]), arr(l1_fig["data"][2]["y"]))
    assert len(focal_fig["layout"]["sliders"][0]["steps"]) == 21

    at.text_input(key="losses.sigmas").input("2, 3").run()
    names = [d["name"] for d in charts(at)[0]["data"]]
    assert "smooth L1, σ=2" in names and "smooth L1, σ=3" in names
    at.toggle(key="losses.grad").set_value(True).run()
    fig = charts(at)[0]
    assert "yaxis2" in fig["layout"]
    assert len(fig["layout"]["sliders"][0]["steps"][0]["args"][1]) == 2  # loss + gradient
    at.text_input(key="losses.sigmas").input("1, -1").run()
    assert any("out of range" in e.value for e in at.error)
    at.text_input(key="losses.gammas").input("0, 2").run()
    at.slider(key="losses.alpha").set_value(0.25).run()
    focal = charts(at)[1]
    assert [d["name"] for d in focal["data"]][:2] == ["γ=0", "γ=2"]
    p = arr(focal["data"][1]["x"])
    assert np.allclose(arr(focal["data"][1]["y"]), -0.25 * (1 - p) ** 2 * np.log(p), rtol=1e-5)
    assert not at.exception


def test_losses_imbalance_note_uses_real_counts():
    at = open_page("losses")
    note = next(m.value for m in at.markdown if "positive" in m.value and "negative" in m.value)
    assert "5444" in note
    table = at.dataframe[-1].value
    assert list(table["loss"])[0] == "cross-entropy"
    shares = [float(s.rstrip(" %")) for s in table["share of negatives"]]
    assert shares[1] < shares[0]  # focal loss lowers the negatives' share


# ---------------------------------------------------------------- model


def test_model_table_size_and_activations(count_forwards):
    at = open_page("model")
    table = at.dataframe[0].value
    assert list(table["anchors"]) == [4096, 1024, 256, 64, 4]
    assert metric(at, "Anchors") == "5,444"
    assert "Showing: **shipped TinySSD" in at.caption[0].value  # the shipped model by default
    assert count_forwards["n"] == 1
    grid = arr(charts(at)[1]["data"][0]["z"])
    assert grid.shape == (4 * 32 + 3, 8 * 32 + 7)  # 32 channels of 32x32, 4 rows of 8, gaps
    at.radio(key="model.block").set_value(2).run()
    at.slider(key="model.channels").set_value(8).run()
    grid = arr(charts(at)[1]["data"][0]["z"])
    assert grid.shape == (8, 8 * 8 + 7)  # one row of 8 maps of 8x8
    assert count_forwards["n"] == 1  # block/channel choices reuse the cached activations
    at.select_slider(key="model.size").set_value(384).run()
    assert list(at.dataframe[0].value["anchors"]) == [4 * s * s for s in (48, 24, 12, 6, 1)]
    assert count_forwards["n"] == 2


def test_model_bad_checkpoint_falls_back(tmp_path):
    at = open_page("model")
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a checkpoint")
    at.session_state["active_checkpoint"] = str(bad)  # the picker follows the active one
    at.run()
    assert not at.exception
    assert any("could not be loaded" in w.value for w in at.warning)
    assert "Showing: **untrained TinySSD" in at.caption[0].value
