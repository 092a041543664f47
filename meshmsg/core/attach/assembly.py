"""Sealing and opening attachments one chunk at a time, and the holdings bitfield.

Nothing here holds more than one chunk: the caller (the driver, which may read and write files)
feeds plaintext chunks to a :class:`Sealer` and stores each ciphertext it returns; a
:class:`ChunkOpener` turns one stored ciphertext back into plaintext. The core keeps only the
32-byte leaf hash per chunk while sealing, and a bit per chunk while carrying.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from meshmsg.config import AttachConfig
from meshmsg.core.attach.format import (
    CHUNK_BYTES,
    DONE_TOKEN_BYTES,
    ID_BYTES,
    KEY_BYTES,
    TAG_BYTES,
    Manifest,
    check_size,
    chunk_count,
    done_tag,
    last_bucket,
    manifest_for_id,
    open_chunk,
    plain_length,
    seal_chunk,
)
from meshmsg.core.attach.merkle import MerkleTree, leaf_hash, verify
from meshmsg.errors import InvalidAttachment, LocalProtocolError


class Sealer:
    """Encrypts a file of known size chunk by chunk, then yields its manifest and tree."""

    __slots__ = ("_count", "_done", "_key", "_leaves", "_size")

    def __init__(self, key: bytes, done_token: bytes, size: int, config: AttachConfig) -> None:
        if len(key) != KEY_BYTES or len(done_token) != DONE_TOKEN_BYTES:
            raise LocalProtocolError("an attachment key is 32 bytes, a done token 16")
        if not 0 <= size <= config.max_attachment_bytes:
            raise LocalProtocolError(f"attachments are at most {config.max_attachment_bytes} B")
        self._key, self._size, self._count = key, size, chunk_count(size)
        self._done = done_tag(done_token)
        self._leaves: list[bytes] = []

    @property
    def next_index(self) -> int:
        return len(self._leaves)

    @property
    def next_length(self) -> int:
        """How many plaintext bytes the next :meth:`seal` expects."""
        return plain_length(self._size, self.next_index)

    def seal(self, plaintext: bytes) -> bytes:
        """Encrypt the next chunk (exactly :attr:`next_length` bytes); return its ciphertext."""
        index = self.next_index
        if index >= self._count:
            raise LocalProtocolError("every chunk is already sealed")
        if len(plaintext) != self.next_length:
            raise LocalProtocolError(f"chunk {index} is {self.next_length} bytes")
        if index == self._count - 1:
            plaintext = plaintext + bytes(last_bucket(self._size) - len(plaintext))
        ciphertext = seal_chunk(self._key, index, self._count, self._size, plaintext)
        self._leaves.append(leaf_hash(ciphertext))
        return ciphertext

    def finish(self) -> tuple[Manifest, MerkleTree]:
        """After the last chunk: the manifest (its hash is the id) and the tree for proofs."""
        if self.next_index != self._count:
            raise LocalProtocolError(f"{self._count - self.next_index} chunks are not sealed")
        tree = MerkleTree(self._leaves)
        last = last_bucket(self._size) + TAG_BYTES
        manifest = Manifest(
            count=self._count, last_length=last, root=tree.root, done_tag=self._done
        )
        return manifest, tree


def check_chunk(manifest: Manifest, index: int, proof: Sequence[bytes], ciphertext: bytes) -> None:
    """What every relay does before it keeps a chunk: exact length, then the Merkle proof."""
    if len(ciphertext) != manifest.chunk_length(index):
        raise InvalidAttachment(f"chunk {index} has the wrong length {len(ciphertext)}")
    verify(manifest.root, leaf_hash(ciphertext), index, manifest.count, proof)


class ChunkOpener:
    """Decrypts the chunks of one attachment for its recipient."""

    __slots__ = ("_key", "_size", "manifest")

    def __init__(self, key: bytes, manifest: Manifest, size: int) -> None:
        if len(key) != KEY_BYTES:
            raise InvalidAttachment(f"an attachment key is {KEY_BYTES} bytes")
        check_size(manifest, size)
        self._key, self._size, self.manifest = key, size, manifest

    def open(self, index: int, ciphertext: bytes) -> bytes:
        """The plaintext bytes of chunk ``index`` (padding removed)."""
        if len(ciphertext) != self.manifest.chunk_length(index):
            raise InvalidAttachment(f"chunk {index} has the wrong length {len(ciphertext)}")
        return open_chunk(self._key, index, self.manifest.count, self._size, ciphertext)

    def span(self, start: int, end: int) -> Iterator[tuple[int, int, int]]:
        """For plaintext bytes [start, end): (chunk index, offset in chunk, bytes) per chunk."""
        if not 0 <= start <= end <= self._size:
            raise LocalProtocolError(f"range {start}-{end} is outside 0-{self._size}")
        while start < end:
            index, offset = divmod(start, CHUNK_BYTES)
            take = min(end - start, CHUNK_BYTES - offset)
            yield index, offset, take
            start += take


class Bitfield:
    """Which chunks of an attachment a node holds: bit i is byte i // 8, bit 7 - i % 8."""

    __slots__ = ("_bits", "count", "held")

    def __init__(self, count: int, bits: bytes | None = None) -> None:
        size = (count + 7) // 8
        if bits is None:
            bits = bytes(size)
        if len(bits) != size:
            raise InvalidAttachment(f"a bitfield for {count} chunks is {size} bytes")
        spare = size * 8 - count
        if spare and bits[-1] & ((1 << spare) - 1):
            raise InvalidAttachment("a bitfield sets bits past the last chunk")
        self.count = count
        self._bits = bytearray(bits)
        self.held = sum(bin(byte).count("1") for byte in bits)

    @classmethod
    def full(cls, count: int) -> Bitfield:
        field = cls(count)
        for index in range(count):
            field.add(index)
        return field

    def __contains__(self, index: int) -> bool:
        return 0 <= index < self.count and bool(self._bits[index >> 3] & (0x80 >> (index & 7)))

    def add(self, index: int) -> bool:
        """Mark chunk ``index`` held; False if it already was."""
        if not 0 <= index < self.count:
            raise LocalProtocolError(f"chunk {index} of {self.count} is out of range")
        if index in self:
            return False
        self._bits[index >> 3] |= 0x80 >> (index & 7)
        self.held += 1
        return True

    def discard(self, index: int) -> None:
        if index in self:
            self._bits[index >> 3] &= ~(0x80 >> (index & 7)) & 0xFF
            self.held -= 1

    @property
    def complete(self) -> bool:
        return self.held == self.count

    def missing_from(self, other: Bitfield) -> Iterator[int]:
        """Chunks ``other`` holds and we do not, lowest first."""
        if other.count != self.count:
            raise InvalidAttachment("bitfields of different attachments")
        # A byte at a time: a pull scans this for every request, so per-bit work would make a
        # 2,000-chunk transfer quadratic in Python.
        for byte_index, (mine, theirs) in enumerate(zip(self._bits, other._bits, strict=True)):
            wanted = theirs & ~mine & 0xFF
            while wanted:
                bit = 8 - wanted.bit_length()  # the lowest index first: the highest bit set
                yield byte_index * 8 + bit
                wanted &= ~(0x80 >> bit) & 0xFF

    def encode(self) -> bytes:
        return bytes(self._bits)


@dataclass(frozen=True, slots=True)
class AttachmentRef:
    """What the end-to-end message tells the recipient: everything needed to fetch and open."""

    attachment_id: bytes
    manifest: bytes
    key: bytes
    done_token: bytes
    name: str
    size: int
    media_type: str

    def check(self, config: AttachConfig) -> Manifest:
        """Validate every field against the id and the limits; return the parsed manifest."""
        if len(self.attachment_id) != ID_BYTES or len(self.key) != KEY_BYTES:
            raise InvalidAttachment("attachment id and key are 32 bytes each")
        manifest = manifest_for_id(self.attachment_id, self.manifest)
        if not manifest.is_done_token(self.done_token):
            raise InvalidAttachment("the done token does not match the chunk map")
        if self.size > config.max_attachment_bytes:
            raise InvalidAttachment(f"attachment of {self.size} B exceeds the configured cap")
        check_size(manifest, self.size)
        check_name(self.name, self.media_type, config)
        return manifest


def check_name(name: str, media_type: str, config: AttachConfig) -> None:
    """A name the recipient can save under without leaving its directory, and a short type."""
    if not 0 < len(name.encode()) <= config.max_name_bytes or "/" in name or "\\" in name:
        raise InvalidAttachment("an attachment name is one path component of bounded length")
    if "\x00" in name or name in (".", ".."):
        raise InvalidAttachment("an attachment name is a plain file name")
    if len(media_type.encode()) > config.max_media_type_bytes:
        raise InvalidAttachment("media type too long")
