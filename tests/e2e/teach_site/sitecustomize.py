"""On the e2e server's PYTHONPATH: installs tests/userdata_stub.py as ``ssd_core.userdata``
while the real module (branch userdata) is missing, so the Teach page runs."""

try:
    from tests import userdata_stub

    userdata_stub.install()
except ImportError:
    pass
