from tests.e2e.conftest import chromium_path  # noqa: F401 (the fixture, shared)
