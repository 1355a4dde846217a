"""Fixtures shared by the test modules (plain helpers and constants: tests/helpers.py)."""

from __future__ import annotations

import pytest

from tests.helpers import tiny_set


@pytest.fixture(scope="module")
def tiny_data():
    """24 synthetic 64x64 banana images: 6 steps per epoch of the TINY config (batch 4)."""
    return tiny_set(24)
