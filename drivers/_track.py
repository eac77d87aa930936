"""Magnetic-stripe track data (ISO/IEC 7813) → the card's number. Pure, and forgetful.

Track 1 is `%B<PAN>^<NAME>^<YYMM><service code><discretionary>?` in the 6-bit alphabet
(0x20…0x5F); track 2 is `;<PAN>=<YYMM><service code><discretionary>?` in the 4-bit alphabet
(0x30…0x3F). Each may be followed by its LRC character: the XOR of every character's data
bits, sentinels included, put back into the track's alphabet. Readers that report a track
they could not read send `%E?` or `;E?`.

Only the primary account number leaves this module. The name, the expiry date and the
discretionary data are never returned, stored, put in an exception or logged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

track1_chars_max = 79
track2_chars_max = 40
pan_digits_min = 6
pan_digits_max = 19

_T1_START, _T2_START, _END = "%", ";", "?"
_T1_BASE, _T2_BASE = 0x20, 0x30
_T1_MASK, _T2_MASK = 0x3F, 0x0F


class LrcMode(StrEnum):
    """Whether the reader sends the LRC character after each end sentinel."""

    auto = "auto"  # a character after `?` that cannot start the next track is an LRC
    present = "present"
    absent = "absent"


class SwipeFault(StrEnum):
    unreadable = "swipe_unreadable"
    lrc = "swipe_lrc"
    tracks_disagree = "swipe_tracks_disagree"


@dataclass(frozen=True, slots=True)
class Swipe:
    """The number read from a swipe, and which track gave it."""

    pan: str = field(repr=False)
    track: int


class SwipeError(ValueError):
    """A swipe that gave no trustworthy number. The message never holds track data."""

    def __init__(self, fault: SwipeFault) -> None:
        super().__init__(fault.value)
        self.fault = fault


def lrc_char(track: str, *, track_number: int) -> str:
    """The LRC character of a whole track, sentinels included (ISO/IEC 7811-2, -6)."""
    base, mask = (_T1_BASE, _T1_MASK) if track_number == 1 else (_T2_BASE, _T2_MASK)
    value = 0
    for char in track:
        value ^= (ord(char) - base) & mask
    return chr(value + base)


def _segments(text: str, lrc: LrcMode) -> list[tuple[str, str | None]]:
    """Each `start…?` segment of a frame with the character after it if it is an LRC."""
    found: list[tuple[str, str | None]] = []
    pos = 0
    while pos < len(text):
        if text[pos] not in (_T1_START, _T2_START):
            pos += 1
            continue
        end = text.find(_END, pos + 1)
        if end < 0:
            break  # a track cut short: nothing to read from it
        segment = text[pos : end + 1]
        after = text[end + 1] if end + 1 < len(text) else None
        takes_lrc = after is not None and (
            lrc == LrcMode.present or (lrc == LrcMode.auto and _looks_like_lrc(text, end, segment))
        )
        found.append((segment, after if takes_lrc else None))
        pos = end + (2 if takes_lrc else 1)
    return found


def _looks_like_lrc(text: str, end: int, segment: str) -> bool:
    """Whether the character after the end sentinel at `end` is the segment's LRC.

    Any character but a start sentinel or a line end is one. A start sentinel is an LRC only
    if it is the right one and no track data follows it (`?;;6390…`, not `?;6390…`).
    """
    after = text[end + 1]
    if after in "\r\n":
        return False
    if after not in (_T1_START, _T2_START):
        return True
    track_number = 1 if segment[0] == _T1_START else 2
    following = text[end + 2] if end + 2 < len(text) else None
    return lrc_char(segment, track_number=track_number) == after and (
        following is None or following in "%;\r\n"
    )


def _pan_of_track1(track: str) -> str:
    if len(track) > track1_chars_max or any(not 0x20 <= ord(c) <= 0x5F for c in track):
        raise SwipeError(SwipeFault.unreadable)
    fields = track[1:-1].split("^")
    if len(fields) < 3 or not fields[0].startswith("B"):
        raise SwipeError(SwipeFault.unreadable)
    return fields[0][1:]


def _pan_of_track2(track: str) -> str:
    if len(track) > track2_chars_max or any(not 0x30 <= ord(c) <= 0x3F for c in track[1:]):
        raise SwipeError(SwipeFault.unreadable)
    return track[1:-1].split("=", 1)[0]


def _read_track(segment: str, lrc: str | None) -> Swipe:
    track_number = 1 if segment[0] == _T1_START else 2
    if lrc is not None and lrc_char(segment, track_number=track_number) != lrc:
        raise SwipeError(SwipeFault.lrc)
    pan = _pan_of_track1(segment) if track_number == 1 else _pan_of_track2(segment)
    if not (pan.isdigit() and pan.isascii() and pan_digits_min <= len(pan) <= pan_digits_max):
        raise SwipeError(SwipeFault.unreadable)
    return Swipe(pan=pan, track=track_number)


def read_swipe(frame: bytes, *, lrc: LrcMode = LrcMode.auto) -> Swipe:
    """The card number of one swipe: track 2 if it reads, else track 1.

    Raises `SwipeError` for a swipe to repeat: no track, a track that fails its LRC or its
    format, or two tracks naming different numbers.
    """
    try:
        text = frame.decode("ascii")
    except UnicodeDecodeError:
        raise SwipeError(SwipeFault.unreadable) from None
    good: dict[int, Swipe] = {}
    fault = SwipeFault.unreadable
    for segment, lrc_found in _segments(text, lrc):
        try:
            swipe = _read_track(segment, lrc_found)
        except SwipeError as error:
            fault = error.fault
            continue
        good.setdefault(swipe.track, swipe)
    if not good:
        raise SwipeError(fault)
    if 1 in good and 2 in good and good[1].pan != good[2].pan:
        raise SwipeError(SwipeFault.tracks_disagree)
    return good.get(2) or good[1]


def encode_track2(pan: str, *, expiry: str = "2912", service: str = "101", extra: str = "0") -> str:
    """Track 2 as a reader sends it, with its LRC: for emulators and tests."""
    track = f"{_T2_START}{pan}={expiry}{service}{extra}{_END}"
    return track + lrc_char(track, track_number=2)


def encode_track1(pan: str, name: str, *, expiry: str = "2912", service: str = "101") -> str:
    """Track 1 as a reader sends it, with its LRC: for emulators and tests."""
    track = f"{_T1_START}B{pan}^{name.upper()}^{expiry}{service}000000{_END}"
    return track + lrc_char(track, track_number=1)
