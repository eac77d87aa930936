"""The printer worker: never blocks or fails the caller; queued slips print when it can.

Integration tests run a real TCP printer emulator on loopback; unit tests give the worker a
python-escpos `Dummy` printer.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from escpos.printer import Dummy

from drivers import (
    FileTransport,
    LoyaltySlip,
    NetworkPrinterEmulator,
    NetworkTransport,
    PrinterConfig,
    PrinterState,
    PrinterStatus,
    PtyDevice,
    SerialTransport,
    SlipPrinter,
    UsbTransport,
    open_printer,
    slip_bytes,
    view_escpos,
)
from drivers._config import PrinterTransport

SLIP = LoyaltySlip(
    card_number="2770000000017",
    earned_points=120,
    balance_points=1234,
    message="Спасибо за покупку!",
    qr="https://kopilka.example/r/1",
)
FAST = {"retry_backoff_s_min": 0.02, "retry_backoff_s_max": 0.1}


def wait_status(printer: SlipPrinter, wanted: object, timeout_s: float = 5.0) -> PrinterStatus:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = printer.status()
        if callable(wanted) and wanted(status):
            return status
        time.sleep(0.01)
    raise AssertionError(f"printer status stayed {printer.status()}")


@pytest.fixture
def emulator() -> Iterator[NetworkPrinterEmulator]:
    with NetworkPrinterEmulator() as printer:
        yield printer


def network_config(emulator: NetworkPrinterEmulator, **changes: object) -> PrinterConfig:
    transport = NetworkTransport(host="127.0.0.1", port=emulator.port, timeout_s=1.0)
    return PrinterConfig.model_validate({"name": "front", "transport": transport} | FAST | changes)


def test_a_slip_prints_on_the_network_printer(emulator: NetworkPrinterEmulator) -> None:
    printer = open_printer(network_config(emulator))
    try:
        assert printer.print_slip(SLIP)
        assert printer.wait_idle(5.0)
        status = printer.status()
        assert (status.state, status.printed, status.queued) == (PrinterState.idle, 1, 0)
    finally:
        printer.stop()
    view = emulator.view()
    assert "Спасибо за покупку!" in view.texts
    assert view.qr_codes == ["https://kopilka.example/r/1"]
    assert emulator.received.startswith(b"\x10\x04\x04" + slip_bytes(SLIP, printer.config))


def test_a_printer_that_vanishes_mid_receipt_prints_the_slip_when_it_returns(
    emulator: NetworkPrinterEmulator,
) -> None:
    config = network_config(emulator)
    expected = slip_bytes(SLIP, config)
    with SlipPrinter(config) as printer:
        emulator.vanish_after(3 + len(expected) // 2)  # status query, then half the slip
        started = time.monotonic()
        assert printer.print_slip(SLIP)  # the sale goes on: queued, not failed
        assert time.monotonic() - started < 0.1
        offline = wait_status(printer, lambda s: s.state == PrinterState.offline)
        assert offline.queued == 1
        assert offline.printed == 0
        assert offline.last_error
        assert not emulator.powered

        emulator.power_on()
        assert printer.wait_idle(5.0)
        status = printer.status()
        assert (status.state, status.printed, status.queued) == (PrinterState.idle, 1, 0)
        assert status.failed_attempts >= 1
    half, whole = emulator.connections[0], emulator.connections[-1]
    assert len(half) < len(expected)
    assert expected in whole
    view = emulator.view()
    assert view.texts.count("Спасибо за покупку!") == 1  # the half slip never finished
    assert view.cuts == 1


def test_a_printer_off_at_start_never_blocks_and_prints_later(
    emulator: NetworkPrinterEmulator,
) -> None:
    emulator.power_off()
    with SlipPrinter(network_config(emulator)) as printer:
        assert printer.print_slip(SLIP)
        assert printer.print_slip(SLIP)
        status = wait_status(printer, lambda s: s.failed_attempts >= 2)
        assert status.state == PrinterState.offline
        assert status.queued == 2
        emulator.power_on()
        assert printer.wait_idle(5.0)
        assert printer.status().printed == 2
    assert emulator.view().cuts == 2


def test_a_printer_without_status_that_lost_power_between_slips_prints_both(
    emulator: NetworkPrinterEmulator,
) -> None:
    """Without status queries nothing tells a dead connection from a live one: after a power
    cut between two slips the worker's connection was dead, the kernel took the second slip
    into it without a word, and it was counted as printed. Each slip now goes over a
    connection of its own."""
    with SlipPrinter(network_config(emulator, status_query=False)) as printer:
        printer.print_slip(SLIP)
        assert printer.wait_idle(5.0)
        assert emulator.wait_until(lambda received: view_escpos(received).cuts == 1)
        emulator.power_cut()
        printer.print_slip(SLIP)
        assert printer.wait_idle(5.0)
        assert printer.status().printed == 2
        assert emulator.wait_until(lambda received: view_escpos(received).cuts == 2)


def test_out_of_paper_is_reported_and_the_slip_waits(emulator: NetworkPrinterEmulator) -> None:
    emulator.paper_out = True
    with SlipPrinter(network_config(emulator)) as printer:
        printer.print_slip(SLIP)
        status = wait_status(printer, lambda s: s.state == PrinterState.out_of_paper)
        assert status.queued == 1
        assert emulator.view().texts == []  # nothing was sent to an empty printer
        emulator.paper_out = False
        assert printer.wait_idle(5.0)
    assert "Спасибо за покупку!" in emulator.view().texts


def test_a_full_queue_refuses_without_blocking(emulator: NetworkPrinterEmulator) -> None:
    emulator.power_off()
    with SlipPrinter(network_config(emulator, slips_queued_max=2)) as printer:
        results = [printer.submit(b"\x1b@x\n") for _ in range(4)]
        assert results == [True, True, False, False]
        assert printer.status().refused == 2


def dummy_factory(sink: list[Dummy]) -> object:
    def make(transport: PrinterTransport) -> Dummy:
        printer = Dummy()
        sink.append(printer)
        return printer

    return make


def test_the_worker_drives_a_python_escpos_printer_object() -> None:
    config = PrinterConfig(
        name="unit",
        transport=FileTransport(path="/nonexistent"),
        paper_mm=58,
        status_query=False,
    )
    made: list[Dummy] = []
    with SlipPrinter(config, transport_factory=dummy_factory(made)) as printer:  # type: ignore[arg-type]
        printer.print_slip(SLIP)
        assert printer.wait_idle(2.0)
    assert made[0].output == slip_bytes(SLIP, config)


def test_a_device_file_printer(tmp_path: Path) -> None:
    path = tmp_path / "lp0"
    config = PrinterConfig(name="lp", transport=FileTransport(path=str(path)), **FAST)
    with SlipPrinter(config) as printer:
        printer.print_slip(SLIP)
        status = wait_status(printer, lambda s: s.failed_attempts >= 1)
        assert status.state == PrinterState.offline  # unplugged: no device file
        assert not path.exists()  # and none was made
        path.touch()  # plugged in
        assert printer.wait_idle(2.0)
    assert path.read_bytes() == slip_bytes(SLIP, config)


def test_a_printer_that_never_answers_status_is_offline_and_gets_nothing() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        transport = NetworkTransport(host="127.0.0.1", port=port, timeout_s=0.2)
        config = PrinterConfig(name="mute", transport=transport, **FAST)
        with SlipPrinter(config) as printer:
            printer.print_slip(SLIP)
            status = wait_status(printer, lambda s: s.failed_attempts >= 1)
            connection, _ = server.accept()
            with connection:
                connection.settimeout(1.0)
                assert connection.recv(100) == b"\x10\x04\x04"  # asked, and sent no slip
    assert status.state == PrinterState.offline
    assert "status_query" in (status.last_error or "")


def test_a_serial_printer_on_a_pty_with_status(tmp_path: Path) -> None:
    with PtyDevice(tmp_path / "printer") as device:
        transport = SerialTransport(port=device.path, timeout_s=1.0)
        config = PrinterConfig(name="serial", transport=transport, **FAST)
        received = bytearray()
        with SlipPrinter(config) as printer:
            printer.print_slip(SLIP)
            expected = slip_bytes(SLIP, config)
            deadline = time.monotonic() + 5
            while len(received) < len(expected) + 6 and time.monotonic() < deadline:
                chunk = device.read(timeout_s=0.05)
                received += chunk
                if received.endswith(b"\x10\x04\x04"):
                    device.write(b"\x12")  # paper present
            assert printer.wait_idle(5.0)
    assert bytes(received) == b"\x10\x04\x04" + expected + b"\x10\x04\x04"


STATUS_QUERY, PAPER_PRESENT, PAPER_END = b"\x10\x04\x04", b"\x12", b"\x72"


def test_a_serial_printer_unplugged_mid_slip_prints_it_when_plugged_back(tmp_path: Path) -> None:
    """The cable is pulled as the printer is asked for its paper: closing the lost port fails
    too (pyserial's drain raises termios.error, not an OSError). The printer is offline, and
    the slip prints once the cable is back."""
    with PtyDevice(tmp_path / "printer") as device:
        transport = SerialTransport(port=device.path, timeout_s=1.0)
        config = PrinterConfig(name="serial", transport=transport, **FAST)
        with SlipPrinter(config) as printer:
            printer.print_slip(SLIP)
            seen = bytearray()
            while STATUS_QUERY not in seen:
                seen += device.read(timeout_s=0.05)
            device.unplug()
            offline = wait_status(printer, lambda status: status.state == PrinterState.offline)
            assert offline.queued == 1
            device.replug()
            received = bytearray()
            answer_paper_sensor(device, [PAPER_PRESENT, PAPER_PRESENT], received)
            assert printer.wait_idle(5.0)
            assert printer.status().printed == 1
    assert slip_bytes(SLIP, config) in bytes(received)


def answer_paper_sensor(device: PtyDevice, replies: list[bytes], received: bytearray) -> None:
    """Play a serial printer: keep what the host sends and answer each DLE EOT 4 with the
    next of `replies`; return once every reply is given."""
    answered = 0
    deadline = time.monotonic() + 5
    while answered < len(replies) and time.monotonic() < deadline:
        received += device.read(timeout_s=0.05)
        if received.count(STATUS_QUERY) > answered:
            device.write(replies[answered])
            answered += 1
    assert answered == len(replies), f"the printer was asked {answered} times"


def test_a_roll_that_ends_as_the_slip_is_cut_does_not_print_the_slip_again(
    tmp_path: Path,
) -> None:
    """The sensor says "out" only after the printer took the whole slip: the customer has it,
    and a second copy would go to the next customer."""
    next_slip = LoyaltySlip(card_number="2770000000024", balance_points=55)
    with PtyDevice(tmp_path / "printer") as device:
        transport = SerialTransport(port=device.path, timeout_s=1.0)
        config = PrinterConfig(name="serial", transport=transport, **FAST)
        received = bytearray()
        with SlipPrinter(config) as printer:
            printer.print_slip(SLIP)
            answer_paper_sensor(device, [PAPER_PRESENT, PAPER_END], received)
            status = wait_status(printer, lambda s: s.state == PrinterState.out_of_paper)
            assert (status.printed, status.queued) == (1, 0)
            assert status.last_error

            printer.print_slip(next_slip)  # the next customer, before the roll is changed
            answer_paper_sensor(device, [PAPER_END], received)
            assert wait_status(printer, lambda s: s.failed_attempts >= 1).queued == 1
            answer_paper_sensor(device, [PAPER_PRESENT, PAPER_PRESENT], received)  # new roll
            assert printer.wait_idle(5.0)
            status = printer.status()
            assert (status.state, status.printed, status.last_error) == (PrinterState.idle, 2, None)
    view = view_escpos(bytes(received))
    assert view.texts.count("Спасибо за покупку!") == 1
    assert view.cuts == 2
    assert bytes(received).count(slip_bytes(SLIP, config)) == 1
    assert bytes(received).count(slip_bytes(next_slip, config)) == 1


def test_usb_without_pyusb_is_offline_with_a_reason() -> None:
    transport = UsbTransport(vendor_id=0x04B8, product_id=0x0202)
    config = PrinterConfig(name="usb", transport=transport, **FAST)
    with SlipPrinter(config) as printer:
        printer.print_slip(SLIP)
        status = wait_status(printer, lambda s: s.failed_attempts >= 1)
    assert status.state == PrinterState.offline
    assert status.last_error
    assert status.queued == 1


def test_stop_is_prompt_even_while_retrying(
    emulator: NetworkPrinterEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.power_off()
    printer = SlipPrinter(
        network_config(emulator, retry_backoff_s_min=5.0, retry_backoff_s_max=5.0)
    )
    printer.start()
    printer.print_slip(SLIP)
    waiting = wait_status(printer, lambda s: s.next_attempt_in_s is not None)
    assert waiting.next_attempt_in_s is not None
    assert 0 < waiting.next_attempt_in_s <= 5.0
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="drivers"):
        printer.stop()
    assert time.monotonic() - started < 1.0
    assert printer.status().state == PrinterState.stopped
    assert printer.status().queued == 1
    assert "stopped with 1 slip(s) not printed" in caplog.text  # the shop knows it is lost
