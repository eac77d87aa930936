"""What central's child processes share: they die with the process that started them."""

from __future__ import annotations

import ctypes
import signal


def die_with_parent() -> None:
    """This process gets SIGKILL when its parent dies, however it dies (Linux; elsewhere a
    no-op)."""
    try:
        libc = ctypes.CDLL(None)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
