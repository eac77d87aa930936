"""The loyalty block fits 58 mm (32 columns) and 80 mm (42 / 48 columns) paper."""

from __future__ import annotations

import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers import LoyaltySlip, NextTier
from drivers._receipt import Align, Cut, Qr, Text, layout_slip, wrap_words

FULL = LoyaltySlip(
    card_number="2770000000017",
    earned_points=120,
    spent_points=50,
    balance_points=1_234_567,
    pending_points=80,
    next_tier=NextTier(name="Золото", spend_missing_kopecks=150_000),
    message="Двойные баллы на кофе до 31 декабря — только для вас!\nЖдём снова.",
    qr="https://kopilka.example/r/KQABC",
    cheque="POS1-000123",
)


def texts(columns: int, slip: LoyaltySlip = FULL) -> list[str]:
    return [b.text for b in layout_slip(slip, columns=columns) if isinstance(b, Text)]


@pytest.mark.parametrize("columns", [32, 42, 48])
def test_every_line_fits_and_every_field_is_there(columns: int) -> None:
    lines = texts(columns)
    assert all(len(line) <= columns for line in lines)
    joined = "\n".join(lines)
    for shown in ("**** 0017", "+120", "-50", "1 234 567", "80", "Золото", "1 500,00 руб."):
        assert shown in joined
    assert "2770000000017" not in joined  # the card is masked
    assert "Ждём снова." in lines
    blocks = layout_slip(FULL, columns=columns)
    assert Qr("https://kopilka.example/r/KQABC") in blocks
    assert isinstance(blocks[-1], Cut)


def test_label_and_value_share_a_line_right_aligned() -> None:
    assert "Баланс" + " " * 17 + "1 234 567" in texts(32)
    assert "Карта" + " " * 34 + "**** 0017" in texts(48)


def test_money_never_breaks_across_lines() -> None:
    for columns in (32, 42, 48):
        assert any("1 500,00 руб." in line for line in texts(columns))


def test_title_is_bold_tall_and_centred() -> None:
    title = layout_slip(FULL, columns=32)[0]
    assert title == Text("Программа лояльности", Align.center, bold=True, tall=True)


def test_empty_parts_are_left_out() -> None:
    lines = texts(32, LoyaltySlip(balance_points=0))
    assert not any("Начислено" in line or "Карта" in line for line in lines)
    assert "Баланс" + " " * 25 + "0" in lines


def test_points_are_strict_integers() -> None:
    with pytest.raises(ValueError, match="int"):
        LoyaltySlip.model_validate({"earned_points": 1.0})
    with pytest.raises(ValueError, match="int"):
        LoyaltySlip.model_validate({"balance_points": True})


@settings(max_examples=200, deadline=None)
@given(
    message=st.text(max_size=500),
    title=st.text(max_size=48),
    card=st.text(alphabet="0123456789", max_size=32),
    balance=st.integers(-(10**12), 10**12),
    columns=st.sampled_from([24, 32, 42, 48]),
)
def test_any_text_lays_out_within_the_paper(
    message: str, title: str, card: str, balance: int, columns: int
) -> None:
    slip = LoyaltySlip(title=title, message=message, card_number=card, balance_points=balance)
    for line in texts(columns, slip):
        assert len(line) <= columns
        line.encode("cp866")


_letters = st.text("абвгдежз1234567890,.₽xyz", min_size=1, max_size=60)
_words = st.lists(_letters, min_size=1, max_size=4).map("\u00a0".join)  # "1\u00a0500,00\u00a0₽"


@given(st.lists(_words, min_size=1, max_size=15).map(" ".join), st.integers(24, 48))
def test_wrapping_is_textwraps_without_its_trailing_spaces(text: str, columns: int) -> None:
    ours = wrap_words(text, columns)
    standard = textwrap.wrap(text, columns, break_long_words=True, break_on_hyphens=False)
    assert ours == [line.rstrip(" ") for line in standard]
    assert all(0 < len(line) <= columns for line in ours)
