"""`drivers` keeps a small public surface: what the agent may use is pinned here."""

from __future__ import annotations

import drivers

PUBLIC = {
    # readers
    "open_devices", "Devices", "DevicesStatus",
    "open_reader", "DeviceReader", "SerialReader", "WedgeReader", "ReaderStatus", "IdentityRules",
    "ScannerConfig", "CardReaderConfig", "WedgeScannerConfig", "ReaderConfig", "Suffix", "LrcMode",
    "DeviceEvent", "Identified", "Rejected", "ReadAgain", "Noise", "StateChanged",
    "DeviceState", "IdentifierKind", "evdev_problem", "serial_ports", "PortInfo",
    # printers
    "open_printer", "SlipPrinter", "PrinterStatus", "PrinterState", "PrinterConfig",
    "SerialTransport", "NetworkTransport", "UsbTransport", "FileTransport", "DevicesConfig",
    "LoyaltySlip", "NextTier", "slip_bytes", "slip_lines", "check_slip", "escpos_transport",
    "CODEPAGE_NUMBERS", "UnknownCodepage", "normalize_text",
    # emulators and the viewer
    "PtyDevice", "NetworkPrinterEmulator", "view_escpos", "ReceiptView", "ViewLine",
    "encode_track1", "encode_track2",
}  # fmt: skip


def test_all_is_pinned() -> None:
    assert set(drivers.__all__) == PUBLIC
    assert len(drivers.__all__) == len(PUBLIC)


def test_every_public_name_exists_and_modules_are_private() -> None:
    for name in drivers.__all__:
        assert hasattr(drivers, name), name
    classes = [getattr(drivers, name) for name in drivers.__all__]
    modules = {c.__module__ for c in classes if isinstance(c, type)}
    assert all(m.startswith("drivers._") for m in modules), modules
