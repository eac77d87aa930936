"""Keyboard-wedge scanners: key presses → frames; a clear sentence where evdev is missing."""

from __future__ import annotations

import importlib.util

import pytest

from drivers import IdentityRules, WedgeReader, WedgeScannerConfig, evdev_problem
from drivers._framing import Frame, FrameDropped, FrameFault
from drivers._wedge import KeyFramer, KeyPress


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
