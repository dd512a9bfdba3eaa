"""Threads as generators of kernel steps, and the scheduler that interleaves them.

An operation is a generator: everything between two ``yield``s is one atomic kernel step (a step holding the
page-table lock is one step, so nothing interleaves inside a PTL section). ``yield Wait(pred)`` blocks the thread
until ``pred()`` is true (a sleeping lock). The scheduler runs one step of one runnable thread at a time; which
thread is chosen by a list of choices (hypothesis draws it); once the choices run out it runs the threads round
robin until all are done.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Callable, Optional

Step = Generator[Optional["Wait"], None, None]


@dataclass
class Wait:
    """Block until ``pred()`` holds."""

    pred: Callable[[], bool]


@dataclass(eq=False)
class Thread:
    """A kernel-visible task: user thread, kswapd or ksmd. ``program`` is a list of operation factories."""

    tid: int
    pid: int
    comm: str
    cpu: int
    program: list[Callable[[Thread], Step]] = field(default_factory=list)
    _gen: Step | None = None
    _wait: Wait | None = None
    _pc: int = 0

    @property
    def done(self) -> bool:
        return self._gen is None and self._pc >= len(self.program)

    def runnable(self) -> bool:
        return not self.done and (self._wait is None or self._wait.pred())

    def step(self) -> None:
        """Run one step (starting the next operation when the current one finished)."""
        self._wait = None
        while True:
            if self._gen is None:
                if self._pc >= len(self.program):
                    return
                self._gen = self.program[self._pc](self)
                self._pc += 1
            try:
                got = next(self._gen)
            except StopIteration:
                self._gen = None  # an operation that found nothing to do still takes its step (time passes)
                return
            if isinstance(got, Wait):
                self._wait = got
            return


class Deadlock(RuntimeError):
    """No thread can run but some are not done (a simulator bug)."""


@dataclass
class Sim:
    """Threads and the choices that interleave them."""

    threads: list[Thread]
    after_step: Callable[[], None] | None = None
    max_steps: int = 5000

    def run(self, choices: Sequence[int] = (), by_tid: bool = False, strict: bool = True) -> int:
        """Run until every thread is done. ``choices`` index the runnable threads (or name a tid with
        ``by_tid``; a named thread that cannot run is an error when ``strict``, else the first runnable thread runs).
        Returns the number of steps."""
        steps = 0
        it: Iterator[int] = iter(choices)
        rr = 0
        while True:
            if all(t.done for t in self.threads if not t.daemon):
                return steps
            ready = [t for t in self.threads if t.runnable()]
            if not ready:
                raise Deadlock([(t.tid, t._pc) for t in self.threads if not t.done])
            choice = next(it, None)
            if choice is None:
                thread = ready[rr % len(ready)]
                rr += 1
            elif by_tid:
                match = [t for t in ready if t.tid == choice]
                if not match and not strict:
                    match = ready
                if not match:
                    raise ValueError(f"schedule names tid {choice}, which cannot run now")
                thread = match[0]
            else:
                thread = ready[choice % len(ready)]
            thread.step()
            steps += 1
            if self.after_step:
                self.after_step()
            if steps > self.max_steps:
                raise Deadlock(f"no end after {steps} steps (livelock)")
