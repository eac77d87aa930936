"""Phone numbers, card numbers and QR tokens: what is accepted, and why the rest is refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import (
    CardRange,
    IdentifierRejected,
    PhoneHasher,
    new_qr_token,
    normalize_phone,
    parse_card,
    parse_qr_token,
)

VALID_PHONES = [
    ("8 (916) 123-45-67", "+79161234567"),
    ("+7 916 1234567", "+79161234567"),
    ("9161234567", "+79161234567"),
    ("89161234567", "+79161234567"),
    ("+7-916-123-45-67", "+79161234567"),
    (" 8 916 123 45 67 ", "+79161234567"),
]

INVALID_PHONES = [
    ("+7 701 123 4567", "phone_foreign"),  # Kazakhstan shares +7
    ("8-800-555-35-35", "phone_not_personal"),  # toll-free
    ("+7 495 123-45-67", "phone_not_personal"),  # a Moscow landline
    ("+1 650 253 0000", "phone_foreign"),
    ("12", "phone_impossible"),
    ("+7 (916) 123-45-678", "phone_impossible"),  # one digit too many
    ("abc", "phone_malformed"),
    ("916;drop table", "phone_malformed"),
    ("", "phone_malformed"),
    ("9" * 40, "phone_too_long"),
]


@pytest.mark.parametrize(("raw", "e164"), VALID_PHONES)
def test_phone_forms_normalise_to_e164(raw: str, e164: str) -> None:
    assert normalize_phone(raw) == e164


@pytest.mark.parametrize(("raw", "code"), INVALID_PHONES)
def test_phone_refused_with_reason(raw: str, code: str) -> None:
    with pytest.raises(IdentifierRejected) as caught:
        normalize_phone(raw)
    assert caught.value.code == code
    assert caught.value.reason  # a sentence for the cashier


def test_phone_region_is_configurable() -> None:
    assert normalize_phone("701 123 4567", default_region="KZ") == "+77011234567"
    both = normalize_phone("+7 701 123 4567", allowed_regions={"RU", "KZ"})
    assert both == "+77011234567"


RANGES = [
    CardRange(name="ean13-cards", first="2770000000000", last="2770009999999", check="ean"),
    CardRange(name="mag-cards", first="6390020000000000", last="6390029999999999", check="luhn"),
    CardRange(name="ean8-cards", first="27700000", last="27709999", check="ean"),
    CardRange(name="code128", first="KP000000", last="KP999999", check="none"),
]

VALID_CARDS = [
    ("2770000000017", "ean13-cards"),
    ("277 0000 000017", "ean13-cards"),
    ("6390020000000003", "mag-cards"),
    ("27700006", "ean8-cards"),
    ("kp001234", "code128"),
]

INVALID_CARDS = [
    ("2770000000016", "card_check_digit"),  # last digit misread
    ("6390020000000009", "card_check_digit"),
    ("4111111111111111", "card_unknown_range"),  # a bank card swiped by mistake
    ("4600000000008", "card_unknown_range"),  # a product barcode
    ("27700", "card_malformed"),
    ("2770000000017!", "card_malformed"),
    ("1" * 41, "card_malformed"),
]


@pytest.mark.parametrize(("raw", "range_name"), VALID_CARDS)
def test_card_in_chain_range(raw: str, range_name: str) -> None:
    number, card_range = parse_card(raw, RANGES)
    assert card_range.name == range_name
    assert number == raw.replace(" ", "").upper()


@pytest.mark.parametrize(("raw", "code"), INVALID_CARDS)
def test_card_refused_with_reason(raw: str, code: str) -> None:
    with pytest.raises(IdentifierRejected) as caught:
        parse_card(raw, RANGES)
    assert caught.value.code == code


@pytest.mark.parametrize(
    ("first", "last", "check"),
    [("100", "1000", "none"), ("200000", "100000", "none"), ("AB0000", "AB9999", "ean")],
)
def test_card_range_config_checked(first: str, last: str, check: str) -> None:
    with pytest.raises(ValueError, match=r"first|digits"):
        CardRange(name="bad", first=first, last=last, check=check)  # type: ignore[arg-type]


def test_qr_token_round_trip_and_misread() -> None:
    token = new_qr_token()
    assert parse_qr_token(token.lower()) == token
    wrong = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(IdentifierRejected) as caught:
        parse_qr_token(wrong)
    assert caught.value.code == "qr_check"
    with pytest.raises(IdentifierRejected):
        parse_qr_token("https://example.com/")


@given(st.text(max_size=60))
def test_phone_parser_never_crashes(raw: str) -> None:
    try:
        assert normalize_phone(raw).startswith("+7")
    except IdentifierRejected as rejected:
        assert rejected.code.startswith("phone_")


@given(st.text(max_size=60))
def test_card_parser_never_crashes(raw: str) -> None:
    try:
        parse_card(raw, RANGES)
    except IdentifierRejected as rejected:
        assert rejected.code.startswith("card_")


def test_phone_hash_is_keyed() -> None:
    one, other = PhoneHasher(b"k" * 32), PhoneHasher(b"j" * 32)
    assert one("+79161234567") == one("+79161234567")
    assert one("+79161234567") != other("+79161234567")
    assert "79161234567" not in one("+79161234567")
    # HMAC-SHA256 in hex: what tills and central stored before stays findable
    assert one("+79161234567") == "7dc32012c466178ac1a6e84de473f56df1c86018f043b1dc6d8b8abc894276f4"
    with pytest.raises(ValueError, match="at least"):
        PhoneHasher(b"short")
    with pytest.raises(ValueError, match=r"E\.164"):
        one("8 916 123 45 67")
