"""Where a printer's bytes go: python-escpos printer objects made from the config.

Three of python-escpos's classes are adjusted here: its network printer leaks the socket when
a connect fails, its device-file printer would create `/dev/usb/lp0` as a regular file when
the printer is unplugged, and its serial printer cannot close a port whose cable was pulled
(the drain before the close fails, the port stays open, and every later close fails again).
"""

from __future__ import annotations

import contextlib
import os
import socket
from typing import Any

from escpos import printer as escpos_printer

from drivers._config import (
    FileTransport,
    NetworkTransport,
    PrinterTransport,
    SerialTransport,
    UsbTransport,
)


class _Network(escpos_printer.Network):  # type: ignore[misc]
    """python-escpos's network printer, opened without leaking a socket when connect fails."""

    def open(self, raise_not_found: bool = True) -> None:
        self.device = socket.create_connection((self.host, self.port), timeout=self.timeout)


class _File(escpos_printer.File):  # type: ignore[misc]
    """python-escpos's device-file printer, which must never create the file it writes to: a
    missing /dev/usb/lp0 (printer unplugged) is an error, not a new regular file in /dev."""

    def open(self, raise_not_found: bool = True) -> None:
        fd = os.open(self.devfile, os.O_WRONLY | os.O_NOCTTY)
        self.device = os.fdopen(fd, "wb")


class _Serial(escpos_printer.Serial):  # type: ignore[misc]
    """python-escpos's serial printer, closed even when the port is gone: the drain of what
    is still unsent fails then (termios.error, not an OSError), and is given up."""

    def close(self) -> None:
        port: Any = self._device  # type: ignore[has-type]  # escpos has no annotations
        self._device = False
        if not port or not port.is_open:
            return
        with contextlib.suppress(Exception):  # unplugged: nothing can be sent any more
            port.flush()
        port.close()


def escpos_transport(transport: PrinterTransport) -> Any:
    """The python-escpos printer object for a configured transport (not yet opened)."""
    if isinstance(transport, NetworkTransport):
        return _Network(transport.host, transport.port, timeout=transport.timeout_s)
    if isinstance(transport, SerialTransport):
        return _Serial(transport.port, baudrate=transport.baud, timeout=transport.timeout_s)
    if isinstance(transport, UsbTransport):
        if not escpos_printer.Usb.is_usable():
            raise RuntimeError(
                "USB printers need pyusb and libusb (pip install pyusb); or print through the "
                "kernel's usblp device with a file transport (/dev/usb/lp0)"
            )
        return escpos_printer.Usb(
            transport.vendor_id,
            transport.product_id,
            timeout=int(transport.timeout_s * 1000),
            in_ep=transport.in_ep,
            out_ep=transport.out_ep,
        )
    if isinstance(transport, FileTransport):
        return _File(transport.path)
    raise TypeError(f"unknown printer transport {transport!r}")


def read_status(device: Any) -> bytes:
    """One status byte from the printer, within the transport's own timeout."""
    if isinstance(device, escpos_printer.Serial):
        return bytes(device.device.read(1))
    return bytes(device._read())
