"""The codec's fast paths: writing records, and reading frames that are exactly canonical.

Theory of operation
-------------------
Both paths are plain Python over ``bytes`` (RFC 8949 §3), without cbor2, because for our small
records cbor2's fixed costs dominate: about 0.3 µs per array on encode (type dispatch with an
ABC check) and about 0.6 µs per ``loads`` call on decode (setting up the hooks and the
tag-refusing mapping), against about 0.1 µs per field here.

Writing (:func:`write_record`) is driven by the Python type of each value. Construction
validated the record against its specs, which admit exactly one Python type per CBOR type
(``int``, ``bytes``, ``str``, ``tuple``, ``bool``, ``None``, a nested record), so the type
decides the encoding, with the shortest head every time. A nested record is written as the array
of its fields, without its type code.

Reading (:func:`read_frame`) is driven by the schemas of the registry. It accepts only what the
strict path (:mod:`meshmsg.core.wire`, cbor2 plus the field specs) accepts: a sequence of known
records, each with its exact field count, every head the shortest, every value of the expected
major type and inside its spec and the :class:`~meshmsg.config.WireLimits`. On anything else it
gives up, returning None, and the caller decodes the frame again on the strict path, which
either accepts it (the fast path is allowed to be shy: an unknown ignorable record, a record
whose possible nesting exceeds ``max_cbor_depth``) or rejects it with the usual reason and
message. So the fast path never decides a rejection, and the strict path remains the reference:
the property tests check that both give the same records.

Reading is bounded like the strict path: every step consumes at least one byte or gives up, a
list reads at most its spec's ``max_items`` items, and recursion follows the record
declarations, not the input, so its depth is fixed by the schemas.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Callable, Mapping
from typing import Final, TypeAlias, cast

from meshmsg.config import WireLimits
from meshmsg.core.wirespec import (
    Bool,
    Bytes,
    FieldSpec,
    Int,
    ListOf,
    Nested,
    Optional,
    RecordSchema,
    Text,
    UInt,
    schema_of_instance,
)
from meshmsg.errors import LocalProtocolError

Put: TypeAlias = Callable[[bytes], object]
"""Where writing goes: ``list.append`` of the chunks that ``b"".join`` makes a frame of."""

# CBOR major types (RFC 8949 §3.1) and the three simple values we use.
_UINT: Final = 0
_NEGATIVE: Final = 1
_BYTES: Final = 2
_TEXT: Final = 3
_ARRAY: Final = 4
_FALSE: Final = 0xF4
_TRUE: Final = 0xF5
_NULL: Final = 0xF6

# --- Heads -------------------------------------------------------------------------------------

# Heads with an argument below 256 (one or two bytes), looked up rather than built: most
# integers, lengths and counts in our records are small.
_SHORT_HEADS: Final = tuple(
    tuple(bytes([major << 5 | n]) if n < 24 else bytes([major << 5 | 24, n]) for n in range(256))
    for major in range(_ARRAY + 1)
)
_UINT_HEADS: Final = _SHORT_HEADS[_UINT]
_BYTES_HEADS: Final = _SHORT_HEADS[_BYTES]
_PACK_16: Final = struct.Struct(">BH").pack
_PACK_32: Final = struct.Struct(">BI").pack
_PACK_64: Final = struct.Struct(">BQ").pack


def head(major: int, argument: int) -> bytes:
    """The shortest head for ``major`` (0-4) and ``0 <= argument < 2^64``."""
    if argument < 0x100:
        return _SHORT_HEADS[major][argument]
    if argument < 0x1_0000:
        return _PACK_16(major << 5 | 25, argument)
    if argument < 0x1_0000_0000:
        return _PACK_32(major << 5 | 26, argument)
    return _PACK_64(major << 5 | 27, argument)


# Additional information 24-27: (read the argument, head length, smallest argument that needs
# this width). A smaller argument in a wider head is not the shortest encoding.
_UNPACK_16: Final = struct.Struct(">H").unpack_from
_UNPACK_64: Final = struct.Struct(">Q").unpack_from
_WIDE_HEADS: Final = (
    (struct.Struct(">B").unpack_from, 2, 24),
    (_UNPACK_16, 3, 0x100),
    (struct.Struct(">I").unpack_from, 5, 0x1_0000),
    (_UNPACK_64, 9, 0x1_0000_0000),
)


class _GiveUp(Exception):
    """Not exactly canonical, known and in bounds: the strict path decides."""


def _read_head(data: bytes, pos: int, major: int) -> tuple[int, int]:
    """Return (argument, position after the head) of a shortest head of ``major`` at ``pos``.

    Raises _GiveUp, or IndexError or struct.error past the end of ``data``.
    """
    initial = data[pos]
    if initial >> 5 != major:
        raise _GiveUp
    info = initial & 0x1F
    if info < 24:
        return info, pos + 1
    if info > 27:  # reserved (28-30) or an indefinite length (31)
        raise _GiveUp
    unpack, size, smallest = _WIDE_HEADS[info - 24]
    (argument,) = unpack(data, pos + 1)
    if argument < smallest:
        raise _GiveUp
    return argument, pos + size


# --- Writing -----------------------------------------------------------------------------------

# Per record or struct class: (head with the type code, None for a struct; head without it;
# the field values getter).
_Plan: TypeAlias = tuple[bytes | None, bytes, Callable[[object], tuple[object, ...]]]
_PLANS: Final[dict[type[object], _Plan]] = {}


def write_record(rec: object, put: Put) -> None:
    """Write a record (a @record instance, so valid since construction) with its type code.

    Raises:
        LocalProtocolError: ``rec`` is not an instance of a @record class.
    """
    plan = _PLANS.get(type(rec)) or _plan_for(rec)
    top_head = plan[0]
    if top_head is None:
        raise LocalProtocolError(f"{type(rec).__name__} is not a wire record")
    put(top_head)
    _write_values(plan[2](rec), put)


def _plan_for(obj: object) -> _Plan:
    schema = schema_of_instance(obj)
    if schema is None:
        raise LocalProtocolError(f"{type(obj).__name__} is not a wire record")
    return _plan(schema)


def _plan(schema: RecordSchema) -> _Plan:
    count, code = len(schema.names), schema.type_code
    nested_head = head(_ARRAY, count)
    top_head = None if code is None else head(_ARRAY, count + 1) + head(_UINT, code)
    plan = (top_head, nested_head, _values_getter(schema.names))
    _PLANS[schema.record] = plan
    return plan


def _values_getter(names: tuple[str, ...]) -> Callable[[object], tuple[object, ...]]:
    """One call returning all field values: attrgetter reads them in C."""
    if len(names) >= 2:
        return cast(Callable[[object], tuple[object, ...]], operator.attrgetter(*names))
    if names:  # attrgetter of one name returns the bare value, not a 1-tuple
        get_one = operator.attrgetter(names[0])
        return lambda obj: (get_one(obj),)
    return lambda obj: ()


def _write_values(values: tuple[object, ...], put: Put) -> None:
    """Write each value by its Python type; the order is by how common each type is."""
    for value in values:
        kind = type(value)
        if kind is bytes:
            data = cast(bytes, value)
            size = len(data)
            put(_BYTES_HEADS[size] if size < 0x100 else head(_BYTES, size))
            put(data)
        elif kind is int:
            number = cast(int, value)
            if number >= 0:
                put(_UINT_HEADS[number] if number < 0x100 else head(_UINT, number))
            else:  # major type 1 carries -1 - n
                put(head(_NEGATIVE, -1 - number))
        elif value is None:
            put(b"\xf6")
        elif kind is tuple:
            items = cast(tuple[object, ...], value)
            put(head(_ARRAY, len(items)))
            _write_values(items, put)
        elif kind is bool:
            put(b"\xf5" if value else b"\xf4")
        elif kind is str:
            text = cast(str, value).encode("utf-8")
            put(head(_TEXT, len(text)))
            put(text)
        else:
            _write_nested(value, put)


def _write_nested(value: object, put: Put) -> None:
    # Construction admits no other type, so _plan_for raises only for a tampered record.
    plan = _PLANS.get(type(value)) or _plan_for(value)
    put(plan[1])
    _write_values(plan[2](value), put)


# --- Reading -----------------------------------------------------------------------------------

# Reads one value at a position: (data, position, limits) -> (value, position after it).
_Reader: TypeAlias = Callable[[bytes, int, WireLimits], tuple[object, int]]


class TopLevel:
    """How the fast path reads one record class at the top level of a frame."""

    __slots__ = ("count", "depth", "read_fields")

    def __init__(self, schema: RecordSchema) -> None:
        self.count: Final = len(schema.names) + 1  # the array holds the type code too
        # Deepest possible item (the fields are at depth 1). The fast path does not count
        # depth as it reads, so it leaves a record that could exceed max_cbor_depth to cbor2.
        self.depth: Final = 1 + max((_extra_depth(s) for s in schema.specs), default=0)
        self.read_fields: Final = _fields_reader(schema)


def read_frame(
    data: bytes, table: Mapping[int, TopLevel], limits: WireLimits
) -> list[object] | None:
    """Return the records of a non-empty, exactly canonical frame, or None to decode strictly."""
    records: list[object] = []
    pos = 0
    try:
        while pos < len(data):
            if len(records) == limits.max_records_per_frame:
                return None
            # Inline the one-byte heads of the record array and its type code, the usual case.
            initial = data[pos]
            if 0x80 < initial < 0x98:
                count, pos = initial - 0x80, pos + 1
            else:
                count, pos = _read_head(data, pos, _ARRAY)
            code = data[pos]
            if code < 24:
                pos += 1
            elif code == 0x18 and data[pos + 1] >= 24:  # codes 24-255 take one more byte
                code, pos = data[pos + 1], pos + 2
            else:  # a wider head: not the shortest, or a code above 255 (never known)
                return None
            known = table.get(code)
            if known is None or count != known.count:
                return None
            if count > limits.max_container_items or known.depth > limits.max_cbor_depth:
                return None
            rec, pos = known.read_fields(data, pos, limits)
            records.append(rec)
    except (_GiveUp, IndexError, struct.error, UnicodeDecodeError):
        return None
    return records


def _extra_depth(spec: FieldSpec[object]) -> int:
    """How many arrays deeper than the field itself its deepest item can be."""
    match spec:
        case ListOf(item=item):
            return 1 + _extra_depth(item)
        case Optional(inner=inner):
            return _extra_depth(inner)
        case Nested(schema=schema):
            return 1 + max((_extra_depth(s) for s in schema.specs), default=0)
    return 0


def _fields_reader(schema: RecordSchema) -> _Reader:
    """Read the fields of ``schema``'s record, in order, into a new instance."""
    steps = tuple(zip([_reader(s) for s in schema.specs], schema.setters, strict=True))
    new = object.__new__
    cls = schema.record

    def read(data: bytes, pos: int, limits: WireLimits) -> tuple[object, int]:
        # Each reader checked its value as from_wire does, so set the slots directly.
        obj = new(cls)
        for read_field, set_field in steps:
            value, pos = read_field(data, pos, limits)
            set_field(obj, value)
        return obj, pos

    return read


def _reader(spec: FieldSpec[object]) -> _Reader:
    match spec:
        case UInt(max=high):
            return _uint_reader(high)
        case Int(min=low, max=high):
            return _int_reader(low, high)
        case Bool():
            return _read_bool
        case Bytes(min_len=low, max_len=high):
            return _bytes_reader(low, high)
        case Text(max_bytes=high):
            return _text_reader(high)
        case ListOf(item=item, max_items=high):
            return _list_reader(_reader(item), high)
        case Optional(inner=UInt(max=high)):  # a null check inside, one call less per field
            return _uint_reader(high, nullable=True)
        case Optional(inner=Bytes(min_len=low, max_len=high)):
            return _bytes_reader(low, high, nullable=True)
        case Optional(inner=inner):
            return _optional_reader(_reader(inner))
        case Nested(schema=schema):
            return _nested_reader(schema)
    raise LocalProtocolError(f"no fast reader for {spec!r}: add one for the new spec")


def _uint_reader(high: int, *, nullable: bool = False) -> _Reader:
    def read(data: bytes, pos: int, limits: WireLimits) -> tuple[object, int]:
        initial = data[pos]
        if initial == _NULL and nullable:
            return None, pos + 1
        if initial < 24:  # major type 0 with the value in the head, the common case
            value, pos = initial, pos + 1
        elif initial == 0x1B:  # an 8-byte value (ms timestamps in stored records): inline
            (value,) = _UNPACK_64(data, pos + 1)
            pos += 9
            if value < 0x1_0000_0000:
                raise _GiveUp
        else:
            value, pos = _read_head(data, pos, _UINT)
        if value > high:
            raise _GiveUp
        return value, pos

    return read


def _int_reader(low: int, high: int) -> _Reader:
    def read(data: bytes, pos: int, limits: WireLimits) -> tuple[object, int]:
        if data[pos] >> 5 == _NEGATIVE:
            argument, pos = _read_head(data, pos, _NEGATIVE)
            value = -1 - argument
        else:
            value, pos = _read_head(data, pos, _UINT)
        if not low <= value <= high:
            raise _GiveUp
        return value, pos

    return read


def _read_bool(data: bytes, pos: int, limits: WireLimits) -> tuple[object, int]:
    initial = data[pos]
    if initial == _TRUE:
        return True, pos + 1
    if initial == _FALSE:
        return False, pos + 1
    raise _GiveUp


def _bytes_reader(low: int, high: int, *, nullable: bool = False) -> _Reader:
    def read(data: bytes, pos: int, limits: WireLimits) -> tuple[object, int]:
        initial = data[pos]
        if initial == _NULL and nullable:
            return None, pos + 1
        if 0x40 <= initial < 0x58:  # major type 2 with the length in the head
            size, start = initial - 0x40, pos + 1
        elif initial == 0x58:  # a one-byte length (keys, certificates): inline, it is common
            size, start = data[pos + 1], pos + 2
            if size < 24:
                raise _GiveUp
        elif initial == 0x59:  # a two-byte length (sync payloads, envelopes): common too
            (size,), start = _UNPACK_16(data, pos + 1), pos + 3
            if size < 0x100:
                raise _GiveUp
        else:
            size, start = _read_head(data, pos, _BYTES)
        end = start + size
        if not low <= size <= high or size > limits.max_string_bytes or end > len(data):
            raise _GiveUp
        return data[start:end], end

    return read


def _text_reader(high: int) -> _Reader:
    def read(data: bytes, pos: int, limits: WireLimits) -> tuple[object, int]:
        initial = data[pos]
        if 0x60 <= initial < 0x78:  # major type 3 with the length in the head, the common case
            size, start = initial - 0x60, pos + 1
        else:
            size, start = _read_head(data, pos, _TEXT)
        end = start + size
        if size > high or size > limits.max_string_bytes or end > len(data):
            raise _GiveUp
        return data[start:end].decode("utf-8"), end  # strict: UnicodeDecodeError gives up

    return read


def _list_reader(read_item: _Reader, high: int) -> _Reader:
    def read(data: bytes, pos: int, limits: WireLimits) -> tuple[object, int]:
        count, pos = _read_head(data, pos, _ARRAY)
        if count > high or count > limits.max_container_items:
            raise _GiveUp
        items = []
        for _ in range(count):
            item, pos = read_item(data, pos, limits)
            items.append(item)
        return tuple(items), pos

    return read


def _optional_reader(read_inner: _Reader) -> _Reader:
    def read(data: bytes, pos: int, limits: WireLimits) -> tuple[object, int]:
        if data[pos] == _NULL:
            return None, pos + 1
        return read_inner(data, pos, limits)

    return read


def _nested_reader(schema: RecordSchema) -> _Reader:
    """Read a nested record: the array of its fields, the exact count, no type code."""
    steps = tuple(zip([_reader(s) for s in schema.specs], schema.setters, strict=True))
    new = object.__new__
    cls = schema.record
    expected = len(schema.names)
    # An exact count below 24 has exactly one canonical head byte: compare, don't parse.
    head_byte = 0x80 | expected if expected < 24 else -1

    def read(data: bytes, pos: int, limits: WireLimits) -> tuple[object, int]:
        if data[pos] == head_byte:
            pos += 1
        else:
            count, pos = _read_head(data, pos, _ARRAY)
            if count != expected:
                raise _GiveUp
        if expected > limits.max_container_items:
            raise _GiveUp
        obj = new(cls)  # the same loop as _fields_reader's, without a call per nested record
        for read_field, set_field in steps:
            value, pos = read_field(data, pos, limits)
            set_field(obj, value)
        return obj, pos

    return read
