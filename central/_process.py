"""What central's child processes share: they die with the process that started them."""

from __future__ import annotations

import ctypes
import os
import signal


def die_with_parent(parent_pid: int) -> None:
    """This process gets SIGKILL when its parent dies, however it dies (Linux; elsewhere a
    no-op); and exits now if the parent `parent_pid` already died while it was starting
    (before this call nothing would have told it)."""
    try:
        libc = ctypes.CDLL(None)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:
        os._exit(0)
