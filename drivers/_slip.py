"""A loyalty slip as one printer prints it: layout for its paper, its code page, its QR."""

from __future__ import annotations

from drivers._codepage import codepage_number
from drivers._config import PrinterConfig
from drivers._escpos import EncodingOptions, encode_blocks
from drivers._receipt import LoyaltySlip, layout_slip


def slip_bytes(slip: LoyaltySlip, config: PrinterConfig) -> bytes:
    """The ESC/POS bytes of a loyalty slip on this printer (layout, code page, QR, cut)."""
    options = EncodingOptions(
        codepage=config.codepage,
        codepage_number=codepage_number(config.model, config.codepage, config.codepage_number),
        qr_native=config.qr_native,
        qr_module_dots=config.qr_module_dots,
    )
    blocks = layout_slip(
        slip, columns=config.line_columns, codepage=config.codepage, cut=config.cut
    )
    return encode_blocks(blocks, options)


def check_slip(config: PrinterConfig) -> LoyaltySlip:
    """A slip that shows whether this printer is set up right: the Cyrillic alphabet on the
    configured code page, the column count as a ruler, a QR code."""
    number = codepage_number(config.model, config.codepage, config.codepage_number)
    ruler = ("1234567890" * 5)[: config.line_columns]
    return LoyaltySlip(
        title="Проверка принтера",
        card_number="0000000000000000",
        earned_points=1,
        balance_points=1234,
        message=(
            f"{config.name}: {config.codepage.upper()}, ESC t {number}\n"
            "АБВГДЕЁЖЗИЙКЛМНОП РСТУФХЦЧШЩЪЫЬЭЮЯ\n"
            "абвгдеёжзийклмноп рстуфхцчшщъыьэюя\n"
            f"«Ёлка» — 100 ₽ №1\n{ruler}"
        ),
        qr="https://kopilka.example/test",
    )
