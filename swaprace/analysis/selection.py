"""Choosing what to analyse: a swap entry given by a person, and a capture file read and analysed in one call.

Shared by ``swaprace analyze --entry``, ``swaprace plot entry``, ``swaprace report`` and the Python API, so
an entry is spelled the same way everywhere.

>>> parse_entry("0:0x12a") == parse_entry("0x12a") == parse_entry("298")
True
"""

from __future__ import annotations

from collections.abc import Callable

from swaprace.errors import SwapraceError
from swaprace.events import SWP_OFFSET_MASK, SWP_TYPE_SHIFT, swp_entry

#: MAX_SWAPFILES_SHIFT: swap types are 0..31.
MAX_SWAP_TYPES = 1 << 5


def parse_entry(text: str) -> int:
    """A swap entry: ``0x400000000012a`` or decimal (the raw swp_entry_t value), or ``TYPE:OFFSET``
    (each hex or decimal). Raises :class:`SwapraceError` ("not a swap entry: ...") otherwise."""
    text = str(text).strip()
    try:
        if ":" in text:
            swap_type, offset = (int(part.strip(), 0) for part in text.split(":", 1))
            if not 0 <= swap_type < MAX_SWAP_TYPES or not 0 <= offset <= SWP_OFFSET_MASK:
                raise ValueError
            return swp_entry(swap_type, offset)
        value = int(text, 0)
        if not 0 < value < 2 ** 64 or value >> SWP_TYPE_SHIFT >= MAX_SWAP_TYPES:
            raise ValueError
        return value
    except ValueError:
        raise SwapraceError(f"not a swap entry: {text!r} (give 0x<swp_entry_t value>, a decimal value, "
                            f"or TYPE:OFFSET like 0:0x12a)") from None


def load_analysis(path, fmt: str | None = None, status: Callable[[str], None] | None = None,
                  since_ns: int | None = None, until_ns: int | None = None, entry: int | None = None,
                  tid: int | None = None):
    """Read a capture of any supported format and analyse it (``status`` hears what is going on).

    The filters are those of :func:`swaprace.analysis.model.analyze`.
    """
    from swaprace.analysis.model import analyze
    from swaprace.readers import read_any

    if status:
        status(f"reading {path}")
    capture = read_any(path, fmt)
    if status:
        status(f"analysing {len(capture.events):,} events")
    return analyze(capture, since_ns=since_ns, until_ns=until_ns, entry=entry, tid=tid)


__all__ = ["load_analysis", "parse_entry"]
