"""All of a till's configured devices, started together, with one event queue for them all."""

from __future__ import annotations

import queue
from dataclasses import dataclass

from drivers._config import DevicesConfig, WedgeScannerConfig
from drivers._events import DeviceEvent
from drivers._identity import IdentityRules
from drivers._printer import PrinterStatus, SlipPrinter
from drivers._reader import ReaderStatus, SerialReader
from drivers._wedge import WedgeReader, evdev_problem

events_queued_max = 1024


@dataclass(frozen=True, slots=True)
class DevicesStatus:
    readers: tuple[ReaderStatus, ...]
    printers: tuple[PrinterStatus, ...]
    problems: tuple[str, ...]  # devices that could not be started, and why


class Devices:
    """The till's readers and printers. `events` carries every reader's events in order."""

    def __init__(self, config: DevicesConfig, rules: IdentityRules) -> None:
        self.events: queue.Queue[DeviceEvent] = queue.Queue(events_queued_max)
        self.readers: dict[str, SerialReader | WedgeReader] = {}
        self.printers: dict[str, SlipPrinter] = {}
        self._problems: list[str] = []
        for reader_config in config.readers:
            if isinstance(reader_config, WedgeScannerConfig):
                problem = evdev_problem()
                if problem is not None:
                    self._problems.append(f"{reader_config.name}: {problem}")
                    continue
                reader: SerialReader | WedgeReader = WedgeReader(
                    reader_config, rules, events=self.events
                )
            else:
                reader = SerialReader(reader_config, rules, events=self.events)
            self.readers[reader_config.name] = reader.start()
        for printer_config in config.printers:
            self.printers[printer_config.name] = SlipPrinter(printer_config).start()

    def next_event(self, timeout_s: float | None = None) -> DeviceEvent | None:
        try:
            return self.events.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def status(self) -> DevicesStatus:
        return DevicesStatus(
            readers=tuple(reader.status() for reader in self.readers.values()),
            printers=tuple(printer.status() for printer in self.printers.values()),
            problems=tuple(self._problems),
        )

    def close(self) -> None:
        for reader in self.readers.values():
            reader.stop()
        for printer in self.printers.values():
            printer.stop()

    def __enter__(self) -> Devices:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
