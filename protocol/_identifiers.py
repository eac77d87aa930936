"""Customer identifiers: phone numbers, loyalty-card numbers, wallet/QR tokens, keyed hashes.

Every parser returns the normal form or raises `IdentifierRejected` with a machine-readable
code and a sentence a cashier can act on. Nothing here does I/O; the phone-hash key comes in
from outside (the till keeps it beside, never inside, its database file).
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Iterable
from typing import Annotated, Literal

import phonenumbers
from phonenumbers import PhoneNumberType
from pydantic import StringConstraints, model_validator
from stdnum import ean, luhn
from stdnum.exceptions import ValidationError as StdnumError
from stdnum.iso7064 import mod_37_36

from protocol._base import Id, WireModel
from protocol._phones import quick_e164

phone_input_chars_max = 32
card_input_chars_max = 40
card_chars_min = 6
card_chars_max = 32
qr_token_body_chars = 24
phone_hash_key_bytes_min = 32

_PHONE_TYPES_ACCEPTED = {
    PhoneNumberType.MOBILE,
    PhoneNumberType.FIXED_LINE_OR_MOBILE,
    PhoneNumberType.PERSONAL_NUMBER,
}
_PHONE_TYPE_REASONS = {
    PhoneNumberType.TOLL_FREE: "a toll-free service number",
    PhoneNumberType.PREMIUM_RATE: "a premium-rate service number",
    PhoneNumberType.SHARED_COST: "a shared-cost service number",
    PhoneNumberType.UAN: "a company's universal access number",
    PhoneNumberType.VOICEMAIL: "a voicemail access number",
    PhoneNumberType.PAGER: "a pager number",
    PhoneNumberType.VOIP: "a VoIP service number",
    PhoneNumberType.FIXED_LINE: "a landline, which cannot receive a confirmation code",
}


class IdentifierRejected(ValueError):
    """An identifier that cannot be a customer's; `code` is stable, `reason` is for people."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


def normalize_phone(
    raw: str, *, default_region: str = "RU", allowed_regions: Iterable[str] | None = None
) -> str:
    """The E.164 form of a customer's phone typed or scanned at the till.

    `default_region` reads national forms (`8 (916) 123-45-67` in Russia). A number of another
    country than the chain's (`allowed_regions`, the default region alone by default) is refused:
    +7 is shared by Russia and Kazakhstan, so the code alone does not decide.
    """
    if len(raw) > phone_input_chars_max:
        raise IdentifierRejected("phone_too_long", f"more than {phone_input_chars_max} characters")
    if not re.fullmatch(r"[0-9+()\-.\s]*", raw) or not any(c.isdigit() for c in raw):
        raise IdentifierRejected("phone_malformed", "only digits, spaces, + ( ) - are allowed")
    allowed = frozenset({default_region} if allowed_regions is None else allowed_regions)
    quick = quick_e164(raw, default_region, allowed)
    return quick if quick is not None else full_e164(raw, default_region, allowed)


def full_e164(raw: str, default_region: str, allowed: frozenset[str]) -> str:
    """`normalize_phone` through `phonenumbers` alone, for any form and every refusal."""
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException as error:
        raise IdentifierRejected("phone_malformed", "not a phone number") from error
    if not phonenumbers.is_possible_number(number):
        raise IdentifierRejected("phone_impossible", "wrong number of digits for a phone number")
    region = phonenumbers.region_code_for_number(number)
    kind = phonenumbers.number_type(number)  # UNKNOWN exactly when is_valid_number is false
    if region is None or kind == PhoneNumberType.UNKNOWN:
        raise IdentifierRejected("phone_invalid", "no such number range exists")
    if region not in allowed:
        raise IdentifierRejected(
            "phone_foreign", f"a number of {region}, not of {', '.join(sorted(allowed))}"
        )
    if kind not in _PHONE_TYPES_ACCEPTED:
        reason = _PHONE_TYPE_REASONS.get(kind, "not a personal phone number")
        raise IdentifierRejected("phone_not_personal", reason)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


CardText = Annotated[str, StringConstraints(pattern=r"^[0-9A-Z]{6,32}$")]


class CardRange(WireModel):
    """One of the chain's own card ranges: `first`…`last` inclusive, of one length.

    `check` names the check digit the range's numbers carry: `ean` for printed EAN-8/EAN-13
    barcodes, `luhn` for magnetic-stripe numbers, `none` for Code 128 payloads without one.
    """

    name: Id
    first: CardText
    last: CardText
    check: Literal["ean", "luhn", "none"]

    @model_validator(mode="after")
    def _bounds(self) -> CardRange:
        if len(self.first) != len(self.last):
            raise ValueError("first and last must have the same length")
        if self.first > self.last:
            raise ValueError("first must not be after last")
        if self.check != "none" and not (self.first.isdigit() and self.last.isdigit()):
            raise ValueError("a range with a check digit holds digits only")
        return self

    def holds(self, number: str) -> bool:
        return len(number) == len(self.first) and self.first <= number <= self.last


def _check_digit_ok(number: str, check: str) -> bool:
    try:
        if check == "ean":
            ean.validate(number)
        elif check == "luhn":
            luhn.validate(number)
    except StdnumError:
        return False
    return True


def parse_card(raw: str, ranges: Iterable[CardRange]) -> tuple[str, CardRange]:
    """A loyalty-card number from a barcode payload or a typed number, and its range.

    A number outside every range of the chain (a bank card swiped by mistake, a product
    barcode) is refused with `card_unknown_range`; one inside a range with a wrong check digit
    is refused with `card_check_digit` (usually a misread: scan again).
    """
    if len(raw) > card_input_chars_max:
        raise IdentifierRejected("card_malformed", f"more than {card_input_chars_max} characters")
    number = re.sub(r"[\s\-]", "", raw).upper()
    if (
        not re.fullmatch(r"[0-9A-Z]+", number)
        or not card_chars_min <= len(number) <= card_chars_max
    ):
        raise IdentifierRejected(
            "card_malformed", f"{card_chars_min} to {card_chars_max} letters or digits expected"
        )
    for card_range in ranges:
        if card_range.holds(number):
            if not _check_digit_ok(number, card_range.check):
                raise IdentifierRejected("card_check_digit", "check digit is wrong; scan again")
            return number, card_range
    raise IdentifierRejected("card_unknown_range", "not one of the chain's cards")


_QR_PREFIX = "KQ"
_QR_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def new_qr_token() -> str:
    """A fresh wallet/QR token: `KQ`, 24 random base32 characters, an ISO 7064 check char."""
    body = "".join(secrets.choice(_QR_ALPHABET) for _ in range(qr_token_body_chars))
    return _QR_PREFIX + body + mod_37_36.calc_check_digit(body)


def parse_qr_token(raw: str) -> str:
    """A wallet/QR token as shown on a customer's phone, validated by its check character."""
    token = raw.strip().upper()
    expected_chars = len(_QR_PREFIX) + qr_token_body_chars + 1
    if len(token) != expected_chars or not token.startswith(_QR_PREFIX):
        raise IdentifierRejected("qr_malformed", "not a Kopilka wallet code")
    body = token[len(_QR_PREFIX) : -1]
    if any(c not in _QR_ALPHABET for c in body):
        raise IdentifierRejected("qr_malformed", "not a Kopilka wallet code")
    if mod_37_36.calc_check_digit(body) != token[-1]:
        raise IdentifierRejected("qr_check", "the code was misread; show it again")
    return token


_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


class PhoneHasher:
    """Keyed hash (HMAC-SHA256) under which a till stores phone numbers.

    The key is the chain's, handed to the till at enrollment and kept outside its database,
    so a copied database file does not give away customers' phone numbers.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) < phone_hash_key_bytes_min:
            raise ValueError(f"phone hash key must be at least {phone_hash_key_bytes_min} bytes")
        self._key = key

    def __call__(self, e164: str) -> str:
        if not _E164.fullmatch(e164):
            raise ValueError("hash E.164 numbers only; normalise first")
        return hmac.digest(self._key, e164.encode("ascii"), "sha256").hex()
