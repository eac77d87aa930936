"""The till's own devices: readers feed the till session, printers print confirmed slips.

A device that is missing, unplugged or out of paper never stops a sale: readers reconnect on
their own, printers queue and retry; both are reported in status.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

from agent._models import Identification, IdentifierInput
from agent._sales import Till
from drivers import (
    DevicesConfig,
    Identified,
    IdentifierKind,
    IdentityRules,
    LoyaltySlip,
    ReadAgain,
    Rejected,
    SerialReader,
    SlipPrinter,
    WedgeReader,
    open_printer,
    open_reader,
)
from protocol import IdentifierRejected

log = logging.getLogger("kopilka.agent.devices")
reader_poll_s = 0.2

_KINDS: dict[IdentifierKind, Literal["card", "phone", "qr"]] = {
    IdentifierKind.card: "card",
    IdentifierKind.phone: "phone",
    IdentifierKind.qr: "qr",
}


@dataclass(frozen=True)
class SessionView:
    """The customer last identified by one of the till's own devices, or what went wrong."""

    device: str
    identification: Identification | None
    problem: str | None
    at_monotonic_s: float
    given: IdentifierInput | None = None
    """What the device read, as the POS passes it on as `customer` to quote and reserve: a
    card the till does not know still earns (the reader's card number is all the POS has of
    a swiped card), and a phone stays phone-only for the offline caps."""


class Devices:
    def __init__(self, config: DevicesConfig, till: Till, session_ttl_s: float) -> None:
        self.config = config
        self.till = till
        self.session_ttl_s = session_ttl_s
        self.readers: list[SerialReader | WedgeReader] = []
        self.printers: list[SlipPrinter] = []
        self._session: SessionView | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.problems: list[str] = []
        """Readers that could not start, and why (the till sells without them)."""
        self._started = False

    def start(self) -> Devices:
        self._started = True
        self._start_readers()
        self.printers = [open_printer(printer) for printer in self.config.printers]
        if self.printers:
            self.till.on_confirmed = self.print_slip
        return self

    def _start_readers(self) -> None:
        """The readers, decoding with the till's identity rules as they are now."""
        rules = IdentityRules(
            card_ranges=self.till.settings.identity.card_ranges,
            phone_region=self.till.settings.identity.phone_region,
        )
        self.problems = []
        for reader_config in self.config.readers:
            try:
                reader = open_reader(reader_config, rules)
            except RuntimeError as error:  # a keyboard-wedge scanner without `evdev`
                log.warning("reader %s not started: %s", reader_config.name, error)
                self.problems.append(f"{reader_config.name}: {error}")
                continue
            self.readers.append(reader)
            thread = threading.Thread(
                target=self._pump,
                args=(reader, self._stop),
                name=f"pump-{reader_config.name}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def restart_readers(self) -> None:
        """Start the readers again with the till's identity rules as they are now: the
        chain's card ranges come with enrollment, after the readers started."""
        if not self._started:
            return
        self._stop_readers()
        self._stop = threading.Event()  # the old pumps keep theirs, set, whenever they end
        self._start_readers()

    def _stop_readers(self) -> None:
        self._stop.set()
        for reader in self.readers:
            reader.stop()
        for thread in self._threads:
            thread.join(timeout=2)
        self.readers, self._threads = [], []

    def stop(self) -> None:
        self._stop_readers()
        for printer in self.printers:
            printer.stop()

    def print_slip(self, slip: LoyaltySlip) -> None:
        for printer in self.printers:
            printer.print_slip(slip)

    def _pump(self, reader: SerialReader | WedgeReader, stop: threading.Event) -> None:
        while not stop.is_set():
            event = reader.next_event(timeout_s=reader_poll_s)
            if isinstance(event, Identified):
                self._identified(event)
            elif isinstance(event, Rejected | ReadAgain):
                self._set(event.device, None, event.reason)

    def _identified(self, event: Identified) -> None:
        given = IdentifierInput(type=_KINDS[event.kind], value=event.value)
        try:
            found = self.till.identify(given)
        except IdentifierRejected as rejected:
            self._set(event.device, None, rejected.reason)
            return
        except Exception as error:  # the database, say: the reader goes on
            log.exception("reader %s: identifying a scan failed", event.device)
            self._set(event.device, None, f"the till could not look this up ({error})"[:300])
            return
        self._set(event.device, found, None, given)

    def _set(
        self,
        device: str,
        found: Identification | None,
        problem: str | None,
        given: IdentifierInput | None = None,
    ) -> None:
        with self._lock:
            self._session = SessionView(device, found, problem, time.monotonic(), given)

    def session(self) -> SessionView | None:
        with self._lock:
            current = self._session
        if current is None or time.monotonic() - current.at_monotonic_s > self.session_ttl_s:
            return None
        return current

    def clear_session(self) -> None:
        with self._lock:
            self._session = None

    def status(self) -> dict[str, Any]:
        return {
            "readers": [
                _plain(getattr(reader, "status", lambda: None)()) for reader in self.readers
            ],
            "printers": [_plain(printer.status()) for printer in self.printers],
            "problems": list(self.problems),
        }


def _reader_status(reader: SerialReader | WedgeReader) -> Any:
    return reader.status() if isinstance(reader, SerialReader) else None


def _plain(value: Any) -> dict[str, Any]:
    fields = getattr(value, "__dataclass_fields__", None)
    if fields is None:
        return {"status": str(value)}
    return {name: _scalar(getattr(value, name)) for name in fields}


def _scalar(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(getattr(value, "value", value))
