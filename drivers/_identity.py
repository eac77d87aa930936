"""Text read from a device → a customer identifier, with `protocol`'s checks. Pure.

A scanner payload is a wallet/QR token (`KQ…`), a phone (`tel:+7…` or `+7…`, as a QR code
on a phone screen gives it), or else a card number, which must fall in one of the chain's
card ranges and carry a good check digit. Refusals keep `protocol`'s code and reason and
never the payload.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from drivers._events import Identified, IdentifierKind, ReadAgain, Rejected
from protocol import CardRange, IdentifierRejected, normalize_phone, parse_card, parse_qr_token

_AIM = re.compile(r"\](?P<code>[A-Za-z])(?P<modifier>[0-9A-Za-z])")
_MISREAD_CODES = frozenset({"card_check_digit", "qr_check"})
_PRINTABLE = re.compile(r"[\x20-\x7e]+")


@dataclass(frozen=True, slots=True)
class IdentityRules:
    """What counts as one of this chain's customers."""

    card_ranges: Sequence[CardRange] = ()
    phone_region: str = "RU"
    phone_regions_allowed: frozenset[str] | None = None


def split_aim(payload: str) -> tuple[str | None, str]:
    """(`]E0`, rest) when the payload starts with an AIM symbology identifier, else (None, all)."""
    match = _AIM.match(payload)
    if match is None:
        return None, payload
    return match.group(0), payload[match.end() :]


def is_printable(payload: bytes) -> bool:
    return _PRINTABLE.fullmatch(payload.decode("latin-1")) is not None


def identify(
    text: str, rules: IdentityRules, *, device: str, symbology: str | None = None
) -> Identified | Rejected | ReadAgain:
    """The identifier in one scanned or swiped payload, or why there is none."""
    try:
        kind, value, card_range = _parse(text.strip(), rules)
    except IdentifierRejected as refusal:
        if refusal.code in _MISREAD_CODES:
            return ReadAgain(device=device, code=refusal.code, reason=refusal.reason)
        return Rejected(
            device=device, code=refusal.code, reason=refusal.reason, symbology=symbology
        )
    return Identified(
        device=device, kind=kind, value=value, card_range=card_range, symbology=symbology
    )


def _parse(text: str, rules: IdentityRules) -> tuple[IdentifierKind, str, str | None]:
    if text[:2].upper() == "KQ":
        return IdentifierKind.qr, parse_qr_token(text), None
    if text[:4].lower() == "tel:" or text.startswith("+"):
        phone = normalize_phone(
            text[4:] if text[:4].lower() == "tel:" else text,
            default_region=rules.phone_region,
            allowed_regions=rules.phone_regions_allowed,
        )
        return IdentifierKind.phone, phone, None
    number, card_range = parse_card(text, rules.card_ranges)
    return IdentifierKind.card, number, card_range.name
