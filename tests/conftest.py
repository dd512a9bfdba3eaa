"""Shared test set-up. VM tests (``-m vm``) boot the swaprace test box; see tests/vm_support.py.

Fixtures used by more than one test module live here; plain shared data and helpers live in support modules
next to the tests (``report_support``, ``vm_support``, ``bcc_vm``, ``live_ftrace_support``), never in another
test module.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def planted_path(tmp_path_factory) -> Path:
    """The planted-race capture (tests/report_support.py) written as a native Parquet capture."""
    from report_support import planted_capture

    from swaprace.capture import write_capture

    return write_capture(planted_capture(), tmp_path_factory.mktemp("planted") / "planted.parquet")


#: The test boxes the bcc vm tests run in (tests/test_live_bcc.py, tests/test_detector_vm.py).
BCC_KERNELS = ["bookworm", "trixie-backports"]


@pytest.fixture(scope="module", params=BCC_KERNELS)
def bcc_guest(request):
    """What tests/guest/live_bcc_check.py measured in the test box: one boot per kernel per session
    (tests/bcc_vm.py caches the result), shared by every bcc vm test module."""
    from bcc_vm import guest_result

    return guest_result(request.param)
