"""Golden bytes: the exact ESC t selection and CP866 text of a Russian loyalty block.

The expected bytes come from the printers' manuals, not from our encoder or Python's codec:
the ESC/POS commands as the Epson command reference spells them, and the PC866 character
table as the manuals print it, in rows of sixteen.
"""

from __future__ import annotations

import json
import unicodedata
from importlib import resources

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers import (
    CODEPAGE_NUMBERS,
    LoyaltySlip,
    NetworkTransport,
    PrinterConfig,
    UnknownCodepage,
    normalize_text,
    slip_bytes,
    view_escpos,
)

# PC866 "Cyrillic #2" (Epson ESC t 17), from the character code table in the manual.
PC866_ROWS = {
    0x80: "АБВГДЕЖЗИЙКЛМНОП",
    0x90: "РСТУФХЦЧШЩЪЫЬЭЮЯ",
    0xA0: "абвгдежзийклмноп",
    0xE0: "рстуфхцчшщъыьэюя",
    0xF0: "Ёё",
    0xFC: "№",
}
PC866 = {char: row + i for row, chars in PC866_ROWS.items() for i, char in enumerate(chars)}

ESC_AT = bytes.fromhex("1b40")  # ESC @   initialise printer
ESC_T_17 = bytes.fromhex("1b7411")  # ESC t 17  PC866
ESC_M_0 = bytes.fromhex("1b4d00")  # ESC M 0   font A
ESC_A = {0: bytes.fromhex("1b6100"), 1: bytes.fromhex("1b6101")}  # ESC a n  justification
ESC_E = {1: bytes.fromhex("1b4501"), 0: bytes.fromhex("1b4500")}  # ESC E n  emphasis
GS_EXCL = {1: bytes.fromhex("1d2101"), 0: bytes.fromhex("1d2100")}  # GS ! n  character size
ESC_D_3 = bytes.fromhex("1b6403")  # ESC d 3   print and feed 3 lines
GS_V_1 = bytes.fromhex("1d5601")  # GS V 1    partial cut


def pc866(text: str) -> bytes:
    return bytes(PC866[c] if c in PC866 else ord(c) for c in text)


def test_the_table_agrees_with_a_few_letters_every_manual_shows() -> None:
    assert (PC866["А"], PC866["а"], PC866["р"], PC866["я"], PC866["Ё"]) == (
        0x80,
        0xA0,
        0xE0,
        0xEF,
        0xF0,
    )


def config(**changes: object) -> PrinterConfig:
    fields: dict[str, object] = {
        "name": "front",
        "transport": NetworkTransport(host="127.0.0.1"),
        "paper_mm": 58,
    }
    return PrinterConfig.model_validate(fields | changes)


SLIP = LoyaltySlip(
    title="Копилка",
    card_number="2770000000017",
    earned_points=120,
    balance_points=1234,
    message="Спасибо!",
)


def test_golden_bytes_of_a_russian_loyalty_block_on_58_mm() -> None:
    def pair(label: str, value: str) -> bytes:
        return pc866(label + " " * (32 - len(label) - len(value)) + value) + b"\n"

    expected = (
        ESC_AT + ESC_T_17 + ESC_M_0 + ESC_T_17
        + ESC_A[1] + ESC_E[1] + GS_EXCL[1] + pc866("Копилка") + b"\n"
        + ESC_A[0] + ESC_E[0] + GS_EXCL[0] + b"-" * 32 + b"\n"
        + pair("Карта", "**** 0017")
        + pair("Начислено баллов", "+120")
        + ESC_E[1] + pair("Баланс", "1 234")
        + ESC_E[0] + b"-" * 32 + b"\n"
        + ESC_A[1] + pc866("Спасибо!") + b"\n"
        + ESC_D_3 + GS_V_1
    )  # fmt: skip
    assert slip_bytes(SLIP, config()) == expected
    assert pc866("Карта") == bytes.fromhex("8aa0e0e2a0")
    assert pc866("Баланс") == bytes.fromhex("81a0aba0ade1")


@pytest.mark.parametrize(
    ("changes", "selection"),
    [
        ({}, bytes.fromhex("1b7411")),  # Epson: 17
        ({"model": "rongta"}, bytes.fromhex("1b7407")),  # Rongta RP326: 7
        ({"model": "zjiang"}, bytes.fromhex("1b743b")),  # POS-5890 clones: 59
        ({"model": "star"}, bytes.fromhex("1b740a")),  # Star, ESC/POS emulation: 10
        ({"model": "no-such-vendor", "codepage_number": 42}, bytes.fromhex("1b742a")),
    ],
)
def test_code_page_selection_by_printer_family(
    changes: dict[str, object], selection: bytes
) -> None:
    data = slip_bytes(SLIP, config(**changes))
    assert data.startswith(ESC_AT + selection + ESC_M_0 + selection)
    assert pc866("Баланс") in data


def test_cp1251_on_epson_is_esc_t_46_with_windows_bytes() -> None:
    data = slip_bytes(SLIP, config(codepage="cp1251"))
    assert data.startswith(ESC_AT + bytes.fromhex("1b742e"))
    assert bytes.fromhex("c1e0ebe0edf1") in data  # "Баланс" in Windows-1251


def test_unknown_family_without_a_number_is_refused_at_start() -> None:
    with pytest.raises(UnknownCodepage, match="codepage_number"):
        slip_bytes(SLIP, config(model="no-such-vendor"))


PROFILE_OF_FAMILY = {
    "epson": "TM-T88V",
    "seiko": "RP-F10-80mm",
    "citizen": "CT-S651",
    "sunmi": "Sunmi-V2",
    "zjiang": "POS-5890",
    "rongta": "RP326",
    "wincor": "TH230",
    "star": "TSP600",
    "aures": "OCD-300",
}


@pytest.mark.parametrize("family", sorted(CODEPAGE_NUMBERS))
def test_our_table_agrees_with_the_escpos_printer_database(family: str) -> None:
    capabilities = json.loads(
        resources.files("escpos").joinpath("capabilities.json").read_text("utf-8")
    )
    pages = capabilities["profiles"][PROFILE_OF_FAMILY[family]]["codePages"]
    for codepage, number in CODEPAGE_NUMBERS[family].items():
        assert pages[str(number)] == codepage.upper()


@pytest.mark.parametrize(
    ("text", "printable"),
    [
        ("1 500 ₽", "1 500 руб."),
        ("«Золото» — „лучший“ ‘выбор’", '"Золото" - "лучший" \'выбор\''),
        ("Ёлка… №5 – 10−2", "Ёлка... №5 - 10-2"),
        ("café\u00a0crème", "cafe creme"),
        ("и\u0306", "й"),  # decomposed й is composed first
        ("\x1b@evil\x1dV\x00", "@evilV"),  # no control byte reaches the printer
        ("smile 😀", "smile ?"),
    ],
)
def test_text_is_normalised_to_what_cp866_prints(text: str, printable: str) -> None:
    assert normalize_text(text) == printable
    printable.encode("cp866")


def test_a_rouble_sign_in_a_message_prints_as_rub() -> None:
    slip = LoyaltySlip(message="Скидка 100 ₽ на кофе")
    data = slip_bytes(slip, config())
    assert pc866("Скидка 100 руб. на кофе") in data
    assert "Скидка 100 руб. на кофе" in view_escpos(data).texts


@given(
    text=st.text(
        alphabet=st.sampled_from("Чек №12 абвЁё«»—…₽×\u00a0\t\r\néàÅ€☕\x1b\u0301 -Ab9")
        | st.characters(),
        max_size=40,
    ),
    codepage=st.sampled_from(["cp866", "cp1251"]),
)
def test_text_that_prints_as_it_is_comes_back_unchanged_and_the_rest_as_before(
    text: str, codepage: str
) -> None:
    """Normalising skips the character-by-character walk only when it would change nothing."""
    from drivers._codepage import _printable

    walked = "".join(_printable(char, codepage) for char in unicodedata.normalize("NFC", text))
    assert normalize_text(text, codepage) == walked
    walked.encode(codepage)
