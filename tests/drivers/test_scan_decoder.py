"""Scanner payloads → identifiers: AIM identifiers, cards, phones, QR tokens, noise."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum.iso7064 import mod_37_36

from drivers import Identified, IdentifierKind, Noise, ReadAgain, Rejected
from drivers._decoders import ScanDecoder
from drivers._framing import Frame, FrameDropped, FrameFault
from drivers._identity import split_aim

from .samples import EAN_CARD, QR_TOKEN_BODY, RULES

QR_TOKEN = "KQ" + QR_TOKEN_BODY + mod_37_36.calc_check_digit(QR_TOKEN_BODY)


def decode(*payloads: bytes, aim: bool = True) -> list[object]:
    return list(ScanDecoder("scanner", RULES, aim=aim).decode([Frame(p) for p in payloads]))


@pytest.mark.parametrize(
    ("payload", "symbology", "rest"),
    [("]E02770000000017", "]E0", "2770000000017"), ("]Q1KQ1", "]Q1", "KQ1"), ("]C0x", "]C0", "x")],
)
def test_aim_identifier_is_split_off(payload: str, symbology: str, rest: str) -> None:
    assert split_aim(payload) == (symbology, rest)


def test_no_aim_identifier() -> None:
    assert split_aim("2770000000017") == (None, "2770000000017")


def test_card_with_aim_is_identified_and_symbology_reported() -> None:
    [event] = decode(b"]E0" + EAN_CARD.encode())
    assert isinstance(event, Identified)
    assert (event.kind, event.value, event.symbology) == (IdentifierKind.card, EAN_CARD, "]E0")
    assert EAN_CARD not in repr(event)
    assert "**** 0017" in repr(event)


def test_qr_token_and_phone() -> None:
    qr, phone = decode(b"]Q1" + QR_TOKEN.encode(), b"tel:+79161234567")
    assert isinstance(qr, Identified)
    assert qr.kind == IdentifierKind.qr
    assert qr.value == QR_TOKEN
    assert isinstance(phone, Identified)
    assert phone.kind == IdentifierKind.phone
    assert phone.value == "+79161234567"


def test_product_barcode_is_rejected_and_misread_asks_again() -> None:
    product, misread = decode(b"]E04600000000008", b"2770000000016")
    assert isinstance(product, Rejected)
    assert product.code == "card_unknown_range"
    assert isinstance(misread, ReadAgain)
    assert misread.prompt == "Отсканируйте ещё раз"


def test_consecutive_noise_is_one_event() -> None:
    decoder = ScanDecoder("scanner", RULES)
    events = decoder.decode(
        [
            Frame(b"\x00\xff"),
            FrameDropped(FrameFault.too_long, 900),
            Frame(b"!!"),
            Frame(EAN_CARD.encode()),
            Frame(b"\x01"),
        ]
    )
    assert events[0] == Noise("scanner", "mixed", 3, 904)
    assert isinstance(events[1], Identified)
    assert events[2] == Noise("scanner", "not_text", 1, 1)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=64), max_size=8))
def test_any_payload_gives_an_event_and_never_raises(frames: list[bytes]) -> None:
    events = decode(*frames)
    assert len(events) <= len(frames)
