"""The one byte cursor: reads match slicing, short reads raise the configured error, varints
round-trip and are canonical, and each of its three users keeps its own error rules."""

from __future__ import annotations

import functools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshmsg.core.cursor import ByteCursor
from meshmsg.errors import CloseReason, DecodeError, InvalidContactCode, KeystoreError


class Bad(Exception):
    """The error a test cursor raises."""


def cursor(data: bytes, start: int = 0) -> ByteCursor:
    return ByteCursor(data, error=Bad, truncated="short in {what}", start=start)


def leb128(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


@given(st.binary(max_size=64), st.lists(st.integers(0, 12), max_size=12), st.integers(0, 8))
def test_reads_are_slices_until_the_data_runs_out(
    data: bytes, sizes: list[int], start: int
) -> None:
    start = min(start, len(data))
    c, pos = cursor(data, start), start
    for n in sizes:
        if pos + n > len(data):
            with pytest.raises(Bad, match="short in field"):
                c.take(n, "field")
            assert c.pos == pos  # a failed read consumes nothing
            return
        assert c.take(n, "field") == data[pos : pos + n]
        pos += n
        assert c.pos == pos
        assert c.at_end() == (pos == len(data))


@given(st.binary(max_size=16), st.integers(1, 8))
def test_uint_and_u8_are_big_endian_bytes(data: bytes, size: int) -> None:
    c = cursor(data)
    if len(data) < size:
        with pytest.raises(Bad):
            c.uint(size)
        return
    assert c.uint(size) == int.from_bytes(data[:size], "big")
    rest = data[size:]
    assert [c.u8() for _ in rest] == list(rest)
    with pytest.raises(Bad):
        c.u8()


@given(st.integers(0, 2**64), st.binary(max_size=4))
def test_varints_round_trip_and_leave_what_follows(value: int, tail: bytes) -> None:
    c = cursor(leb128(value) + tail)
    assert c.varint(2**64, "n") == value
    assert c.take(len(tail)) == tail
    assert c.at_end()


@given(st.integers(1, 2**32), st.integers(0, 2**32))
def test_a_varint_over_its_maximum_raises_too_large(maximum: int, excess: int) -> None:
    too_large = functools.partial(DecodeError, reason=CloseReason.TOO_LARGE)
    c = ByteCursor(
        leb128(maximum + 1 + excess), error=DecodeError, truncated="t", too_large=too_large
    )
    with pytest.raises(DecodeError) as caught:
        c.varint(maximum, "count")
    assert caught.value.reason is CloseReason.TOO_LARGE


@given(st.integers(0, 2**32))
def test_a_padded_varint_is_refused(value: int) -> None:
    encoded = bytearray(leb128(value))
    encoded[-1] |= 0x80
    encoded.append(0)  # the same value with a redundant zero group
    with pytest.raises(Bad, match="not minimally encoded"):
        cursor(bytes(encoded)).varint(2**64, "n")


def test_trailing_bytes_raise_the_callers_message() -> None:
    c = cursor(b"ab")
    c.take(1)
    with pytest.raises(Bad, match=r"^left over$"):
        c.expect_end("left over")
    c.take(1)
    c.expect_end("left over")  # nothing left: no error


def test_each_user_keeps_its_error_type_and_message() -> None:
    from meshmsg.core import e2ecodec, identity, syncwire

    with pytest.raises(KeystoreError, match=r"^channel state is truncated$"):
        e2ecodec._Reader(b"abc").take(4)
    with pytest.raises(DecodeError, match=r"^sync message truncated in version$"):
        syncwire.message_reader(b"").u8("version")
    with pytest.raises(DecodeError) as caught:
        syncwire.message_reader(leb128(300)).varint(299, "count")
    assert caught.value.reason is CloseReason.TOO_LARGE
    name_of_five_bytes_but_two_given = bytes(identity.PUBLIC_BYTES) + b"\x05ab"
    with pytest.raises(InvalidContactCode, match=r"^contact code is truncated$"):
        identity._parse_extras(name_of_five_bytes_but_two_given)
    with pytest.raises(InvalidContactCode, match="trailing bytes after the address hints"):
        identity._parse_extras(bytes(identity.PUBLIC_BYTES) + b"\x00\x00!")
