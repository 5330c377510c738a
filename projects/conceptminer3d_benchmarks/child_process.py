"""A timed child process: whole commands are timed as a user runs them, in a process of their own."""

from __future__ import annotations

import sys

__all__ = ['die_with_parent']


def die_with_parent() -> None:
    # A timed child must not outlive a benchmark that was killed: it would load the machine
    # under the next measurement. Linux only (prctl PR_SET_PDEATHSIG); elsewhere a no-op.
    if sys.platform.startswith('linux'):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
