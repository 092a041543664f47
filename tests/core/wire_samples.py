"""Test-only records that use every field spec (the link records use only a few)."""

from __future__ import annotations

from dataclasses import dataclass

from meshmsg.core.records import LINK_RECORDS, Ping
from meshmsg.core.wire import (
    CBOR_INT_MIN,
    UINT64_MAX,
    Bool,
    Bytes,
    Int,
    ListOf,
    Nested,
    Optional,
    RecordRegistry,
    Text,
    UInt,
    record,
    struct,
    wire,
)


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class Point:
    x: int = wire(Int(min=-1000, max=1000))
    label: bytes = wire(Bytes.exact(4))


@record(0x70)
@dataclass(frozen=True, slots=True, kw_only=True)
class Everything:
    count: int = wire(UInt(max=1000))
    delta: int = wire(Int(min=CBOR_INT_MIN, max=UINT64_MAX))
    flag: bool = wire(Bool())
    blob: bytes = wire(Bytes(min_len=1, max_len=16))
    name: str = wire(Text(max_bytes=12))
    tags: tuple[str, ...] = wire(ListOf(Text(max_bytes=4), max_items=3))
    origin: Point = wire(Nested(Point))
    path: tuple[Point, ...] = wire(ListOf(Nested(Point), max_items=4))
    extra: Point | None = wire(Optional(Nested(Point)))
    note: str | None = wire(Optional(Text(max_bytes=8)))


@record(0x71)
@dataclass(frozen=True, slots=True, kw_only=True)
class Wrapper:
    """A record nested in a record: its type code is not on the wire."""

    inner: Ping = wire(Nested(Ping))


@record(0x90)
@dataclass(frozen=True, slots=True, kw_only=True)
class Hint:
    """A known record in the ignorable range: known means fully checked, like any other."""

    level: int = wire(UInt(max=3))


SAMPLE_RECORDS = RecordRegistry([Everything, Wrapper, Hint])
ALL_RECORDS = LINK_RECORDS.extend(SAMPLE_RECORDS)


def everything(**changes: object) -> Everything:
    """A valid Everything, with some fields replaced."""
    fields: dict[str, object] = {
        "count": 7,
        "delta": -2,
        "flag": True,
        "blob": b"\x01",
        "name": "hi",
        "tags": ("a",),
        "origin": Point(x=1, label=b"abcd"),
        "path": (),
        "extra": None,
        "note": None,
    }
    fields.update(changes)
    return Everything(**fields)  # type: ignore[arg-type]
