"""The framer: suffixes, prefixes, idle flush, bounds; never a crash on any bytes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers._framing import Frame, FrameDropped, FrameFault, Framer, Suffix


def payloads(outputs: list[Frame | FrameDropped]) -> list[bytes]:
    return [o.payload for o in outputs if isinstance(o, Frame)]


@pytest.mark.parametrize(
    ("suffix", "ending"),
    [(Suffix.cr, b"\r"), (Suffix.lf, b"\n"), (Suffix.crlf, b"\r\n"), (Suffix.tab, b"\t")],
)
def test_each_suffix_ends_a_frame(suffix: Suffix, ending: bytes) -> None:
    framer = Framer(suffix=suffix)
    out = framer.feed(b"123" + ending + b"45", 0.0) + framer.feed(b"6" + ending, 0.01)
    assert payloads(out) == [b"123", b"456"]


def test_a_crlf_device_on_a_cr_framer_leaves_no_stray_lf() -> None:
    framer = Framer(suffix=Suffix.cr)
    assert payloads(framer.feed(b"111\r\n222\r\n", 0.0)) == [b"111", b"222"]


def test_frame_split_across_reads_byte_by_byte() -> None:
    framer = Framer(suffix=Suffix.crlf)
    out = []
    for i, byte in enumerate(b"2770000000017\r\n"):
        out += framer.feed(bytes([byte]), i * 0.001)
    assert payloads(out) == [b"2770000000017"]


def test_prefix_is_removed_and_noise_before_it_counted() -> None:
    framer = Framer(suffix=Suffix.cr, prefix=b"\x02")
    out = framer.feed(b"\x02123\rjunk\x02456\rnoprefix\r", 0.0)
    assert payloads(out) == [b"123", b"456"]
    assert [o for o in out if isinstance(o, FrameDropped)] == [
        FrameDropped(FrameFault.no_prefix, 4),
        FrameDropped(FrameFault.no_prefix, 8),
    ]


def test_idle_pause_ends_a_frame_when_there_is_no_suffix() -> None:
    framer = Framer(suffix=Suffix.none, idle_flush_s=0.1)
    assert framer.feed(b"2770", 10.0) == []
    assert framer.feed(b"000000017", 10.05) == []
    assert framer.poll(10.1) == []  # 50 ms since the last byte
    assert payloads(framer.poll(10.16)) == [b"2770000000017"]
    assert framer.poll(20.0) == []


def test_idle_pause_drops_a_partial_frame_when_a_suffix_is_expected() -> None:
    framer = Framer(suffix=Suffix.cr, idle_flush_s=0.1)
    framer.feed(b"27700", 1.0)
    assert framer.poll(1.2) == [FrameDropped(FrameFault.partial, 5)]
    assert payloads(framer.feed(b"123\r", 2.0)) == [b"123"]


def test_a_new_read_after_a_pause_flushes_the_old_partial_first() -> None:
    framer = Framer(suffix=Suffix.cr, idle_flush_s=0.1)
    framer.feed(b"garbage", 1.0)
    out = framer.feed(b"123\r", 5.0)
    assert out == [FrameDropped(FrameFault.partial, 7), Frame(b"123")]


def test_oversized_frame_is_dropped_whole_and_the_next_one_reads() -> None:
    framer = Framer(suffix=Suffix.cr, frame_bytes_max=16)
    out = framer.feed(b"x" * 10, 0.0) + framer.feed(b"y" * 100, 0.0) + framer.feed(b"z\r42\r", 0)
    assert out == [FrameDropped(FrameFault.too_long, 111), Frame(b"42")]
    assert framer.buffered_bytes == 0


def test_an_oversized_read_whose_cr_and_lf_part_does_not_swallow_the_next_scan() -> None:
    """A serial line often splits a read between its CR and its LF."""
    framer = Framer(suffix=Suffix.crlf, frame_bytes_max=256)
    out = framer.feed(b"J" * 300 + b"\r", 0.0) + framer.feed(b"\n2770000000017\r\n", 0.01)
    assert out == [FrameDropped(FrameFault.too_long, 300), Frame(b"2770000000017")]
    assert framer.buffered_bytes == 0


def test_a_read_exactly_as_long_as_the_bound_is_read_when_its_cr_and_lf_part() -> None:
    framer = Framer(suffix=Suffix.crlf, frame_bytes_max=13)
    out = framer.feed(b"2770000000017\r", 0.0) + framer.feed(b"\n", 0.01)
    out += framer.feed(b"2770000000024\r\n", 0.02)
    assert out == [Frame(b"2770000000017"), Frame(b"2770000000024")]


def test_a_pause_after_a_cr_drops_the_partial_read_with_its_cr() -> None:
    framer = Framer(suffix=Suffix.crlf, idle_flush_s=0.1)
    framer.feed(b"2770\r", 1.0)
    assert framer.poll(1.2) == [FrameDropped(FrameFault.partial, 5)]
    assert payloads(framer.feed(b"\n123\r\n", 2.0)) == [b"123"]  # a late LF ends nothing


def test_frame_repr_hides_the_payload() -> None:
    assert "6390" not in repr(Frame(b"6390020000000003"))


@settings(max_examples=300, deadline=None)
@given(
    chunks=st.lists(st.binary(max_size=300), max_size=20),
    suffix=st.sampled_from(list(Suffix)),
    prefix=st.sampled_from([b"", b"\x02", b"AB"]),
)
def test_any_bytes_any_chunking_never_crash_and_frames_stay_bounded(
    chunks: list[bytes], suffix: Suffix, prefix: bytes
) -> None:
    framer = Framer(suffix=suffix, prefix=prefix, frame_bytes_max=64, idle_flush_s=0.5)
    total_in = 0
    for i, chunk in enumerate(chunks):
        total_in += len(chunk)
        for output in framer.feed(chunk, i * 0.3):
            if isinstance(output, Frame):
                assert 0 < len(output.payload) <= 64
            assert framer.buffered_bytes <= 64
    for output in framer.poll(1e9):
        assert not isinstance(output, Frame) or len(output.payload) <= 64
    assert framer.buffered_bytes == 0


@given(st.lists(st.from_regex(rb"[0-9A-Z]{1,20}", fullmatch=True), max_size=10), st.data())
def test_frames_survive_any_split_of_the_stream(frames: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(f + b"\r\n" for f in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=5)))
    framer = Framer(suffix=Suffix.crlf)
    out = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        out += framer.feed(stream[start:end], 0.0)
    assert payloads(out) == frames


@given(
    st.lists(
        st.one_of(
            st.from_regex(rb"[0-9A-Z]{1,20}", fullmatch=True),
            st.from_regex(rb"J[0-9A-Z]{20,60}", fullmatch=True),  # past the bound: noise
        ),
        max_size=10,
    ),
    st.data(),
)
def test_only_the_oversized_reads_are_dropped_under_any_split(
    reads: list[bytes], data: st.DataObject
) -> None:
    stream = b"".join(r + b"\r\n" for r in reads)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=5)))
    framer = Framer(suffix=Suffix.crlf, frame_bytes_max=20)
    out = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        out += framer.feed(stream[start:end], 0.0)
    assert out == [
        Frame(r) if len(r) <= 20 else FrameDropped(FrameFault.too_long, len(r)) for r in reads
    ]
