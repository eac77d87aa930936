"""Devices at the till: barcode scanners, card readers, receipt printers, and their emulators.

`open_devices(DevicesConfig, IdentityRules)` starts everything a till has configured.
Readers (`open_reader`) turn what a scanner or a magnetic-stripe reader sends into events:
`Identified` (a customer of this chain), `Rejected` (read well, but not ours), `ReadAgain`
(a misread), `Noise` and `StateChanged`. Printers (`open_printer`) take a `LoyaltySlip`
and print it on their own worker thread; `status()` says how that goes. `view_escpos`
reads printer bytes back as text. Everything else in this package is private.
"""

import queue

from drivers._codepage import CODEPAGE_NUMBERS, UnknownCodepage, normalize_text
from drivers._config import (
    CardReaderConfig,
    DevicesConfig,
    FileTransport,
    NetworkTransport,
    PrinterConfig,
    ReaderConfig,
    ScannerConfig,
    SerialTransport,
    UsbTransport,
    WedgeScannerConfig,
)
from drivers._devices import Devices, DevicesStatus
from drivers._escpos_view import ReceiptView, ViewLine, view_escpos
from drivers._events import (
    DeviceEvent,
    DeviceState,
    Identified,
    IdentifierKind,
    Noise,
    ReadAgain,
    Rejected,
    StateChanged,
)
from drivers._framing import Suffix
from drivers._identity import IdentityRules
from drivers._ports import PortInfo, serial_ports
from drivers._printer import PrinterState, PrinterStatus, SlipPrinter
from drivers._printer_emulator import NetworkPrinterEmulator
from drivers._pty_emulator import PtyDevice
from drivers._reader import ReaderStatus, SerialReader
from drivers._receipt import LoyaltySlip, NextTier, slip_lines
from drivers._slip import check_slip, slip_bytes
from drivers._track import LrcMode, encode_track1, encode_track2
from drivers._transport import escpos_transport
from drivers._wedge import WedgeReader, evdev_problem

DeviceReader = SerialReader | WedgeReader
"""What `open_reader` gives: `next_event()`, `status()`, `stop()`."""


def open_reader(
    config: ScannerConfig | CardReaderConfig | WedgeScannerConfig,
    rules: IdentityRules,
    *,
    events: queue.Queue[DeviceEvent] | None = None,
) -> DeviceReader:
    """A started reader for one configured device.

    With `events`, several readers put their events on one queue (the till session's);
    without it, each keeps its own and `next_event()` hands them out.
    """
    if isinstance(config, WedgeScannerConfig):
        return WedgeReader(config, rules, events=events).start()
    return SerialReader(config, rules, events=events).start()


def open_devices(config: DevicesConfig, rules: IdentityRules) -> Devices:
    """Every configured reader and printer, started; readers share `Devices.events`."""
    return Devices(config, rules)


def open_printer(config: PrinterConfig) -> SlipPrinter:
    """A started worker for one configured printer; `print_slip()`, `status()`, `stop()`."""
    return SlipPrinter(config).start()


__all__ = [
    "CODEPAGE_NUMBERS",
    "CardReaderConfig",
    "DeviceEvent",
    "DeviceReader",
    "DeviceState",
    "Devices",
    "DevicesConfig",
    "DevicesStatus",
    "FileTransport",
    "Identified",
    "IdentifierKind",
    "IdentityRules",
    "LoyaltySlip",
    "LrcMode",
    "NetworkPrinterEmulator",
    "NetworkTransport",
    "NextTier",
    "Noise",
    "PortInfo",
    "PrinterConfig",
    "PrinterState",
    "PrinterStatus",
    "PtyDevice",
    "ReadAgain",
    "ReaderConfig",
    "ReaderStatus",
    "ReceiptView",
    "Rejected",
    "ScannerConfig",
    "SerialReader",
    "SerialTransport",
    "SlipPrinter",
    "StateChanged",
    "Suffix",
    "UnknownCodepage",
    "UsbTransport",
    "ViewLine",
    "WedgeReader",
    "WedgeScannerConfig",
    "check_slip",
    "encode_track1",
    "encode_track2",
    "escpos_transport",
    "evdev_problem",
    "normalize_text",
    "open_devices",
    "open_printer",
    "open_reader",
    "serial_ports",
    "slip_bytes",
    "slip_lines",
    "view_escpos",
]
