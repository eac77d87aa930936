"""ISO 7813 tracks: sentinels, LRC, bad swipes, bank cards; raw track data goes nowhere."""

from __future__ import annotations

import logging

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from drivers import Identified, IdentifierKind, ReadAgain, Rejected, encode_track1, encode_track2
from drivers._decoders import SwipeDecoder
from drivers._framing import Frame
from drivers._track import LrcMode, SwipeError, SwipeFault, lrc_char, read_swipe

from .samples import BANK_CARD, MAG_CARD, RULES


def test_lrc_of_track2_by_hand() -> None:
    # ; 1 2 3 4 = ?  ->  0xB ^ 1 ^ 2 ^ 3 ^ 4 ^ 0xD ^ 0xF = 0xD  ->  '='
    assert lrc_char(";1234=?", track_number=2) == "="


def test_lrc_of_track1_by_hand() -> None:
    # % B 1 ^ A ^ ?  (minus 0x20): 05 22 11 3E 21 3E 1F; XOR = 0x08 -> '('
    assert lrc_char("%B1^A^?", track_number=1) == "("


def test_track2_alone_with_and_without_lrc() -> None:
    track = f";{MAG_CARD}=29121010000?"
    assert read_swipe(track.encode()).pan == MAG_CARD
    with_lrc = track + lrc_char(track, track_number=2)
    assert read_swipe(with_lrc.encode(), lrc=LrcMode.present).pan == MAG_CARD
    assert read_swipe(with_lrc.encode()).track == 2


def test_track1_alone() -> None:
    swipe = read_swipe(encode_track1(MAG_CARD, "PETROVA/ANNA").encode())
    assert (swipe.pan, swipe.track) == (MAG_CARD, 1)


def test_both_tracks_prefer_track2_and_must_agree() -> None:
    both = encode_track1(MAG_CARD, "A/B") + encode_track2(MAG_CARD)
    assert read_swipe(both.encode()).track == 2
    other = "6390020000000011"
    with pytest.raises(SwipeError) as caught:
        read_swipe((encode_track1(other, "A/B") + encode_track2(MAG_CARD)).encode())
    assert caught.value.fault == SwipeFault.tracks_disagree


def test_a_bad_track2_falls_back_to_a_good_track1() -> None:
    frame = encode_track1(MAG_CARD, "A/B") + ";E?"
    assert read_swipe(frame.encode()).track == 1


@pytest.mark.parametrize(
    ("frame", "fault"),
    [
        (b";E?", SwipeFault.unreadable),  # the reader's own "could not read"
        (b"%E?;E?", SwipeFault.unreadable),
        (b";6390020000000003=2912", SwipeFault.unreadable),  # no end sentinel
        (b"6390020000000003=2912?", SwipeFault.unreadable),  # no start sentinel
        (b";63900200000\x8100003=2912?", SwipeFault.unreadable),
        (b";639002000000A003=2912?", SwipeFault.unreadable),  # not in the 4-bit alphabet
        (b";6390020000000003=2912?0", SwipeFault.lrc),
        (b";12=?", SwipeFault.unreadable),  # too short to be a card number
        (b"%B6390020000000003^NO END SEP?", SwipeFault.unreadable),
    ],
)
def test_bad_swipes(frame: bytes, fault: SwipeFault) -> None:
    with pytest.raises(SwipeError) as caught:
        read_swipe(frame)
    assert caught.value.fault == fault
    assert "6390020000000003" not in str(caught.value)


def decode(frame: str) -> list[object]:
    return list(SwipeDecoder("msr", RULES).decode([Frame(frame.encode())]))


def test_chain_card_is_identified() -> None:
    [event] = decode(encode_track1(MAG_CARD, "IVANOV/IVAN") + encode_track2(MAG_CARD))
    assert isinstance(event, Identified)
    assert (event.kind, event.value, event.card_range) == (
        IdentifierKind.card,
        MAG_CARD,
        "mag-cards",
    )


def test_bank_card_is_dropped_with_nothing_of_it_kept() -> None:
    [event] = decode(encode_track1(BANK_CARD, "IVANOV/IVAN") + encode_track2(BANK_CARD))
    assert isinstance(event, Rejected)
    assert event.code == "card_unknown_range"
    assert "4111" not in repr(event)
    assert "IVANOV" not in repr(event)


def test_wrong_luhn_digit_asks_to_swipe_again() -> None:
    [event] = decode(encode_track2("6390020000000009"))
    assert isinstance(event, ReadAgain)
    assert event.code == "swipe_card_check_digit"
    assert event.prompt == "Проведите карту ещё раз"


def test_raw_track_data_is_never_logged_or_shown(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    frames = [
        encode_track1(MAG_CARD, "IVANOV/IVAN") + encode_track2(MAG_CARD),
        encode_track1(BANK_CARD, "IVANOV/IVAN") + encode_track2(BANK_CARD),
        ";6390020000000003=2912?0",
    ]
    events = [e for f in frames for e in decode(f)]
    shown = caplog.text + " ".join(repr(e) + str(e) for e in events)
    for secret in (MAG_CARD, BANK_CARD, "IVANOV", "2912", "=29"):
        assert secret not in shown


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_give_a_swipe_or_a_swipe_error(frame: bytes) -> None:
    try:
        swipe = read_swipe(frame)
    except SwipeError:
        return
    assert swipe.pan.isdigit()
    assert 6 <= len(swipe.pan) <= 19


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=";%?=^B0123456789E", max_size=80))
def test_track_shaped_text_never_crashes_the_decoder(text: str) -> None:
    for event in decode(text):
        assert isinstance(event, Identified | Rejected | ReadAgain) or event is not None


@settings(max_examples=200, deadline=None)
@given(
    pan=st.from_regex(r"[0-9]{6,19}", fullmatch=True),
    name=st.from_regex(r"[A-Z]{1,12}/[A-Z]{1,12}", fullmatch=True),
    tracks=st.sampled_from(["1", "2", "12"]),
)
@example(pan="135789", name="A/BDEHRS", tracks="12")  # track 1's LRC is ';'
def test_well_formed_swipes_give_back_their_number(pan: str, name: str, tracks: str) -> None:
    frame = (encode_track1(pan, name) if "1" in tracks else "") + (
        encode_track2(pan) if "2" in tracks else ""
    )
    for mode in (LrcMode.auto, LrcMode.present):
        swipe = read_swipe(frame.encode(), lrc=mode)
        assert swipe.pan == pan
        assert swipe.track == (2 if "2" in tracks else 1)
