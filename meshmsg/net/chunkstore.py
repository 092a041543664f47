"""Chunk bodies on disk: one slot file per attachment, never the whole attachment in memory.

Layout under the store's root (``<data dir>/chunks``)::

    <attachment id, hex>/slots      chunk i in the fixed-size slot at i x SLOT_BYTES
    staging-<random hex>/slots      a file being sealed, renamed into place once complete

A slot is an 8-byte header (state u8, number of proof hashes u8, two zero bytes, ciphertext
length u32 big-endian), room for ``MAX_DEPTH`` proof hashes, then the ciphertext. Slots never
written read back as zeros: empty.

Why one file per attachment, not per chunk: a write is durable only after an fsync, and each
fsync is one journal commit, ~5–10 ms on a busy disk. A file per chunk needs an fsync for
each chunk and one for its directory; a slot file takes a whole batch of chunks with two:

1. the batch's slots are written with state ``EMPTY`` and the file is synced (fdatasync);
2. their state bytes are set to ``COMMITTED`` and the file is synced again.

A crash before step 2 ends leaves a slot ``EMPTY`` or ``COMMITTED`` over a body that is
already durable, never a committed slot over a torn body: step 1's sync orders them. Only
then does the driver report ``chunk_stored`` (the core marks the chunk held and advertises
it). When batches follow each other, step 2 of one batch rides on step 1 of the next
(:meth:`ChunkStore.write_slots`, ``net/chunkio.py``): one sync per batch. A one-byte state
write sits inside one disk sector, so it cannot tear. Nothing here parses more than one slot
at a time, and a damaged slot is reported as missing, never trusted: the core checks every
chunk it receives against the manifest anyway.

All methods block; the trio driver calls them in a worker thread.
"""

from __future__ import annotations

import os
import secrets
import shutil
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, Final

from meshmsg.config import AttachConfig
from meshmsg.core.attach.assembly import AttachmentRef, ChunkOpener, Sealer
from meshmsg.core.attach.format import (
    CHUNK_CIPHERTEXT_BYTES,
    DONE_TOKEN_BYTES,
    ID_BYTES,
    KEY_BYTES,
    MAX_CHUNKS,
    chunk_count,
)
from meshmsg.core.attach.merkle import HASH_BYTES, MAX_DEPTH
from meshmsg.errors import InvalidAttachment, StorageError

SLOTS_NAME: Final = "slots"
_HEADER: Final = struct.Struct(">BBHI")  # state, proof hashes, zero, ciphertext length
_PROOF_BYTES: Final = MAX_DEPTH * HASH_BYTES
SLOT_BYTES: Final = _HEADER.size + _PROOF_BYTES + CHUNK_CIPHERTEXT_BYTES
EMPTY: Final = 0
COMMITTED: Final = 0xC1  # not 1: a stray bit is not enough to make a slot look written
_COMMITTED_BYTE: Final = bytes([COMMITTED])
_BODY_AT: Final = _HEADER.size + _PROOF_BYTES
# The layout before 2026-12-07, converted at start: the largest chunk file, and how many
# files one commit takes (a batch is at most ~4 MiB in memory).
_LEGACY_MAX_BYTES: Final = CHUNK_CIPHERTEXT_BYTES + _PROOF_BYTES + 1
_CONVERT_BATCH: Final = 64


class ChunkStore:
    """Encrypted chunks by (attachment id, index)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _dir(self, attachment_id: bytes) -> Path:
        if len(attachment_id) != ID_BYTES:
            raise InvalidAttachment("an attachment id is 32 bytes")
        return self.root / attachment_id.hex()

    def put(self, attachment_id: bytes, index: int, proof: tuple[bytes, ...], data: bytes) -> None:
        """Write one chunk durably (a relay's or a recipient's, already checked by the core)."""
        self.put_many([(attachment_id, index, proof, data)])

    def put_many(self, chunks: Sequence[tuple[bytes, int, tuple[bytes, ...], bytes]]) -> None:
        """Write several chunks durably and commit them: two syncs per attachment in the batch,
        however many chunks it has (module docstring)."""
        self.write_slots(chunks, ())
        self.write_slots((), [(attachment_id, index) for attachment_id, index, _, _ in chunks])

    def write_slots(
        self,
        chunks: Sequence[tuple[bytes, int, tuple[bytes, ...], bytes]],
        commit: Sequence[tuple[bytes, int]],
    ) -> None:
        """One step of a pipelined group commit: write ``chunks`` into their slots, still
        ``EMPTY``, and mark ``commit`` ``COMMITTED``: slots whose bodies an earlier call made
        durable. One sync per file touched, so a stream of batches costs one sync per batch: a
        batch is written by one call and committed by the next (``net/chunkio.py``). The caller
        must never commit a slot it has not written and synced before (nor after a delete)."""
        by_attachment: dict[bytes, tuple[list[tuple[int, tuple[bytes, ...], bytes]], list[int]]]
        by_attachment = {}
        for attachment_id, index, proof, data in chunks:
            _check_slot(index, proof, data)
            by_attachment.setdefault(attachment_id, ([], []))[0].append((index, proof, data))
        for attachment_id, index in commit:
            by_attachment.setdefault(attachment_id, ([], []))[1].append(index)
        try:
            for attachment_id, (writes, marks) in by_attachment.items():
                self._write_file(attachment_id, writes, marks)
        except OSError as exc:
            raise StorageError(f"cannot store {len(chunks) + len(commit)} chunks: {exc}") from exc

    def _write_file(
        self, attachment_id: bytes, writes: list[tuple[int, tuple[bytes, ...], bytes]],
        marks: list[int],
    ) -> None:  # fmt: skip
        if writes:
            fd = self._open_slots(attachment_id)
        else:  # commits only: never create a file (a committed byte over nothing) for them
            try:
                fd = os.open(self._dir(attachment_id) / SLOTS_NAME, os.O_RDWR)
            except FileNotFoundError:
                return  # deleted since its bodies were written: nothing left to commit
        try:
            for index, proof, data in writes:
                # Header, proof and body in one call, without joining 60 KiB into a new buffer.
                header = _slot_header(EMPTY, proof, len(data))
                os.pwritev(fd, [header, data], index * SLOT_BYTES)
            for index in marks:  # bodies made durable by an earlier sync
                os.pwrite(fd, _COMMITTED_BYTE, index * SLOT_BYTES)
            os.fdatasync(fd)
        finally:
            os.close(fd)

    def _open_slots(self, attachment_id: bytes) -> int:
        """The attachment's slot file, open for writing; a new one is made durable first."""
        directory = self._dir(attachment_id)
        path = directory / SLOTS_NAME
        try:
            return os.open(path, os.O_RDWR)
        except FileNotFoundError:
            pass
        directory.mkdir(exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            _fsync_dir(directory)
            _fsync_dir(self.root)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def get(self, attachment_id: bytes, index: int) -> tuple[tuple[bytes, ...], bytes] | None:
        """The chunk's proof and ciphertext, or None if it is missing or damaged."""
        if not 0 <= index < MAX_CHUNKS:
            return None
        try:
            fd = os.open(self._dir(attachment_id) / SLOTS_NAME, os.O_RDONLY)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read chunk {index}: {exc}") from exc
        try:
            raw = os.pread(fd, SLOT_BYTES, index * SLOT_BYTES)
        except OSError as exc:
            raise StorageError(f"cannot read chunk {index}: {exc}") from exc
        finally:
            os.close(fd)
        return _parse_slot(raw)

    def delete(self, attachment_id: bytes) -> None:
        shutil.rmtree(self._dir(attachment_id), ignore_errors=True)

    def scan(self) -> dict[bytes, list[int]]:
        """Which chunks are on disk, by attachment (at start, to restore the core's bits).
        Staging directories are from a send that did not finish: removed."""
        held: dict[bytes, list[int]] = {}
        for entry in self.root.iterdir():
            if entry.name.startswith("staging-"):
                shutil.rmtree(entry, ignore_errors=True)
                continue
            try:
                attachment_id = bytes.fromhex(entry.name)
            except ValueError:
                continue
            if len(attachment_id) != ID_BYTES:
                continue
            self._convert_chunk_files(attachment_id, entry)
            held[attachment_id] = list(_committed(entry / SLOTS_NAME))
        return held

    def _convert_chunk_files(self, attachment_id: bytes, directory: Path) -> None:
        """Move chunks of the layout before 2026-12-07 (a file ``<index>.c`` per chunk:
        ciphertext, proof hashes, u8 number of hashes) into the slot file.

        Each batch is committed in its slots before its files go, so a crash in between
        leaves a chunk in both places (converted again at the next start), never in neither.
        A damaged file is dropped: the chunk is fetched again, as any missing one."""
        legacy = sorted(p for p in directory.glob("*.c") if p.stem.isdigit())
        for start in range(0, len(legacy), _CONVERT_BATCH):
            batch = legacy[start : start + _CONVERT_BATCH]
            chunks: list[tuple[bytes, int, tuple[bytes, ...], bytes]] = []
            for path in batch:
                chunk = _read_chunk_file(path)
                if chunk is not None:
                    chunks.append((attachment_id, int(path.stem), *chunk))
            self.put_many(chunks)
            for path in batch:
                path.unlink()
        if legacy:
            _fsync_dir(directory)

    def seal_file(
        self, source: BinaryIO, size: int, name: str, media_type: str, *,
        key: bytes, done_token: bytes, config: AttachConfig,
    ) -> AttachmentRef:  # fmt: skip
        """Encrypt ``size`` bytes from ``source`` into the store, one chunk in memory at a time.

        The bodies go into their slots as they are sealed, the headers (with the proofs) once
        the tree is known; one sync, then the staging directory is renamed into place.
        Memory: one chunk (60 KiB) plus 64 bytes per chunk for the tree (140 KB at 128 MiB).
        """
        if len(key) != KEY_BYTES or len(done_token) != DONE_TOKEN_BYTES:
            raise InvalidAttachment("a key is 32 bytes and a done token 16")
        sealer = Sealer(key, done_token, size, config)
        staging = self.root / f"staging-{secrets.token_hex(8)}"
        staging.mkdir(mode=0o700)
        try:
            fd = os.open(staging / SLOTS_NAME, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                for index in range(chunk_count(size)):
                    plaintext = _read_exactly(source, sealer.next_length)
                    os.pwrite(fd, sealer.seal(plaintext), index * SLOT_BYTES + _BODY_AT)
                manifest, tree = sealer.finish()
                for index in range(manifest.count):
                    header = _slot_header(
                        COMMITTED, tree.proof(index), manifest.chunk_length(index)
                    )
                    os.pwrite(fd, header, index * SLOT_BYTES)
                os.fsync(fd)
            finally:
                os.close(fd)
            _fsync_dir(staging)
            os.replace(staging, self._dir(manifest.attachment_id))
            _fsync_dir(self.root)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise StorageError(f"cannot seal {name!r}: {exc}") from exc
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return AttachmentRef(
            manifest.attachment_id, manifest.encode(), key, done_token, name, size, media_type
        )

    def read_plain(
        self, ref: AttachmentRef, start: int, end: int, config: AttachConfig
    ) -> Iterator[bytes]:
        """Plaintext bytes [start, end) of a complete attachment, decrypted chunk by chunk."""
        opener = ChunkOpener(ref.key, ref.check(config), ref.size)
        for index, offset, take in opener.span(start, end):
            stored = self.get(ref.attachment_id, index)
            if stored is None:
                raise InvalidAttachment(f"chunk {index} is not stored")
            yield opener.open(index, stored[1])[offset : offset + take]


def _check_slot(index: int, proof: tuple[bytes, ...], data: bytes) -> None:
    """What fits a slot (the core checked the chunk; this guards the layout)."""
    if not 0 <= index < MAX_CHUNKS or len(proof) > MAX_DEPTH:
        raise InvalidAttachment(f"chunk {index} with {len(proof)} proof hashes has no slot")
    if any(len(node) != HASH_BYTES for node in proof):
        raise InvalidAttachment("a proof hash is 32 bytes")
    if not 1 <= len(data) <= CHUNK_CIPHERTEXT_BYTES:
        raise InvalidAttachment(f"chunk {index} of {len(data)} bytes does not fit a slot")


def _slot_header(state: int, proof: tuple[bytes, ...], length: int) -> bytes:
    """The header and the proof area, padded so the body starts at its fixed offset."""
    hashes = b"".join(proof)
    return _HEADER.pack(state, len(proof), 0, length) + hashes.ljust(_PROOF_BYTES, b"\0")


def _parse_slot(raw: bytes) -> tuple[tuple[bytes, ...], bytes] | None:
    """A committed slot's proof and ciphertext; None for an empty, short or damaged one."""
    if len(raw) < _BODY_AT:
        return None
    state, hashes, zero, length = _HEADER.unpack_from(raw)
    if state != COMMITTED or zero or hashes > MAX_DEPTH:
        return None
    if not 1 <= length <= CHUNK_CIPHERTEXT_BYTES or len(raw) < _BODY_AT + length:
        return None
    proof = tuple(
        raw[_HEADER.size + i * HASH_BYTES : _HEADER.size + (i + 1) * HASH_BYTES]
        for i in range(hashes)
    )
    return proof, raw[_BODY_AT : _BODY_AT + length]


def _read_chunk_file(path: Path) -> tuple[tuple[bytes, ...], bytes] | None:
    """One chunk file of the old layout; None if it cannot be a chunk (bounds checked as the
    old reader did, then as a slot's are)."""
    with open(path, "rb") as handle:
        raw = handle.read(_LEGACY_MAX_BYTES + 1)
    if not 1 <= len(raw) <= _LEGACY_MAX_BYTES:
        return None
    hashes = raw[-1]
    body_end = len(raw) - 1 - hashes * HASH_BYTES
    if hashes > MAX_DEPTH or body_end < 1 or not int(path.stem) < MAX_CHUNKS:
        return None
    proof = tuple(
        raw[body_end + i * HASH_BYTES : body_end + (i + 1) * HASH_BYTES] for i in range(hashes)
    )
    data = raw[:body_end]
    return (proof, data) if len(data) <= CHUNK_CIPHERTEXT_BYTES else None


def _committed(path: Path) -> Iterator[int]:
    """Indexes of the committed slots of one slot file (one byte read per slot)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        slots = min(-(-os.fstat(fd).st_size // SLOT_BYTES), MAX_CHUNKS)
        for index in range(slots):
            if os.pread(fd, 1, index * SLOT_BYTES) == _COMMITTED_BYTE:
                yield index
    finally:
        os.close(fd)


def _read_exactly(source: BinaryIO, length: int) -> bytes:
    parts, got = [], 0
    while got < length:
        part = source.read(length - got)  # a pipe or socket may return less than asked
        if not part:
            raise InvalidAttachment(f"the file is shorter than announced ({got} < {length})")
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
