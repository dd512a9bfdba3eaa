"""The race lab: on a lab kernel (a race guard reverted, swaprace/vm/lab.py) the scenario aimed at that race
makes the kernel lose writes the data oracle sees; on the stock kernels the same scenario finds nothing.

Runs when the lab kernel is cached, or with SWAPRACE_LAB_BUILD=1 when it can be built here (Debian's
linux-source-6.1 tarball is installed: a cold build is ~20 min on an idle 2-core machine, the second lab kernel an
incremental rebuild); skipped otherwise, so a CI run never starts a kernel build it did not ask for. Each case is one guest boot plus 30 s of scenario (stress's default duration) (a few minutes under TCG).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import pytest

from swaprace.vm.lab import cached_lab_kernel, source_tarball
from swaprace.errors import SwapraceError
from vm_support import vm_run

pytestmark = pytest.mark.vm

DURATION = "30"  # swaprace stress's default
WIDEN_US = "20000"
LAB = {"skip-swapcache-2024": "lab-2024", "swapcache-2010": "lab-2010", "ksm-2010": "lab-2010"}


def _require_lab(kernel: str) -> None:
    if cached_lab_kernel(kernel):
        return
    if os.environ.get("SWAPRACE_LAB_BUILD") != "1":
        pytest.skip(f"{kernel} is not cached (build it with `swaprace vm build --kernel {kernel}`, or set "
                    "SWAPRACE_LAB_BUILD=1 to let the test build it)")
    try:
        source_tarball()
    except SwapraceError as exc:
        pytest.skip(f"{kernel} is not cached and cannot be built here: {exc}")


def _run(kernel: str, scenario: str, *extra: str):
    out = Path(tempfile.mkdtemp(prefix=f"swaprace-lab-{kernel}-"))
    done = vm_run(kernel, ["python3", "tests/guest/lab_check.py", "/mnt/out", "--scenario", scenario,
                           "--duration", DURATION, "--widen-us", WIDEN_US, *extra], timeout=1500, out_dir=out)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    summary = json.loads((out / "stress.json").read_text() or "{}")
    return result, summary


def _machine_restored(result) -> None:
    assert result["after"] == result["before"], (result["before"], result["after"])


@pytest.mark.parametrize("scenario", ["skip-swapcache-2024"])
def test_lab_kernel_loses_writes(scenario):
    kernel = LAB[scenario]
    _require_lab(kernel)
    result, summary = _run(kernel, scenario)
    assert "lab" in result["release"]
    assert result["rc"] == 1, result["stderr"][-2000:]  # stress exits 1 on corruption
    assert summary["corruptions"] > 0
    assert summary["widener"]["available"] and summary["widener"]["sleeps"] > 0
    assert any(m["phase_name"] == "locked-check" and m["got_gen"] < m["expected_gen"] for m in summary["mismatches"])
    _machine_restored(result)


def test_lab_kernel_races_agree_with_the_oracle_run_for_run():
    """`stress --record` on lab-2024: every lost write the oracle sees follows a stale-install on its page, in
    the offline analysis and in the in-kernel detector alike; a stale-install without a lost write only where
    the stale copy held the latest data; the two sides find the same stale-installs."""
    _require_lab("lab-2024")
    # 20 s (the last --duration wins): ~60 lost writes, and a capture the guest analyses in a minute
    result, summary = _run("lab-2024", "skip-swapcache-2024", "--record", "/mnt/out/run.parquet", "--duration", "20")
    assert result["rc"] == 1, result["stderr"][-2000:]
    assert summary["trace"]["lost_events"] == 0 and summary["corruptions"] > 0
    joined = summary["join"]
    agree = joined["agreement"]
    assert agree["with_offline_stale_install"] == agree["with_detector_stale_install"] == agree["corruptions"], \
        [r for r in joined["table"] if r["why_unpartnered"]]
    assert all(r["offline"]["matched_by"] == "page+time" for r in joined["table"])
    assert all(u["why"].startswith("no oracle mismatch followed") for u in joined["unpartnered"]), joined["unpartnered"]
    assert agree["offline_stale_installs"] == agree["detector_stale_installs"]
    _machine_restored(result)


def test_lab_2010_kernel_installs_a_page_that_left_the_swap_cache():
    """Without the 2010 bail-out, a fault installs the folio it found in the swap cache although that folio
    left the cache and its slot went to another page meanwhile. On 6.1 the folio is by then mapped exclusively
    by the thread that faulted it in first, and do_swap_page's own sanity check BUG_ON(folio_test_anon(folio)
    && PageAnonExclusive(page)) (mm/memory.c, from the anon-exclusive work of Linux 5.19) stops the kernel
    before the stale install: the race is caught by the kernel, as an oops, not by the data oracle."""
    _require_lab("lab-2010")
    out = Path(tempfile.mkdtemp(prefix="swaprace-lab-lab-2010-oops-"))
    with pytest.raises(SwapraceError) as caught:
        vm_run("lab-2010", ["sh", "tests/guest/lab_oops_check.sh", "--duration", DURATION, "--widen-us", WIDEN_US],
               timeout=1500, out_dir=out)
    message = str(caught.value)
    assert "guest kernel panic" in message, message
    console = Path(re.search(r"full console log: (\S+?)\)", message).group(1)).read_text(errors="replace")
    assert "kernel BUG at mm/memory.c" in console and "RIP: 0010:do_swap_page" in console, console[-3000:]


@pytest.mark.parametrize("scenario", ["skip-swapcache-2024", "swapcache-2010", "ksm-2010"])
@pytest.mark.parametrize("kernel", ["bookworm", "trixie-backports"])
def test_stock_kernel_stays_clean(kernel, scenario):
    result, summary = _run(kernel, scenario)
    assert result["rc"] == 0, result["stderr"][-2000:]
    assert summary["corruptions"] == 0
    assert summary["widener"]["available"] is False
    assert summary["workload"]["pageouts"] > 0 and summary["vmstat"]["pswpin"]["delta"] > 0
    if scenario == "ksm-2010":
        assert summary["vmstat"]["ksm_swpin_copy"]["delta"] > 0  # the copy path ran
    elif scenario == "swapcache-2010":
        assert summary["swap_device"] == "file" and summary["fault_windows"]["same_page_overlapping_pairs"] > 0
    else:
        assert summary["swap_device"] == "zram" and summary["fault_windows"]["same_page_overlapping_pairs"] > 0
    _machine_restored(result)
