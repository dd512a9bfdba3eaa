"""The one /proc/swaps parser (swaprace.kernel.swaps), as ``swaprace doctor`` and the stress companion see it."""

from __future__ import annotations

import pytest

from swaprace.errors import first_line
from swaprace.kernel import swaps
from swaprace.kernel.swaps import SwapDevice, parse_swaps, read_swaps
from swaprace.probes import doctor
from swaprace.stress import machine

SAMPLE = """\
Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority
/dev/vdb                                partition\t262140\t\t1024\t\t-2
/swap\\040file                           file\t\t4096\t\t0\t\t5
/dev/zram0                              partition\t60\t\t60
bad
"""


def test_parse_swaps_reads_every_device_line():
    assert parse_swaps(SAMPLE) == [
        SwapDevice("/dev/vdb", "partition", 262140, 1024, -2),
        SwapDevice("/swap\\040file", "file", 4096, 0, 5),
        SwapDevice("/dev/zram0", "partition", 60, 60, None),  # a short line: no priority column
    ]
    assert parse_swaps(SAMPLE.splitlines()[0]) == []  # header only: no swap on


def test_doctor_and_stress_read_the_same_parser(tmp_path, monkeypatch):
    path = tmp_path / "swaps"
    path.write_text(SAMPLE)
    monkeypatch.setattr(swaps, "PROC_SWAPS", path)
    state = doctor.swap_state()
    assert [d["name"] for d in state["devices"]] == ["/dev/vdb", "/swap\\040file"]  # doctor: full lines only
    assert state["devices"][0] == {"name": "/dev/vdb", "type": "partition", "size_kb": 262140, "used_kb": 1024,
                                   "priority": -2}
    assert (state["total_kb"], state["used_kb"]) == (266236, 1024)
    assert machine.active_swaps() == [{"filename": "/dev/vdb", "size_kib": 262140, "used_kib": 1024},
                                      {"filename": "/swap\\040file", "size_kib": 4096, "used_kib": 0},
                                      {"filename": "/dev/zram0", "size_kib": 60, "used_kib": 60}]


def test_read_swaps_without_the_file(tmp_path, monkeypatch):
    with pytest.raises(OSError):
        read_swaps(tmp_path / "none")
    monkeypatch.setattr(swaps, "PROC_SWAPS", tmp_path / "none")
    assert doctor.swap_state() == {"devices": [], "total_kb": 0, "used_kb": 0}


def test_first_line_of_an_exception():
    assert first_line(ValueError("bad thing\nmore detail")) == "bad thing"
    assert first_line(ValueError("  ")) == "ValueError"
