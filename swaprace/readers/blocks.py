"""Reading a text capture in blocks that end on a line boundary (bounded memory, no line cut in two)."""

from __future__ import annotations

from typing import BinaryIO, Iterator


def line_blocks(fh: BinaryIO, size: int) -> Iterator[bytes]:
    """``fh`` in blocks of about ``size`` bytes, each ending at a newline (the last one: where the file ends)."""
    rest = b""
    while True:
        data = fh.read(size)
        if not data:
            if rest:
                yield rest
            return
        cut = data.rfind(b"\n")
        if cut < 0:  # (rest never holds a newline: the block's last one is this read's last one)
            rest += data
            continue
        # one copy of the block, not two (rest + data, then a slice of it)
        yield b"".join((rest, memoryview(data)[: cut + 1]))
        rest = data[cut + 1:]
