"""The end-to-end envelope: the only bytes of a message that relays ever see.

Theory of operation
-------------------
An envelope is immutable bytes: a fixed 50-byte header, then an XChaCha20-Poly1305-IETF
ciphertext of the padded inner plaintext. The whole header is the AEAD associated data, so a
relay can read the header but change none of it::

    offset  size  field
         0     1  version      = 1
         1     1  suite        = 1 (X25519, BLAKE2b, XChaCha20-Poly1305-IETF, sodium_pad)
         2    16  tag          per-message pseudo-random label only the recipient recognises
        18     8  expiry_at    uint64 big-endian, absolute Unix seconds; relays drop it after
        26    24  nonce        random (from the injected Rng), never derived from a counter
        50     n  ciphertext   AEAD(message key, nonce, header, sodium_pad(inner)) incl. 16 B MAC

There is no sender, recipient, period, counter or epoch on the outside. Mutable routing state
(copy budget, hop count) travels beside the envelope, never inside it, so the bytes, and
therefore :func:`envelope_id`, stay the same on every hop.

The inner plaintext is padded (ISO/IEC 7816-4 via ``sodium_pad``) so that the whole envelope is
exactly one of ``MessageLimits.envelope_size_buckets`` bytes long: a relay learns the bucket,
never the length within it. :func:`parse_envelope` accepts nothing else.

Purge tokens: the recipient (and the sender) can compute a 16-byte *token* per message; the tag
is ``BLAKE2b-128(token)``. Showing a relay the token lets it check :func:`token_matches` and drop
its copy, while the token reveals nothing about keys or about other messages.

What this module does not know: keys and counters (:mod:`meshmsg.core.e2e` derives them), or
who the message is for.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import struct
from dataclasses import dataclass
from typing import Final

import nacl.bindings
import nacl.exceptions

from meshmsg.config import MessageLimits
from meshmsg.core.rng import Rng
from meshmsg.errors import ConfigError, InvalidMessage, LocalProtocolError

VERSION: Final = 1
# Suite 1 = X25519 + BLAKE2b + XChaCha20-Poly1305-IETF + sodium_pad; a new primitive set gets a
# new number, and a parser rejects numbers it does not know (no negotiation on the outside).
SUITE: Final = 1
TAG_BYTES: Final = 16  # 128 bits: collisions among a node's ~10^6 live tags stay negligible
TOKEN_BYTES: Final = 16
NONCE_BYTES: Final = 24  # XChaCha20: 192-bit random nonces are safe to draw at random
KEY_BYTES: Final = 32
MAC_BYTES: Final = 16  # Poly1305
ID_BYTES: Final = 16  # envelope ids are BLAKE2b-128
# uint64 seconds: lasts beyond any deployment (a uint32 would end in 2106) and is the width
# every language reads natively; the 3-4 bytes over a uint40 vanish in the padding buckets.
_HEADER: Final = struct.Struct(">BB16sQ24s")
HEADER_BYTES: Final = _HEADER.size  # 50
OVERHEAD_BYTES: Final = HEADER_BYTES + MAC_BYTES  # 66: envelope size minus padded inner size
MAX_EXPIRY_AT: Final = (1 << 64) - 1

_PERSON_TAG: Final = b"meshmsg1/tag"
_PERSON_ENVELOPE_ID: Final = b"meshmsg1/envid"
_DEFAULT_BUCKETS: Final = MessageLimits().envelope_size_buckets


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    """A parsed envelope. ``data`` is the exact bytes; the other fields are views of it."""

    data: bytes
    tag: bytes
    expiry_at: int
    nonce: bytes

    @property
    def header(self) -> bytes:
        """The 50 header bytes: the AEAD associated data."""
        return self.data[:HEADER_BYTES]

    @property
    def ciphertext(self) -> bytes:
        return self.data[HEADER_BYTES:]


def check_limits(limits: MessageLimits) -> None:
    """Raise :class:`ConfigError` unless the envelope limits are usable together."""
    buckets = limits.envelope_size_buckets
    if not buckets or list(buckets) != sorted(set(buckets)):
        raise ConfigError("envelope_size_buckets must be non-empty and strictly increasing")
    if buckets[0] <= OVERHEAD_BYTES + 1:
        raise ConfigError(f"the smallest envelope bucket must exceed {OVERHEAD_BYTES + 1} bytes")
    if max_inner_capacity(buckets) < limits.max_inner_bytes:
        raise ConfigError("max_inner_bytes does not fit the largest envelope bucket")


def max_inner_capacity(buckets: tuple[int, ...]) -> int:
    """Largest inner plaintext the largest bucket holds (padding needs at least one byte)."""
    return buckets[-1] - OVERHEAD_BYTES - 1


def bucket_for(inner_bytes: int, buckets: tuple[int, ...]) -> int:
    """The envelope size an inner plaintext of ``inner_bytes`` is padded to."""
    for bucket in buckets:
        if inner_bytes < bucket - OVERHEAD_BYTES:
            return bucket
    raise LocalProtocolError(f"inner plaintext of {inner_bytes} bytes fits no envelope bucket")


def seal_envelope(
    *, key: bytes, tag: bytes, expiry_at: int, inner: bytes, rng: Rng, limits: MessageLimits
) -> bytes:
    """Pad, encrypt and frame ``inner`` under the message key ``key``.

    Raises:
        LocalProtocolError: ``inner`` is over ``max_inner_bytes``, or a field has a bad size.
    """
    if len(inner) > limits.max_inner_bytes:
        raise LocalProtocolError(f"inner plaintext over {limits.max_inner_bytes} bytes")
    if len(key) != KEY_BYTES or len(tag) != TAG_BYTES or not 0 <= expiry_at <= MAX_EXPIRY_AT:
        raise LocalProtocolError("bad key, tag or expiry for an envelope")
    block = bucket_for(len(inner), limits.envelope_size_buckets) - OVERHEAD_BYTES
    nonce = rng.randbytes(NONCE_BYTES)
    header = _HEADER.pack(VERSION, SUITE, tag, expiry_at, nonce)
    padded = nacl.bindings.sodium_pad(inner, block)
    body = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(padded, header, nonce, key)
    return header + body


def open_envelope(envelope: Envelope, key: bytes, limits: MessageLimits) -> bytes:
    """Authenticate and decrypt ``envelope`` under ``key``; return the unpadded inner bytes.

    Raises:
        InvalidMessage: authentication failed, bad padding, or the inner plaintext is too large.
    """
    try:
        padded = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
            envelope.ciphertext, envelope.header, envelope.nonce, key
        )
        inner = nacl.bindings.sodium_unpad(padded, len(padded))
    except nacl.exceptions.CryptoError as exc:
        raise InvalidMessage("envelope failed authentication") from exc
    if len(inner) > limits.max_inner_bytes:
        raise InvalidMessage(f"inner plaintext over {limits.max_inner_bytes} bytes")
    return inner


def parse_envelope(data: bytes, *, buckets: tuple[int, ...] = _DEFAULT_BUCKETS) -> Envelope:
    """Parse envelope bytes strictly.

    ``buckets`` defaults to the standard ``MessageLimits().envelope_size_buckets``; pass the
    configured ones when they differ (every node of a mesh must use the same set).

    Raises:
        InvalidMessage: a length that is not a bucket, an unknown version or suite.
    """
    if len(data) not in buckets:
        raise InvalidMessage(f"envelope length {len(data)} is not a padding bucket")
    version, suite, tag, expiry_at, nonce = _HEADER.unpack_from(data)
    if version != VERSION:
        raise InvalidMessage(f"unknown envelope version {version}")
    if suite != SUITE:
        raise InvalidMessage(f"unknown envelope suite {suite}")
    return Envelope(data=bytes(data), tag=tag, expiry_at=expiry_at, nonce=nonce)


def envelope_id(envelope: bytes) -> bytes:
    """BLAKE2b-128 of the envelope bytes: the id relays sync and deduplicate by."""
    return hashlib.blake2b(envelope, digest_size=ID_BYTES, person=_PERSON_ENVELOPE_ID).digest()


def tag_of_token(token: bytes) -> bytes:
    """The public tag that belongs to a purge token: BLAKE2b-128(token)."""
    return hashlib.blake2b(token, digest_size=TAG_BYTES, person=_PERSON_TAG).digest()


def token_matches(tag: bytes, token: bytes) -> bool:
    """True when ``token`` is the purge token of ``tag`` (a relay may then drop its copy)."""
    if len(tag) != TAG_BYTES or len(token) != TOKEN_BYTES:
        return False
    return hmac.compare_digest(tag_of_token(token), tag)


def expiry_from(now: float, ttl_s: float) -> int:
    """Absolute whole-second expiry for a TTL, rounded up so a copy never dies early."""
    return math.ceil(now + ttl_s)


def capped_expiry(expiry_at: float, limits: MessageLimits, now: float) -> float:
    """An expiry a peer chose (an envelope's, a token's, an attachment's), at most
    ``max_ttl_s`` from ``now``: any u64 parses, and a forged far-future date would otherwise
    be kept for ever (and overflow the stored milliseconds: fuzz, 2026-12-07)."""
    return min(float(expiry_at), now + limits.max_ttl_s)
