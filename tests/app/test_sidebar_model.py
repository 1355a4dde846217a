"""The sidebar names the model the current page uses: its picker's choice once the page has
run, else the model every picker opens on."""

from __future__ import annotations

from .conftest import MAIN, AppTest


def sidebar_text(at) -> list[str]:
    return [m.value for m in at.sidebar.markdown]


def test_sidebar_follows_the_pages_picker():
    # One first run per AppTest: AppTest 1.67 drops an st.navigation app's sidebar on reruns.
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.switch_page("views/detection.py")
    at.session_state["detection.model"] = "untrained"
    at.run()
    assert not at.exception
    assert at.selectbox(key="detection.model").value == "untrained"
    assert "**untrained TinySSD (random weights)**" in sidebar_text(at)
    assert "**shipped TinySSD (trained on synthetic shapes)**" not in sidebar_text(at)


def test_sidebar_is_filled_again_after_the_page_chose(tmp_path):
    import shutil

    from ssd_core.resources import shipped_checkpoint

    ckpt = tmp_path / "run" / "best.pt"
    ckpt.parent.mkdir()
    shutil.copy(shipped_checkpoint(), ckpt)
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.switch_page("views/detection.py")
    # before the page runs its picker still says "untrained"; the page then follows the newly
    # active checkpoint, and the sidebar says so
    at.session_state["detection.model"] = "untrained"
    at.session_state["active_checkpoint"] = str(ckpt)
    at.run()
    assert at.selectbox(key="detection.model").value == str(ckpt)
    assert "**active: run/best.pt**" in sidebar_text(at)
    assert "**untrained TinySSD (random weights)**" not in sidebar_text(at)


def test_sidebar_names_the_shipped_model_by_default():
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.switch_page("views/model.py")
    at.run()
    assert at.selectbox(key="model.model").value == "shipped"
    assert "**shipped TinySSD (trained on synthetic shapes)**" in sidebar_text(at)
