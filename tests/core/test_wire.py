"""The strict codec: encodings checked against hand-assembled bytes, one test per rejection rule.

Hex strings are written by hand from RFC 8949 (major type in the top 3 bits of the head byte,
argument in the low 5 bits, then 1/2/4/8 argument bytes for 24/25/26/27), never produced by the
code under test. Link record type codes: Hello 01, Close 02, Ping 03, Pong 04, Rekey 05.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cbor2
import pytest

import meshmsg.core.wire as wire_module
from meshmsg.config import WireLimits
from meshmsg.core import wirefast
from meshmsg.core.records import LINK_RECORDS, Close, Hello, Ping, Pong, Rekey
from meshmsg.core.wire import (
    UINT64_MAX,
    Bytes,
    Int,
    ListOf,
    Optional,
    Record,
    RecordRegistry,
    Text,
    UInt,
    decode_records,
    encode_record,
    encode_records,
    record,
    record_table,
    schema_of,
    struct,
    wire,
)
from meshmsg.errors import CloseReason, DecodeError, LocalProtocolError
from tests.core.wire_samples import ALL_RECORDS, Everything, Hint, Point, Wrapper, everything

LIMITS = WireLimits()
MALFORMED = CloseReason.MALFORMED
TOO_LARGE = CloseReason.TOO_LARGE
UNSUPPORTED = CloseReason.UNSUPPORTED


def unhex(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def decode_hex(
    text: str, *, limits: WireLimits = LIMITS, registry: RecordRegistry = ALL_RECORDS
) -> list[object]:
    return list(decode_records(unhex(text), registry, limits))


def assert_rejected(
    text: str,
    reason: CloseReason,
    fragment: str,
    *,
    limits: WireLimits = LIMITS,
    registry: RecordRegistry = ALL_RECORDS,
) -> None:
    with pytest.raises(DecodeError) as info:
        decode_hex(text, limits=limits, registry=registry)
    assert info.value.reason is reason
    assert fragment in str(info.value)


# --- Encodings, by hand --------------------------------------------------------------------------

EVERYTHING_HEX = (
    "8b"  # array of 11: the type code and 10 fields
    " 1870 07 21 f5"  # 0x70, count 7, delta -2, flag true
    " 4101 626869 816161"  # blob h'01', name "hi", tags ["a"]
    " 82 01 4461626364"  # origin: Point as [x, label] without a type code
    " 80 f6 f6"  # path [], extra null, note null
)


@pytest.mark.parametrize(
    ("rec", "expected"),
    [
        (Ping(nonce=5), "82 03 05"),
        (Pong(nonce=UINT64_MAX), "82 04 1bffffffffffffffff"),
        (Rekey(), "81 05"),
        (Close(reason=1, detail="bye"), "83 02 01 63627965"),
        (Hello(version=1, capabilities=(1, 24), agent=None), "84 01 01 82011818 f6"),
        (Hello(version=300, capabilities=(), agent="é"), "84 01 19012c 80 62c3a9"),
        (Wrapper(inner=Ping(nonce=1)), "82 1871 81 01"),
        (everything(), EVERYTHING_HEX),
        (everything(delta=-(2**64)), EVERYTHING_HEX.replace(" 21 ", " 3bffffffffffffffff ")),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, str) else "",
)
def test_encoding_matches_hand_assembled_bytes(rec: object, expected: str) -> None:
    assert encode_record(rec) == unhex(expected)  # type: ignore[arg-type]
    assert decode_hex(expected) == [rec]


def test_a_frame_is_the_concatenation_of_its_records() -> None:
    records: list[Record] = [Ping(nonce=1), Rekey(), Pong(nonce=2)]
    assert encode_records(records) == unhex("820301 8105 820402")
    assert decode_hex("820301 8105 820402") == records


def test_a_full_frame_of_records_round_trips() -> None:
    records = [Ping(nonce=n) for n in range(LIMITS.max_records_per_frame)]
    data = encode_records(records)
    assert len(data) == sum(len(encode_record(r)) for r in records)
    assert decode_records(data, LINK_RECORDS, LIMITS) == records


def test_nested_values_round_trip() -> None:
    rec = everything(
        path=(Point(x=-1000, label=b"wxyz"), Point(x=1000, label=b"\x00" * 4)),
        extra=Point(x=0, label=b"    "),
        note="note",
    )
    assert decode_records(encode_record(rec), ALL_RECORDS, LIMITS) == [rec]


def test_decoded_records_are_frozen_and_hashable() -> None:
    [hello] = decode_hex("84 01 01 820102 f6")
    assert hello == Hello(version=1, capabilities=(1, 2), agent=None)
    assert hash(hello) == hash(Hello(version=1, capabilities=(1, 2), agent=None))
    with pytest.raises(AttributeError):
        hello.version = 2  # type: ignore[misc]


# --- Version policy ------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["00", "06", "1870", "187f"])
def test_unknown_critical_record_closes_the_link(code: str) -> None:
    assert_rejected(f"81 {code}", UNSUPPORTED, "unknown critical record", registry=LINK_RECORDS)


def test_unknown_ignorable_records_are_skipped() -> None:
    frame = "82 1880 00  820305  84 18ff 41ff 6161 83010203  81 1890"
    assert decode_hex(frame, registry=LINK_RECORDS) == [Ping(nonce=5)]


def test_a_known_ignorable_record_is_checked_like_any_other() -> None:
    assert decode_hex("82 1890 03") == [Hint(level=3)]
    assert_rejected("82 1890 04", MALFORMED, "Hint.level: 4 is outside [0, 3]")


# --- One test per rejection rule -----------------------------------------------------------------


@pytest.mark.parametrize(
    "tagged",
    [
        "c1 01",  # 1: epoch datetime
        "c2 4101",  # 2: positive bignum
        "c3 4101",  # 3: negative bignum
        "c4 82 01 02",  # 4: decimal fraction
        "d8 19 00",  # 25: string reference
        "d8 1c 01",  # 28: shareable (cycles)
        "d8 1d 00",  # 29: shared reference
        "d8 23 6161",  # 35: regular expression
        "d8 24 6161",  # 36: MIME message
        "d9 0100 01",  # 256: string reference namespace
        "d9 d9f7 01",  # 55799: self-described CBOR
        "da 00010000 01",  # an unassigned tag
        "db ffffffffffffffff 01",  # the largest tag number
    ],
)
def test_tags_are_rejected(tagged: str) -> None:
    assert_rejected(f"8203 {tagged}", MALFORMED, "is not allowed")


def test_a_tag_around_a_whole_record_is_rejected() -> None:
    assert_rejected("d9d9f7 820305", MALFORMED, "CBOR tag 55799 is not allowed")


@pytest.mark.parametrize(
    "frame",
    ["9f 03 05 ff", "8203 5f 4101 ff", "83 02 00 7f 6161 ff", "8203 bf ff", "821880 9f ff"],
)
def test_indefinite_lengths_are_rejected(frame: str) -> None:
    assert_rejected(frame, MALFORMED, "indefinite length")


def test_duplicate_map_keys_are_rejected() -> None:
    assert_rejected("8203 a2 0101 0102", MALFORMED, "Duplicate map key")


@pytest.mark.parametrize("frame", ["a0", "8203 a10102", "821880 a0"])
def test_maps_are_rejected(frame: str) -> None:
    assert_rejected(frame, MALFORMED, "maps are not allowed")


@pytest.mark.parametrize("frame", ["820305 18", "820305 82", "8203", "83 02 00 63 6161"])
def test_trailing_bytes_are_rejected(frame: str) -> None:
    assert_rejected(frame, MALFORMED, "truncated CBOR item")


def test_a_complete_item_after_the_last_record_is_rejected() -> None:
    assert_rejected("820305 05", MALFORMED, "record 1: expected an array")


@pytest.mark.parametrize(
    "frame",
    [
        "8203 1805",  # 5 in one argument byte
        "8203 190005",  # ... in two
        "8203 1a00000005",  # ... in four
        "8203 1b0000000000000005",  # ... in eight
        "82 1803 05",  # the type code
        "98 02 03 05",  # an array head
        "83 02 00 7801 61",  # a text string head
        "82 1880 5801 01",  # a byte string head
        "82 1880 3800",  # a negative integer (-1)
    ],
)
def test_non_shortest_encodings_are_rejected(frame: str) -> None:
    assert_rejected(frame, MALFORMED, "not the shortest encoding")


def test_non_shortest_encoding_after_the_first_record_is_located() -> None:
    assert_rejected("820305 820306 8203 1805", MALFORMED, "record 2 at byte 6")


@pytest.mark.parametrize("frame", ["8203 f93c00", "8203 fa3f800000", "8203 fb3ff0000000000000"])
def test_floats_are_rejected(frame: str) -> None:
    assert_rejected(frame, MALFORMED, "floats are not allowed")


def test_floats_in_an_ignorable_record_are_rejected() -> None:
    assert_rejected("821880 81 f93c00", MALFORMED, "floats are not allowed")


def ignorable_nested(depth: int, innermost: str = "00") -> str:
    """An ignorable record with ``innermost`` inside ``depth`` arrays (the record is the first)."""
    return "82 1880 " + "81" * (depth - 1) + innermost


def test_nesting_at_max_depth_is_accepted() -> None:
    assert decode_hex(ignorable_nested(LIMITS.max_cbor_depth)) == []
    # An empty array is an item like any other: inside 16 arrays it is at depth 16.
    assert decode_hex(ignorable_nested(LIMITS.max_cbor_depth, innermost="80")) == []


def test_nesting_deeper_than_max_depth_is_rejected() -> None:
    assert_rejected(ignorable_nested(LIMITS.max_cbor_depth + 1), TOO_LARGE, "nesting depth")


SMALL = WireLimits(max_container_items=4, max_string_bytes=8)


@pytest.mark.parametrize(
    "frame",
    [
        "82 1880 85 0102030405",  # inside an ignorable record
        "85 1880 01020304",  # the record array itself
        "84 01 01 85 0102030405 f6",  # Hello.capabilities, below its own bound of 32
    ],
)
def test_containers_over_max_items_are_rejected(frame: str) -> None:
    assert_rejected(frame, TOO_LARGE, "array of 5 items exceeds the limit of 4", limits=SMALL)


def test_containers_at_max_items_are_accepted() -> None:
    hello = Hello(version=1, capabilities=(1, 2, 3, 4), agent=None)
    assert decode_hex("84 01 01 84 01020304 f6", limits=SMALL) == [hello]
    assert decode_hex("82 1880 84 01020304", limits=SMALL) == []


@pytest.mark.parametrize(
    "frame",
    [
        "83 02 00 69 616161616161616161",  # Close.detail, 9 bytes
        "82 1880 49 000000000000000000",  # a byte string in an ignorable record
        "82 1880 6a c3a9c3a9c3a9c3a9c3a9",  # 5 characters, 10 UTF-8 bytes
    ],
)
def test_strings_over_max_bytes_are_rejected(frame: str) -> None:
    assert_rejected(frame, TOO_LARGE, "exceeds the limit of 8", limits=SMALL)


def test_strings_at_max_bytes_are_accepted() -> None:
    assert decode_hex("83 02 00 68 6161616161616161", limits=SMALL) == [
        Close(reason=0, detail="a" * 8)
    ]


@pytest.mark.parametrize(
    ("frame", "fragment"),
    [
        ("81 03", "Ping: 0 fields, expected exactly 1"),
        ("83 03 05 06", "Ping: 2 fields, expected exactly 1"),
        ("82 05 00", "Rekey: 1 fields, expected exactly 0"),
        ("82 1871 82 01 02", "Wrapper.inner: Ping: 2 fields"),
    ],
)
def test_wrong_field_counts_are_rejected(frame: str, fragment: str) -> None:
    assert_rejected(frame, MALFORMED, fragment)


@pytest.mark.parametrize(
    ("frame", "fragment"),
    [
        ("8203 6161", "Ping.nonce: expected an unsigned integer, got a text string"),
        ("8203 4105", "got a byte string"),
        ("8203 f5", "got a boolean"),
        ("8203 f6", "got null"),
        ("8203 80", "got an array"),
        ("8203 f7", "not allowed"),  # undefined
        ("8203 f0", "not allowed"),  # simple value 16
        ("8203 f820", "not allowed"),  # simple value 32
        ("84 01 01 01 f6", "Hello.capabilities: expected a tuple, got an integer"),
        ("84 01 01 80 4161", "Hello.agent: expected a text string, got a byte string"),
        ("82 1871 01", "Wrapper.inner: expected a Ping, got an integer"),
    ],
)
def test_wrong_field_types_are_rejected(frame: str, fragment: str) -> None:
    assert_rejected(frame, MALFORMED, fragment)


@pytest.mark.parametrize(
    ("frame", "fragment"),
    [
        ("8203 20", "Ping.nonce: -1 is outside [0, 18446744073709551615]"),
        ("84 01 1a00010000 80 f6", "Hello.version: 65536 is outside [0, 65535]"),
        ("84 01 01 81 190100 f6", "Hello.capabilities: item: 256 is outside [0, 255]"),
        ("83 02 190100 60", "Close.reason: 256 is outside [0, 255]"),
        ("84 01 01 80 7841" + "61" * 65, "Hello.agent: 65 UTF-8 bytes > 64"),
        ("84 01 01 98 21" + "01" * 33 + "f6", "Hello.capabilities: 33 items > 32"),
    ],
)
def test_out_of_range_values_are_rejected(frame: str, fragment: str) -> None:
    assert_rejected(frame, MALFORMED, fragment)


def test_out_of_range_values_in_nested_records_are_located() -> None:
    bad = EVERYTHING_HEX.replace("82 01 4461626364", "82 01 43616263")
    assert_rejected(bad, MALFORMED, "record 0: Everything.origin: Point.label: 3 bytes")


@pytest.mark.parametrize(
    "text", ["62 fffe", "62 c080", "63 eda080", "61 c3", "64 f4908080"]
)  # bad bytes, overlong, surrogate, truncated, beyond U+10FFFF
def test_invalid_utf8_is_rejected(text: str) -> None:
    assert_rejected(f"83 02 00 {text}", MALFORMED, "not valid UTF-8")


@pytest.mark.parametrize("frame", ["05", "6161", "4161", "f6", "80"])
def test_a_record_must_be_a_non_empty_array(frame: str) -> None:
    assert_rejected(frame, MALFORMED, "record 0: expected an array [type_code, fields...]")


@pytest.mark.parametrize("code", ["190100", "20", "6161", "f5", "f93c00"])
def test_type_code_must_be_a_byte(code: str) -> None:
    assert_rejected(f"81 {code}", MALFORMED, "type code must be an int in [0, 255]")


def test_empty_frame_is_rejected() -> None:
    assert_rejected("", MALFORMED, "empty frame")


@pytest.mark.parametrize("frame", ["ff", "820305 ff", "8203 fc", "8203 1c"])
def test_invalid_cbor_is_rejected(frame: str) -> None:
    assert_rejected(frame, MALFORMED, "invalid CBOR")


FEW = WireLimits(max_records_per_frame=3)


def test_records_per_frame_at_the_limit_are_accepted() -> None:
    assert decode_hex("820301 820302 8118ff", limits=FEW) == [Ping(nonce=1), Ping(nonce=2)]


@pytest.mark.parametrize("frame", ["820301 820302 820303 820304", "8118ff 8118ff 8118ff 8105"])
def test_records_per_frame_over_the_limit_are_rejected(frame: str) -> None:
    assert_rejected(frame, TOO_LARGE, "number of records in a frame", limits=FEW)


def test_plaintext_over_the_limit_is_rejected() -> None:
    limits = WireLimits(max_plaintext_bytes=6)
    assert decode_hex("820301 820302", limits=limits) == [Ping(nonce=1), Ping(nonce=2)]
    assert_rejected("820301 820302 8105", TOO_LARGE, "frame plaintext of 8 bytes", limits=limits)


# --- Local values: LocalProtocolError ------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: Ping(nonce=-1), "Ping.nonce: -1 is outside"),
        (lambda: Ping(nonce=2**64), "is outside [0, 18446744073709551615]"),
        (lambda: Ping(nonce=True), "got a boolean"),
        (lambda: Ping(nonce=1.0), "floats are not allowed"),  # type: ignore[arg-type]
        (lambda: Hello(version=1, capabilities=[1], agent=None), "use a tuple"),  # type: ignore[arg-type]
        (lambda: Hello(version=1, capabilities=(1,) * 33, agent=None), "33 items > 32"),
        (lambda: Hello(version=1, capabilities=(256,), agent=None), "item 0: 256 is outside"),
        (lambda: Hello(version=1, capabilities=(), agent="x" * 65), "65 UTF-8 bytes > 64"),
        (lambda: Close(reason=0, detail="\ud800"), "lone surrogate"),
        (lambda: Close(reason=0, detail=b"x"), "expected a text string"),  # type: ignore[arg-type]
        (lambda: everything(blob=b""), "0 bytes, expected 1..16"),
        (lambda: everything(blob=bytearray(b"x")), "expected a byte string, got a bytearray"),
        (lambda: everything(flag=1), "expected a boolean, got an integer"),
        (lambda: everything(delta="1"), "expected an integer, got a text string"),
        (lambda: everything(delta=2**64), "is outside [-18446744073709551616"),
        (lambda: everything(origin=Ping(nonce=1)), "expected a Point, got a Ping"),
        (lambda: everything(tags=("abcde",)), "item 0: 5 UTF-8 bytes > 4"),
        (lambda: Point(x=0, label=b"abc"), "3 bytes, expected exactly 4"),
    ],
)
def test_invalid_local_values_raise_local_protocol_error(build: object, fragment: str) -> None:
    assert callable(build)
    with pytest.raises(LocalProtocolError) as info:
        build()
    assert fragment in str(info.value)


def test_encode_refuses_what_decode_would_refuse() -> None:
    with pytest.raises(LocalProtocolError, match=r"1\.\.256 records, not 0"):
        encode_records([])
    with pytest.raises(LocalProtocolError, match="not 4"):
        encode_records([Rekey()] * 4, FEW)
    with pytest.raises(LocalProtocolError, match="exceed max_plaintext_bytes=4"):
        encode_records([Ping(nonce=1), Ping(nonce=2)], WireLimits(max_plaintext_bytes=4))
    with pytest.raises(LocalProtocolError, match="Point is not a wire record"):
        encode_records([Point(x=0, label=b"abcd")])
    with pytest.raises(LocalProtocolError, match="str is not a wire record"):
        encode_record("Ping")  # type: ignore[arg-type]


# --- Declaring records ---------------------------------------------------------------------------


def test_record_declaration_errors() -> None:
    with pytest.raises(LocalProtocolError, match="type code must be an int in"):
        record(0x100)
    with pytest.raises(LocalProtocolError, match="above a frozen @dataclass"):

        @record(0x7E)
        class NotADataclass:  # type: ignore[type-var]
            pass

    with pytest.raises(LocalProtocolError, match="slots=True"):

        @record(0x7E)
        @dataclass(frozen=True, kw_only=True)
        class NoSlots:
            n: int = wire(UInt())

    with pytest.raises(LocalProtocolError, match="declare it with wire"):

        @record(0x7E)
        @dataclass(frozen=True, slots=True, kw_only=True)
        class PlainField:
            n: int

    with pytest.raises(LocalProtocolError, match="keyword-only, no default"):

        @record(0x7E)
        @dataclass(frozen=True, slots=True)
        class Positional:
            n: int = wire(UInt())


def test_a_record_cannot_have_post_init() -> None:
    # Construction checks and sets the fields itself; a __post_init__ would never run.
    with pytest.raises(LocalProtocolError, match="cannot have __post_init__"):

        @record(0x7E)
        @dataclass(frozen=True, slots=True, kw_only=True)
        class Hooked:
            n: int = wire(UInt())

            def __post_init__(self) -> None:
                pass


def test_construction_keeps_the_dataclass_argument_errors() -> None:
    with pytest.raises(TypeError, match="missing 1 required keyword-only argument: 'nonce'"):
        Ping()
    with pytest.raises(TypeError, match="unexpected keyword argument 'extra'"):
        Ping(nonce=1, extra=2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="positional"):
        Ping(1)  # type: ignore[call-arg]


@pytest.mark.parametrize("major", [0, 1, 2, 3, 4])
@pytest.mark.parametrize(
    "argument", [0, 23, 24, 255, 256, 65_535, 65_536, 2**32 - 1, 2**32, 2**64 - 1]
)
def test_the_fast_encoder_writes_the_heads_cbor2_writes(major: int, argument: int) -> None:
    # cbor2 writes the shortest head of an unsigned integer; other major types change only
    # the top three bits of its first byte.
    uint_head = cbor2.dumps(argument)
    assert wirefast.head(major, argument) == bytes([major << 5 | uint_head[0]]) + uint_head[1:]
    if major == 1:
        assert wirefast.head(major, argument) == cbor2.dumps(-1 - argument)


def test_a_class_is_decorated_once() -> None:
    with pytest.raises(LocalProtocolError, match="already a wire record"):
        record(0x7E)(Ping)


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: UInt(max=-1), "UInt max"),
        (lambda: UInt(max=2**64), "UInt max"),
        (lambda: Int(min=1, max=0), "Int bounds"),
        (lambda: Int(min=-(2**64) - 1, max=0), "Int bounds"),
        (lambda: Bytes(min_len=2, max_len=1), "Bytes bounds"),
        (lambda: Text(max_bytes=-1), "max_bytes"),
        (lambda: ListOf(UInt(), max_items=-1), "max_items"),
        (lambda: Optional(Optional(UInt())), "ambiguous"),
        (lambda: schema_of(int), "not a @record or @struct"),
    ],
)
def test_impossible_specs_are_refused(make: object, fragment: str) -> None:
    assert callable(make)
    with pytest.raises(LocalProtocolError, match=fragment):
        make()


def test_registry_rejects_clashes_and_structs() -> None:
    @record(0x03)
    @dataclass(frozen=True, slots=True, kw_only=True)
    class OtherPing:
        nonce: int = wire(UInt())

    with pytest.raises(LocalProtocolError, match="type code 0x03: Ping and OtherPing"):
        LINK_RECORDS.extend([OtherPing])
    with pytest.raises(LocalProtocolError, match="Point is a struct"):
        RecordRegistry([Point])


def test_registry_is_ordered_and_queryable() -> None:
    assert list(LINK_RECORDS) == [Hello, Close, Ping, Pong, Rekey]
    assert len(ALL_RECORDS) == 8
    assert Everything in ALL_RECORDS
    assert Everything not in LINK_RECORDS
    assert LINK_RECORDS.schema(0x03) is schema_of(Ping)
    assert LINK_RECORDS.schema(0x06) is None
    assert repr(LINK_RECORDS) == (
        "RecordRegistry(0x01=Hello, 0x02=Close, 0x03=Ping, 0x04=Pong, 0x05=Rekey)"
    )


def test_struct_has_no_type_code() -> None:
    @struct
    @dataclass(frozen=True, slots=True, kw_only=True)
    class Pair:
        a: int = wire(UInt(max=1))

    assert schema_of(Pair).type_code is None
    assert schema_of(Pair).names == ("a",)


# --- cbor2 failures that are not CBORError -------------------------------------------------------


def fake_rust_panic() -> BaseException:
    """What pyo3 raises when Rust code panics: pyo3_runtime.PanicException(BaseException)."""
    panic_type: type[BaseException] = type(
        "PanicException", (BaseException,), {"__module__": "pyo3_runtime"}
    )
    return panic_type("index out of bounds")


class FakeDecoder:
    """Stands in for cbor2.CBORDecoder; raises ``error`` on decode."""

    error: BaseException

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def decode(self, *, immutable: bool) -> object:
        raise self.error


# Frames the fast path leaves to cbor2 (an unknown ignorable record first): one record, several.
STRICT_PATH_FRAMES = ["82188005", "82188005 820306"]


@pytest.mark.parametrize("frame", STRICT_PATH_FRAMES)
def test_a_rust_panic_in_cbor2_becomes_a_decode_error(
    monkeypatch: pytest.MonkeyPatch, frame: str
) -> None:
    def panicking_loads(*args: object, **kwargs: object) -> object:
        raise fake_rust_panic()

    FakeDecoder.error = fake_rust_panic()
    if " " in frame:
        monkeypatch.setattr(cbor2, "CBORDecoder", FakeDecoder)
    else:
        monkeypatch.setattr(cbor2, "loads", panicking_loads)
    with pytest.raises(DecodeError, match="cbor2 panicked") as info:
        decode_hex(frame)
    assert info.value.reason is MALFORMED
    assert type(info.value.__cause__).__name__ == "PanicException"


@pytest.mark.parametrize("frame", STRICT_PATH_FRAMES)
def test_other_base_exceptions_pass_through(monkeypatch: pytest.MonkeyPatch, frame: str) -> None:
    def interrupted_loads(*args: object, **kwargs: object) -> object:
        raise KeyboardInterrupt

    FakeDecoder.error = KeyboardInterrupt()
    if " " in frame:
        monkeypatch.setattr(cbor2, "CBORDecoder", FakeDecoder)
    else:
        monkeypatch.setattr(cbor2, "loads", interrupted_loads)
    with pytest.raises(KeyboardInterrupt):
        decode_hex(frame)


def test_the_tag_hook_backstop_rejects() -> None:
    # Unreachable through cbor2 while the deny-all mapping answers first; called directly.
    with pytest.raises(DecodeError, match="CBOR tag 1 is not allowed"):
        wire_module._reject_tag(cbor2.CBORTag(1, 0), False)
    assert len(wire_module._DENY_ALL_TAGS) == 0
    assert list(wire_module._DENY_ALL_TAGS) == []


def test_the_cursor_behaves_like_a_binary_file() -> None:
    cursor = wire_module._Cursor(b"abcdef", 1)
    assert cursor.readable()
    assert cursor.seekable()
    assert cursor.read(2) == b"bc"
    assert cursor.seek(-1, 1) == 2
    assert cursor.read(-1) == b"cdef"
    assert cursor.seek(-2, 2) == 4
    assert cursor.seek(0) == 0
    assert cursor.read(10) == b"abcdef"
    assert cursor.tell() == 6


# --- Remaining spec paths ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [
        (" 21 ", " 6161 ", "Everything.delta: expected an integer, got a text string"),
        (" f5 ", " 01 ", "Everything.flag: expected a boolean, got an integer"),
        (" 4101 ", " 40 ", "Everything.blob: 0 bytes, expected 1..16"),
        (" 80 f6 f6", " 80 f6 4161", "Everything.note: expected a text string"),
        (" 80 f6 f6", " 81 01 f6 f6", "Everything.path: item: expected a Point, got an integer"),
    ],
)
def test_more_field_rejections(old: str, new: str, fragment: str) -> None:
    assert old in EVERYTHING_HEX
    assert_rejected(EVERYTHING_HEX.replace(old, new), MALFORMED, fragment)


def test_a_byte_string_over_max_string_bytes_is_too_large() -> None:
    frame = EVERYTHING_HEX.replace(" 4101 ", " 49 010203040506070809 ")
    assert_rejected(
        frame, TOO_LARGE, "byte string of 9 bytes", limits=WireLimits(max_string_bytes=8)
    )


def test_a_local_map_is_named_in_the_error() -> None:
    with pytest.raises(LocalProtocolError, match="maps are not allowed"):
        Ping(nonce={})  # type: ignore[arg-type]


def test_a_schema_refuses_to_encode_another_record_type() -> None:
    with pytest.raises(LocalProtocolError, match="expected a Ping, got Pong"):
        schema_of(Ping).to_wire(Pong(nonce=1), with_code=True)


def test_the_protocol_doc_carries_the_generated_record_table() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "protocol" / "wire.md").read_text("utf-8")
    assert record_table(LINK_RECORDS) in doc
    table = record_table([Point, Everything, Wrapper])
    assert "| struct | `Point` | `x`: int in [-1000, 1000]; `label`: bytes, exactly 4 B |" in table
    assert "`delta`: int in [-2^64, 2^64-1]; `flag`: bool" in table
    assert "`path`: list of ≤ 4 × (Point)" in table
    assert "| 0x71 | `Wrapper` | `inner`: Ping |" in table
