"""Kernel knowledge shared by the live probes and the offline readers: which function plays which role, with
which arguments, on every kernel swaprace supports (:mod:`~swaprace.kernel.catalog`), and symbol-name helpers
(:mod:`~swaprace.kernel.symbols`). Plain data and stdlib: importing it pulls in neither bcc nor pandas."""
