"""Keyboard-wedge scanners on Linux, read from their input device through evdev.

A wedge scanner types its payload as key presses and ends it with Enter. Read through the
console it would land in whatever window has focus; read from `/dev/input/…` (and grabbed) it
reaches only the agent. `evdev` is optional: where it is missing (not Linux, or not
installed) `evdev_problem()` says so in a sentence, and the agent can fall back to the POS
forwarding scans. The key-to-text translation is pure and tested without a device.
"""

from __future__ import annotations

import importlib
import logging
import queue
import select
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from drivers._config import WedgeScannerConfig
from drivers._decoders import ScanDecoder
from drivers._events import DeviceEvent, DeviceState, StateChanged
from drivers._framing import Frame, FrameDropped, FrameFault, FramerOutput
from drivers._identity import IdentityRules
from drivers._reader import ReaderStatus

log = logging.getLogger(__name__)

_KEY_DOWN = 1
events_queued_max = 256
_SHIFTS = frozenset({"KEY_LEFTSHIFT", "KEY_RIGHTSHIFT"})
_ENDS = frozenset({"KEY_ENTER", "KEY_KPENTER", "KEY_TAB"})
_PLAIN = {f"KEY_{d}": d for d in "0123456789"} | {f"KEY_KP{d}": d for d in "0123456789"}
_PLAIN |= {f"KEY_{c}": c.lower() for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}
_PLAIN |= {
    "KEY_MINUS": "-",
    "KEY_EQUAL": "=",
    "KEY_SPACE": " ",
    "KEY_DOT": ".",
    "KEY_SLASH": "/",
    "KEY_SEMICOLON": ";",
    "KEY_RIGHTBRACE": "]",
    "KEY_LEFTBRACE": "[",
    "KEY_COMMA": ",",
    "KEY_APOSTROPHE": "'",
}
_SHIFTED = {f"KEY_{c}": c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"} | {
    "KEY_EQUAL": "+",
    "KEY_SEMICOLON": ":",
    "KEY_5": "%",
    "KEY_SLASH": "?",
    "KEY_6": "^",
    "KEY_9": "(",
    "KEY_0": ")",
    "KEY_MINUS": "_",
}


@dataclass(frozen=True, slots=True)
class KeyPress:
    """One key event as evdev names it: `KEY_5`, value 1 = down, 0 = up, 2 = repeat."""

    key: str
    value: int


class KeyFramer:
    """Key presses → frames ended by Enter (or Tab). Pure and bounded, like `Framer`."""

    def __init__(self, *, frame_chars_max: int = 256) -> None:
        self._chars: list[str] = []
        self._shift = False
        self._overflow = 0
        self._frame_chars_max = frame_chars_max

    def feed(self, presses: Iterable[KeyPress]) -> list[FramerOutput]:
        out: list[FramerOutput] = []
        for press in presses:
            if press.key in _SHIFTS:
                self._shift = press.value != 0
            elif press.value == _KEY_DOWN:
                self._key_down(press.key, out)
        return out

    def _key_down(self, key: str, out: list[FramerOutput]) -> None:
        if key in _ENDS:
            if self._overflow:
                out.append(FrameDropped(FrameFault.too_long, self._overflow))
            elif self._chars:
                out.append(Frame("".join(self._chars).encode("ascii")))
            self._chars.clear()
            self._overflow = 0
            return
        char = (_SHIFTED if self._shift else _PLAIN).get(key, "\x00")
        if self._overflow or len(self._chars) >= self._frame_chars_max:
            self._overflow = max(self._overflow, len(self._chars)) + 1
            self._chars.clear()
        else:
            self._chars.append(char)


def evdev_problem() -> str | None:
    """Why keyboard-wedge scanners cannot be read here, or None when they can."""
    try:
        importlib.import_module("evdev")
    except ImportError:
        return (
            "keyboard-wedge scanners need the 'evdev' package on Linux (pip install evdev); "
            "without it, configure the scanner as a serial (USB-CDC) device or let the POS "
            "forward scans"
        )
    return None


class WedgeReader:
    """Reads one keyboard-wedge scanner; the same caller's side as `SerialReader`."""

    def __init__(
        self,
        config: WedgeScannerConfig,
        rules: IdentityRules,
        *,
        events: queue.Queue[DeviceEvent] | None = None,
        evdev_module: Any = None,
    ) -> None:
        """`evdev_module`: the evdev package (imported here when not given)."""
        if evdev_module is None:
            problem = evdev_problem()
            if problem is not None:
                raise RuntimeError(problem)
            evdev_module = importlib.import_module("evdev")
        self._evdev = evdev_module
        self.config = config
        self._decoder = ScanDecoder(config.name, rules, aim=config.aim)
        self._framer = KeyFramer(frame_chars_max=config.scan_frame_bytes_max)
        self._events = events if events is not None else queue.Queue(events_queued_max)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.state = DeviceState.starting

    def start(self) -> WedgeReader:
        self._thread = threading.Thread(target=self._run, name=f"wedge-{self.config.name}")
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)

    def status(self) -> ReaderStatus:
        return ReaderStatus(self.config.name, self.state, 0, 0, 0, 0, None)

    def next_event(self, timeout_s: float | None = None) -> DeviceEvent | None:
        try:
            return self._events.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def _run(self) -> None:
        evdev = self._evdev
        while not self._stop.is_set():
            try:
                device = evdev.InputDevice(self.config.device)
                if self.config.grab:
                    device.grab()
            except OSError as error:
                self._put(StateChanged(self.config.name, DeviceState.disconnected, str(error)))
                self._stop.wait(1.0)
                continue
            self._put(StateChanged(self.config.name, DeviceState.connected, self.config.device))
            # keys of a scan the unplug cut short (and a Shift held then) end with that device
            self._framer = KeyFramer(frame_chars_max=self.config.scan_frame_bytes_max)
            try:
                self._read(evdev, device)
            except OSError as error:
                self._put(StateChanged(self.config.name, DeviceState.disconnected, str(error)))
            finally:
                device.close()

    def _read(self, evdev: Any, device: Any) -> None:
        keys = evdev.ecodes.KEY
        while not self._stop.is_set():
            if not _readable(device.fd):
                continue
            presses = [
                KeyPress(keys[event.code], event.value)
                for event in device.read()
                if event.type == evdev.ecodes.EV_KEY and isinstance(keys.get(event.code), str)
            ]
            for event in self._decoder.decode(self._framer.feed(presses)):
                self._put(event)

    def _put(self, event: DeviceEvent) -> None:
        if isinstance(event, StateChanged):
            self.state = event.state
        try:
            self._events.put_nowait(event)
        except queue.Full:
            log.warning("wedge %s: event queue full, dropping %r", self.config.name, event)


def _readable(fd: int) -> bool:
    ready, _, _ = select.select([fd], [], [], 0.1)
    return bool(ready)
