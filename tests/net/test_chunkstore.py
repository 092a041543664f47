"""The chunk store on disk: durable chunks, strict reads, streaming seal with bounded memory."""

from __future__ import annotations

import hashlib
import io
import random
import tracemalloc
from pathlib import Path

import pytest

from meshmsg.config import AttachConfig
from meshmsg.core.attach.assembly import check_chunk
from meshmsg.core.attach.format import CHUNK_BYTES
from meshmsg.errors import InvalidAttachment
from meshmsg.net.chunkstore import COMMITTED, EMPTY, SLOT_BYTES, SLOTS_NAME, ChunkStore

CONFIG = AttachConfig()


class Pattern(io.RawIOBase):
    """A readable file of ``size`` pseudo-random bytes that is never all in memory."""

    def __init__(self, size: int) -> None:
        self.left, self._rng, self.digest = size, random.Random(size), hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left, 7_000)  # short reads, like a pipe
        data = self._rng.randbytes(n)
        self.left -= n
        self.digest.update(data)
        return data


def test_seal_store_and_read_back_a_file(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "chunks")
    source = Pattern(3 * CHUNK_BYTES + 5)
    ref = store.seal_file(
        source, 3 * CHUNK_BYTES + 5, "a.bin", "application/octet-stream",
        key=bytes(32), done_token=bytes(16), config=CONFIG,
    )  # fmt: skip
    manifest = ref.check(CONFIG)
    assert store.scan() == {ref.attachment_id: [0, 1, 2, 3]}
    for index in range(4):
        stored = store.get(ref.attachment_id, index)
        assert stored is not None
        check_chunk(manifest, index, *stored)
    plain = b"".join(store.read_plain(ref, 0, ref.size, CONFIG))
    assert hashlib.sha256(plain).digest() == source.digest.digest()
    # A range inside one chunk and across two decrypts only what it needs.
    assert b"".join(store.read_plain(ref, 10, 20, CONFIG)) == plain[10:20]
    span = (CHUNK_BYTES - 3, CHUNK_BYTES + 4)
    assert b"".join(store.read_plain(ref, *span, CONFIG)) == plain[span[0] : span[1]]


def test_damaged_slots_read_as_missing(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path)
    attachment = bytes(range(32))
    store.put(attachment, 0, (bytes(32),), b"x" * 100)
    assert store.get(attachment, 0) == ((bytes(32),), b"x" * 100)
    path = tmp_path / attachment.hex() / SLOTS_NAME
    good = path.read_bytes()
    too_many_hashes = bytes([COMMITTED, 17]) + good[2:]
    too_long = good[:4] + (SLOT_BYTES).to_bytes(4, "big") + good[8:]
    nonzero_pad = good[:2] + b"\x01" + good[3:]
    for damaged in (b"", b"\x10", good[:-1], too_many_hashes, too_long, nonzero_pad):
        path.write_bytes(damaged)
        assert store.get(attachment, 0) is None
    assert store.get(attachment, 1) is None
    assert store.get(attachment, -1) is None
    store.delete(attachment)
    assert store.scan() == {}


def test_only_committed_slots_are_held(tmp_path: Path) -> None:
    """A crash between the two syncs leaves the slot's state EMPTY: the scan does not count it,
    a read does not return it; chunks are found wherever their slot is in the file."""
    store = ChunkStore(tmp_path)
    attachment = bytes(range(32))
    store.put_many([(attachment, 5, (), b"a" * 10), (attachment, 2, (), b"b" * 20)])
    assert store.scan() == {attachment: [2, 5]}
    path = tmp_path / attachment.hex() / SLOTS_NAME
    raw = bytearray(path.read_bytes())
    raw[5 * SLOT_BYTES] = EMPTY  # as if the commit of slot 5 never reached the disk
    path.write_bytes(bytes(raw))
    assert store.scan() == {attachment: [2]}
    assert store.get(attachment, 5) is None
    assert store.get(attachment, 2) == ((), b"b" * 20)
    store.put(attachment, 5, (), b"c" * 30)  # fetched again after the restart
    assert store.get(attachment, 5) == ((), b"c" * 30)
    with pytest.raises(InvalidAttachment):
        store.put(attachment, 0, (), b"")


def test_an_interrupted_seal_leaves_nothing(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path)
    with pytest.raises(InvalidAttachment, match="shorter than announced"):
        store.seal_file(
            io.BytesIO(bytes(100)), 200, "x", "", key=bytes(32), done_token=bytes(16),
            config=CONFIG,
        )  # fmt: skip
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "staging-dead").mkdir()
    (tmp_path / "not-an-id").mkdir()
    assert store.scan() == {}
    assert not (tmp_path / "staging-dead").exists()


def test_sealing_and_reading_memory_is_bounded(tmp_path: Path) -> None:
    """8 MiB through seal and read: peak Python memory stays near a few chunks, not the file.

    The bound: one plaintext chunk, its ciphertext and file buffer (~3 x 60 KiB), plus the
    tree's 64 B per chunk; for 100 MiB (1,707 chunks) that is ~110 KB more. The file is 8 MiB,
    so holding it would show as a peak of 8 MiB or more.
    """
    store = ChunkStore(tmp_path)
    size = 8 << 20
    tracemalloc.start()
    try:
        ref = store.seal_file(
            Pattern(size), size, "big", "", key=bytes(32), done_token=bytes(16), config=CONFIG
        )
        _, seal_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        total = sum(len(part) for part in store.read_plain(ref, 0, size, CONFIG))
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == size
    assert seal_peak < 1 << 20, seal_peak
    assert read_peak < 1 << 20, read_peak


def test_chunk_files_of_the_old_layout_are_moved_into_the_slot_file(tmp_path: Path) -> None:
    """Until 2026-12-07 each chunk was a file ``<index>.c`` (ciphertext, proof hashes, u8
    number of hashes); a data directory of that layout was not read at all since. Now its
    chunks are converted at start, checked against the manifest, and the old files go; a
    damaged one is dropped (fetched again as any missing chunk)."""
    store = ChunkStore(tmp_path / "chunks")
    ref = store.seal_file(
        Pattern(2 * CHUNK_BYTES + 9), 2 * CHUNK_BYTES + 9, "old.bin", "application/octet-stream",
        key=bytes(32), done_token=bytes(16), config=CONFIG,
    )  # fmt: skip
    manifest = ref.check(CONFIG)
    directory = tmp_path / "chunks" / ref.attachment_id.hex()
    chunks = {index: store.get(ref.attachment_id, index) for index in range(3)}
    (directory / SLOTS_NAME).unlink()  # the same chunks, written as the old layout did
    for index, chunk in chunks.items():
        assert chunk is not None
        proof, data = chunk
        (directory / f"{index}.c").write_bytes(data + b"".join(proof) + bytes([len(proof)]))
    (directory / "1.c").write_bytes(b"\x07" * 40 + b"\x05")  # claims 5 hashes, has 1
    before = ChunkStore(tmp_path / "chunks").scan()
    assert before == {ref.attachment_id: [0, 2]}
    assert sorted(p.name for p in directory.iterdir()) == [SLOTS_NAME]
    for index in (0, 2):
        stored = store.get(ref.attachment_id, index)
        assert stored == chunks[index]
        assert stored is not None
        check_chunk(manifest, index, *stored)
    assert store.get(ref.attachment_id, 1) is None
    assert ChunkStore(tmp_path / "chunks").scan() == before  # nothing left to convert
