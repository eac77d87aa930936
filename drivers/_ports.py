"""The serial ports this machine has, for `kopilka-agent doctor` and for setting up a till."""

from __future__ import annotations

from dataclasses import dataclass

from serial.tools import list_ports


@dataclass(frozen=True, slots=True)
class PortInfo:
    device: str  # /dev/ttyACM0, or a udev link such as /dev/serial/by-id/…
    description: str
    hardware_id: str  # "USB VID:PID=0C2E:0B61 SER=…" for USB devices


def serial_ports() -> list[PortInfo]:
    """Every serial port pyserial sees, udev links included, sorted by path."""
    found = list_ports.comports(include_links=True)
    return sorted(
        (PortInfo(p.device, p.description or "", p.hwid or "") for p in found),
        key=lambda info: info.device,
    )
