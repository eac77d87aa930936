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
STARTED = "started-"
"""Where the machine names no boot (Windows, macOS), a boot is named by its start: the wall
clock less the boot clock, in seconds (`boot_offset_s` allows for the wall clock being set)."""
boot_start_tolerance_s = 600
"""How far two processes' reckonings of the machine's start may be apart and name one boot:
the wall clock set between their starts moves the reckoning."""


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
        return _boot_clock_s()

    def boot_id(self) -> str:
        return self._boot_id


def _boot_clock_s() -> float:
    """Seconds since the machine started, counting while it sleeps: CLOCK_BOOTTIME (Linux),
    CLOCK_MONOTONIC where that is all there is (macOS: it counts asleep, Python's
    `time.monotonic` there does not), `time.monotonic` on Windows (GetTickCount64)."""
    clock_id = getattr(time, "CLOCK_BOOTTIME", None) or getattr(time, "CLOCK_MONOTONIC", None)
    if clock_id is None or not hasattr(time, "clock_gettime"):
        return time.monotonic()
    return time.clock_gettime(clock_id)


def _started() -> str:
    """When this machine started, by its wall clock (a reboot changes it)."""
    return f"{STARTED}{int(time.time() - _boot_clock_s())}"


def boot_offset_s(one: str, other: str) -> int | None:
    """How far apart two names of one boot put its start: 0 for the same name; for two
    reckonings of the machine's start within `boot_start_tolerance_s`, their difference; None
    for two boots. A reboot soon after a start also falls within the tolerance: the caller
    takes the boot clock to have run at least the difference since (`data_age_s`)."""
    if one == other:
        return 0
    if not (one.startswith(STARTED) and other.startswith(STARTED)):
        return None
    apart = abs(int(one.removeprefix(STARTED)) - int(other.removeprefix(STARTED)))
    return apart if apart <= boot_start_tolerance_s else None


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
