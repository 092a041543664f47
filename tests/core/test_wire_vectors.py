"""The frozen wire vectors in tests/vectors/wire/: decode to the listed records and back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meshmsg.config import WireLimits
from meshmsg.core.records import LINK_RECORDS
from meshmsg.core.wire import ListOf, Optional, Record, decode_records, encode_records, schema_of
from meshmsg.errors import CloseReason, DecodeError

VECTORS = json.loads(
    (Path(__file__).parents[1] / "vectors" / "wire" / "link_records.json").read_text("utf-8")
)
LIMITS = WireLimits()


def from_json(value: object) -> object:
    """JSON field value -> Python field value (arrays are tuples, {"hex": ...} is bytes)."""
    if isinstance(value, list):
        return tuple(from_json(v) for v in value)
    if isinstance(value, dict):
        return bytes.fromhex(value["hex"])
    return value


def expected_records(entries: list[dict[str, object]]) -> list[Record]:
    by_name = {cls.__name__: cls for cls in LINK_RECORDS}
    out: list[Record] = []
    for entry in entries:
        cls = by_name[str(entry["record"])]
        fields = entry["fields"]
        assert isinstance(fields, dict)
        assert set(fields) == set(schema_of(cls).names)
        out.append(cls(**{name: from_json(v) for name, v in fields.items()}))
    return out


def test_the_vector_file_covers_every_link_record() -> None:
    named = {r["record"] for v in VECTORS["valid"] for r in v["records"]}
    assert named == {cls.__name__ for cls in LINK_RECORDS}
    assert VECTORS["registry"] == "LINK_RECORDS"
    # The specs used by the link records, so new kinds of field get a vector too.
    assert {type(s) for cls in LINK_RECORDS for s in schema_of(cls).specs} >= {ListOf, Optional}


@pytest.mark.parametrize("vector", VECTORS["valid"], ids=lambda v: v["name"])
def test_valid_vector(vector: dict[str, object]) -> None:
    payload = bytes.fromhex(str(vector["payload_hex"]))
    records = vector["records"]
    assert isinstance(records, list)
    expected = expected_records(records)
    assert decode_records(payload, LINK_RECORDS, LIMITS) == expected
    if vector.get("encode", True):
        assert encode_records(expected) == payload


@pytest.mark.parametrize("vector", VECTORS["invalid"], ids=lambda v: v["name"])
def test_invalid_vector(vector: dict[str, object]) -> None:
    with pytest.raises(DecodeError) as info:
        decode_records(bytes.fromhex(str(vector["payload_hex"])), LINK_RECORDS, LIMITS)
    assert info.value.reason is CloseReason[str(vector["reason"])]
