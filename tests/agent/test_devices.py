"""The till's own devices in the agent: a reader that cannot start never stops the till."""

from __future__ import annotations

import time
from pathlib import Path

from agent._devices import Devices
from agent._models import IdentifierInput
from agent._sales import Till
from drivers import DevicesConfig, PtyDevice

from .conftest import CARD

UNKNOWN_CARD = "2770000000024"


def test_a_wedge_scanner_without_evdev_is_reported_and_the_rest_work(
    till: Till, tmp_path: Path
) -> None:
    """A keyboard-wedge scanner needs the optional `evdev` package (not installed here): the
    agent would not start at all. Now the problem is in the status, and the serial scanner
    beside it identifies the customer."""
    with PtyDevice(tmp_path / "scanner") as scanner:
        config = DevicesConfig.model_validate(
            {
                "readers": [
                    {"kind": "keyboard_wedge", "name": "wedge", "device": "/dev/input/x"},
                    {"kind": "scanner", "name": "scanner", "port": scanner.path},
                ]
            }
        )
        devices = Devices(config, till, session_ttl_s=60).start()
        try:
            status = devices.status()
            assert [problem.split(":")[0] for problem in status["problems"]] == ["wedge"]
            assert "evdev" in status["problems"][0]
            deadline = time.monotonic() + 5
            while status["readers"][0].get("state") != "connected":
                assert time.monotonic() < deadline, status
                time.sleep(0.01)
                status = devices.status()
            scanner.scan(CARD)
            while (session := devices.session()) is None or session.identification is None:
                assert time.monotonic() < deadline + 5
                time.sleep(0.01)
            assert session.identification.customer_id == "c-1"
            assert session.given == IdentifierInput(type="card", value=CARD)
            devices.clear_session()
            scanner.scan(UNKNOWN_CARD)  # a card the till does not know: the sale earns to it
            while (session := devices.session()) is None or session.identification is None:
                assert time.monotonic() < deadline + 10
                time.sleep(0.01)
            assert not session.identification.known
            assert session.given == IdentifierInput(type="card", value=UNKNOWN_CARD)
        finally:
            devices.stop()
