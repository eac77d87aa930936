"""The loyalty block of a receipt: slip data → lines that fit the paper. Pure.

Widths: 58 mm paper prints 32 columns in font A; 80 mm prints 48 (42 on printers that use a
wider font). Every line that leaves here is already normalised to the printer's code page,
so its length is the number of columns it takes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import Enum
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from pydantic.types import Strict

from drivers._codepage import normalize_text
from drivers._events import mask

points_max = 10**12
kopecks_max = 10**13
message_chars_max = 500
qr_chars_max = 300

tier_name_chars_max = 40


def _cut_to(chars_max: int) -> BeforeValidator:
    """Text longer than a slip prints is cut with an ellipsis, not refused: it comes from
    HQ's rules (receipt messages, tier names), and a slip must never stop the sale whose
    receipt it is part of (each message may hold 500 characters, and a sale prints up to 20)."""

    def cut(value: object) -> object:
        if isinstance(value, str) and len(value) > chars_max:
            return value[: chars_max - 1] + "…"
        return value

    return BeforeValidator(cut)


Points = Annotated[int, Strict(), Field(ge=0, le=points_max)]
SignedPoints = Annotated[int, Strict(), Field(ge=-points_max, le=points_max)]
Kopecks = Annotated[int, Strict(), Field(ge=0, le=kopecks_max)]
Line = Annotated[str, _cut_to(message_chars_max), StringConstraints(max_length=message_chars_max)]


class NextTier(BaseModel):
    """The next tier and how much more the customer must buy to reach it."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: Annotated[
        str,
        _cut_to(tier_name_chars_max),
        StringConstraints(min_length=1, max_length=tier_name_chars_max),
    ]
    spend_missing_kopecks: Kopecks


class LoyaltySlip(BaseModel):
    """What the loyalty block says. The agent fills it from the confirmed sale; the message
    is already chosen for this customer (tier, segment, consent) and in their language."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    title: Annotated[str, StringConstraints(max_length=48)] = "Программа лояльности"
    card_number: Annotated[str, StringConstraints(max_length=32)] | None = None
    earned_points: Points = 0
    spent_points: Points = 0
    balance_points: SignedPoints = 0
    pending_points: Points = 0
    next_tier: NextTier | None = None
    message: Line | None = None
    qr: Annotated[str, StringConstraints(min_length=1, max_length=qr_chars_max)] | None = None
    cheque: Annotated[str, StringConstraints(max_length=64)] | None = None


class Align(Enum):
    """Values are the `n` of `ESC a n`."""

    left = 0
    center = 1
    right = 2


@dataclass(frozen=True, slots=True)
class Text:
    text: str
    align: Align = Align.left
    bold: bool = False
    tall: bool = False  # double height, same width


@dataclass(frozen=True, slots=True)
class Qr:
    data: str


@dataclass(frozen=True, slots=True)
class Feed:
    lines: int


@dataclass(frozen=True, slots=True)
class Cut:
    pass


Block = Text | Qr | Feed | Cut
_NBSP = "\u00a0"  # keeps "1 500,00 руб." on one line; printed as a plain space


def group_digits(value: int) -> str:
    """`1 234 567`: thousands apart by a space, as Russian receipts print them."""
    sign = "-" if value < 0 else ""
    return sign + f"{abs(value):,}".replace(",", _NBSP)


def format_money(kopecks: int) -> str:
    return f"{group_digits(kopecks // 100)},{kopecks % 100:02d}{_NBSP}₽"


def layout_slip(
    slip: LoyaltySlip, *, columns: int, codepage: str = "cp866", cut: bool = True
) -> list[Block]:
    """The loyalty block, line by line, for paper `columns` wide."""
    if columns < 24:
        raise ValueError("a receipt line is at least 24 columns")
    texts = _slip_texts(slip, codepage)
    rule = Text("-" * columns)
    title = _wrap(texts.title, columns)
    blocks: list[Block] = [Text(line, Align.center, bold=True, tall=True) for line in title]
    blocks.append(rule)
    for label, value, bold in texts.rows:
        blocks += _pair(label, value, columns, bold=bold)
    if texts.next_tier is not None:
        blocks += _wrapped(texts.next_tier, columns, Align.left)
    if texts.message is not None:
        blocks.append(rule)
        for paragraph in texts.message:
            blocks += _wrapped(paragraph, columns, Align.center)
    if slip.qr:
        blocks += [Feed(1), Qr(slip.qr)]
    if texts.cheque is not None:
        blocks += _wrapped(texts.cheque, columns, Align.center)
    blocks.append(Feed(3))
    if cut:
        blocks.append(Cut())
    return blocks


@dataclass(frozen=True, slots=True)
class _SlipTexts:
    """The words of a slip, normalised for a code page: the same for every paper width."""

    title: str
    rows: tuple[tuple[str, str, bool], ...]
    next_tier: str | None
    message: tuple[str, ...] | None
    cheque: str | None


@functools.lru_cache(maxsize=8)
def _slip_texts(slip: LoyaltySlip, codepage: str) -> _SlipTexts:
    """(cached: a slip is laid out for several widths in a row)"""
    norm = _Normaliser(codepage)
    rows: list[tuple[str, str]] = []
    if slip.card_number:
        rows.append(("Карта", mask(slip.card_number)))
    if slip.earned_points:
        rows.append(("Начислено баллов", "+" + group_digits(slip.earned_points)))
    if slip.spent_points:
        rows.append(("Списано баллов", "-" + group_digits(slip.spent_points)))
    rows.append(("Баланс", group_digits(slip.balance_points)))
    if slip.pending_points:
        rows.append(("Ожидают начисления", group_digits(slip.pending_points)))
    next_tier = None
    if slip.next_tier is not None:
        tier = slip.next_tier
        missing = format_money(tier.spend_missing_kopecks)
        next_tier = norm(f"До уровня «{tier.name}» осталось покупок на {missing}")
    return _SlipTexts(
        title=norm(slip.title),
        rows=tuple((norm(label), norm(value), label == "Баланс") for label, value in rows),
        next_tier=next_tier,
        message=tuple(norm(line) for line in slip.message.splitlines()) if slip.message else None,
        cheque=norm(f"Чек {slip.cheque}") if slip.cheque else None,
    )


class _Normaliser:
    def __init__(self, codepage: str) -> None:
        self.codepage = codepage

    def __call__(self, text: str) -> str:
        return _normalised(text, self.codepage)


@functools.lru_cache(maxsize=1024)
def _normalised(text: str, codepage: str) -> str:
    """`text` printable on `codepage`, white space collapsed, NBSPs kept (cached: labels and
    messages repeat on every slip and for every paper width)."""
    parts = text.split(_NBSP)
    return _NBSP.join(" ".join(normalize_text(p, codepage).split()) for p in parts)


def _pair(label: str, value: str, columns: int, *, bold: bool) -> list[Block]:
    """`label ........ value` on one line when both fit, else value under the label."""
    gap = columns - len(label) - len(value)
    if gap >= 1:
        return [Text(_spaces(label + " " * gap + value), bold=bold)]
    lines: list[Block] = [Text(line, bold=bold) for line in _wrap(label, columns)]
    return [*lines, Text(_spaces(value[-columns:]), Align.right, bold=bold)]


def _wrapped(text: str, columns: int, align: Align) -> list[Block]:
    return [Text(line, align) for line in _wrap(text, columns)]


def _wrap(text: str, columns: int) -> list[str]:
    if 0 < len(text) <= columns:
        return [_spaces(text)]  # normalised text has single spaces and no edges to drop
    return [_spaces(line) for line in wrap_words(text, columns)] or [""]


def wrap_words(text: str, columns: int) -> list[str]:
    """`textwrap.wrap(text, columns, break_on_hyphens=False)` for normalised text (words apart
    by single spaces, none at the ends), without its regular expressions and without the
    trailing space it leaves on a line that a long word's cut finds full: words fill a line
    greedily; a word longer than a whole line is cut, its head filling the current line."""
    lines: list[str] = []
    line: list[str] = []
    used = 0
    for word in text.split(" "):
        gap = 1 if line else 0
        while used + gap + len(word) > columns:
            if len(word) <= columns or used + gap >= columns:
                lines.append(" ".join(line))  # the word starts the next line
                line, used, gap = [], 0, 0
                if len(word) <= columns:
                    break
                continue
            room = columns - used - gap
            line.append(word[:room])
            lines.append(" ".join(line))
            word, line, used, gap = word[room:], [], 0, 0
        line.append(word)
        used += gap + len(word)
    if line:
        lines.append(" ".join(line))
    return lines


def _spaces(text: str) -> str:
    return text.replace(_NBSP, " ")


def slip_lines(slip: LoyaltySlip, *, columns: int) -> list[str]:
    """The loyalty block as plain text lines `columns` wide, aligned with spaces: for a POS
    that prints it on its own fiscal receipt (no QR code, feed or cut)."""
    lines = []
    for block in layout_slip(slip, columns=columns, cut=False):
        if not isinstance(block, Text):
            continue
        if block.align is Align.center:
            lines.append(block.text.center(columns).rstrip())
        elif block.align is Align.right:
            lines.append(block.text.rjust(columns))
        else:
            lines.append(block.text)
    return lines
