"""swaprace: watch the Linux swap-in path and flag swap-entry reuse inside a fault's race window."""

__version__ = "0.1.0"
