"""A small simulated Linux swap subsystem: the oracle for swaprace's race analysis.

It knows nothing of swaprace's rules. It executes kernel operations (swap-in faults following 6.1's and 7.3's
``do_swap_page``, reclaim, zap, fork, KSM merge, user writes) split into steps, lets a scheduler interleave the
steps of several threads, emits the probe events the real kernel would fire, and records the ground truth: which
fault installs put data into a pte that is not the latest data written to that (mm, address).

Modules:

* :mod:`.state` -- folios, swap slots, the swap cache, ptes, data versions and the truth log;
* :mod:`.trace` -- probe events (6.1 and 7.x function names) and the :class:`swaprace.events.Capture`;
* :mod:`.swapcore` -- slot and swap-cache primitives per kernel flavour (count drops, frees, cache add/delete);
* :mod:`.fault` -- ``do_swap_page`` (cache path, skip-swapcache path, guards switchable);
* :mod:`.mmops` -- reclaim, ``folio_free_swap`` on a full swap, zap, fork, writes, KSM merge;
* :mod:`.sched` -- threads as step generators and the scheduler that interleaves them;
* :mod:`.scenarios` -- building a simulation from a compact description (hypothesis draws those);
* :mod:`.writers` -- ftrace text and perf-script text of a capture, in the shapes swaprace's readers parse.
"""

from .scenarios import Scenario, ThreadSpec, run_scenario
from .sched import Sim
from .state import Kernel, KernelConfig

__all__ = ["Kernel", "KernelConfig", "Scenario", "Sim", "ThreadSpec", "run_scenario"]
