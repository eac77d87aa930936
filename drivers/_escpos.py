"""Receipt lines → ESC/POS bytes. Pure and deterministic: the same lines give the same bytes.

The bytes are written here rather than through python-escpos's printer class, so that a
golden test can pin them. Every slip starts with a reset (`ESC @`) and the code-page
selection (`ESC t n`); the selection is repeated after the font is set (`ESC M 0`), since some
firmwares fall back to their default table on a reset or a font change.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers._codepage import encode_text
from drivers._receipt import Align, Block, Cut, Feed, Qr, Text

ESC = b"\x1b"
GS = b"\x1d"
DLE = b"\x10"
LF = b"\n"

RESET = ESC + b"@"
FONT_A = ESC + b"M\x00"
BOLD_ON, BOLD_OFF = ESC + b"E\x01", ESC + b"E\x00"
SIZE_NORMAL, SIZE_TALL = GS + b"!\x00", GS + b"!\x01"
PARTIAL_CUT = GS + b"V\x01"
STATUS_PAPER = DLE + b"\x04\x04"  # DLE EOT 4: roll paper sensor status
ALIGN = {align: ESC + b"a" + bytes([align.value]) for align in Align}
QR_EC_LEVEL_M = 0x31
qr_data_bytes_max = 7089


def select_codepage(number: int) -> bytes:
    if not 0 <= number <= 255:
        raise ValueError("ESC t takes 0…255")
    return ESC + b"t" + bytes([number])


def feed(lines: int) -> bytes:
    return ESC + b"d" + bytes([max(0, min(lines, 255))])


def qr_code(data: str, *, module_dots: int = 6) -> bytes:
    """`GS ( k` function 165/167/169/180/181: model 2, module size, EC level M, store, print."""
    payload = data.encode("ascii", errors="replace")
    if not payload or len(payload) > qr_data_bytes_max:
        raise ValueError("a QR code holds 1 to 7089 bytes")
    if not 1 <= module_dots <= 16:
        raise ValueError("a QR module is 1 to 16 dots")

    def function(fn: int, body: bytes) -> bytes:
        size = len(body) + 2
        return GS + b"(k" + bytes([size & 0xFF, size >> 8, 0x31, fn]) + body

    return (
        function(0x41, b"\x32\x00")  # model 2
        + function(0x43, bytes([module_dots]))
        + function(0x45, bytes([QR_EC_LEVEL_M]))
        + function(0x50, b"\x30" + payload)  # store the data
        + function(0x51, b"\x30")  # print it
    )


@dataclass(frozen=True, slots=True)
class EncodingOptions:
    codepage: str = "cp866"
    codepage_number: int = 17
    qr_native: bool = True
    qr_module_dots: int = 6


def encode_blocks(blocks: list[Block], options: EncodingOptions) -> bytes:
    """The whole slip as the bytes to send to the printer."""
    select = select_codepage(options.codepage_number)
    out = bytearray(RESET + select + FONT_A + select)
    align, bold, tall = Align.left, False, False
    for block in blocks:
        if isinstance(block, Text):
            if block.align != align:
                out += ALIGN[block.align]
                align = block.align
            if block.bold != bold:
                out += BOLD_ON if block.bold else BOLD_OFF
                bold = block.bold
            if block.tall != tall:
                out += SIZE_TALL if block.tall else SIZE_NORMAL
                tall = block.tall
            out += encode_text(block.text, options.codepage) + LF
        elif isinstance(block, Qr):
            out += ALIGN[Align.center]
            align = Align.center
            if options.qr_native:
                out += qr_code(block.data, module_dots=options.qr_module_dots) + LF
            else:
                out += encode_text(block.data, options.codepage) + LF
        elif isinstance(block, Feed):
            out += feed(block.lines)
        elif isinstance(block, Cut):
            out += PARTIAL_CUT
    return bytes(out)
