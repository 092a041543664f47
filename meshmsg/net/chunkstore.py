"""Chunk bodies on disk: one file per encrypted chunk, never the whole attachment in memory.

Layout under the store's root (``<data dir>/chunks``)::

    <attachment id, hex>/<index>.c     ciphertext ‖ proof hashes ‖ u8 number of hashes
    staging-<random hex>/              a file being sealed, renamed into place once complete

The proof goes after the ciphertext so sealing writes each ciphertext once, as it is made, and
appends the proofs when the tree is known. Every write is durable before it is reported (write
to a temporary name, fsync, rename, fsync the directory): the core marks a chunk held, and
advertises it, only after ``chunk_stored``. Nothing here parses more than one chunk file at a
time, and a damaged file is reported as missing, never trusted: the core checks every chunk
it sends and receives against the manifest anyway.

All methods block; the trio driver calls them in a worker thread.
"""

from __future__ import annotations

import os
import secrets
import shutil
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
    chunk_count,
)
from meshmsg.core.attach.merkle import HASH_BYTES, MAX_DEPTH
from meshmsg.errors import InvalidAttachment, StorageError

_MAX_FILE: Final = CHUNK_CIPHERTEXT_BYTES + MAX_DEPTH * HASH_BYTES + 1


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
        """Write several chunks durably: all written first, then synced, renamed, and each
        directory synced once. A file system with a journal commits the syncs that follow the
        first together, so a batch costs about one fsync instead of one per chunk."""
        written: list[tuple[Path, Path]] = []
        try:
            for attachment_id, index, proof, data in chunks:
                directory = self._dir(attachment_id)
                directory.mkdir(exist_ok=True, mode=0o700)
                temporary = directory / f".{index}.{secrets.token_hex(4)}"
                with open(temporary, "wb") as handle:
                    handle.write(data + b"".join(proof) + bytes([len(proof)]))
                written.append((temporary, directory / f"{index}.c"))
            for temporary, _ in written:
                _fsync_file(temporary)
            for temporary, final in written:
                os.replace(temporary, final)
            for directory in {final.parent for _, final in written}:
                _fsync_dir(directory)
        except OSError as exc:
            for temporary, _ in written:
                temporary.unlink(missing_ok=True)
            raise StorageError(f"cannot store {len(chunks)} chunks: {exc}") from exc

    def get(self, attachment_id: bytes, index: int) -> tuple[tuple[bytes, ...], bytes] | None:
        """The chunk's proof and ciphertext, or None if it is missing or damaged."""
        path = self._dir(attachment_id) / f"{index}.c"
        try:
            with open(path, "rb") as handle:
                raw = handle.read(_MAX_FILE + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read chunk {index}: {exc}") from exc
        if not 1 <= len(raw) <= _MAX_FILE:
            return None
        hashes = raw[-1]
        body_end = len(raw) - 1 - hashes * HASH_BYTES
        if hashes > MAX_DEPTH or body_end < 1:
            return None
        proof = tuple(
            raw[body_end + i * HASH_BYTES : body_end + (i + 1) * HASH_BYTES] for i in range(hashes)
        )
        return proof, raw[:body_end]

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
            held[attachment_id] = sorted(_indexes(entry))
        return held

    def seal_file(
        self, source: BinaryIO, size: int, name: str, media_type: str, *,
        key: bytes, done_token: bytes, config: AttachConfig,
    ) -> AttachmentRef:  # fmt: skip
        """Encrypt ``size`` bytes from ``source`` into the store, one chunk in memory at a time.

        Memory: one chunk (60 KiB) plus 64 bytes per chunk for the tree (140 KB at 128 MiB).
        """
        if len(key) != KEY_BYTES or len(done_token) != DONE_TOKEN_BYTES:
            raise InvalidAttachment("a key is 32 bytes and a done token 16")
        sealer = Sealer(key, done_token, size, config)
        staging = self.root / f"staging-{secrets.token_hex(8)}"
        staging.mkdir(mode=0o700)
        try:
            for index in range(chunk_count(size)):
                plaintext = _read_exactly(source, sealer.next_length)
                with open(staging / f"{index}.c", "wb") as handle:
                    handle.write(sealer.seal(plaintext))
            manifest, tree = sealer.finish()
            for index in range(manifest.count):
                proof = tree.proof(index)
                with open(staging / f"{index}.c", "ab") as handle:
                    handle.write(b"".join(proof) + bytes([len(proof)]))
                    handle.flush()
                    os.fsync(handle.fileno())
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


def _indexes(directory: Path) -> Iterator[int]:
    for path in directory.iterdir():
        stem, dot, suffix = path.name.partition(".")
        if dot and suffix == "c" and stem.isdigit():
            yield int(stem)


def _read_exactly(source: BinaryIO, length: int) -> bytes:
    parts, got = [], 0
    while got < length:
        part = source.read(length - got)  # a pipe or socket may return less than asked
        if not part:
            raise InvalidAttachment(f"the file is shorter than announced ({got} < {length})")
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
