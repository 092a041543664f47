"""Stream framing: 2-byte big-endian length prefix; boundaries, rejections, chunking."""

from __future__ import annotations

import pytest

from meshmsg.config import WireLimits
from meshmsg.core.framing import FrameReader, encode_frame
from meshmsg.errors import CloseReason, ConfigError, DecodeError, LocalProtocolError

LIMITS = WireLimits()


def test_encode_frame_prefixes_the_big_endian_length() -> None:
    assert encode_frame(b"abc") == b"\x00\x03abc"
    assert encode_frame(b"x" * 258)[:2] == b"\x01\x02"


def test_encode_frame_accepts_the_maximum() -> None:
    assert encode_frame(b"\xaa" * 65_535)[:3] == b"\xff\xff\xaa"


@pytest.mark.parametrize("size", [0, 65_536])
def test_encode_frame_refuses_empty_and_oversized_payloads(size: int) -> None:
    with pytest.raises(LocalProtocolError, match=f"not {size}"):
        encode_frame(b"x" * size)


def test_encode_frame_honours_a_smaller_configured_limit() -> None:
    limits = WireLimits(max_frame_bytes=100)
    assert len(encode_frame(b"x" * 100, limits)) == 102
    with pytest.raises(LocalProtocolError, match=r"1\.\.100 bytes"):
        encode_frame(b"x" * 101, limits)


def test_one_frame_in_one_chunk() -> None:
    reader = FrameReader(LIMITS)
    assert reader.feed(b"\x00\x03abc") == [b"abc"]
    assert reader.buffered_bytes == 0


def test_many_frames_in_one_chunk_come_out_in_order() -> None:
    reader = FrameReader(LIMITS)
    assert reader.feed(b"\x00\x01a\x00\x02bc\x00\x03def") == [b"a", b"bc", b"def"]


def test_a_frame_split_anywhere_is_reassembled() -> None:
    reader = FrameReader(LIMITS)
    assert reader.feed(b"\x00") == []
    assert reader.feed(b"\x05he") == []
    assert reader.buffered_bytes == 4
    assert reader.feed(b"llo\x00\x01") == [b"hello"]
    assert reader.feed(b"!") == [b"!"]
    assert reader.buffered_bytes == 0


def test_byte_by_byte() -> None:
    reader = FrameReader(LIMITS)
    stream = b"\x00\x02hi\x00\x01!"
    out = [frame for byte in stream for frame in reader.feed(bytes([byte]))]
    assert out == [b"hi", b"!"]


def test_an_empty_chunk_changes_nothing() -> None:
    reader = FrameReader(LIMITS)
    assert reader.feed(b"\x00\x02h") == []
    assert reader.feed(b"") == []
    assert reader.buffered_bytes == 3


def test_the_maximum_frame_is_accepted() -> None:
    reader = FrameReader(LIMITS)
    payload = bytes(range(256)) * 255 + bytes(255)  # 65,535 bytes
    assert reader.feed(b"\xff\xff" + payload) == [payload]


def test_a_frame_over_the_configured_maximum_is_rejected_from_its_prefix() -> None:
    reader = FrameReader(WireLimits(max_frame_bytes=100))
    assert reader.feed(b"\x00\x64" + b"x" * 100) == [b"x" * 100]  # 100: the maximum
    with pytest.raises(DecodeError, match="frame of 101 bytes exceeds") as info:
        reader.feed(b"\x00\x65")  # 101, rejected before any payload arrives
    assert info.value.reason is CloseReason.TOO_LARGE


def test_a_zero_length_frame_is_rejected() -> None:
    reader = FrameReader(LIMITS)
    with pytest.raises(DecodeError, match="zero-length frame") as info:
        reader.feed(b"\x00\x01a\x00\x00")
    assert info.value.reason is CloseReason.MALFORMED


def test_frames_before_an_error_in_the_same_chunk_are_not_returned() -> None:
    # The link closes on the error; handing out earlier frames would act on a dead link.
    reader = FrameReader(LIMITS)
    with pytest.raises(DecodeError):
        reader.feed(b"\x00\x01a\x00\x00")
    assert reader.buffered_bytes == 0


def test_the_buffer_may_fill_exactly_to_its_limit() -> None:
    limits = WireLimits(max_frame_bytes=100, max_receive_buffer_bytes=110)
    reader = FrameReader(limits)
    assert reader.feed(b"\x00\x64" + b"x" * 99) == []  # 101 bytes buffered
    assert reader.feed(b"x" + b"\x00\x64" + b"y" * 6) == [b"x" * 100]  # 110 in, at the limit
    assert reader.buffered_bytes == 8


def test_the_buffer_limit_plus_one_is_rejected() -> None:
    limits = WireLimits(max_frame_bytes=100, max_receive_buffer_bytes=110)
    reader = FrameReader(limits)
    reader.feed(b"\x00\x64" + b"x" * 99)
    with pytest.raises(DecodeError, match="would hold 111 bytes") as info:
        reader.feed(b"x" * 10)
    assert info.value.reason is CloseReason.TOO_LARGE


def test_default_limits_admit_a_full_read_after_a_maximal_partial_frame() -> None:
    # The documented driver contract: reads of 65,536 bytes never hit the buffer limit.
    reader = FrameReader(LIMITS)
    assert reader.feed(b"\xff\xff" + b"a" * 65_534) == []  # the largest incomplete tail
    assert reader.buffered_bytes == 65_536
    frames = reader.feed(b"a" + b"\x00\x01b" * 21_845)  # 1 + 65,535 = 65,536 bytes
    assert len(frames) == 21_846
    assert frames[0] == b"a" * 65_535


def test_a_broken_reader_refuses_more_input() -> None:
    reader = FrameReader(LIMITS)
    with pytest.raises(DecodeError):
        reader.feed(b"\x00\x00")
    with pytest.raises(LocalProtocolError, match="after a framing error"):
        reader.feed(b"\x00\x01a")


@pytest.mark.parametrize(
    "limits",
    [
        WireLimits(max_frame_bytes=0),
        WireLimits(max_frame_bytes=65_536, max_receive_buffer_bytes=200_000),
        WireLimits(max_frame_bytes=100, max_receive_buffer_bytes=101),
    ],
)
def test_impossible_limits_are_a_config_error(limits: WireLimits) -> None:
    with pytest.raises(ConfigError):
        FrameReader(limits)


def test_large_input_in_big_chunks() -> None:
    # 64 KiB reads of a stream of 4 MiB in 1,000-byte frames: every frame comes out intact.
    payloads = [bytes([i % 251]) * 1_000 for i in range(4_096)]
    stream = b"".join(b"\x03\xe8" + p for p in payloads)
    reader = FrameReader(LIMITS)
    out: list[bytes] = []
    for start in range(0, len(stream), 65_536):
        out.extend(reader.feed(stream[start : start + 65_536]))
    assert out == payloads
    assert reader.buffered_bytes == 0
