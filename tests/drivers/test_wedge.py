"""Keyboard-wedge scanners: key presses → frames; a clear sentence where evdev is missing."""

from __future__ import annotations

import errno
import importlib.util
import os
import threading
import time
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from drivers import (
    DeviceState,
    Identified,
    IdentityRules,
    WedgeReader,
    WedgeScannerConfig,
    evdev_problem,
)
from drivers._framing import Frame, FrameDropped, FrameFault
from drivers._wedge import KeyFramer, KeyPress

from .samples import RULES


def typed(text: str) -> list[KeyPress]:
    presses: list[KeyPress] = []
    for char in text:
        shifted = char.isupper() or char in "+%?^:"
        key = {"+": "EQUAL", "%": "5", "?": "SLASH", "^": "6", ":": "SEMICOLON", ";": "SEMICOLON"}
        name = "KEY_" + key.get(char, char.upper())
        if shifted:
            presses.append(KeyPress("KEY_LEFTSHIFT", 1))
        presses += [KeyPress(name, 1), KeyPress(name, 0)]
        if shifted:
            presses.append(KeyPress("KEY_LEFTSHIFT", 0))
    return [*presses, KeyPress("KEY_ENTER", 1), KeyPress("KEY_ENTER", 0)]


def test_key_presses_make_frames() -> None:
    framer = KeyFramer()
    assert framer.feed(typed("2770000000017") + typed("KQab+7")) == [
        Frame(b"2770000000017"),
        Frame(b"KQab+7"),
    ]


def test_a_runaway_wedge_is_bounded() -> None:
    framer = KeyFramer(frame_chars_max=8)
    assert framer.feed(typed("1" * 20)) == [FrameDropped(FrameFault.too_long, 20)]
    assert framer.feed(typed("12")) == [Frame(b"12")]


@pytest.mark.skipif(importlib.util.find_spec("evdev") is not None, reason="evdev is installed")
def test_without_evdev_the_reason_is_a_sentence() -> None:
    problem = evdev_problem()
    assert problem is not None
    assert "pip install evdev" in problem
    config = WedgeScannerConfig(name="wedge", device="/dev/input/event0")
    with pytest.raises(RuntimeError, match="evdev"):
        WedgeReader(config, IdentityRules())


class FakeEvdev:
    """The part of the evdev package the reader uses: a device whose key events we write."""

    class ecodes:
        EV_KEY = 1
        KEY: ClassVar[dict[int, str | list[str]]] = {
            2: "KEY_1", 3: "KEY_2", 8: "KEY_7", 11: "KEY_0", 28: "KEY_ENTER",
            113: ["KEY_MIN_INTERESTING", "KEY_MUTE"],  # evdev lists aliased codes
        }  # fmt: skip

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        self.pending: list[SimpleNamespace] = []
        self.grabbed = False
        fake = self

        class InputDevice:
            def __init__(self, path: str) -> None:
                self.fd = fake.read_fd

            def grab(self) -> None:
                fake.grabbed = True

            def read(self) -> list[SimpleNamespace]:
                os.read(fake.read_fd, 1)
                events, fake.pending = fake.pending, []
                return events

            def close(self) -> None:
                pass

        self.InputDevice = InputDevice

    def type_text(self, digits: str) -> None:
        code = {"1": 2, "2": 3, "7": 8, "0": 11}
        for digit in digits:
            self.pending += [SimpleNamespace(type=1, code=code[digit], value=v) for v in (1, 0)]
        self.pending += [
            SimpleNamespace(type=1, code=113, value=1),
            SimpleNamespace(type=4, code=4, value=9),
        ]
        self.pending += [
            SimpleNamespace(type=1, code=28, value=1),
            SimpleNamespace(type=1, code=28, value=0),
        ]
        os.write(self.write_fd, b"x")


def test_a_wedge_scanner_through_the_evdev_interface() -> None:
    fake = FakeEvdev()
    config = WedgeScannerConfig(name="wedge", device="/dev/input/by-id/fake-event-kbd")
    reader = WedgeReader(config, RULES, evdev_module=fake).start()
    try:
        first = reader.next_event(timeout_s=5)
        assert first is not None
        assert reader.status().state == DeviceState.connected
        fake.type_text("2770000000017")
        event = reader.next_event(timeout_s=5)
        assert isinstance(event, Identified)
        assert event.value == "2770000000017"
        assert fake.grabbed
    finally:
        reader.stop()
        os.close(fake.read_fd)
        os.close(fake.write_fd)


def test_a_scan_cut_short_by_an_unplug_does_not_spoil_the_next_one() -> None:
    """Five digits typed, then the cable pulled before Enter: the first scan after the
    reconnect is the card scanned, not those five digits and it."""
    fake = FakeEvdev()
    codes = {"1": 2, "2": 3, "7": 8, "0": 11}
    unplug = threading.Event()
    read = fake.InputDevice.read

    def read_or_vanish(device: Any) -> list[SimpleNamespace]:
        if unplug.is_set():
            unplug.clear()
            os.read(fake.read_fd, 1)
            raise OSError(errno.ENODEV, "No such device")
        return read(device)

    fake.InputDevice.read = read_or_vanish  # type: ignore[method-assign]
    config = WedgeScannerConfig(name="wedge", device="/dev/input/by-id/fake-event-kbd")
    reader = WedgeReader(config, RULES, evdev_module=fake).start()
    try:
        assert reader.next_event(timeout_s=5) is not None  # connected
        for digit in "27700":
            fake.pending += [SimpleNamespace(type=1, code=codes[digit], value=v) for v in (1, 0)]
        os.write(fake.write_fd, b"x")
        time.sleep(0.3)
        unplug.set()
        os.write(fake.write_fd, b"x")
        states = [reader.next_event(timeout_s=5), reader.next_event(timeout_s=5)]
        assert [getattr(event, "state", None) for event in states] == [
            DeviceState.disconnected,
            DeviceState.connected,
        ]
        fake.type_text("2770000000017")
        event = reader.next_event(timeout_s=5)
        assert isinstance(event, Identified), event
        assert event.value == "2770000000017"
    finally:
        reader.stop()
        os.close(fake.read_fd)
