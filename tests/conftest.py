"""Shared test set-up. VM tests (``-m vm``) boot the swaprace test box; see tests/vm_support.py."""
