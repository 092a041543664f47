"""Sealing, opening and the chunk bitfield: misuse by our own code is a LocalProtocolError, bad
input from a peer an InvalidAttachment naming what is wrong; bitfields round-trip and refuse
bits past the end; a byte range maps onto the chunks that hold it."""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshmsg.config import AttachConfig
from meshmsg.core.attach.assembly import (
    AttachmentRef,
    Bitfield,
    ChunkOpener,
    Sealer,
    check_name,
)
from meshmsg.core.attach.format import (
    CHUNK_BYTES,
    Manifest,
    check_size,
    chunk_count,
    manifest_for_id,
    seal_chunk,
)
from meshmsg.errors import InvalidAttachment, LocalProtocolError

CONFIG = AttachConfig()
KEY, DONE = b"k" * 32, b"d" * 16


def _sealed(size: int) -> tuple[Manifest, list[bytes], bytes]:
    data = random.Random(size).randbytes(size)
    sealer = Sealer(KEY, DONE, size, CONFIG)
    chunks = []
    for index in range(chunk_count(size)):
        start = index * CHUNK_BYTES
        chunks.append(sealer.seal(data[start : start + sealer.next_length]))
    manifest, _ = sealer.finish()
    return manifest, chunks, data


def test_the_sealer_refuses_misuse() -> None:
    with pytest.raises(LocalProtocolError, match="32 bytes, a done token 16"):
        Sealer(b"short", DONE, 10, CONFIG)
    with pytest.raises(LocalProtocolError, match="32 bytes, a done token 16"):
        Sealer(KEY, b"short", 10, CONFIG)
    with pytest.raises(LocalProtocolError, match="attachments are at most"):
        Sealer(KEY, DONE, CONFIG.max_attachment_bytes + 1, CONFIG)
    with pytest.raises(LocalProtocolError, match="attachments are at most"):
        Sealer(KEY, DONE, -1, CONFIG)
    sealer = Sealer(KEY, DONE, CHUNK_BYTES + 5, CONFIG)
    with pytest.raises(LocalProtocolError, match="chunk 0 is"):
        sealer.seal(b"x")
    with pytest.raises(LocalProtocolError, match="2 chunks are not sealed"):
        sealer.finish()
    sealer.seal(bytes(CHUNK_BYTES))
    sealer.seal(bytes(5))
    with pytest.raises(LocalProtocolError, match="every chunk is already sealed"):
        sealer.seal(b"")
    with pytest.raises(LocalProtocolError, match="an attachment key is 32 bytes"):
        seal_chunk(b"short", 0, 1, 1, b"x")


def test_the_opener_refuses_a_wrong_key_length_or_chunk_length() -> None:
    manifest, chunks, data = _sealed(CHUNK_BYTES + 100)
    with pytest.raises(InvalidAttachment, match="an attachment key is 32 bytes"):
        ChunkOpener(b"short", manifest, len(data))
    with pytest.raises(InvalidAttachment, match="does not match 2 chunks"):
        ChunkOpener(KEY, manifest, 10)
    with pytest.raises(InvalidAttachment, match="does not match the last chunk's length"):
        ChunkOpener(KEY, manifest, 2 * CHUNK_BYTES)
    opener = ChunkOpener(KEY, manifest, len(data))
    with pytest.raises(InvalidAttachment, match="chunk 1 has the wrong length"):
        opener.open(1, chunks[1] + b"\x00")
    with pytest.raises(InvalidAttachment, match="chunk 2 of 2 is out of range"):
        opener.open(2, chunks[1])
    with pytest.raises(InvalidAttachment, match="chunk 0 fails authentication"):
        opener.open(0, bytes([chunks[0][0] ^ 1]) + chunks[0][1:])
    assert opener.open(0, chunks[0]) + opener.open(1, chunks[1]) == data


@settings(max_examples=100, deadline=None)
@given(size=st.integers(0, 3 * CHUNK_BYTES), data=st.data())
def test_a_byte_range_maps_onto_the_chunks_that_hold_it(size: int, data: st.DataObject) -> None:
    manifest, _, _ = _sealed(size)
    opener = ChunkOpener(KEY, manifest, size)
    start = data.draw(st.integers(0, size), label="start")
    end = data.draw(st.integers(start, size), label="end")
    spans = list(opener.span(start, end))
    assert sum(take for _, _, take in spans) == end - start
    position = start
    for index, offset, take in spans:
        assert index * CHUNK_BYTES + offset == position  # contiguous, in order
        assert 0 < take <= CHUNK_BYTES - offset
        position += take
    with pytest.raises(LocalProtocolError, match="outside"):
        list(opener.span(0, size + 1))
    if start < end:
        with pytest.raises(LocalProtocolError, match="outside"):
            list(opener.span(end, start))


@settings(max_examples=200, deadline=None)
@given(count=st.integers(1, 100), data=st.data())
def test_bitfields_round_trip_and_refuse_bits_past_the_end(count: int, data: st.DataObject) -> None:
    held = data.draw(st.sets(st.integers(0, count - 1)), label="held")
    field = Bitfield(count)
    for index in held:
        assert field.add(index) is True
        assert field.add(index) is False
    back = Bitfield(count, field.encode())
    assert {i for i in range(count) if i in back} == held
    assert back.held == len(held)
    assert back.complete == (len(held) == count)
    full = Bitfield.full(count)
    assert list(back.missing_from(full)) == sorted(set(range(count)) - held)
    gone = data.draw(st.integers(0, count - 1), label="gone")
    back.discard(gone)
    back.discard(gone)  # not held any more: nothing changes
    assert back.held == len(held - {gone})
    spare = (8 - count % 8) % 8
    if spare:
        raw = bytearray(field.encode())
        raw[-1] |= 1  # the last bit is past the last chunk
        with pytest.raises(InvalidAttachment, match="past the last chunk"):
            Bitfield(count, bytes(raw))
    with pytest.raises(InvalidAttachment, match=f"for {count} chunks is"):
        Bitfield(count, field.encode() + b"\x00")
    with pytest.raises(LocalProtocolError, match="out of range"):
        field.add(count)
    with pytest.raises(InvalidAttachment, match="different attachments"):
        list(field.missing_from(Bitfield(count + 1)))


def _ref(**changes: object) -> AttachmentRef:
    manifest, _, _ = _sealed(100)
    ref = AttachmentRef(manifest.attachment_id, manifest.encode(), KEY, DONE, "a.txt", 100, "")
    return dataclasses.replace(ref, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"attachment_id": b"x" * 16}, "attachment id and key are 32 bytes each"),
        ({"key": b"x" * 16}, "attachment id and key are 32 bytes each"),
        ({"done_token": b"e" * 16}, "the done token does not match"),
        ({"size": 5000}, "size 5000 does not match the last chunk's length"),
        ({"size": CONFIG.max_attachment_bytes + 1}, "exceeds the configured cap"),
        ({"name": ""}, "one path component"),
        ({"name": "a/b"}, "one path component"),
        ({"name": "a\\b"}, "one path component"),
        ({"name": "é" * 128}, "one path component"),
        ({"name": ".."}, "a plain file name"),
        ({"name": "a\x00b"}, "a plain file name"),
        ({"media_type": "t" * 256}, "media type too long"),
    ],
)
def test_an_attachment_reference_is_checked_field_by_field(
    changes: dict[str, object], reason: str
) -> None:
    assert _ref().check(CONFIG).count == 1
    with pytest.raises(InvalidAttachment, match=reason):
        _ref(**changes).check(CONFIG)


def test_manifests_refuse_what_no_sealer_makes() -> None:
    manifest, _, _ = _sealed(10)
    with pytest.raises(InvalidAttachment, match="a chunk map root is 32 bytes, a done tag 16"):
        dataclasses.replace(manifest, root=b"r" * 31)
    with pytest.raises(InvalidAttachment, match="an attachment id is 32 bytes"):
        manifest_for_id(b"i" * 16, manifest.encode())
    with pytest.raises(InvalidAttachment, match="size -1 does not match"):
        check_size(manifest, -1)
    with pytest.raises(LocalProtocolError, match="not negative"):
        chunk_count(-1)
    check_name("report.pdf", "application/pdf", CONFIG)
