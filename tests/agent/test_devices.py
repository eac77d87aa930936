"""The till's own devices in the agent: a reader that cannot start never stops the till."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from stdnum import ean

from agent._config import AgentSettings
from agent._devices import Devices
from agent._models import IdentifierInput
from agent._sales import Till
from agent._service import AgentService
from drivers import DevicesConfig, PtyDevice

from .conftest import CARD, RULES

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


def test_the_scanner_reads_the_chains_cards_once_the_agent_enrolled_itself(
    tmp_path: Path,
) -> None:
    """The chain's card ranges come with enrollment, after the readers started: a card of
    the chain scanned then is the chain's, as it is when the POS sends it."""
    chain_card = "299000000001" + ean.calc_check_digit("299000000001")

    def central(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        return httpx.Response(
            200,
            json={
                "device_id": body["device_id"],
                "device_epoch": body["device_epoch"],
                "secret": "s" * 40,
                "phone_hash_key_hex": "ab" * 32,
                "store": {"store_id": "shop-7", "name": "Shop 7"},
                "card_ranges": [
                    {
                        "name": "chain",
                        "first": "2990000000000",
                        "last": "2990009999999",
                        "check": "ean",
                    }
                ],
            },
        )

    with PtyDevice(tmp_path / "scanner") as device:
        settings = AgentSettings(
            data_dir=tmp_path / "agent",
            rules_file=RULES,
            api_token="t" * 32,
            central_url="http://central",
            enroll_code="CODE-1234",
            sync_runs_in="thread",
            devices=DevicesConfig.model_validate(
                {"readers": [{"kind": "scanner", "name": "scanner", "port": device.path}]}
            ),
        )
        service = AgentService(settings, transport=httpx.MockTransport(central))
        service.devices.start()  # as start_background: the devices, then the first sync
        try:
            service.sync_tick()
            found = service.till.identify(IdentifierInput(type="card", value=chain_card))
            assert not found.known  # the chain's card, no customer's yet: it earns
            deadline = time.monotonic() + 5
            while service.devices.status()["readers"][0].get("state") != "connected":
                assert time.monotonic() < deadline, service.devices.status()
                time.sleep(0.01)
            device.scan(chain_card)  # once: the reader started again must read it
            while (session := service.devices.session()) is None:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            assert session.problem is None, session.problem
            assert session.given == IdentifierInput(type="card", value=chain_card)
        finally:
            service.devices.stop()


@contextlib.contextmanager
def _one_scanner(till: Till, tmp_path: Path) -> Iterator[tuple[PtyDevice, Devices]]:
    """The till's devices: one serial scanner, emulated on a pseudo-terminal."""
    with PtyDevice(tmp_path / "scanner") as scanner:
        config = DevicesConfig.model_validate(
            {"readers": [{"kind": "scanner", "name": "scanner", "port": scanner.path}]}
        )
        devices = Devices(config, till, session_ttl_s=60).start()
        try:
            yield scanner, devices
        finally:
            devices.stop()


def test_a_scan_the_till_fails_to_look_up_is_reported_and_the_next_one_works(
    till: Till, tmp_path: Path
) -> None:
    """The database fails once (locked past its timeout, say): the session says so, and the
    reader goes on identifying the next scan."""
    identify, failures = till.identify, [sqlite3.OperationalError("database is locked")]

    def failing_once(given: IdentifierInput) -> Any:
        if failures:
            raise failures.pop()
        return identify(given)

    till.identify = failing_once  # type: ignore[method-assign]
    with _one_scanner(till, tmp_path) as (scanner, devices):
        deadline = time.monotonic() + 10
        seen = []
        while len(seen) < 2 or seen[-1].identification is None:
            assert time.monotonic() < deadline, seen
            scanner.scan(CARD)
            time.sleep(0.2)
            session = devices.session()
            if session is not None and session not in seen:
                seen.append(session)
        assert "could not look this up (database is locked)" in (seen[0].problem or "")
        assert seen[-1].identification.customer_id == "c-1"


def test_a_reader_started_again_while_its_pump_is_busy_leaves_one_pump(
    till: Till, tmp_path: Path
) -> None:
    """The old pump is still inside a slow look-up (the database waits for a lock) when the
    readers start again: it ends once the look-up returns, and one pump reads the scanner."""
    identify, slow = till.identify, threading.Event()

    def slow_once(given: IdentifierInput) -> Any:
        if not slow.is_set():
            slow.set()
            time.sleep(2.5)  # past the 2 s the restart waits for a pump
        return identify(given)

    till.identify = slow_once  # type: ignore[method-assign]
    with _one_scanner(till, tmp_path) as (scanner, devices):
        deadline = time.monotonic() + 10
        while not slow.is_set():
            assert time.monotonic() < deadline
            scanner.scan(CARD)
            time.sleep(0.1)
        devices.restart_readers()
        time.sleep(1.5)  # the slow look-up returns; its pump sees its stop and ends
        pumps = [t for t in threading.enumerate() if t.name == "pump-scanner"]
        assert len(pumps) == 1
