"""Exponential backoff between tries, bounded both ways. Pure: it only counts."""

from __future__ import annotations


class Backoff:
    """`next_s()` gives min_s, 2·min_s, 4·min_s … up to max_s; `reset()` after a success."""

    def __init__(self, min_s: float, max_s: float) -> None:
        if not 0 < min_s <= max_s:
            raise ValueError("backoff needs 0 < min_s <= max_s")
        self._min_s = min_s
        self._max_s = max_s
        self._next_s = min_s

    def next_s(self) -> float:
        delay = self._next_s
        self._next_s = min(self._next_s * 2, self._max_s)
        return delay

    def reset(self) -> None:
        self._next_s = self._min_s
