"""One worker thread per receipt printer: a bounded queue, retries with backoff, a status.

Printing never blocks or fails the sale. `submit()` puts the slip's bytes on the printer's
queue and returns at once; the worker sends them when the printer can take them. A printer
that is off, unplugged, out of paper or gone mid-receipt leaves the slip at the head of the
queue; the worker retries with exponential backoff and sends the whole slip again (it starts
with a reset, so a half-printed first try cannot garble the second). Where the transport can
answer (network, serial, USB) the worker asks the paper sensor (`DLE EOT 4`) before a slip,
and asks again after it: a reply proves the printer took every byte before the question. A
roll that ends after the printer took the slip is reported, and the slip is not sent again
(see `_print`).

The transport is a python-escpos printer object (`Network`, `Serial`, `Usb`, `File`; `Dummy`
in unit tests), made by a factory the caller may replace.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from drivers._backoff import Backoff
from drivers._codepage import codepage_number
from drivers._config import (
    FileTransport,
    NetworkTransport,
    PrinterConfig,
    PrinterTransport,
    SerialTransport,
)
from drivers._escpos import STATUS_PAPER
from drivers._receipt import LoyaltySlip
from drivers._slip import slip_bytes
from drivers._transport import escpos_transport, read_status

log = logging.getLogger(__name__)

Clock = Callable[[], float]
TransportFactory = Callable[[PrinterTransport], Any]
stop_timeout_s = 5.0
_PAPER_END = 0x60  # DLE EOT 4 reply, bits 5-6: roll paper end detected
_PAPER_NEAR_END = 0x0C  # bits 2-3: roll paper near end
_FIXED_MASK, _FIXED_BITS = 0x93, 0x12  # bits 0,1,4,7 of every DLE EOT reply: 0,1,1,0


class PrinterState(StrEnum):
    idle = "idle"  # nothing queued, the last slip went through
    printing = "printing"
    offline = "offline"  # cannot be reached: off, unplugged, gone mid-receipt
    out_of_paper = "out_of_paper"
    stopped = "stopped"


class PrinterLost(Exception):
    """The printer stopped answering while a slip was on its way."""


class PaperOut(Exception):
    """The paper sensor reports the roll is empty."""


@dataclass(frozen=True, slots=True)
class PrinterStatus:
    printer: str
    state: PrinterState
    queued: int
    printed: int
    refused: int  # slips refused because the queue was full
    failed_attempts: int
    paper_near_end: bool
    last_error: str | None
    next_attempt_in_s: float | None  # while waiting to retry


class SlipPrinter:
    """Owns one printer. `print_slip()`/`submit()` never block; `status()` says how it goes."""

    def __init__(
        self,
        config: PrinterConfig,
        *,
        transport_factory: TransportFactory = escpos_transport,
        clock: Clock = time.monotonic,
    ) -> None:
        self.config = config
        codepage_number(config.model, config.codepage, config.codepage_number)  # fail early
        self._make_transport = transport_factory
        self._clock = clock
        self._queue: deque[bytes] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._device: Any = None
        self._state = PrinterState.idle
        self._printed = 0
        self._refused = 0
        self._failed_attempts = 0
        self._near_end = False
        self._last_error: str | None = None
        self._next_attempt_at: float | None = None

    # -- the caller's side ------------------------------------------------------------------

    def start(self) -> SlipPrinter:
        if self._thread is not None:
            raise RuntimeError("a printer worker is started once")
        self._thread = threading.Thread(
            target=self._run, name=f"printer-{self.config.name}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the worker; slips still queued are not printed: `status()` counts them, and
        the log says how many, with the printer's last error."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(stop_timeout_s)
        with self._cond:
            left, error = len(self._queue), self._last_error
        if left:
            log.warning(
                "printer %s stopped with %d slip(s) not printed (%s)",
                self.config.name,
                left,
                error or "the printer had not taken them yet",
            )

    def __enter__(self) -> SlipPrinter:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def print_slip(self, slip: LoyaltySlip) -> bool:
        """Queue a loyalty slip; False (and counted) only if the queue is full."""
        return self.submit(slip_bytes(slip, self.config))

    def submit(self, data: bytes) -> bool:
        """Queue raw ESC/POS bytes (a test slip, say); False only if the queue is full."""
        with self._cond:
            if len(self._queue) >= self.config.slips_queued_max:
                self._refused += 1
                log.warning("printer %s: queue full, slip refused", self.config.name)
                return False
            self._queue.append(data)
            self._cond.notify_all()
        return True

    def status(self) -> PrinterStatus:
        with self._cond:
            return PrinterStatus(
                printer=self.config.name,
                state=self._state,
                queued=len(self._queue),
                printed=self._printed,
                refused=self._refused,
                failed_attempts=self._failed_attempts,
                paper_near_end=self._near_end,
                last_error=self._last_error,
                next_attempt_in_s=(
                    None
                    if self._next_attempt_at is None
                    else max(0.0, self._next_attempt_at - self._clock())
                ),
            )

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until every queued slip is printed; False if that took longer than `timeout_s`."""
        deadline = self._clock() + timeout_s
        with self._cond:
            while self._queue:
                left = deadline - self._clock()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    # -- the worker -------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._serve_queue()
        finally:  # stopped, or a bug ended the thread: either way the state says so
            self._close()
            with self._cond:
                self._state = PrinterState.stopped
                self._cond.notify_all()

    def _serve_queue(self) -> None:
        backoff = Backoff(self.config.retry_backoff_s_min, self.config.retry_backoff_s_max)
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                data = self._queue[0]
                if self._state in (PrinterState.idle, PrinterState.printing):
                    self._state = PrinterState.printing
            try:
                roll_ended = self._print(data)
            except PaperOut:
                self._failed(PrinterState.out_of_paper, "the printer is out of paper")
            except Exception as error:  # noqa: BLE001  # a lost device fails in many ways
                # (OSError, EscposError, termios.error from pyserial's drain of an unplugged
                # port…): the slip stays queued, the printer is offline, and it is tried again
                self._failed(PrinterState.offline, f"{type(error).__name__}: {error}"[:300])
                self._close()
            else:
                self._printed_one(roll_ended)
                backoff.reset()
                continue
            delay_s = backoff.next_s()
            with self._cond:
                self._next_attempt_at = self._clock() + delay_s
                if not self._stopping:
                    self._cond.wait(delay_s)
                self._next_attempt_at = None

    def _printed_one(self, roll_ended: bool) -> None:
        """The head slip is done; a roll that ended with it stays reported until a later slip
        finds paper again."""
        with self._cond:
            self._queue.popleft()
            self._printed += 1
            if roll_ended:
                self._state = PrinterState.out_of_paper
                self._last_error = "the roll ran out after the last slip"
            else:
                self._state = PrinterState.printing if self._queue else PrinterState.idle
                self._last_error = None
            self._cond.notify_all()
        if roll_ended:
            log.warning("printer %s: the roll ran out after the last slip", self.config.name)

    def _print(self, data: bytes) -> bool:
        """Send one slip; True if the paper sensor says the roll ended once the printer had it.

        The answer after the slip comes only once the printer has received all of it, but the
        sensor cannot say how much is on paper: the roll ended after the cut (the customer has
        the slip) or during the slip (most ESC/POS printers then stop, keep the rest, and print
        it on the new roll). Sent again, the slip would print twice either way, and the copy
        would go to the next customer with this one's card and balance; so it counts as
        printed and only the next slip waits for paper. A printer that drops what it holds
        when the roll ends loses this slip: a missing slip is better than one given away.
        """
        device = self._open()
        if self._paper_out(device):
            raise PaperOut
        device._raw(data)
        ended = self._paper_out(device)  # the reply arrives only after all of `data` did
        if self._connection_per_slip():
            self._close()
        return ended

    def _open(self) -> Any:
        if self._device is None:
            device = self._make_transport(self.config.transport)
            device.open()
            if isinstance(self.config.transport, SerialTransport):
                device.device.write_timeout = self.config.transport.timeout_s
            self._device = device
        return self._device

    def _connection_per_slip(self) -> bool:
        """A network printer that is not asked for its status gets each slip over a new
        connection: nothing else tells a connection it dropped (switched off and on) from a
        live one, and the kernel takes bytes into a dead one without a word."""
        return isinstance(self.config.transport, NetworkTransport) and not self.config.status_query

    def _can_query(self) -> bool:
        return self.config.status_query and not isinstance(self.config.transport, FileTransport)

    def _paper_out(self, device: Any) -> bool:
        """What the roll paper sensor says; False where the printer cannot be asked."""
        if not self._can_query():
            return False
        device._raw(STATUS_PAPER)
        try:
            reply = read_status(device)
        except TimeoutError:
            reply = b""
        if not reply:
            raise PrinterLost(
                "no answer to DLE EOT 4 in time (a printer without status support "
                "needs status_query = false)"
            )
        status = reply[-1]
        if status & _FIXED_MASK != _FIXED_BITS:
            raise PrinterLost(f"status reply {status:#04x} is not a DLE EOT 4 answer")
        with self._cond:
            self._near_end = bool(status & _PAPER_NEAR_END)
        return bool(status & _PAPER_END)

    def _failed(self, state: PrinterState, error: str) -> None:
        with self._cond:
            self._state = state
            self._failed_attempts += 1
            self._last_error = error
        log.warning("printer %s is %s: %s", self.config.name, state.value, error)

    def _close(self) -> None:
        device, self._device = self._device, None
        if device is None:
            return
        try:
            device.close()
        except Exception as error:  # noqa: BLE001  # closing a lost device: nothing to save
            log.debug("printer %s: closing: %s", self.config.name, error)
