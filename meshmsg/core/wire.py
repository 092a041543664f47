"""Strict CBOR codec: bytes <-> frozen, typed records.

Theory of operation
-------------------
On the wire a record is the CBOR array ``[type_code, field1, field2, ...]``, fields in
declaration order (records are declared with :mod:`meshmsg.core.wirespec`, re-exported here).
A frame's plaintext is a CBOR sequence (RFC 8742) of such arrays: no outer container, so records
can be encoded one by one and joined, and a batch's length is the sum of its records' lengths.

The accepted subset of CBOR is small on purpose: unsigned and negative integers, byte strings,
UTF-8 text strings, arrays, ``true``/``false`` and ``null``, always with definite lengths and the
shortest encoding of every integer and length. Nothing else: no tags, no floats, no maps, no
simple values, no ``undefined``. In that subset the encoding of a value is unique, which the
strict decoder checks by re-encoding everything it decoded and comparing it with the bytes
received, and the fast decoder by accepting only the shortest head for every item.

Encoding and, for frames that are exactly canonical, decoding take the fast paths of
:mod:`meshmsg.core.wirefast` (plain Python over bytes, no cbor2). The fast decoder accepts only
frames this module's strict decoder accepts, with the same result; it gives up on anything
else, and the strict decoder below decides, so every rejection and its reason come from here.

The strict decoder is two layers. cbor2 (Rust) parses bytes into Python values under hard limits:
``max_depth``, no indefinite lengths, no duplicate map keys, every tag refused at its head (a
``semantic_decoders`` mapping that refuses every tag number, so none of cbor2's built-in tag
decoders, such as regex compilation, shared references or bignums, ever runs), every map refused
by ``object_hook``. Then the field specs narrow cbor2's untyped result (bound to ``object``,
never ``Any``) into instances of the record classes in a :class:`RecordRegistry`. Every
rejection is a :class:`DecodeError` carrying a :class:`CloseReason`: ``TOO_LARGE`` for a
:class:`WireLimits` bound, ``UNSUPPORTED`` for an unknown critical record type, ``MALFORMED`` for
everything else.

Version policy: type codes ``0x00-0x7F`` are *critical* (an unknown one closes the link),
``0x80-0xFF`` are *ignorable* (an unknown one is skipped, after the same strictness checks).
A record always carries exactly its declared field count; a type code is never reused.

Finding item boundaries: cbor2 needs a file-like object to decode one item of a sequence and
tell where it ended. The core may not import ``io``, so :class:`_Cursor` gives an immutable
``bytes`` the methods cbor2 calls. A frame holding one record (the common case) skips it:
``cbor2.loads`` decodes the first item, and if its re-encoding equals the whole frame, that one
comparison proves canonical form, the item's extent and the absence of trailing bytes.

This module is the only importer of cbor2 and translates all its errors, including a Rust panic
(pyo3's ``PanicException``, a ``BaseException``), into DecodeError. It knows nothing of links,
keys or sessions; the record table lives in :mod:`meshmsg.core.records`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import IO, Final, cast

import cbor2

from meshmsg.config import WireLimits
from meshmsg.core.wirefast import TopLevel, read_frame, write_record
from meshmsg.core.wirespec import (
    CBOR_INT_MIN,
    MAX_TYPE_CODE,
    UINT64_MAX,
    Bool,
    Bytes,
    FieldSpec,
    Int,
    ListOf,
    Nested,
    Optional,
    Record,
    RecordSchema,
    Text,
    UInt,
    check_container,
    describe_kind,
    record,
    schema_of,
    struct,
    too_large,
    utf8_len,
    wire,
)
from meshmsg.errors import CloseReason, DecodeError, LocalProtocolError

__all__ = [
    "CBOR_INT_MIN",
    "DEFAULT_WIRE_LIMITS",
    "FIRST_IGNORABLE_TYPE_CODE",
    "MAX_TYPE_CODE",
    "UINT64_MAX",
    "Bool",
    "Bytes",
    "FieldSpec",
    "Int",
    "ListOf",
    "Nested",
    "Optional",
    "Record",
    "RecordRegistry",
    "RecordSchema",
    "Text",
    "UInt",
    "decode_records",
    "encode_record",
    "encode_records",
    "record",
    "record_table",
    "schema_of",
    "struct",
    "wire",
]

FIRST_IGNORABLE_TYPE_CODE: Final = 0x80  # 0x00-0x7F critical, 0x80-0xFF ignorable
DEFAULT_WIRE_LIMITS: Final = WireLimits()
_READ_SIZE_BYTES: Final = 256  # cbor2 reads ahead this much per item; most records are smaller


class RecordRegistry:
    """The record types one protocol layer understands, by type code. Immutable.

    Build one per protocol version from a list of record classes; combine with :meth:`extend`.
    """

    __slots__ = ("_by_code", "_fast")

    def __init__(self, record_classes: Iterable[type[Record]]) -> None:
        by_code: dict[int, RecordSchema] = {}
        for cls in record_classes:
            schema = schema_of(cls)
            code = schema.type_code
            if code is None:
                raise LocalProtocolError(f"{cls.__name__} is a struct: it has no type code")
            if code in by_code:
                clash = by_code[code].name
                raise LocalProtocolError(f"type code {code:#04x}: {clash} and {cls.__name__}")
            by_code[code] = schema
        self._by_code: Final[dict[int, RecordSchema]] = dict(
            sorted(by_code.items())
        )  # never mutated
        # The same records prepared for the fast decoder; also never mutated.
        self._fast: Final = {code: TopLevel(schema) for code, schema in by_code.items()}

    def extend(self, record_classes: Iterable[type[Record]]) -> RecordRegistry:
        """Return a new registry with these record classes added."""
        return RecordRegistry([*self, *record_classes])

    def schema(self, type_code: int) -> RecordSchema | None:
        """Return the schema registered for ``type_code``, or None."""
        return self._by_code.get(type_code)

    def __iter__(self) -> Iterator[type[Record]]:
        """Record classes in type code order."""
        return (cast("type[Record]", s.record) for s in self._by_code.values())

    def __len__(self) -> int:
        return len(self._by_code)

    def __contains__(self, record_class: object) -> bool:
        return any(s.record is record_class for s in self._by_code.values())

    def __repr__(self) -> str:
        names = ", ".join(f"{c:#04x}={s.name}" for c, s in self._by_code.items())
        return f"RecordRegistry({names})"


def record_table(record_classes: Iterable[type[object]]) -> str:
    """A Markdown table of records and structs (code, name, fields in wire order), for docs."""
    rows = ["| code | record | fields, in wire order |", "|---|---|---|"]
    for cls in record_classes:
        schema = schema_of(cls)
        code = "struct" if schema.type_code is None else f"0x{schema.type_code:02X}"
        specs = zip(schema.names, schema.specs, strict=True)
        fields = "; ".join(f"`{name}`: {spec.describe()}" for name, spec in specs)
        rows.append(f"| {code} | `{schema.name}` | {fields or '(none)'} |")
    return "\n".join(rows)


# --- Encoding ----------------------------------------------------------------------------------


def encode_record(rec: Record) -> bytes:
    """Encode one record as a CBOR array. Frames join these (see :func:`encode_records`).

    Raises:
        LocalProtocolError: ``rec`` is not an instance of a @record class.
    """
    chunks: list[bytes] = []
    write_record(rec, chunks.append)
    return b"".join(chunks)


def encode_records(records: Sequence[Record], limits: WireLimits = DEFAULT_WIRE_LIMITS) -> bytes:
    """Encode a frame's plaintext: the CBOR sequence of ``records``.

    The result's length is the sum of ``len(encode_record(r))``, so a batcher can size frames
    record by record.

    Raises:
        LocalProtocolError: no records, more than ``limits.max_records_per_frame``, a result
            longer than ``limits.max_plaintext_bytes``, or an object that is not a record.
    """
    if not 0 < len(records) <= limits.max_records_per_frame:
        raise LocalProtocolError(
            f"a frame carries 1..{limits.max_records_per_frame} records, not {len(records)}"
        )
    chunks: list[bytes] = []
    put = chunks.append
    for rec in records:
        write_record(rec, put)
    data = b"".join(chunks)
    if len(data) > limits.max_plaintext_bytes:
        raise LocalProtocolError(
            f"{len(data)} bytes of records exceed max_plaintext_bytes={limits.max_plaintext_bytes}"
        )
    return data


def _array_head_bytes(count: int) -> int:
    """Length of the shortest CBOR array head for ``count`` items."""
    return 1 if count < 24 else 2 if count < 0x100 else 3 if count < 0x10000 else 5


def _dumps(value: object) -> bytes:
    try:
        return cbor2.dumps(value)
    except cbor2.CBOREncodeError as exc:  # pragma: no cover - decoded values are encodable
        raise LocalProtocolError(f"cannot encode: {exc}") from exc


# --- Decoding ----------------------------------------------------------------------------------


def decode_records(data: bytes, registry: RecordRegistry, limits: WireLimits) -> list[Record]:
    """Decode a frame's plaintext into records, strictly.

    Unknown ignorable records (type code 0x80-0xFF) are checked and skipped; they count toward
    ``limits.max_records_per_frame``.

    Raises:
        DecodeError: with ``reason`` TOO_LARGE (a WireLimits bound), UNSUPPORTED (an unknown
            critical record type) or MALFORMED (anything else that is not exactly canonical
            meshmsg CBOR: see docs/protocol/wire.md for the list).
    """
    if not data:
        raise DecodeError("empty frame: a frame carries at least one record")
    if len(data) > limits.max_plaintext_bytes:
        raise too_large(f"frame plaintext of {len(data)} bytes", limits.max_plaintext_bytes)
    data = bytes(data)  # no copy for bytes; both paths need an immutable object
    fast = read_frame(data, registry._fast, limits)
    if fast is not None:  # every record known and exactly canonical: the strict path agrees
        return cast("list[Record]", fast)
    return _decode_strict(data, registry, limits)


def _decode_strict(data: bytes, registry: RecordRegistry, limits: WireLimits) -> list[Record]:
    """The reference decoder (cbor2, then the field specs) for a non-empty frame in bounds.

    It decides every frame the fast path gives up on, so every rejection comes from here.
    """
    first = _loads(data, limits)
    records: list[Record] = []
    rec = _to_record(first, 0, registry, limits)
    if rec is not None:
        records.append(rec)
    encoded = _dumps(first)
    if encoded != data:  # equal: one canonical record fills the frame, the common case
        if not data.startswith(encoded):
            raise _not_canonical(0, 0)
        _decode_rest(data, len(encoded), records, registry, limits)
    return records


def _to_record(
    item: object, index: int, registry: RecordRegistry, limits: WireLimits
) -> Record | None:
    if type(item) is not tuple or not item:
        what = "an empty array" if item == () else describe_kind(item)
        raise DecodeError(f"record {index}: expected an array [type_code, fields...], got {what}")
    check_container(len(item), limits)
    code = item[0]
    if type(code) is not int or not 0 <= code <= MAX_TYPE_CODE:
        raise DecodeError(f"record {index}: type code must be an int in [0, 255], got {code!r}")
    schema = registry.schema(code)
    if schema is not None:
        try:
            return cast(Record, schema.build(item, 1, limits))
        except DecodeError as exc:
            raise DecodeError(f"record {index}: {exc}", reason=exc.reason) from exc
    if code < FIRST_IGNORABLE_TYPE_CODE:
        raise DecodeError(
            f"record {index}: unknown critical record type {code:#04x}",
            reason=CloseReason.UNSUPPORTED,
        )
    _check_ignorable(item, limits)
    return None


def _check_ignorable(item: tuple[object, ...], limits: WireLimits) -> None:
    """An unknown ignorable record is skipped, but must still be strict meshmsg CBOR."""
    pending: list[object] = [item]
    while pending:
        value = pending.pop()
        kind = type(value)
        if kind is tuple:
            assert isinstance(value, tuple)
            check_container(len(value), limits)
            pending.extend(value)
        elif kind is bytes or kind is str:
            assert isinstance(value, bytes | str)
            size = len(value) if isinstance(value, bytes) else utf8_len(value)
            if size > limits.max_string_bytes:
                raise too_large(f"string of {size} bytes", limits.max_string_bytes)
        elif not (kind is int or kind is bool or value is None):
            raise DecodeError(f"unknown ignorable record contains {describe_kind(value)}")


def _decode_rest(
    data: bytes, start: int, records: list[Record], registry: RecordRegistry, limits: WireLimits
) -> None:
    """Decode the records after the first, then prove their encoding canonical."""
    # cbor2 decodes one item per call from a file-like object and seeks back to its end, so
    # the cursor's position tells where each record ended.
    cursor = _Cursor(data, start)
    decoder = cbor2.CBORDecoder(
        cast("IO[bytes]", cursor),  # cbor2 calls only readable/seekable/read/seek
        semantic_decoders=_DENY_ALL_TAGS,
        tag_hook=_reject_tag,
        object_hook=_reject_map,
        max_depth=limits.max_cbor_depth,
        allow_indefinite=False,
        allow_duplicate_keys=False,
        read_size=_READ_SIZE_BYTES,
    )
    items: list[object] = []
    offsets = [start]
    while cursor.position < len(data):
        index = len(items) + 1
        if index >= limits.max_records_per_frame:
            raise too_large("number of records in a frame", limits.max_records_per_frame)
        item = _decode_next(decoder, offsets[-1])
        rec = _to_record(item, index, registry, limits)
        if rec is not None:
            records.append(rec)
        items.append(item)
        offsets.append(cursor.position)
    _check_canonical(data, items, offsets)


def _check_canonical(data: bytes, items: list[object], offsets: list[int]) -> None:
    """Re-encode ``items`` and compare with the bytes they were decoded from."""
    tail = memoryview(data)[offsets[0] :]
    encoded = _dumps(items)  # one call: the outer array's head, then each item's encoding
    if len(encoded) - len(tail) == _array_head_bytes(len(items)) and encoded.endswith(tail):
        return
    for index, item in enumerate(items):  # slow path, only to name the offending record
        if not data.startswith(_dumps(item), offsets[index]):
            raise _not_canonical(index + 1, offsets[index])
    # Every item matched at its own offset and the offsets are contiguous: the sequence matched.
    raise AssertionError("unreachable")  # pragma: no cover


def _not_canonical(index: int, offset: int) -> DecodeError:
    return DecodeError(
        f"record {index} at byte {offset}: not the shortest encoding (an integer, length or "
        "string head uses more bytes than needed)"
    )


def _loads(data: bytes, limits: WireLimits) -> object:
    try:
        value: object = cbor2.loads(
            data,
            semantic_decoders=_DENY_ALL_TAGS,
            tag_hook=_reject_tag,
            object_hook=_reject_map,
            max_depth=limits.max_cbor_depth,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            immutable=True,
        )
    except cbor2.CBORError as exc:
        raise _translate(exc, 0) from exc
    except BaseException as exc:
        _raise_if_rust_panic(exc)
        raise
    return value


def _decode_next(decoder: cbor2.CBORDecoder, offset: int) -> object:
    try:
        value: object = decoder.decode(immutable=True)
    except cbor2.CBORError as exc:
        raise _translate(exc, offset) from exc
    except BaseException as exc:
        _raise_if_rust_panic(exc)
        raise
    return value


def _raise_if_rust_panic(exc: BaseException) -> None:
    """Translate a Rust panic inside cbor2 into DecodeError; return for anything else.

    A panic is a cbor2 bug that this peer's bytes reached. It unwound out of one call that
    shares no state with other calls, so closing this one link, and keeping the node up, is
    the safe response.
    """
    if _is_rust_panic(exc):
        raise DecodeError(f"cbor2 panicked on this input: {exc!r}") from exc


def _is_rust_panic(exc: BaseException) -> bool:
    # pyo3 raises pyo3_runtime.PanicException, a BaseException subclass (so ``except
    # Exception`` misses it) in a module that cannot be imported: recognise it by name.
    kind = type(exc)
    return kind.__name__ == "PanicException" and kind.__module__ == "pyo3_runtime"


def _translate(exc: cbor2.CBORError, offset: int) -> DecodeError:
    """Turn a cbor2 error into a DecodeError with the right reason and a clear message."""
    cause: BaseException | None = exc
    while cause is not None:  # our own DecodeError (a tag, a map) may be wrapped several times
        if isinstance(cause, DecodeError):
            return DecodeError(f"at byte {offset}: {cause}", reason=cause.reason)
        if isinstance(cause, UnicodeDecodeError):
            return DecodeError(f"at byte {offset}: text string is not valid UTF-8")
        cause = cause.__cause__
    if isinstance(exc, cbor2.CBORDecodeEOF):
        return DecodeError(f"at byte {offset}: truncated CBOR item at the end of the frame")
    message = str(exc)
    if "nesting depth" in message:  # cbor2's max_depth error
        return DecodeError(f"at byte {offset}: {message}", reason=CloseReason.TOO_LARGE)
    return DecodeError(f"at byte {offset}: invalid CBOR: {message}")


class _DenyAllTags(Mapping[int, Callable[[object, bool], object]]):
    """A semantic_decoders mapping that refuses every tag number when cbor2 looks it up.

    cbor2 consults this mapping before its built-in tag decoders and its tag_hook, and the
    lookup happens at the tag head, before the tagged content is decoded.
    """

    def __getitem__(self, tag: int) -> Callable[[object, bool], object]:
        raise DecodeError(f"CBOR tag {tag} is not allowed")

    def __len__(self) -> int:
        return 0

    def __iter__(self) -> Iterator[int]:
        return iter(())


_DENY_ALL_TAGS: Final = _DenyAllTags()


def _reject_tag(tag: cbor2.CBORTag, immutable: bool) -> object:
    # Unreachable while _DENY_ALL_TAGS answers every lookup; kept so that a change in cbor2's
    # lookup order still cannot let a tag through.
    raise DecodeError(f"CBOR tag {tag.tag} is not allowed")


def _reject_map(mapping: Mapping[object, object], immutable: bool) -> object:
    raise DecodeError("CBOR maps are not allowed")


class _Cursor:
    """The file face cbor2's CBORDecoder needs, over immutable bytes (``io`` is off limits).

    Being seekable lets cbor2 read ahead ``read_size`` bytes and seek back to the end of each
    item, so ``position`` is exactly where the last decoded item ended.
    """

    __slots__ = ("_data", "position")

    def __init__(self, data: bytes, position: int) -> None:
        self._data = data
        self.position = position

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        start = self.position
        end = len(self._data) if size < 0 else min(start + size, len(self._data))
        self.position = end
        return self._data[start:end]

    def seek(self, offset: int, whence: int = 0) -> int:
        base = (0, self.position, len(self._data))[whence]
        self.position = min(max(base + offset, 0), len(self._data))
        return self.position

    def tell(self) -> int:
        return self.position
