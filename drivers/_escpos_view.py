"""ESC/POS bytes → what the paper would show. Pure; never fails on any bytes.

Understands what slips use (reset, code page, alignment, bold, character size, font, feeds,
cuts, QR codes, status queries) and skips the parameters of other common commands, so that
tests can read a receipt back and the main job can show one in a terminal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from drivers._codepage import CODEPAGE_NUMBERS
from drivers._receipt import Align

view_lines_max = 10_000
_ALIGNS = {0: Align.left, 1: Align.center, 2: Align.right, 48: Align.left, 49: Align.center}
_ALIGNS |= {50: Align.right}
# ESC commands whose parameter byte count is fixed (the command byte → parameter bytes).
_ESC_PARAMS = {
    ord(c): n for c, n in {"!": 1, "-": 1, "2": 0, "3": 1, "J": 1, "G": 1, "V": 1, "{": 1}.items()
}
_ESC_PARAMS |= {ord(c): n for c, n in {"p": 3, "c": 2, "R": 1, "U": 1, " ": 1, "%": 1}.items()}
_GS_PARAMS = {ord(c): n for c, n in {"B": 1, "H": 1, "f": 1, "h": 1, "w": 1, "L": 2}.items()}
_GS_PARAMS |= {ord(c): n for c, n in {"W": 2, "b": 1, "a": 1, "r": 1, "I": 1}.items()}


@dataclass(frozen=True, slots=True)
class ViewLine:
    text: str
    align: Align = Align.left
    bold: bool = False
    tall: bool = False
    kind: str = "text"  # text | qr | cut


@dataclass(slots=True)
class ReceiptView:
    lines: list[ViewLine] = field(default_factory=list)
    codepage_numbers: list[int] = field(default_factory=list)
    cuts: int = 0
    unknown_commands: int = 0

    @property
    def texts(self) -> list[str]:
        return [line.text for line in self.lines if line.kind == "text"]

    @property
    def qr_codes(self) -> list[str]:
        return [line.text for line in self.lines if line.kind == "qr"]

    def render(self, columns: int = 48) -> str:
        """The receipt as plain text, aligned within `columns`."""
        out: list[str] = []
        for line in self.lines:
            if line.kind == "cut":
                out.append("✂ " + "- " * ((columns - 2) // 2))
                continue
            text = f"[QR: {line.text}]" if line.kind == "qr" else line.text
            if line.align == Align.center:
                text = text.center(columns).rstrip()
            elif line.align == Align.right:
                text = text.rjust(columns)
            out.append(text)
        return "\n".join(out)


class _State:
    def __init__(self, codepages: dict[int, str]) -> None:
        self.codepages = codepages
        self.reset()

    def reset(self) -> None:
        self.codepage = "cp437"
        self.align = Align.left
        self.bold = False
        self.tall = False


def view_escpos(data: bytes, *, model: str = "epson") -> ReceiptView:
    """Decode ESC/POS `data` as a printer of the `model` family would print it."""
    codepages = {n: name for name, n in CODEPAGE_NUMBERS.get(model, {}).items()}
    state = _State(codepages)
    view = ReceiptView()
    text = bytearray()
    qr_stored = ""

    def end_line() -> None:
        if len(view.lines) < view_lines_max:
            decoded = bytes(text).decode(state.codepage, errors="replace")
            view.lines.append(ViewLine(decoded, state.align, state.bold, state.tall))
        text.clear()

    pos = 0
    while pos < len(data):
        byte = data[pos]
        pos += 1
        if byte == 0x0A:
            end_line()
        elif byte == 0x1B and pos < len(data):
            command = data[pos]
            pos += 1
            if command == ord("@"):
                state.reset()
                text.clear()  # a reset clears the print buffer: a half-sent line is lost
            elif command == ord("t") and pos < len(data):
                view.codepage_numbers.append(data[pos])
                state.codepage = codepages.get(data[pos], "cp437")
                pos += 1
            elif command == ord("a") and pos < len(data):
                state.align = _ALIGNS.get(data[pos], state.align)
                pos += 1
            elif command == ord("E") and pos < len(data):
                state.bold = bool(data[pos] & 1)
                pos += 1
            elif command == ord("M") and pos < len(data):
                pos += 1
            elif command == ord("d") and pos < len(data):
                if text:
                    end_line()
                for _ in range(min(data[pos], 32)):
                    end_line()
                pos += 1
            elif command in _ESC_PARAMS:
                pos += _ESC_PARAMS[command]
            else:
                view.unknown_commands += 1
        elif byte == 0x1D and pos < len(data):
            command = data[pos]
            pos += 1
            if command == ord("!") and pos < len(data):
                state.tall = bool(data[pos] & 0x0F)
                pos += 1
            elif command == ord("V") and pos < len(data):
                function_b = data[pos] in (65, 66, 97, 98, 103, 104)
                pos += 2 if function_b else 1
                if text:
                    end_line()
                view.cuts += 1
                if len(view.lines) < view_lines_max:
                    view.lines.append(ViewLine("", kind="cut"))
            elif command == ord("(") and pos + 2 < len(data):
                size = data[pos + 1] | data[pos + 2] << 8
                body = data[pos + 3 : pos + 3 + size]
                pos += 3 + size
                if data[pos - size - 3] == ord("k") and len(body) >= 2 and body[0] == 0x31:
                    if body[1] == 0x50:
                        qr_stored = body[3:].decode("utf-8", errors="replace")
                    elif body[1] == 0x51 and len(view.lines) < view_lines_max:
                        view.lines.append(ViewLine(qr_stored, Align.center, kind="qr"))
            elif command in _GS_PARAMS:
                pos += _GS_PARAMS[command]
            else:
                view.unknown_commands += 1
        elif byte == 0x10 and pos < len(data) and data[pos] == 0x04:
            pos += 2  # DLE EOT n: a status query, nothing printed
        elif byte >= 0x20 and len(text) < 4096:
            text.append(byte)
        # other control bytes (CR, NUL, …) print nothing
    if text:
        end_line()
    return view
