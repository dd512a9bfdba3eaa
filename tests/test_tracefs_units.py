"""swaprace.probes.tracefs on a directory laid out like tracefs: the parsers of kprobe_profile and
kprobe_events on text samples in the kernel's format, and the leftover-group bookkeeping. No tracefs needed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from swaprace.errors import SwapraceError
from swaprace.probes import tracefs

# kprobe_profile: "<event> <hits> <misses>", the event name padded; "group/event" on some kernels.
PROFILE = """\
  sr_fault_c                                           3573               0
  swaprace_4242/sr_lookup_c                           13514               2
  r_sr_fault_r                                         3570              17
not a profile line
  sr_short 12
"""

# kprobe_events as the kernel lists it back: p/r[maxactive]:group/event symbol+offset fetch-args.
EVENTS = """\
p:swaprace_4242/sr_fault_c do_swap_page vmf=%di:u64
r16:swaprace_4242/sr_fault_r do_swap_page ret=$retval:s64
p:swaprace_4242/sr_lookup_c swap_cache_get_folio entry=%di:u64
p:kprobes/other_tool vfs_read
r:swaprace_99999999/old folio_free_swap
garbage line
"""


def _root(tmp_path: Path, **files: str) -> Path:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def test_kprobe_profile_parses_names_hits_and_misses(tmp_path):
    prof = tracefs.kprobe_profile(_root(tmp_path, kprobe_profile=PROFILE))
    assert set(prof) == {"sr_fault_c", "sr_lookup_c", "r_sr_fault_r"}
    assert prof["sr_fault_c"] == tracefs.ProbeProfile("sr_fault_c", 3573, 0)
    assert prof["sr_lookup_c"] == tracefs.ProbeProfile("sr_lookup_c", 13514, 2)  # the group prefix dropped
    assert (prof["r_sr_fault_r"].hits, prof["r_sr_fault_r"].missed) == (3570, 17)


def test_kprobe_profile_missing_file_is_empty(tmp_path):
    assert tracefs.kprobe_profile(tmp_path) == {}


def test_kprobe_event_groups_lists_events_by_group(tmp_path):
    groups = tracefs.kprobe_event_groups(_root(tmp_path, kprobe_events=EVENTS))
    assert groups == {"swaprace_4242": ["sr_fault_c", "sr_fault_r", "sr_lookup_c"], "kprobes": ["other_tool"],
                      "swaprace_99999999": ["old"]}
    assert tracefs.kprobe_event_groups(tmp_path / "nowhere") == {}


def test_swaprace_groups_and_leftovers(tmp_path, monkeypatch):
    me = os.getpid()
    root = _root(tmp_path, kprobe_events=EVENTS.replace("4242", str(me)))
    (root / "instances" / f"swaprace_{me}").mkdir(parents=True)
    (root / "instances" / "swaprace_99999998").mkdir()
    (root / "instances" / "someone_else").mkdir()
    (root / "instances" / "swaprace_x").mkdir()
    alive = {me}
    monkeypatch.setattr(tracefs, "pid_alive", lambda pid: pid in alive)
    found = tracefs.swaprace_groups(root)
    assert {(g["kind"], g["name"], g["alive"]) for g in found} == {
        ("kprobe_events", f"swaprace_{me}", True), ("kprobe_events", "swaprace_99999999", False),
        ("instance", f"swaprace_{me}", True), ("instance", "swaprace_99999998", False)}
    assert next(g for g in found if g["name"] == f"swaprace_{me}" and g["kind"] == "kprobe_events")["events"] == 3
    assert {g["name"] for g in tracefs.leftover_groups(root)} == {"swaprace_99999999", "swaprace_99999998"}


def test_group_name_is_per_process():
    assert tracefs.group_name(123) == "swaprace_123"
    assert tracefs.group_name() == f"swaprace_{os.getpid()}"


def test_read_and_write_errors_name_the_file(tmp_path):
    with pytest.raises(SwapraceError, match="cannot read .*kprobe_events"):
        tracefs.read_text(tmp_path / "kprobe_events")
    with pytest.raises(SwapraceError, match="cannot open .*kprobe_events"):
        tracefs.write_text(tmp_path / "kprobe_events", "p:x/y f\n")


def test_write_text_truncates_or_appends(tmp_path):
    target = tmp_path / "kprobe_events"
    target.write_text("old\n")
    tracefs.write_text(target, "a\n")
    tracefs.write_text(target, "b\n", append=True)
    assert target.read_text() == "a\nb\n"
