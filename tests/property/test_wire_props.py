"""Properties of the strict codec and the framer.

Records are generated from their field specs, for every record class in
:mod:`meshmsg.core.records` (found by scanning the module) plus the test samples that use every
spec: a record added to the table is covered without touching this file.
"""

from __future__ import annotations

import inspect
from typing import cast

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

import meshmsg.core.records
import meshmsg.core.wire as wire_module
from meshmsg.config import WireLimits
from meshmsg.core.framing import FrameReader
from meshmsg.core.records import Ping
from meshmsg.core.wire import (
    UINT64_MAX,
    Bool,
    Bytes,
    FieldSpec,
    Int,
    ListOf,
    Nested,
    Optional,
    Record,
    RecordRegistry,
    Text,
    UInt,
    decode_records,
    encode_record,
    encode_records,
    schema_of,
)
from meshmsg.core.wirefast import read_frame
from meshmsg.errors import DecodeError, LocalProtocolError
from tests.core.wire_samples import SAMPLE_RECORDS

LIMITS = WireLimits()


def table_records() -> list[type[Record]]:
    """Every @record class defined in meshmsg.core.records."""
    found: list[type[Record]] = []
    for _, cls in inspect.getmembers(meshmsg.core.records, inspect.isclass):
        if cls.__module__ != meshmsg.core.records.__name__:
            continue
        try:
            if schema_of(cls).type_code is not None:
                found.append(cast("type[Record]", cls))
        except LocalProtocolError:
            continue
    return found


def test_the_table_has_the_link_records_and_no_code_is_used_twice() -> None:
    table = RecordRegistry(table_records())  # raises on a duplicate type code
    assert Ping in table
    assert len(table) >= 5


REGISTRY = RecordRegistry(table_records()).extend(SAMPLE_RECORDS)


def truncate_utf8(text: str, max_bytes: int) -> str:
    return text.encode()[:max_bytes].decode("utf-8", "ignore")


def strategy_for(spec: FieldSpec[object]) -> st.SearchStrategy[object]:
    """Values valid under ``spec``; sizes capped so each example stays small and fast."""
    match spec:
        case UInt(max=high):
            return st.integers(0, high)
        case Int(min=low, max=high):
            return st.integers(low, high)
        case Bool():
            return st.booleans()
        case Bytes(min_len=low, max_len=high):
            return st.binary(min_size=low, max_size=min(high, max(low, 128)))
        case Text(max_bytes=limit):
            return st.text(max_size=min(limit, 128)).map(lambda s: truncate_utf8(s, limit))
        case ListOf(item=item, max_items=limit):
            return st.lists(strategy_for(item), max_size=min(limit, 8)).map(tuple)
        case Optional(inner=inner):
            return st.none() | strategy_for(inner)
        case Nested(record=cls):
            return record_strategy(cls)
    raise AssertionError(f"no strategy for {spec!r}: add a case for the new spec")


def record_strategy(cls: type[object]) -> st.SearchStrategy[object]:
    schema = schema_of(cls)
    fields = {
        name: strategy_for(spec) for name, spec in zip(schema.names, schema.specs, strict=True)
    }
    return st.builds(cls, **fields)


any_record = cast(
    "st.SearchStrategy[Record]", st.one_of([record_strategy(cls) for cls in REGISTRY])
)


@given(any_record)
def test_decode_inverts_encode(rec: Record) -> None:
    assert decode_records(encode_record(rec), REGISTRY, LIMITS) == [rec]


@given(st.lists(any_record, min_size=1, max_size=12))
def test_frames_round_trip_and_lengths_add_up(records: list[Record]) -> None:
    data = encode_records(records)
    assert len(data) == sum(len(encode_record(r)) for r in records)
    assert decode_records(data, REGISTRY, LIMITS) == records


def assert_accepted_records_are_canonical(data: bytes, records: list[Record]) -> None:
    """Whatever decodes re-encodes to the exact bytes it came from, in order."""
    position = 0
    for rec in records:
        encoded = encode_record(rec)
        found = data.find(encoded, position)
        assert found >= 0
        position = found + len(encoded)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_decode_error(data: bytes) -> None:
    try:
        records = decode_records(data, REGISTRY, LIMITS)
    except DecodeError:
        return
    assert_accepted_records_are_canonical(data, records)


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    data = bytearray(encode_records(draw(st.lists(any_record, min_size=1, max_size=4))))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        match draw(st.sampled_from(["flip", "insert", "delete", "truncate"])):
            case "flip" if at < len(data):
                data[at] ^= 1 << draw(st.integers(0, 7))
            case "insert":
                data.insert(at, draw(st.integers(0, 255)))
            case "delete" if at < len(data):
                del data[at]
            case _:
                del data[at:]
    return bytes(data)


@given(mutated_frames())
def test_damaged_frames_raise_only_decode_error(data: bytes) -> None:
    try:
        records = decode_records(data, REGISTRY, LIMITS)
    except DecodeError:
        return
    assert_accepted_records_are_canonical(data, records)


# --- The fast paths agree with the reference (cbor2 and the field specs) ------------------------


@given(any_record)
def test_the_encoder_writes_what_cbor2_writes(rec: Record) -> None:
    wire_form = schema_of(type(rec)).to_wire(rec, with_code=True)
    assert encode_record(rec) == cbor2.dumps(wire_form)


def heads(data: bytes) -> list[tuple[int, int, int]]:
    """(offset, major type, argument) of every head in a frame of our subset (RFC 8949 §3)."""
    found: list[tuple[int, int, int]] = []

    def item(pos: int) -> int:
        major, info = data[pos] >> 5, data[pos] & 0x1F
        if major == 7:  # false, true, null: no argument
            return pos + 1
        width = 0 if info < 24 else 1 << (info - 24)
        argument = info if width == 0 else int.from_bytes(data[pos + 1 : pos + 1 + width])
        found.append((pos, major, argument))
        pos += 1 + width
        if major in (2, 3):
            return pos + argument
        for _ in range(argument if major == 4 else 0):
            pos = item(pos)
        return pos

    pos = 0
    while pos < len(data):
        pos = item(pos)
    return found


@st.composite
def widened_heads(draw: st.DrawFn) -> bytes:
    """A valid frame with one head (integer, length, count or type code) written too wide."""
    data = encode_records(draw(st.lists(any_record, min_size=1, max_size=4)))
    widenable = [h for h in heads(data) if h[2] < 2**32]  # an 8-byte argument is widest
    offset, major, argument = draw(st.sampled_from(widenable))
    shortest = cbor_head(major, argument)
    width = draw(st.sampled_from([w for w in (1, 2, 4, 8) if 1 + w > len(shortest)]))
    return data[:offset] + cbor_head(major, argument, width) + data[offset + len(shortest) :]


LIMITS_TO_TRY = [
    LIMITS,
    WireLimits(max_records_per_frame=2),
    WireLimits(max_container_items=3),
    WireLimits(max_string_bytes=8),
    WireLimits(max_cbor_depth=1),
    WireLimits(max_cbor_depth=2),
]


def assert_fast_agrees_with_strict(data: bytes, limits: WireLimits) -> list[Record] | None:
    """If the fast decoder accepts ``data``, the strict one accepts it too, with equal records."""
    fast = read_frame(data, REGISTRY._fast, limits)
    if fast is None or not data or len(data) > limits.max_plaintext_bytes:
        return None  # decode_records checks these two before either decoder runs
    assert wire_module._decode_strict(data, REGISTRY, limits) == fast
    return cast("list[Record]", fast)


@given(st.lists(any_record, min_size=1, max_size=6), st.sampled_from(LIMITS_TO_TRY))
def test_fast_decoder_takes_valid_frames_and_agrees(
    records: list[Record], limits: WireLimits
) -> None:
    data = encode_records(records)
    decoded = assert_fast_agrees_with_strict(data, limits)
    if limits == LIMITS:  # the common case must not fall back, or the speed is lost
        assert decoded == records


@given(mutated_frames() | st.binary(max_size=200), st.sampled_from(LIMITS_TO_TRY))
def test_fast_decoder_accepts_only_what_the_strict_one_accepts(
    data: bytes, limits: WireLimits
) -> None:
    assert_fast_agrees_with_strict(data, limits)


@given(widened_heads())
def test_both_decoders_refuse_a_head_that_is_not_the_shortest(data: bytes) -> None:
    assert read_frame(data, REGISTRY._fast, LIMITS) is None
    with pytest.raises(DecodeError):
        decode_records(data, REGISTRY, LIMITS)


@pytest.mark.parametrize(
    "frame",
    [
        "821871 80 05",  # Wrapper's nested Ping with no field, its nonce after it: still refused
        "821871 82 05 05",  # the nested Ping with one field too many
    ],
)
def test_both_decoders_refuse_a_nested_record_with_the_wrong_field_count(frame: str) -> None:
    data = bytes.fromhex(frame)
    assert read_frame(data, REGISTRY._fast, LIMITS) is None
    with pytest.raises(DecodeError):
        decode_records(data, REGISTRY, LIMITS)


def cbor_head(major: int, argument: int, extra_bytes: int | None = None) -> bytes:
    """A CBOR head written from RFC 8949 §3; ``extra_bytes`` forces a (longer) argument width."""
    if extra_bytes is None:
        extra_bytes = next(n for n in (0, 1, 2, 4, 8) if argument < (24 if n == 0 else 256**n))
    if extra_bytes == 0:
        return bytes([major << 5 | argument])
    info = {1: 24, 2: 25, 4: 26, 8: 27}[extra_bytes]
    return bytes([major << 5 | info]) + argument.to_bytes(extra_bytes, "big")


@given(st.integers(0, UINT64_MAX))
def test_every_tag_number_is_rejected(tag: int) -> None:
    data = b"\x82\x03" + cbor_head(6, tag) + b"\x01"
    with pytest.raises(DecodeError, match=f"CBOR tag {tag} is not allowed"):
        decode_records(data, REGISTRY, LIMITS)


@given(st.integers(0, UINT64_MAX), st.sampled_from([0, 1, 2, 4, 8]))
def test_only_the_shortest_integer_encoding_is_accepted(value: int, width: int) -> None:
    shortest = cbor_head(0, value)
    if width < len(shortest) - 1 or (width == 0 and value >= 24):
        return  # that width cannot hold the value
    data = b"\x82\x03" + cbor_head(0, value, width)
    if data[2:] == shortest:
        assert decode_records(data, REGISTRY, LIMITS) == [Ping(nonce=value)]
        return
    with pytest.raises(DecodeError, match="not the shortest encoding"):
        decode_records(data, REGISTRY, LIMITS)


def framed(payloads: list[bytes]) -> bytes:
    return b"".join(len(p).to_bytes(2, "big") + p for p in payloads)


payload_lists = st.lists(st.binary(min_size=1, max_size=300), max_size=30)


@given(payload_lists, st.data())
def test_frame_reader_is_independent_of_chunking(
    payloads: list[bytes], data: st.DataObject
) -> None:
    stream = framed(payloads)
    assert FrameReader(LIMITS).feed(stream) == payloads

    reader = FrameReader(LIMITS)
    assert [f for i in range(len(stream)) for f in reader.feed(stream[i : i + 1])] == payloads

    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20)))
    reader = FrameReader(LIMITS)
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    assert [f for piece in pieces for f in reader.feed(piece)] == payloads
    assert reader.buffered_bytes == 0


@given(st.binary(max_size=500))
def test_frame_reader_raises_only_decode_error(stream: bytes) -> None:
    reader = FrameReader(WireLimits(max_frame_bytes=200, max_receive_buffer_bytes=400))
    try:
        frames = reader.feed(stream)
    except DecodeError:
        return
    assert sum(2 + len(f) for f in frames) + reader.buffered_bytes == len(stream)
