"""Frames → device events, for scanners and for card readers. Pure.

Noise is coalesced: consecutive frames that are no payload at all (binary garbage, oversized
bursts, text that is not shaped like any identifier) come out as one `Noise` event, so a
burst of garbage cannot flood whoever listens.
"""

from __future__ import annotations

from collections.abc import Iterable

from drivers._events import DeviceEvent, Noise, ReadAgain, Rejected
from drivers._framing import FrameDropped, FrameFault, FramerOutput
from drivers._identity import IdentityRules, identify, is_printable, split_aim
from drivers._track import LrcMode, SwipeError, read_swipe

_SHAPELESS_CODES = frozenset({"card_malformed", "qr_malformed", "phone_malformed"})


class ScanDecoder:
    """A barcode scanner's frames: AIM identifier stripped and reported, payload identified."""

    def __init__(self, device: str, rules: IdentityRules, *, aim: bool = True) -> None:
        self.device = device
        self._rules = rules
        self._aim = aim

    def decode(self, outputs: Iterable[FramerOutput]) -> list[DeviceEvent]:
        return _coalesce(self._one(output) for output in outputs)

    def _one(self, output: FramerOutput) -> DeviceEvent:
        if isinstance(output, FrameDropped):
            return _dropped(self.device, output)
        if not is_printable(output.payload):
            return Noise(self.device, "not_text", 1, len(output.payload))
        text = output.payload.decode("ascii")
        symbology, text = split_aim(text) if self._aim else (None, text)
        event = identify(text, self._rules, device=self.device, symbology=symbology)
        if isinstance(event, Rejected) and event.code in _SHAPELESS_CODES:
            return Noise(self.device, "not_an_identifier", 1, len(output.payload))
        return event


class SwipeDecoder:
    """A magnetic-stripe reader's frames: tracks read, the card number identified.

    A card outside the chain's ranges (a bank card) becomes a `Rejected` with nothing of the
    card in it; a bad swipe becomes `ReadAgain`.
    """

    def __init__(self, device: str, rules: IdentityRules, *, lrc: LrcMode = LrcMode.auto) -> None:
        self.device = device
        self._rules = rules
        self._lrc = lrc

    def decode(self, outputs: Iterable[FramerOutput]) -> list[DeviceEvent]:
        return _coalesce(self._one(output) for output in outputs)

    def _one(self, output: FramerOutput) -> DeviceEvent:
        if isinstance(output, FrameDropped):
            if output.fault == FrameFault.partial:
                return ReadAgain(self.device, "swipe_partial", "the swipe was cut short")
            return _dropped(self.device, output)
        if not (b"%" in output.payload or b";" in output.payload):
            return Noise(self.device, "not_a_swipe", 1, len(output.payload))
        try:
            swipe = read_swipe(output.payload, lrc=self._lrc)
        except SwipeError as error:
            return ReadAgain(self.device, error.fault.value, "the stripe did not read")
        event = identify(swipe.pan, self._rules, device=self.device)
        if isinstance(event, ReadAgain):
            return ReadAgain(self.device, "swipe_" + event.code, event.reason)
        return event


def _dropped(device: str, output: FrameDropped) -> Noise:
    return Noise(device, output.fault.value, 1, output.bytes)


def _coalesce(events: Iterable[DeviceEvent]) -> list[DeviceEvent]:
    out: list[DeviceEvent] = []
    for event in events:
        last = out[-1] if out else None
        if isinstance(event, Noise) and isinstance(last, Noise):
            reason = last.reason if last.reason == event.reason else "mixed"
            out[-1] = Noise(
                event.device, reason, last.frames + event.frames, last.bytes + event.bytes
            )
        else:
            out.append(event)
    return out
