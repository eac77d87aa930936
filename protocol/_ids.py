"""Entry ids: UUIDv7 (RFC 9562), made on the device before any side effect.

The 48-bit millisecond timestamp comes first, so ids sort by creation time. Within one
millisecond a 12-bit counter in `rand_a` keeps ids from one generator strictly increasing,
even when the wall clock steps back (the generator never goes below its last timestamp).
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

_counter_max = 0xFFF


def _now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


class UUIDv7Generator:
    """Monotonic UUIDv7 source; the clock (milliseconds since the epoch) is injectable."""

    def __init__(self, clock_ms: Callable[[], int] = _now_ms) -> None:
        self._clock_ms = clock_ms
        self._last_ms = -1
        self._counter = 0
        self._lock = threading.Lock()

    def __call__(self) -> uuid.UUID:
        with self._lock:
            ms = self._clock_ms()
            if ms > self._last_ms:
                self._last_ms = ms
                self._counter = int.from_bytes(os.urandom(2), "big") & 0x3FF
            else:
                self._counter += 1
                if self._counter > _counter_max:
                    self._last_ms += 1
                    self._counter = 0
            return _pack(self._last_ms, self._counter, int.from_bytes(os.urandom(8), "big"))


def _pack(ms: int, counter: int, rand: int) -> uuid.UUID:
    value = (ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76
    value |= (counter & _counter_max) << 64
    value |= 0b10 << 62
    value |= rand & 0x3FFF_FFFF_FFFF_FFFF
    return uuid.UUID(int=value)


_default = UUIDv7Generator()


def new_entry_id() -> uuid.UUID:
    """A fresh UUIDv7 from the process-wide generator."""
    return _default()


def uuid7_time_ms(value: uuid.UUID) -> int:
    """The millisecond timestamp inside a UUIDv7."""
    if value.version != 7:
        raise ValueError(f"{value} is not a UUIDv7")
    return value.int >> 80
