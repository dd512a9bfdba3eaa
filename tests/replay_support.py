"""A replay backend for recorder tests on this host: the ftrace backend with trace_pipe replaced by a real
trace recorded in the test box (tests/fixtures/real), handed out a few lines per poll."""

from __future__ import annotations

from pathlib import Path
from typing import List

from swaprace.events import CaptureMeta
from swaprace.kernel.catalog import load_symbols, resolve_roles
from swaprace.probes.backend import ProbePlan
from swaprace.probes.ftrace_backend import FtraceBackend

FIXTURES = Path(__file__).parent / "fixtures"
TRACES = sorted((FIXTURES / "real").glob("ftrace-*.trace"))


class ReplayBackend(FtraceBackend):
    """The ftrace backend with trace_pipe replaced by a recorded trace, handed out a few lines per poll."""

    name = "ftrace"

    def __init__(self, trace: Path, lines_per_poll: int = 500, fail_after_polls: int = -1) -> None:
        super().__init__()
        text = trace.read_bytes()
        header, _, body = text.partition(b"\n")
        self.meta = CaptureMeta.from_json(header.decode()[len("# swaprace:"):])
        self._lines: List[bytes] = body.splitlines(keepends=True)
        self._per_poll = lines_per_poll
        self._fail_after = fail_after_polls
        self.polls = 0
        self.stops = 0

    @classmethod
    def check(cls):
        return None

    def start(self, plan: ProbePlan) -> None:
        self._plan = plan

    def _read_pipe(self, limit=None) -> bytes:
        self.polls += 1
        if self.polls == self._fail_after:
            raise OSError("trace_pipe vanished")
        chunk, self._lines = self._lines[:self._per_poll], self._lines[self._per_poll:]
        return b"".join(chunk)

    def drain(self):
        return super().drain()

    def losses(self):
        return {"ftrace_overrun": 0, "ftrace_dropped": 0}

    def hits(self):
        return dict(self.meta.extra.get("kernel_hits", {}))

    def stop(self) -> None:
        self.stops += 1
        if not self._stopped:
            self._pending.append(self._parse(self._read_pipe()))
        self._stopped = True

    @property
    def remaining(self) -> int:
        return len(self._lines)


def plan_for(trace: Path) -> ProbePlan:
    kernel = "bookworm-6.1" if "6.1" in trace.name else "trixie-bpo-7.3"
    return ProbePlan(resolutions=resolve_roles(load_symbols(str(FIXTURES / f"kallsyms-{kernel}.txt"))))
