"""Every name the package promises is importable from ``ssd_core`` itself."""

import importlib

import pytest

import ssd_core


@pytest.mark.parametrize("name", sorted(ssd_core._EXPORTS))
def test_exported_name_resolves(name):
    value = getattr(ssd_core, name)
    module = importlib.import_module(f"ssd_core.{ssd_core._EXPORTS[name]}")
    assert value is getattr(module, name)


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_thing"):
        ssd_core.no_such_thing  # noqa: B018


def test_core_has_no_streamlit_import():
    from pathlib import Path

    root = Path(ssd_core.__file__).parent
    offenders = [p.name for p in root.rglob("*.py") if "streamlit" in p.read_text()]
    assert offenders == []
