"""The thin I/O layer around the pure framer and decoders: one thread per serial device.

The thread opens the port (a tty, a pty, or a pyserial URL such as `loop://`), reads what
arrives, and turns it into events on a bounded queue. When the device disappears (unplugged,
powered off, a USB-CDC scanner that re-enumerates) the thread closes the port and re-opens the
same path with exponential backoff until the device is back. Nothing a device sends can stop
the thread; only `stop()` does.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import serial

from drivers._backoff import Backoff
from drivers._config import CardReaderConfig, ScannerConfig
from drivers._decoders import ScanDecoder, SwipeDecoder
from drivers._events import DeviceEvent, DeviceState, Identified, Noise, StateChanged
from drivers._framing import Framer
from drivers._identity import IdentityRules

log = logging.getLogger(__name__)

Clock = Callable[[], float]
stop_timeout_s = 2.0


class SerialPort(Protocol):
    """What the reader needs of a pyserial port (and what a fake must offer)."""

    @property
    def in_waiting(self) -> int: ...

    def read(self, size: int = 1) -> bytes: ...

    def close(self) -> None: ...


PortOpener = Callable[[str, int, float], SerialPort]


def open_serial_port(url: str, baud: int, timeout_s: float) -> SerialPort:
    """A pyserial port for a path or URL, with a read timeout (never a blocking read)."""
    port: SerialPort = serial.serial_for_url(url, baudrate=baud, timeout=timeout_s)
    return port


@dataclass(frozen=True, slots=True)
class ReaderStatus:
    device: str
    state: DeviceState
    connects: int
    identified: int
    noise_bytes: int
    events_dropped: int
    last_error: str | None


class SerialReader:
    """Reads one serial scanner or card reader; `next_event()` hands out what it saw."""

    def __init__(
        self,
        config: ScannerConfig | CardReaderConfig,
        rules: IdentityRules,
        *,
        port_opener: PortOpener = open_serial_port,
        clock: Clock = time.monotonic,
        events: queue.Queue[DeviceEvent] | None = None,
    ) -> None:
        """`events`: a queue shared by several readers (the till session's); else its own."""
        self.config = config
        self._decoder = (
            ScanDecoder(config.name, rules, aim=config.aim)
            if isinstance(config, ScannerConfig)
            else SwipeDecoder(config.name, rules, lrc=config.lrc)
        )
        self._open_port = port_opener
        self._clock = clock
        self._events = events if events is not None else queue.Queue(config.events_queued_max)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._state = DeviceState.starting
        self._connects = 0
        self._identified = 0
        self._noise_bytes = 0
        self._dropped = 0
        self._last_error: str | None = None

    # -- the caller's side ------------------------------------------------------------------

    def start(self) -> SerialReader:
        if self._thread is not None:
            raise RuntimeError("a reader is started once")
        self._thread = threading.Thread(
            target=self._run, name=f"reader-{self.config.name}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(stop_timeout_s + self.config.read_timeout_s)

    def __enter__(self) -> SerialReader:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def next_event(self, timeout_s: float | None = None) -> DeviceEvent | None:
        """The next event, waiting up to `timeout_s`; None if there was none."""
        try:
            return self._events.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def status(self) -> ReaderStatus:
        with self._lock:
            return ReaderStatus(
                device=self.config.name,
                state=self._state,
                connects=self._connects,
                identified=self._identified,
                noise_bytes=self._noise_bytes,
                events_dropped=self._dropped,
                last_error=self._last_error,
            )

    # -- the thread -------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = Backoff(self.config.reconnect_backoff_s_min, self.config.reconnect_backoff_s_max)
        try:
            while not self._stop.is_set():
                port = self._try_open()
                if port is None:
                    self._stop.wait(backoff.next_s())
                    continue
                backoff.reset()
                try:
                    self._read_until_lost(port)
                finally:
                    _close_quietly(port)
        finally:  # a bug that ends the thread still shows in the state, and in the log
            self._set_state(DeviceState.stopped, "")

    def _try_open(self) -> SerialPort | None:
        config = self.config
        try:
            port = self._open_port(config.port, config.baud, config.read_timeout_s)
        except (serial.SerialException, OSError, ValueError) as error:
            self._set_state(DeviceState.disconnected, _describe(error))
            return None
        with self._lock:
            self._connects += 1
        self._set_state(DeviceState.connected, config.port)
        return port

    def _read_until_lost(self, port: SerialPort) -> None:
        config = self.config
        framer = Framer(
            suffix=config.suffix,
            prefix=config.prefix.encode("ascii"),
            frame_bytes_max=config.scan_frame_bytes_max,
            idle_flush_s=config.idle_flush_s,
        )
        while not self._stop.is_set():
            try:
                waiting = port.in_waiting
                data = port.read(min(max(1, waiting), config.read_chunk_bytes_max))
            except (serial.SerialException, OSError) as error:
                self._emit_all(self._decoder.decode(framer.poll(float("inf"))))
                self._set_state(DeviceState.disconnected, _describe(error))
                return
            now = self._clock()
            outputs = framer.feed(data, now) if data else framer.poll(now)
            if outputs:
                self._emit_all(self._decoder.decode(outputs))

    def _set_state(self, state: DeviceState, detail: str) -> None:
        with self._lock:
            if state == self._state:
                return
            self._state = state
            if state == DeviceState.disconnected:
                self._last_error = detail
        log.info("device %s is %s %s", self.config.name, state.value, detail)
        self._emit(StateChanged(self.config.name, state, detail))

    def _emit_all(self, events: list[DeviceEvent]) -> None:
        for event in events:
            self._emit(event)

    def _emit(self, event: DeviceEvent) -> None:
        with self._lock:
            if isinstance(event, Identified):
                self._identified += 1
            if isinstance(event, Noise):
                self._noise_bytes += event.bytes
        if isinstance(event, Noise):
            log.debug("%r", event)
            if self._events.qsize() * 2 >= (self._events.maxsize or 2**31):
                self._count_dropped()
                return
        else:
            log.info("%r", event)
        while True:
            try:
                self._events.put_nowait(event)
                return
            except queue.Full:
                self._drop_oldest()

    def _drop_oldest(self) -> None:
        try:
            self._events.get_nowait()
        except queue.Empty:
            return
        self._count_dropped()

    def _count_dropped(self) -> None:
        with self._lock:
            self._dropped += 1


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:200]


def _close_quietly(port: SerialPort) -> None:
    try:
        port.close()
    except (serial.SerialException, OSError) as error:
        log.debug("closing a lost port: %s", _describe(error))
