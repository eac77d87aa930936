"""Cyrillic on a receipt printer: which `ESC t n` selects the code page, and what it can print.

Printers number their character tables differently. The table below is written from the
vendors' command references (Epson's ESC/POS reference: `ESC t 17` = PC866 "Cyrillic #2",
`ESC t 46` = WPC1251); a printer whose family is not listed, or whose firmware numbers the
tables its own way, sets `codepage_number` in its config.

Text is normalised to what the page holds before it is encoded: the rouble sign becomes
"руб.", typographic quotes and dashes become ASCII ones, accents are dropped where the plain
letter exists, control characters go (no text may smuggle an ESC sequence onto the printer),
and whatever is left that the page cannot print becomes "?".
"""

from __future__ import annotations

import functools
import unicodedata

# ESC t n of each code page, by printer family.
CODEPAGE_NUMBERS: dict[str, dict[str, int]] = {
    "epson": {"cp866": 17, "cp1251": 46},  # TM-T20, TM-T88, TM-m30 …
    "seiko": {"cp866": 17, "cp1251": 46},  # RP-F10
    "citizen": {"cp866": 17},  # CT-S651
    "sunmi": {"cp866": 17},
    "zjiang": {"cp866": 59, "cp1251": 73},  # POS-5890, Netum NT-5890K, PBM P822D: 58 mm clones
    "rongta": {"cp866": 7, "cp1251": 6},  # RP326 (sold as ATOL RP-326)
    "wincor": {"cp866": 7},  # TH230
    "star": {"cp866": 10, "cp1251": 34},  # TSP600, TUP500 in ESC/POS emulation
    "aures": {"cp866": 11, "cp1251": 12},  # ODP/OCD
}

_REPLACEMENTS = {
    "₽": "руб.",
    "«": '"',
    "»": '"',
    "„": '"',
    "“": '"',
    "”": '"',
    "‟": '"',
    "‘": "'",
    "’": "'",
    "‚": "'",
    "‛": "'",
    "‹": "<",
    "›": ">",
    "‐": "-",
    "‑": "-",
    "‒": "-",
    "–": "-",
    "—": "-",
    "―": "-",
    "−": "-",
    "…": "...",
    "•": "*",
    "×": "x",
    "€": "EUR",
    "\u00a0": " ",
    "\u202f": " ",
    "\u2009": " ",
    "\t": " ",
}


class UnknownCodepage(ValueError):
    """A printer family and code page with no known `ESC t n`: set `codepage_number`."""


def codepage_number(model: str, codepage: str, override: int | None = None) -> int:
    """The `n` of `ESC t n` that selects `codepage` on printers of this family."""
    if override is not None:
        return override
    try:
        return CODEPAGE_NUMBERS[model][codepage]
    except KeyError:
        raise UnknownCodepage(
            f"no known ESC t number for {codepage} on '{model}' printers; "
            f"set codepage_number from the printer's manual"
        ) from None


def normalize_text(text: str, codepage: str = "cp866") -> str:
    """`text` made printable on `codepage`, one line: nothing the page lacks survives."""
    return unicodedata.normalize("NFC", text).translate(_table(codepage))


class _Table(dict[int, str]):
    """What each character becomes on a code page, filled in as characters are met, for
    `str.translate` (a C loop over the text once the characters are known)."""

    def __init__(self, codepage: str) -> None:
        super().__init__()
        self.codepage = codepage

    def __missing__(self, ordinal: int) -> str:
        value = _printable(chr(ordinal), self.codepage)
        if len(self) < translated_chars_max:
            self[ordinal] = value
        return value


translated_chars_max = 4096


@functools.lru_cache(maxsize=16)
def _table(codepage: str) -> _Table:
    return _Table(codepage)


@functools.lru_cache(maxsize=4096)
def _printable(char: str, codepage: str) -> str:
    """What one character becomes on `codepage` (cached: receipts repeat their letters)."""
    char = _REPLACEMENTS.get(char, char)
    if len(char) > 1 or _encodable(char, codepage):
        return char
    if unicodedata.category(char)[0] == "C" or char in "\r\n":
        return ""  # control characters: never sent to the printer
    plain = "".join(c for c in unicodedata.normalize("NFKD", char) if _encodable(c, codepage))
    return plain or "?"


def _encodable(char: str, codepage: str) -> bool:
    if unicodedata.category(char)[0] == "C":
        return False
    try:
        char.encode(codepage)
    except UnicodeEncodeError:
        return False
    return True


def encode_text(text: str, codepage: str = "cp866") -> bytes:
    """Normalised text as the printer's bytes."""
    return normalize_text(text, codepage).encode(codepage)
