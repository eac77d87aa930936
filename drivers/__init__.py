"""Devices at the till: barcode scanners, card readers, receipt printers, and their emulators.

Readers (`open_reader`) turn what a scanner or a magnetic-stripe reader sends into events:
`Identified` (a customer of this chain), `Rejected` (read well, but not ours), `ReadAgain`
(a misread), `Noise` and `StateChanged`. Everything else in this package is private.
"""

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
from drivers._pty_emulator import PtyDevice
from drivers._reader import ReaderStatus, SerialReader
from drivers._track import LrcMode, encode_track1, encode_track2
from drivers._wedge import WedgeReader, evdev_problem


def open_reader(
    config: ScannerConfig | CardReaderConfig | WedgeScannerConfig, rules: IdentityRules
) -> SerialReader | WedgeReader:
    """A started reader for one configured device; `next_event()` and `stop()` on it."""
    if isinstance(config, WedgeScannerConfig):
        return WedgeReader(config, rules).start()
    return SerialReader(config, rules).start()


__all__ = [
    "CardReaderConfig",
    "DeviceEvent",
    "DeviceState",
    "DevicesConfig",
    "FileTransport",
    "Identified",
    "IdentifierKind",
    "IdentityRules",
    "LrcMode",
    "NetworkTransport",
    "Noise",
    "PrinterConfig",
    "PtyDevice",
    "ReadAgain",
    "ReaderConfig",
    "ReaderStatus",
    "Rejected",
    "ScannerConfig",
    "SerialReader",
    "SerialTransport",
    "StateChanged",
    "Suffix",
    "UsbTransport",
    "WedgeReader",
    "WedgeScannerConfig",
    "encode_track1",
    "encode_track2",
    "evdev_problem",
    "open_reader",
]
