"""A till's devices from one config: a scanner, a card reader and a printer, all emulated."""

from __future__ import annotations

import time
from pathlib import Path

from drivers import (
    DevicesConfig,
    DeviceState,
    Identified,
    LoyaltySlip,
    NetworkPrinterEmulator,
    PrinterState,
    PtyDevice,
    open_devices,
)

from .samples import EAN_CARD, MAG_CARD, RULES


def test_one_config_starts_every_device(tmp_path: Path) -> None:
    with (
        PtyDevice(tmp_path / "scanner") as scanner,
        PtyDevice(tmp_path / "msr") as msr,
        NetworkPrinterEmulator() as printer,
    ):
        config = DevicesConfig.model_validate(
            {
                "readers": [
                    {"kind": "scanner", "name": "scanner", "port": scanner.path},
                    {"kind": "card_reader", "name": "msr", "port": msr.path},
                    {"kind": "keyboard_wedge", "name": "wedge", "device": "/dev/input/x"},
                ],
                "printers": [
                    {
                        "name": "front",
                        "transport": {"kind": "network", "host": "127.0.0.1", "port": printer.port},
                    }
                ],
            }
        )
        with open_devices(config, RULES) as devices:
            deadline = time.monotonic() + 5
            while any(r.state != DeviceState.connected for r in devices.status().readers):
                assert time.monotonic() < deadline
                time.sleep(0.01)
            scanner.scan(EAN_CARD)
            msr.swipe_card(MAG_CARD)
            found = set()
            while len(found) < 2:
                event = devices.next_event(timeout_s=5)
                assert event is not None
                if isinstance(event, Identified):
                    found.add((event.device, event.value))
            assert found == {("scanner", EAN_CARD), ("msr", MAG_CARD)}

            front = devices.printers["front"]
            assert front.print_slip(LoyaltySlip(card_number=MAG_CARD, balance_points=7))
            assert front.wait_idle(5)
            status = devices.status()
            assert status.printers[0].state == PrinterState.idle
            if "wedge" not in devices.readers:
                assert any("evdev" in problem for problem in status.problems)
        assert "**** 0003" in printer.view().render()
