"""How a till's devices are set up: pydantic models read from the agent's TOML config.

Every timeout and bound has a default and a limit; unknown keys are refused, so a typo in a
config file is an error at start-up rather than a silently ignored setting.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from drivers._framing import Suffix, frame_bytes_max_limit
from drivers._track import LrcMode

DeviceName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
Seconds = Annotated[float, Field(gt=0, le=3600)]


class _Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _SerialReaderConfig(_Config):
    name: DeviceName
    port: str = Field(min_length=1, description="a tty path, a pty, or a pyserial URL (loop://)")
    baud: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    suffix: Suffix = Suffix.cr
    prefix: str = Field("", max_length=8, description="bytes before each frame, e.g. \\u0002")
    scan_frame_bytes_max: int = Field(256, ge=8, le=frame_bytes_max_limit)
    idle_flush_s: Seconds = 0.15
    read_timeout_s: Seconds = 0.05
    read_chunk_bytes_max: int = Field(65536, ge=64, le=1 << 20)
    reconnect_backoff_s_min: Seconds = 0.05
    reconnect_backoff_s_max: Seconds = 5.0
    events_queued_max: int = Field(256, ge=8, le=65536)

    @model_validator(mode="after")
    def _backoff_order(self) -> _SerialReaderConfig:
        if self.reconnect_backoff_s_min > self.reconnect_backoff_s_max:
            raise ValueError("reconnect_backoff_s_min must not exceed reconnect_backoff_s_max")
        if not self.prefix.isascii():
            raise ValueError("prefix must be ASCII")
        return self


class ScannerConfig(_SerialReaderConfig):
    """A serial or USB-CDC barcode scanner."""

    kind: Literal["scanner"] = "scanner"
    aim: bool = Field(True, description="strip and report AIM symbology identifiers (]E0)")


class CardReaderConfig(_SerialReaderConfig):
    """A magnetic-stripe card reader on a serial port."""

    kind: Literal["card_reader"] = "card_reader"
    lrc: LrcMode = LrcMode.auto


class WedgeScannerConfig(_Config):
    """A keyboard-wedge scanner read directly from its Linux input device (evdev)."""

    kind: Literal["keyboard_wedge"] = "keyboard_wedge"
    name: DeviceName
    device: str = Field(min_length=1, description="/dev/input/by-id/…-event-kbd")
    grab: bool = Field(True, description="keep the keystrokes away from other programs")
    scan_frame_bytes_max: int = Field(256, ge=8, le=frame_bytes_max_limit)
    aim: bool = True


ReaderConfig = Annotated[
    ScannerConfig | CardReaderConfig | WedgeScannerConfig, Field(discriminator="kind")
]


class SerialTransport(_Config):
    kind: Literal["serial"] = "serial"
    port: str = Field(min_length=1)
    baud: Literal[9600, 19200, 38400, 57600, 115200] = 9600
    timeout_s: Seconds = 2.0


class NetworkTransport(_Config):
    kind: Literal["network"] = "network"
    host: str = Field(min_length=1)
    port: int = Field(9100, ge=1, le=65535)
    timeout_s: Seconds = 3.0


class UsbTransport(_Config):
    kind: Literal["usb"] = "usb"
    vendor_id: int = Field(ge=0, le=0xFFFF)
    product_id: int = Field(ge=0, le=0xFFFF)
    in_ep: int = Field(0x82, ge=0, le=0xFF)
    out_ep: int = Field(0x01, ge=0, le=0xFF)
    timeout_s: Seconds = 3.0


class FileTransport(_Config):
    kind: Literal["file"] = "file"
    path: str = Field(min_length=1, description="/dev/usb/lp0 and the like")


PrinterTransport = Annotated[
    SerialTransport | NetworkTransport | UsbTransport | FileTransport,
    Field(discriminator="kind"),
]


class PrinterConfig(_Config):
    """One ESC/POS receipt printer and the one worker that owns it."""

    name: DeviceName
    transport: PrinterTransport
    model: str = Field("epson", description="code-page numbering family; see docs/devices.md")
    codepage: Literal["cp866", "cp1251"] = "cp866"
    codepage_number: int | None = Field(None, ge=0, le=255, description="ESC t n override")
    paper_mm: Literal[58, 80] = 80
    columns: Literal[32, 42, 48] | None = None
    qr_native: bool = Field(True, description="GS ( k QR; false prints the link as text")
    qr_module_dots: int = Field(6, ge=1, le=16)
    status_query: bool = Field(True, description="ask DLE EOT for paper and confirm each slip")
    cut: bool = True
    slips_queued_max: int = Field(64, ge=1, le=10000)
    retry_backoff_s_min: Seconds = 0.2
    retry_backoff_s_max: Seconds = 30.0

    @property
    def line_columns(self) -> int:
        if self.columns is not None:
            return self.columns
        return 32 if self.paper_mm == 58 else 48

    @model_validator(mode="after")
    def _fits_paper(self) -> PrinterConfig:
        if self.paper_mm == 58 and self.columns not in (None, 32):
            raise ValueError("58 mm paper holds 32 columns")
        if self.retry_backoff_s_min > self.retry_backoff_s_max:
            raise ValueError("retry_backoff_s_min must not exceed retry_backoff_s_max")
        return self


class DevicesConfig(_Config):
    """The `[devices]` part of the agent's config file."""

    readers: list[ReaderConfig] = Field(default_factory=list, max_length=16)
    printers: list[PrinterConfig] = Field(default_factory=list, max_length=8)

    @model_validator(mode="after")
    def _unique_names(self) -> DevicesConfig:
        names = [device.name for device in (*self.readers, *self.printers)]
        if len(names) != len(set(names)):
            raise ValueError("device names must be unique")
        return self
