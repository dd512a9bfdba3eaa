"""``swaprace stress``: a workload that drives the kernel into the swap-entry reuse states, with a data oracle.

Modules: :mod:`.machine` (swap file, memory cgroup, KSM knobs; all undone on exit), :mod:`.native` and
``stress_helper.c`` (the pthreads that fault), :mod:`.worker` (one workload process), :mod:`.run`
(the orchestrator, /proc/vmstat counters, the oracle's verdict), :mod:`.join` (oracle vs detector).
"""
