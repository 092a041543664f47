"""The attachment byte format, version 1 (docs/protocol/attachments.md).

An attachment is a file encrypted under a random 32-byte key of its own and cut into chunks of
``CHUNK_BYTES`` plaintext bytes (the last one zero-padded to a size bucket). Each chunk is
sealed with XChaCha20-Poly1305; its nonce is its index and its associated data binds the index,
the chunk count and the file size, so chunks cannot be reordered, dropped or spliced from
another length. The encrypted chunks are the leaves of a Merkle tree. The *manifest* (format
version, chunk count, last ciphertext length, tree root; 41 bytes) is public, and the
*attachment id* is its hash: a relay that knows only the id checks the manifest, then every
chunk against the root with the chunk's proof, without ever holding the key.

Why the associated data does not contain the id: the id is a hash of the ciphertexts, so it
cannot be an input to them. The binding the id would give comes from the key instead: it is
fresh for every attachment, so a chunk of another attachment never opens under it.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Final

import nacl.bindings
import nacl.exceptions

from meshmsg.core.attach.merkle import HASH_BYTES, MAX_DEPTH
from meshmsg.errors import InvalidAttachment, LocalProtocolError

FORMAT_VERSION: Final = 1
# 60 KiB: one chunk with its record, proof and the Noise tag fits one 65,535-byte frame, so a
# chunk is the unit of sending, of resuming and of verification (docs/protocol/attachments.md).
CHUNK_BYTES: Final = 61_440
TAG_BYTES: Final = 16  # Poly1305
CHUNK_CIPHERTEXT_BYTES: Final = CHUNK_BYTES + TAG_BYTES
# The last chunk is padded up to one of these: relays learn a file's size to within a factor
# of two for small files and to a chunk for large ones, at most doubling the last chunk.
LAST_CHUNK_BUCKETS: Final = (1_024, 2_048, 4_096, 8_192, 16_384, 32_768, CHUNK_BYTES)
KEY_BYTES: Final = 32
ID_BYTES: Final = 32
MANIFEST_BYTES: Final = 57  # version u8, count u32, last length u32, root 32, done tag 16
DONE_TOKEN_BYTES: Final = 16
DONE_TAG_BYTES: Final = 16
MAX_CHUNKS: Final = 1 << MAX_DEPTH
NONCE_BYTES: Final = 24

_MANIFEST: Final = struct.Struct(">BII32s16s")
_AD: Final = struct.Struct(">16sIIQ")
_AD_LABEL: Final = b"meshmsg/1 chunk\x00"
_PERSON_ID: Final = b"meshmsg/1 attid"
_PERSON_DONE: Final = b"meshmsg/1 done"


@dataclass(frozen=True, slots=True)
class Manifest:
    """The public chunk map of one attachment: enough to check any chunk, nothing secret."""

    count: int  # chunks, 1..MAX_CHUNKS
    last_length: int  # ciphertext bytes of the last chunk: a bucket plus the tag
    root: bytes  # Merkle root over the encrypted chunks
    done_tag: bytes  # H(done token): the recipient's completion receipt reveals the token

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_CHUNKS:
            raise InvalidAttachment(f"an attachment has 1 to {MAX_CHUNKS} chunks")
        if self.last_length - TAG_BYTES not in LAST_CHUNK_BUCKETS:
            raise InvalidAttachment(f"last chunk length {self.last_length} is not a bucket")
        if len(self.root) != HASH_BYTES or len(self.done_tag) != DONE_TAG_BYTES:
            raise InvalidAttachment("a chunk map root is 32 bytes, a done tag 16")

    @property
    def ciphertext_bytes(self) -> int:
        """What a relay stores for the whole attachment."""
        return (self.count - 1) * CHUNK_CIPHERTEXT_BYTES + self.last_length

    def chunk_length(self, index: int) -> int:
        """The exact ciphertext length of chunk ``index``; anything else is refused."""
        if not 0 <= index < self.count:
            raise InvalidAttachment(f"chunk {index} of {self.count} is out of range")
        return self.last_length if index == self.count - 1 else CHUNK_CIPHERTEXT_BYTES

    def encode(self) -> bytes:
        return _MANIFEST.pack(
            FORMAT_VERSION, self.count, self.last_length, self.root, self.done_tag
        )

    @classmethod
    def decode(cls, data: bytes) -> Manifest:
        """Parse a manifest strictly: exact length, known version, counts in range."""
        if len(data) != MANIFEST_BYTES:
            raise InvalidAttachment(f"a manifest is {MANIFEST_BYTES} bytes, not {len(data)}")
        version, count, last_length, root, done_tag = _MANIFEST.unpack(data)
        if version != FORMAT_VERSION:
            raise InvalidAttachment(f"unknown attachment format version {version}")
        return cls(count=count, last_length=last_length, root=root, done_tag=done_tag)

    def is_done_token(self, token: bytes) -> bool:
        """True if ``token`` is this attachment's completion receipt (only the parties know it)."""
        return len(token) == DONE_TOKEN_BYTES and done_tag(token) == self.done_tag

    @property
    def attachment_id(self) -> bytes:
        return attachment_id(self.encode())


def attachment_id(manifest: bytes) -> bytes:
    """The id of an attachment: BLAKE2b-256 of its encoded manifest."""
    return hashlib.blake2b(manifest, digest_size=ID_BYTES, person=_PERSON_ID).digest()


def done_tag(token: bytes) -> bytes:
    """The public tag of a completion token; relays drop an attachment on its preimage."""
    return hashlib.blake2b(token, digest_size=DONE_TAG_BYTES, person=_PERSON_DONE).digest()


def manifest_for_id(attachment: bytes, manifest: bytes) -> Manifest:
    """Parse ``manifest`` and check that it is the one ``attachment`` commits to."""
    if len(attachment) != ID_BYTES:
        raise InvalidAttachment(f"an attachment id is {ID_BYTES} bytes")
    parsed = Manifest.decode(manifest)
    if attachment_id(manifest) != attachment:
        raise InvalidAttachment("the chunk map does not match the attachment id")
    return parsed


def chunk_count(size: int) -> int:
    """How many chunks a file of ``size`` bytes takes (an empty file takes one)."""
    if size < 0:
        raise LocalProtocolError("a file size is not negative")
    return max(1, -(-size // CHUNK_BYTES))


def last_bucket(size: int) -> int:
    """The padded plaintext length of the last chunk of a ``size``-byte file."""
    tail = size - (chunk_count(size) - 1) * CHUNK_BYTES
    return next(bucket for bucket in LAST_CHUNK_BUCKETS if bucket >= tail)


def plain_length(size: int, index: int) -> int:
    """The unpadded plaintext bytes of chunk ``index`` of a ``size``-byte file."""
    return min(CHUNK_BYTES, size - index * CHUNK_BYTES)


def check_size(manifest: Manifest, size: int) -> None:
    """Raise unless a file of ``size`` bytes has exactly this manifest's shape."""
    if size < 0 or chunk_count(size) != manifest.count:
        raise InvalidAttachment(f"size {size} does not match {manifest.count} chunks")
    if last_bucket(size) + TAG_BYTES != manifest.last_length:
        raise InvalidAttachment(f"size {size} does not match the last chunk's length")


def seal_chunk(key: bytes, index: int, count: int, size: int, plaintext: bytes) -> bytes:
    """Encrypt one chunk; ``plaintext`` is already padded to its full length."""
    return nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        plaintext, _ad(index, count, size), _nonce(index), _key(key)
    )


def open_chunk(key: bytes, index: int, count: int, size: int, ciphertext: bytes) -> bytes:
    """Decrypt one chunk and strip its padding; raise :class:`InvalidAttachment` if forged."""
    try:
        padded = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
            ciphertext, _ad(index, count, size), _nonce(index), _key(key)
        )
    except nacl.exceptions.CryptoError as exc:
        raise InvalidAttachment(f"chunk {index} fails authentication") from exc
    return padded[: plain_length(size, index)]


def _nonce(index: int) -> bytes:
    # The key is used for this one attachment only, so the index alone is a unique nonce.
    return index.to_bytes(NONCE_BYTES, "big")


def _ad(index: int, count: int, size: int) -> bytes:
    return _AD.pack(_AD_LABEL, index, count, size)


def _key(key: bytes) -> bytes:
    if len(key) != KEY_BYTES:
        raise LocalProtocolError(f"an attachment key is {KEY_BYTES} bytes")
    return key
