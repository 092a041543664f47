"""Attachment format: sealing, chunk map, proofs, strict parsing (protocol/attachments.md)."""

from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from meshmsg.config import AttachConfig
from meshmsg.core.attach.assembly import AttachmentRef, Bitfield, ChunkOpener, Sealer, check_chunk
from meshmsg.core.attach.format import (
    CHUNK_BYTES,
    CHUNK_CIPHERTEXT_BYTES,
    MANIFEST_BYTES,
    Manifest,
    attachment_id,
    chunk_count,
    manifest_for_id,
)
from meshmsg.core.attach.merkle import MerkleTree, leaf_hash, proof_length, root_from_proof, verify
from meshmsg.errors import InvalidAttachment, LocalProtocolError

CONFIG = AttachConfig()
KEY = bytes(range(32))
DONE = bytes(range(16))


def seal(data: bytes, key: bytes = KEY) -> tuple[Manifest, MerkleTree, list[bytes]]:
    sealer = Sealer(key, DONE, len(data), CONFIG)
    chunks = []
    while sealer.next_index < chunk_count(len(data)):
        start = sealer.next_index * CHUNK_BYTES
        chunks.append(sealer.seal(data[start : start + sealer.next_length]))
    manifest, tree = sealer.finish()
    return manifest, tree, chunks


def reassemble(manifest: Manifest, size: int, chunks: list[bytes], key: bytes = KEY) -> bytes:
    opener = ChunkOpener(key, manifest, size)
    return b"".join(opener.open(i, c) for i, c in enumerate(chunks))


# Sizes around every boundary that matters: empty, buckets, one chunk, several chunks.
SIZES = st.one_of(
    st.integers(0, 3 * CHUNK_BYTES + 10),
    st.sampled_from([0, 1, 1_024, 1_025, CHUNK_BYTES - 1, CHUNK_BYTES, CHUNK_BYTES + 1]),
)


@settings(max_examples=40, deadline=None)
@given(size=SIZES, seed=st.integers(0, 2**32))
def test_seal_then_open_gives_the_same_bytes(size: int, seed: int) -> None:
    data = random.Random(seed).randbytes(size)
    manifest, tree, chunks = seal(data)
    assert manifest.count == len(chunks) == chunk_count(size)
    assert sum(len(c) for c in chunks) == manifest.ciphertext_bytes
    for index, chunk in enumerate(chunks):
        check_chunk(manifest, index, tree.proof(index), chunk)
    assert reassemble(manifest, size, chunks) == data
    ref = AttachmentRef(manifest.attachment_id, manifest.encode(), KEY, DONE, "f.bin", size, "")
    assert ref.check(CONFIG) == manifest


@settings(max_examples=40, deadline=None)
@given(size=st.integers(1, 3 * CHUNK_BYTES), data=st.data())
def test_any_tampered_chunk_is_refused(size: int, data: st.DataObject) -> None:
    manifest, tree, chunks = seal(bytes(size))
    index = data.draw(st.integers(0, len(chunks) - 1))
    position = data.draw(st.integers(0, len(chunks[index]) - 1))
    bit = data.draw(st.integers(0, 7))
    forged = bytearray(chunks[index])
    forged[position] ^= 1 << bit
    with pytest.raises(InvalidAttachment, match="does not match the attachment's chunk map"):
        check_chunk(manifest, index, tree.proof(index), bytes(forged))
    with pytest.raises(InvalidAttachment, match="fails authentication"):
        ChunkOpener(KEY, manifest, size).open(index, bytes(forged))


def test_chunks_cannot_be_swapped_or_truncated() -> None:
    manifest, tree, chunks = seal(bytes(2 * CHUNK_BYTES))
    with pytest.raises(InvalidAttachment):
        check_chunk(manifest, 0, tree.proof(0), chunks[1])
    with pytest.raises(InvalidAttachment, match="wrong length"):
        check_chunk(manifest, 1, tree.proof(1), chunks[1][:-1])
    # The recipient's key opens no chunk of the same file under another position or size.
    with pytest.raises(InvalidAttachment, match="fails authentication"):
        ChunkOpener(KEY, manifest, 2 * CHUNK_BYTES).open(1, chunks[0])
    other, _, other_chunks = seal(bytes(2 * CHUNK_BYTES - 100))
    with pytest.raises(InvalidAttachment, match="fails authentication"):
        ChunkOpener(KEY, other, 2 * CHUNK_BYTES - 100).open(0, chunks[0])
    assert other_chunks[0] != chunks[0]  # the size is bound into every chunk


@settings(max_examples=60, deadline=None)
@given(manifest=st.binary(min_size=MANIFEST_BYTES, max_size=MANIFEST_BYTES))
def test_a_chunk_map_that_does_not_match_the_id_is_refused(manifest: bytes) -> None:
    real, _, _ = seal(bytes(100))
    assume(manifest != real.encode())
    with pytest.raises(InvalidAttachment):
        manifest_for_id(real.attachment_id, manifest)


@given(data=st.binary(max_size=100))
def test_manifest_parser_is_strict(data: bytes) -> None:
    try:
        parsed = Manifest.decode(data)
    except InvalidAttachment:
        return
    assert parsed.encode() == data  # whatever parses is canonical


def test_manifest_bounds() -> None:
    good = seal(bytes(10))[0].encode()
    assert Manifest.decode(good).attachment_id == attachment_id(good)
    for bad in (good[:-1], good + b"\0", b"\x02" + good[1:], good[:1] + bytes(4) + good[5:]):
        with pytest.raises(InvalidAttachment):
            Manifest.decode(bad)
    with pytest.raises(InvalidAttachment, match="not a bucket"):
        Manifest(count=1, last_length=1_000, root=bytes(32), done_tag=bytes(16))


@settings(max_examples=80, deadline=None)
@given(count=st.integers(1, 300), data=st.data())
def test_merkle_proofs_verify_exactly_their_leaf(count: int, data: st.DataObject) -> None:
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(count)]
    tree = MerkleTree(leaves)
    index = data.draw(st.integers(0, count - 1))
    proof = tree.proof(index)
    assert len(proof) == proof_length(index, count) <= 9
    verify(tree.root, leaves[index], index, count, proof)
    if count > 1:
        other = data.draw(st.integers(0, count - 1).filter(lambda i: i != index))
        with pytest.raises(InvalidAttachment):
            verify(tree.root, leaves[other], index, count, proof)
    with pytest.raises(InvalidAttachment, match="wrong length"):
        root_from_proof(leaves[index], index, count, (*proof, bytes(32)))


def test_merkle_tree_has_rfc6962_shape() -> None:
    # Five leaves: ((0 1)(2 3)) 4 — the fifth is promoted twice, and its proof is one hash.
    leaves = [leaf_hash(bytes([i])) for i in range(5)]
    tree = MerkleTree(leaves)
    from meshmsg.core.attach.merkle import node_hash

    left = node_hash(node_hash(leaves[0], leaves[1]), node_hash(leaves[2], leaves[3]))
    assert tree.root == node_hash(left, leaves[4])
    assert tree.proof(4) == (left,)


@given(count=st.integers(1, 100), bits=st.binary(max_size=20))
def test_bitfield_parser_is_strict(count: int, bits: bytes) -> None:
    try:
        field = Bitfield(count, bits)
    except InvalidAttachment:
        return
    assert field.encode() == bits
    assert field.held == sum(1 for i in range(count) if i in field)


def test_bitfield_tracks_what_is_missing() -> None:
    mine, theirs = Bitfield(10), Bitfield.full(10)
    assert mine.add(3)
    assert not mine.add(3)
    assert list(mine.missing_from(theirs)) == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    assert Bitfield(10, mine.encode()).held == 1
    assert not mine.complete
    with pytest.raises(InvalidAttachment, match="past the last chunk"):
        Bitfield(10, b"\x00\x01")


def test_attachment_ref_checks_its_fields() -> None:
    manifest, _, _ = seal(bytes(5))
    good = AttachmentRef(
        manifest.attachment_id, manifest.encode(), KEY, DONE, "a.txt", 5, "text/plain"
    )
    good.check(CONFIG)
    for change in (
        {"size": 5_000_000},
        {"name": "../etc"},
        {"name": ""},
        {"name": "x" * 256},
        {"key": b"short"},
        {"attachment_id": bytes(32)},
        {"done_token": bytes(16)},
    ):
        bad = _replace(good, **change)
        with pytest.raises(InvalidAttachment):
            bad.check(CONFIG)


def _replace(ref: AttachmentRef, **changes: object) -> AttachmentRef:
    import dataclasses

    return dataclasses.replace(ref, **changes)  # type: ignore[arg-type]


def test_sealer_refuses_misuse() -> None:
    with pytest.raises(LocalProtocolError):
        Sealer(KEY, DONE, CONFIG.max_attachment_bytes + 1, CONFIG)
    sealer = Sealer(KEY, DONE, 10, CONFIG)
    with pytest.raises(LocalProtocolError, match="not sealed"):
        sealer.finish()
    with pytest.raises(LocalProtocolError, match="10 bytes"):
        sealer.seal(bytes(9))
    sealer.seal(bytes(10))
    with pytest.raises(LocalProtocolError, match="already sealed"):
        sealer.seal(b"")


def test_ciphertext_sizes_and_id_are_deterministic_for_a_key() -> None:
    data = hashlib.sha256(b"x").digest() * 4_000  # 128,000 B: two chunks and 5,120 B
    first, second = seal(data)[0], seal(data)[0]
    assert first == second
    assert first.count == 3
    assert first.ciphertext_bytes == 2 * CHUNK_CIPHERTEXT_BYTES + 8_192 + 16
    assert seal(data, key=bytes(32))[0].attachment_id != first.attachment_id


def test_the_protocol_doc_carries_the_generated_record_table() -> None:
    from pathlib import Path

    from meshmsg.core.attach.records import (
        ATTACH_SESSION_RECORDS,
        AttachmentMessage,
        AttachmentRefEntry,
        HoldingEntry,
    )
    from meshmsg.core.wire import record_table

    doc = Path(__file__).parents[2] / "docs" / "protocol" / "attachments.md"
    table = record_table(
        [*ATTACH_SESSION_RECORDS, AttachmentMessage, AttachmentRefEntry, HoldingEntry]
    )
    assert table in doc.read_text("utf-8")


def test_done_tokens_are_checked_against_the_manifest() -> None:
    manifest, _, _ = seal(bytes(10))
    assert manifest.is_done_token(DONE)
    assert not manifest.is_done_token(bytes(16))
    assert not manifest.is_done_token(DONE[:15])


@given(count=st.integers(1, 100), data=st.data())
def test_bitfield_missing_from_is_the_set_difference(count: int, data: st.DataObject) -> None:
    mine, theirs = Bitfield(count), Bitfield(count)
    for field in (mine, theirs):
        for index in data.draw(st.sets(st.integers(0, count - 1))):
            field.add(index)
    expected = [i for i in range(count) if i in theirs and i not in mine]
    assert list(mine.missing_from(theirs)) == expected
