"""A scanner or card reader that is not there: frames written into a real pseudo-terminal.

The reader under test opens the pty's slave side exactly as it would open `/dev/ttyACM0`.
With a `link` path the emulator keeps a symlink pointing at the current slave, like a udev
`/dev/scanner` rule; `unplug()` closes the pty (the reader sees the device vanish) and
`replug()` makes a new pty and re-points the link, as a USB device that comes back does.
"""

from __future__ import annotations

import os
import select
import tty
from pathlib import Path

from drivers._framing import SUFFIX_BYTES, Suffix
from drivers._track import encode_track1, encode_track2

write_chunk_bytes = 65536


class PtyDevice:
    """One emulated serial device. `path` is what a reader's config names as its port."""

    def __init__(self, link: Path | str | None = None, *, suffix: Suffix = Suffix.cr) -> None:
        self._link = Path(link) if link is not None else None
        self._suffix = SUFFIX_BYTES[suffix]
        self._master: int | None = None
        self._slave: int | None = None
        self.slave_path = ""
        self.replug()

    @property
    def path(self) -> str:
        return str(self._link) if self._link is not None else self.slave_path

    @property
    def plugged(self) -> bool:
        return self._master is not None

    def replug(self) -> None:
        """A fresh pty (a new /dev/pts/N), and the link re-pointed at it."""
        self.unplug()
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no CR→LF translation before the reader sets raw mode
        self._master, self._slave = master, slave
        self.slave_path = os.ttyname(slave)
        if self._link is not None:
            staging = self._link.with_name(self._link.name + ".new")
            staging.unlink(missing_ok=True)
            staging.symlink_to(self.slave_path)
            staging.replace(self._link)

    def unplug(self) -> None:
        """Close the pty: the reader's next read fails as it does for a pulled USB cable."""
        for fd in (self._slave, self._master):
            if fd is not None:
                os.close(fd)
        self._master = self._slave = None

    def close(self) -> None:
        self.unplug()
        if self._link is not None:
            self._link.unlink(missing_ok=True)

    def __enter__(self) -> PtyDevice:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def write(self, data: bytes) -> None:
        """Raw bytes onto the line, all of them (blocks while the reader is behind)."""
        if self._master is None:
            raise RuntimeError("the emulated device is unplugged")
        view = memoryview(data)
        while view:
            written = os.write(self._master, view[:write_chunk_bytes])
            view = view[written:]

    def read(self, timeout_s: float = 0.0, size: int = write_chunk_bytes) -> bytes:
        """What the host wrote to the device (a serial printer's input), waiting `timeout_s`."""
        if self._master is None:
            raise RuntimeError("the emulated device is unplugged")
        ready, _, _ = select.select([self._master], [], [], timeout_s)
        return os.read(self._master, size) if ready else b""

    def scan(self, payload: str, *, aim: str = "", prefix: bytes = b"") -> None:
        """One barcode read: prefix, AIM identifier (`]E0`), payload, suffix."""
        self.write(prefix + aim.encode("ascii") + payload.encode("ascii") + self._suffix)

    def swipe(self, *, track2: str | None = None, track1: str | None = None) -> None:
        """One swipe as a reader sends it: the tracks given, then the suffix."""
        text = (track1 or "") + (track2 or "")
        self.write(text.encode("ascii") + self._suffix)

    def swipe_card(self, pan: str, *, name: str = "IVANOV/IVAN") -> None:
        """A well-formed swipe of a card with this number, both tracks with their LRC."""
        self.swipe(track1=encode_track1(pan, name), track2=encode_track2(pan))
