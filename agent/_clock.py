"""The till's clocks, injectable so tests drive time without sleeping.

`wall()` is the till's own wall clock: recorded on entries, never trusted for ordering or for
the age of cached data. `boottime_s()` is CLOCK_BOOTTIME: it keeps counting across process
restarts and suspend, and restarts only with the machine, which `boot_id()` names. Data age is
central's timestamp of the last pull plus boottime elapsed since, within one boot.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
boot_time_resolution_s = 600
"""Where the machine names no boot (Windows, macOS): its start by the wall clock less the
monotonic clock, to this many seconds, so that the agent's processes name the same boot."""


class Clock(Protocol):
    def wall(self) -> datetime: ...
    def boottime_s(self) -> float: ...
    def boot_id(self) -> str: ...


class SystemClock:
    """Linux: CLOCK_BOOTTIME and the kernel's boot id. Elsewhere the monotonic clock, which
    runs from the machine's start, and that start as the boot's name (`_started`)."""

    def __init__(self) -> None:
        self._boot_id = _BOOT_ID.read_text().strip() if _BOOT_ID.exists() else _started()

    def wall(self) -> datetime:
        return datetime.now(UTC)

    def boottime_s(self) -> float:
        clock_id = getattr(time, "CLOCK_BOOTTIME", None)
        return time.monotonic() if clock_id is None else time.clock_gettime(clock_id)

    def boot_id(self) -> str:
        return self._boot_id


def _started() -> str:
    """When this machine started (a reboot changes it; a wall clock set far enough also
    does, which makes the data's age unknown until the next pull: the safe side)."""
    started_s = time.time() - time.monotonic()
    return f"started-{int(started_s // boot_time_resolution_s)}"


@dataclass
class ManualClock:
    """A clock for tests: `advance()` moves both clocks; `set_wall()` skews the wall alone."""

    now: datetime = field(default_factory=lambda: datetime(2026, 11, 25, 9, 0, tzinfo=UTC))
    boot_s: float = 1000.0
    boot: str = "boot-1"

    def wall(self) -> datetime:
        return self.now

    def boottime_s(self) -> float:
        return self.boot_s

    def boot_id(self) -> str:
        return self.boot

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.boot_s += seconds

    def set_wall(self, moment: datetime) -> None:
        self.now = moment

    def reboot(self) -> None:
        self.boot = self.boot + "'"
        self.boot_s = 5.0
