"""Bytes from a serial reading device → frames. Pure: no I/O, time comes in as `now`.

A scanner or a card reader sends each read as one frame: an optional prefix, the payload and
a suffix (CR, LF, CRLF or TAB). Some are set up without a suffix; then a pause in the stream
(`idle_flush_s`) ends the frame. Everything is bounded: a frame longer than
`frame_bytes_max` is dropped whole (its tail too, up to the next suffix), and what is dropped
is counted, never kept.

A two-byte suffix (CRLF) may be cut between reads. A read that ends with the suffix's first
byte holds that byte aside, outside the frame and its bound, and puts it back in front of the
next read: the suffix is then found whole, whether the frame was being kept or discarded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Suffix(StrEnum):
    cr = "cr"
    lf = "lf"
    crlf = "crlf"
    tab = "tab"
    none = "none"


SUFFIX_BYTES: dict[Suffix, bytes] = {
    Suffix.cr: b"\r",
    Suffix.lf: b"\n",
    Suffix.crlf: b"\r\n",
    Suffix.tab: b"\t",
    Suffix.none: b"",
}

frame_bytes_max_limit = 4096
_LINE_ENDS = b"\r\n"


class FrameFault(StrEnum):
    too_long = "too_long"
    partial = "partial"
    no_prefix = "no_prefix"


@dataclass(frozen=True, slots=True)
class Frame:
    """One complete frame's payload, prefix and suffix removed. Never printed or logged."""

    payload: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class FrameDropped:
    """Bytes that did not make a frame; only their count is kept."""

    fault: FrameFault
    bytes: int


FramerOutput = Frame | FrameDropped


class Framer:
    """Cuts a byte stream into frames. Feed it what the port gave and the time it came."""

    def __init__(
        self,
        *,
        suffix: Suffix = Suffix.cr,
        prefix: bytes = b"",
        frame_bytes_max: int = 256,
        idle_flush_s: float = 0.2,
    ) -> None:
        if not 1 <= frame_bytes_max <= frame_bytes_max_limit:
            raise ValueError(f"frame_bytes_max must be within 1…{frame_bytes_max_limit}")
        if idle_flush_s <= 0:
            raise ValueError("idle_flush_s must be positive")
        self._suffix = SUFFIX_BYTES[suffix]
        self._prefix = prefix
        self._frame_bytes_max = frame_bytes_max
        self._idle_flush_s = idle_flush_s
        self._buffer = bytearray()
        self._discarding = 0  # bytes of an oversized frame dropped so far
        self._held = b""  # the start of a suffix that ended the last read
        self._last_byte_at: float | None = None

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes, now: float) -> list[FramerOutput]:
        """Frames completed by `data` (received at `now`), in order."""
        out: list[FramerOutput] = []
        if not data:
            return out
        out.extend(self.poll(now))
        self._last_byte_at = now
        data, self._held = self._held + bytes(data), b""
        pos = 0
        while pos < len(data):
            end = data.find(self._suffix, pos) if self._suffix else -1
            if end < 0:
                held = self._suffix_start(data, pos)
                self._append(data, pos, len(data) - held)
                self._held = data[len(data) - held :]
                break
            self._end_frame(data, pos, end, out)
            pos = end + len(self._suffix)
        return out

    def poll(self, now: float) -> list[FramerOutput]:
        """What a pause in the stream ends: with no suffix set, the frame; else a partial one."""
        if self._last_byte_at is None or now - self._last_byte_at < self._idle_flush_s:
            return []
        self._last_byte_at = None
        out: list[FramerOutput] = []
        held, self._held = len(self._held), b""  # a suffix's start whose rest never came
        if self._discarding:
            out.append(FrameDropped(FrameFault.too_long, self._discarding + held))
            self._discarding = 0
        elif self._buffer or held:
            frame = bytes(self._buffer)
            self._buffer.clear()
            if self._suffix:
                out.append(FrameDropped(FrameFault.partial, len(frame) + held))
            else:
                self._finish(frame, out)
        return out

    def _suffix_start(self, data: bytes, pos: int) -> int:
        """How many bytes at the end of `data[pos:]` may be the start of a suffix cut off by
        the read's end: they wait for the next read instead of counting as the frame's."""
        for held in range(len(self._suffix) - 1, 0, -1):
            if data.endswith(self._suffix[:held], pos):
                return held
        return 0

    def _end_frame(self, data: bytes, start: int, end: int, out: list[FramerOutput]) -> None:
        size = len(self._buffer) + end - start
        if self._discarding:
            out.append(FrameDropped(FrameFault.too_long, self._discarding + end - start))
            self._discarding = 0
        elif size > self._frame_bytes_max:
            out.append(FrameDropped(FrameFault.too_long, size))
        else:
            self._buffer += data[start:end]
            self._finish(bytes(self._buffer), out)
        self._buffer.clear()

    def _append(self, data: bytes, start: int, end: int) -> None:
        """Keep bytes that no suffix ends yet, within the bound; past it, only count them."""
        if self._discarding:
            self._discarding += end - start
        elif len(self._buffer) + end - start <= self._frame_bytes_max:
            self._buffer += data[start:end]
        else:
            self._discarding = len(self._buffer) + end - start
            self._buffer.clear()

    def _finish(self, frame: bytes, out: list[FramerOutput]) -> None:
        frame = frame.strip(_LINE_ENDS)
        if not frame:
            return
        if not self._prefix:
            out.append(Frame(frame))
            return
        start = frame.rfind(self._prefix)
        if start < 0:
            out.append(FrameDropped(FrameFault.no_prefix, len(frame)))
            return
        if start > 0:
            out.append(FrameDropped(FrameFault.no_prefix, start))
        payload = frame[start + len(self._prefix) :]
        if payload:
            out.append(Frame(payload))
