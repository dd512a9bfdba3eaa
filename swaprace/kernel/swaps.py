"""``/proc/swaps``: the active swap devices, parsed in one place (``swaprace doctor`` and the stress companion).

The file has a header line, then one line a device: ``Filename Type Size Used Priority`` (sizes in KiB).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, NamedTuple, Optional, Union

PROC_SWAPS = Path("/proc/swaps")


class SwapDevice(NamedTuple):
    """One line of ``/proc/swaps``; ``priority`` is None on a line that has no such column."""

    name: str
    type: str
    size_kib: int
    used_kib: int
    priority: Optional[int]


def parse_swaps(text: str) -> List[SwapDevice]:
    """The devices listed in ``/proc/swaps`` text (the header line skipped, short lines ignored)."""
    devices: List[SwapDevice] = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 4:
            devices.append(SwapDevice(parts[0], parts[1], int(parts[2]), int(parts[3]),
                                      int(parts[4]) if len(parts) >= 5 else None))
    return devices


def read_swaps(path: Union[str, Path, None] = None) -> List[SwapDevice]:
    """The active swap devices (``path``: default :data:`PROC_SWAPS`); OSError when it cannot be read (no swap
    support: no /proc/swaps)."""
    return parse_swaps(Path(PROC_SWAPS if path is None else path).read_text())
