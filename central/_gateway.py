"""Messages to customers (confirmation codes) through a pluggable gateway.

A gateway is anything with `send(phone_e164, text)`. `FileGateway` (one JSON line per
message) and `LogGateway` ship for development; an SMS provider is one more class."""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime
from pathlib import Path
from typing import Protocol

log = logging.getLogger("kopilka.central.messages")


class MessageGateway(Protocol):
    def send(self, phone_e164: str, text: str, now: datetime) -> None: ...


class LogGateway:
    """Writes each message to the `kopilka.central.messages` log."""

    def send(self, phone_e164: str, text: str, now: datetime) -> None:
        log.warning("message to %s: %s", phone_e164, text)


class FileGateway:
    """Appends each message as a JSON line `{"at", "to", "text"}` to a file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def send(self, phone_e164: str, text: str, now: datetime) -> None:
        line = json.dumps({"at": now.isoformat(), "to": phone_e164, "text": text})
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                out.write(line + "\n")

    def messages(self) -> list[dict[str, str]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text("utf-8").splitlines() if line]


def gateway_from(spec: str) -> MessageGateway:
    """`log`, or `file:PATH`."""
    if spec == "log":
        return LogGateway()
    if spec.startswith("file:"):
        return FileGateway(Path(spec[5:]))
    raise ValueError(f"unknown message gateway {spec!r}: use `log` or `file:PATH`")
