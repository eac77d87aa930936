"""What a reading device reports: one small, frozen event per thing that happened.

Events never carry raw device bytes. An identified customer's card number or phone is kept
out of `repr` (and so out of logs); a card outside the chain's ranges keeps nothing at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class IdentifierKind(StrEnum):
    card = "card"
    phone = "phone"
    qr = "qr"


class DeviceState(StrEnum):
    """A reader's link to its device, as the reader thread last saw it."""

    starting = "starting"
    connected = "connected"
    disconnected = "disconnected"
    stopped = "stopped"


def mask(value: str, visible_chars: int = 4) -> str:
    """`**** 0017`: enough for a cashier or a customer to recognise their card, no more."""
    if len(value) <= visible_chars:
        return "*" * len(value)
    return "**** " + value[-visible_chars:]


@dataclass(frozen=True, slots=True)
class Identified:
    """A customer identifier read from a device and accepted by `protocol`'s checks.

    `value` is the normal form: a card number, an E.164 phone number (to be hashed by the
    agent before it is stored), or a wallet/QR token. `card_range` names the chain's range
    a card number fell in. `symbology` is the AIM identifier the scanner sent, if any.
    """

    device: str
    kind: IdentifierKind
    value: str = field(repr=False)
    card_range: str | None = None
    symbology: str | None = None

    @property
    def masked(self) -> str:
        return mask(self.value)

    def __repr__(self) -> str:
        return (
            f"Identified(device={self.device!r}, kind={self.kind.value!r}, "
            f"value={self.masked!r}, card_range={self.card_range!r}, "
            f"symbology={self.symbology!r})"
        )


@dataclass(frozen=True, slots=True)
class Rejected:
    """A well-read payload that is not a customer of this chain: a product barcode, a bank
    card swiped by mistake, a foreign phone number. Dropped; `code` says why."""

    device: str
    code: str
    reason: str
    symbology: str | None = None


@dataclass(frozen=True, slots=True)
class ReadAgain:
    """A misread: a bad swipe, a wrong check digit, a frame cut short. Ask for another try."""

    device: str
    code: str
    reason: str

    @property
    def prompt(self) -> str:
        if self.code.startswith("swipe"):
            return "Проведите карту ещё раз"
        return "Отсканируйте ещё раз"


@dataclass(frozen=True, slots=True)
class Noise:
    """Bytes that were no frame at all (line noise, a wrong baud rate, an oversized burst),
    counted and dropped. Consecutive noise is reported as one event."""

    device: str
    reason: str
    frames: int
    bytes: int


@dataclass(frozen=True, slots=True)
class StateChanged:
    """The reader connected to its device, lost it, or stopped."""

    device: str
    state: DeviceState
    detail: str = ""


DeviceEvent = Identified | Rejected | ReadAgain | Noise | StateChanged
