"""The receipt viewer reads ESC/POS back: code page, bold, alignment, cut, QR; any bytes."""

from __future__ import annotations

from escpos.printer import Dummy
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers import LoyaltySlip, NetworkTransport, PrinterConfig, slip_bytes, view_escpos
from drivers._receipt import Align

CONFIG = PrinterConfig(name="p", transport=NetworkTransport(host="127.0.0.1"), paper_mm=80)
SLIP = LoyaltySlip(
    card_number="2770000000017", earned_points=5, balance_points=99, qr="https://k.example/q/1"
)


def test_our_slip_reads_back() -> None:
    view = view_escpos(slip_bytes(SLIP, CONFIG))
    title = view.lines[0]
    assert (title.text, title.align, title.bold, title.tall) == (
        "Программа лояльности",
        Align.center,
        True,
        True,
    )
    balance = next(line for line in view.lines if line.text.startswith("Баланс"))
    assert balance.bold
    assert balance.text.endswith("99")
    assert view.qr_codes == ["https://k.example/q/1"]
    assert view.cuts == 1
    assert view.codepage_numbers == [17, 17]
    assert view.unknown_commands == 0
    rendered = view.render(48)
    assert "[QR: https://k.example/q/1]" in rendered
    assert "✂" in rendered


def test_python_escpos_output_reads_back_too() -> None:
    printer = Dummy()
    printer._raw(b"\x1b@\x1bt\x11")
    printer.set(align="center", bold=True)
    printer._raw("Привет\n".encode("cp866"))
    printer.set(align="right", bold=False)
    printer._raw(b"42\n")
    printer.qr("KQ123", native=True)
    printer.cut()
    view = view_escpos(printer.output)
    texts = [(line.text, line.align, line.bold) for line in view.lines if line.kind == "text"]
    assert ("Привет", Align.center, True) in texts
    assert ("42", Align.right, False) in texts
    assert view.qr_codes == ["KQ123"]
    assert view.cuts == 1


def test_a_reset_drops_a_half_sent_line() -> None:
    view = view_escpos(b"\x1b@\x1bt\x11half a li" + b"\x1b@\x1bt\x11" + "Целая\n".encode("cp866"))
    assert view.texts == ["Целая"]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_view_without_error(data: bytes) -> None:
    view = view_escpos(data)
    view.render(32)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from([b"\x1b", b"\x1d", b"(k", b"\x10\x04", b"\n", b"t", b"V"])))
def test_command_fragments_view_without_error(parts: list[bytes]) -> None:
    view_escpos(b"".join(parts))
