"""Devices at the till: barcode scanners, card readers, receipt printers, and their emulators.

Readers (`open_reader`) turn what a scanner or a magnetic-stripe reader sends into events:
`Identified` (a customer of this chain), `Rejected` (read well, but not ours), `ReadAgain`
(a misread), `Noise` and `StateChanged`. Printers (`open_printer`) take a `LoyaltySlip`
and print it on their own worker thread; `status()` says how that goes. `view_escpos`
reads printer bytes back as text. Everything else in this package is private.
"""

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
from drivers._printer import PrinterState, PrinterStatus, SlipPrinter, escpos_transport, slip_bytes
from drivers._printer_emulator import NetworkPrinterEmulator
from drivers._pty_emulator import PtyDevice
from drivers._reader import ReaderStatus, SerialReader
from drivers._receipt import LoyaltySlip, NextTier, slip_lines
from drivers._track import LrcMode, encode_track1, encode_track2
from drivers._wedge import WedgeReader, evdev_problem


def open_reader(
    config: ScannerConfig | CardReaderConfig | WedgeScannerConfig, rules: IdentityRules
) -> SerialReader | WedgeReader:
    """A started reader for one configured device; `next_event()` and `stop()` on it."""
    if isinstance(config, WedgeScannerConfig):
        return WedgeReader(config, rules).start()
    return SerialReader(config, rules).start()


def open_printer(config: PrinterConfig) -> SlipPrinter:
    """A started worker for one configured printer; `print_slip()`, `status()`, `stop()`."""
    return SlipPrinter(config).start()


__all__ = [
    "CODEPAGE_NUMBERS",
    "CardReaderConfig",
    "DeviceEvent",
    "DeviceState",
    "DevicesConfig",
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
    "encode_track1",
    "encode_track2",
    "escpos_transport",
    "evdev_problem",
    "normalize_text",
    "open_printer",
    "open_reader",
    "slip_bytes",
    "slip_lines",
    "view_escpos",
]
