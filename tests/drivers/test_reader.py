"""Readers on real pseudo-terminals: identify, survive noise and bursts, come back after unplug.

No test sleeps to let time pass: each waits for the event it expects, polling with a short
timeout and giving up after a few seconds.
"""

from __future__ import annotations

import logging
import os
import queue
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import serial

from drivers import (
    CardReaderConfig,
    DeviceEvent,
    DeviceState,
    Identified,
    Noise,
    PtyDevice,
    ReadAgain,
    Rejected,
    ScannerConfig,
    SerialReader,
    StateChanged,
    Suffix,
    open_reader,
)

from .samples import BANK_CARD, EAN_CARD, MAG_CARD, RULES

WAIT_S = 5.0


def wait_for(
    reader: SerialReader, wanted: Callable[[DeviceEvent], bool], timeout_s: float = WAIT_S
) -> tuple[DeviceEvent, list[DeviceEvent]]:
    """The first event `wanted` accepts, and every event seen before it."""
    seen: list[DeviceEvent] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        event = reader.next_event(timeout_s=0.05)
        if event is None:
            continue
        if wanted(event):
            return event, seen
        seen.append(event)
    raise AssertionError(f"no such event within {timeout_s} s; saw {seen[-10:]}")


def connected(event: DeviceEvent) -> bool:
    return isinstance(event, StateChanged) and event.state == DeviceState.connected


def identified(event: DeviceEvent) -> bool:
    return isinstance(event, Identified)


@pytest.fixture
def scanner_pty(tmp_path: Path) -> Iterator[PtyDevice]:
    with PtyDevice(tmp_path / "scanner") as device:
        yield device


@pytest.fixture
def scanner(scanner_pty: PtyDevice) -> Iterator[SerialReader]:
    reader = open_reader(ScannerConfig(name="scanner", port=scanner_pty.path), RULES)
    assert isinstance(reader, SerialReader)
    try:
        wait_for(reader, connected)
        yield reader
    finally:
        reader.stop()


def test_scanner_on_a_pty_identifies_the_card(
    scanner_pty: PtyDevice, scanner: SerialReader
) -> None:
    scanner_pty.scan(EAN_CARD, aim="]E0")
    event, _ = wait_for(scanner, identified)
    assert isinstance(event, Identified)
    assert (event.value, event.card_range, event.symbology) == (EAN_CARD, "ean13-cards", "]E0")
    assert scanner.status().identified == 1


def test_card_reader_on_a_pty_identifies_track2(tmp_path: Path) -> None:
    with PtyDevice(tmp_path / "msr") as msr:
        config = CardReaderConfig(name="msr", port=msr.path, suffix=Suffix.crlf)
        with SerialReader(config, RULES) as reader:
            wait_for(reader, connected)
            msr.write(f";{MAG_CARD}=29121010000?\r\n".encode())
            event, _ = wait_for(reader, identified)
            assert isinstance(event, Identified)
            assert event.value == MAG_CARD
            msr.write(f";{BANK_CARD}=29121010000?\r\n".encode())
            dropped, _ = wait_for(reader, lambda e: not isinstance(e, StateChanged))
            assert isinstance(dropped, Rejected)
            assert dropped.code == "card_unknown_range"
            msr.write(b";E?\r\n")
            again, _ = wait_for(reader, lambda e: isinstance(e, ReadAgain))
            assert isinstance(again, ReadAgain)
            assert again.code == "swipe_unreadable"


def test_card_reader_logs_no_track_data(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    events: list[DeviceEvent] = []
    msr = PtyDevice(tmp_path / "msr")
    reader = SerialReader(CardReaderConfig(name="msr", port=msr.path), RULES)
    with msr, reader:
        wait_for(reader, connected)
        msr.swipe_card(MAG_CARD, name="IVANOVA/MARIA")
        msr.swipe_card(BANK_CARD, name="IVANOVA/MARIA")
        msr.write(b";" + BANK_CARD.encode() + b"\r")  # a partial frame, no end sentinel
        for _ in range(3):
            event, seen = wait_for(reader, lambda e: not isinstance(e, StateChanged))
            events += [*seen, event]
    shown = caplog.text + "".join(repr(e) for e in events)
    assert "Identified" in caplog.text
    for secret in (MAG_CARD, BANK_CARD, "IVANOVA", "2912"):
        assert secret not in shown


def test_noise_partial_frames_and_a_10_mb_burst_are_survived(
    scanner_pty: PtyDevice, scanner: SerialReader
) -> None:
    scanner_pty.write(b"\x00\xff\x13garbage\r")
    scanner_pty.write(b"27700")  # a partial frame: the scanner stopped mid-read
    _partial, _ = wait_for(scanner, lambda e: isinstance(e, Noise) and e.reason == "partial")
    scanner_pty.scan(EAN_CARD)
    wait_for(scanner, identified)

    burst = os.urandom(10 * 1024 * 1024)
    scanner_pty.write(burst + b"\r")  # the last garbage frame ends where the line settles
    scanner_pty.scan(EAN_CARD, aim="]E0")
    event, seen = wait_for(scanner, identified, timeout_s=30)
    assert isinstance(event, Identified)
    assert event.value == EAN_CARD
    status = scanner.status()
    assert status.state == DeviceState.connected
    assert status.connects == 1
    assert status.noise_bytes >= len(burst) * 0.9  # all of it was seen and dropped
    garbage_frames = burst.count(b"\r")
    assert len(seen) + status.events_dropped < garbage_frames // 2  # coalesced, not one each


def test_unplug_and_replug_behind_a_re_pointed_symlink(
    scanner_pty: PtyDevice, scanner: SerialReader
) -> None:
    first_slave = scanner_pty.slave_path
    scanner_pty.unplug()
    lost, _ = wait_for(scanner, lambda e: isinstance(e, StateChanged))
    assert isinstance(lost, StateChanged)
    assert lost.state == DeviceState.disconnected
    scanner_pty.replug()
    assert os.readlink(scanner_pty.path) == scanner_pty.slave_path
    wait_for(scanner, connected)
    scanner_pty.scan(EAN_CARD)
    event, _ = wait_for(scanner, identified)
    assert isinstance(event, Identified)
    assert scanner.status().connects == 2
    assert first_slave  # the old pty is gone; the reader followed the link to the new one


def test_a_device_absent_at_start_is_picked_up_when_it_appears(tmp_path: Path) -> None:
    link = tmp_path / "scanner"
    config = ScannerConfig(name="late", port=str(link), reconnect_backoff_s_max=0.2)
    with SerialReader(config, RULES) as reader:
        lost, _ = wait_for(reader, lambda e: isinstance(e, StateChanged))
        assert isinstance(lost, StateChanged)
        assert lost.state == DeviceState.disconnected
        with PtyDevice(link) as device:
            wait_for(reader, connected)
            device.scan(EAN_CARD)
            wait_for(reader, identified)


def test_scanner_without_suffix_is_framed_by_the_idle_pause(tmp_path: Path) -> None:
    with PtyDevice(tmp_path / "s", suffix=Suffix.none) as device:
        config = ScannerConfig(name="s", port=device.path, suffix=Suffix.none, idle_flush_s=0.05)
        with SerialReader(config, RULES) as reader:
            wait_for(reader, connected)
            device.scan(EAN_CARD)
            event, _ = wait_for(reader, identified)
            assert isinstance(event, Identified)
            assert event.value == EAN_CARD


def test_a_pyserial_loop_url_port_through_the_port_seam() -> None:
    port = serial.serial_for_url("loop://", timeout=0.05)
    port.write(b"]E0" + EAN_CARD.encode() + b"\r")

    def opener(url: str, baud: int, timeout_s: float) -> serial.SerialBase:
        assert (url, baud) == ("loop://", 9600)
        return port

    with SerialReader(ScannerConfig(name="loop", port="loop://"), RULES, port_opener=opener) as r:
        event, _ = wait_for(r, identified)
        assert isinstance(event, Identified)
        assert event.symbology == "]E0"


def test_a_scanner_and_a_card_reader_share_the_till_sessions_queue(tmp_path: Path) -> None:
    events: queue.Queue[DeviceEvent] = queue.Queue(64)
    with PtyDevice(tmp_path / "scanner") as scanner_pty, PtyDevice(tmp_path / "msr") as msr:
        readers = [
            open_reader(ScannerConfig(name="scanner", port=scanner_pty.path), RULES, events=events),
            open_reader(CardReaderConfig(name="msr", port=msr.path), RULES, events=events),
        ]
        try:
            deadline = time.monotonic() + WAIT_S
            while not all(r.status().state == DeviceState.connected for r in readers):
                assert time.monotonic() < deadline
                time.sleep(0.01)
            scanner_pty.scan(EAN_CARD)
            msr.swipe_card(MAG_CARD)
            found: dict[str, str] = {}
            while len(found) < 2:
                event = events.get(timeout=WAIT_S)
                if isinstance(event, Identified):
                    found[event.device] = event.value
        finally:
            for reader in readers:
                reader.stop()
    assert found == {"scanner": EAN_CARD, "msr": MAG_CARD}


def test_a_prefixed_scanner_with_crlf(tmp_path: Path) -> None:
    with PtyDevice(tmp_path / "s", suffix=Suffix.crlf) as device:
        config = ScannerConfig(name="s", port=device.path, suffix=Suffix.crlf, prefix="\u0002")
        with SerialReader(config, RULES) as reader:
            wait_for(reader, connected)
            device.write(b"noise\r\n")
            device.scan(EAN_CARD, aim="]E0", prefix=b"\x02")
            event, seen = wait_for(reader, identified)
            assert isinstance(event, Identified)
            assert event.symbology == "]E0"
            assert [type(e) for e in seen] == [Noise]
