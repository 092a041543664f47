"""First contact: mail to someone we hold only a contact code for, carried by relays.

Theory of operation
-------------------
B+ channels (:mod:`meshmsg.core.e2e`) need a live meeting to exist. Until then, a node seals
mail to the recipient's *end-to-end public key* from its contact code, one-way, in the shape of
Noise's ``X`` pattern (``e, es, s, ss``), inside an envelope that looks like any other to a
relay (same version, suite, header and padding buckets)::

    offset    size  field
         0      50  header: version 1, suite 1, tag, expiry_at, nonce (as meshmsg.core.envelope)
        50      32  e: ephemeral X25519 public key, top bit randomised (X25519 ignores it)
        82     177  AEAD(k_id, nonce, AD = bytes 0..81, sender's 161-byte public identity)
       259       n  AEAD(k_msg, nonce, AD = bytes 0..258, sodium_pad(inner)), n = bucket - 259

    ctx   = e ‖ IK_R ‖ E_R                         (e with its top bit cleared)
    k_id  = KDF("fcid",  DH(e, E_R),               ctx)
    k_msg = KDF("fcmsg", DH(e, E_R) ‖ DH(E_S, E_R), ctx ‖ sender identity bytes)

``E_R`` / ``E_S`` are the recipient's / sender's long-term E2E X25519 keys (signed by their
identity keys in the device certificate), ``IK_R`` the recipient's Ed25519 identity key. The
sender's identity is encrypted under the ephemeral-static secret only, so a relay never sees it;
the message is encrypted under both, so only the holder of ``E_S``'s private key (or of
``E_R``'s, the KCI limit) can have sealed it. Each key is used once (fresh ``e``), so the
single random nonce serves both AEADs.

Recognition without trial decryption: the tag is ``KDF("fctag", tagkey_R, period ‖ slot)`` with
``tagkey_R = BLAKE2b("fctagk", IK_R ‖ E_R)``, the sender's key period and a random slot in
``[0, slots)``. The recipient precomputes its tags for the periods it accepts (the B+ windows:
``W`` behind, ``F`` ahead) and looks each offered tag up in a dict. Anyone holding the
recipient's code can compute the same tags: such a relay can tell that an envelope is first
contact for that recipient (never who sent it). A relay without the code sees tags it cannot
link to a person; two envelopes for the same recipient share a tag only when period and slot
coincide. Security properties are in ``docs/protocol/e2e.md`` §14.

This module is pure functions and one small index; the node decides when to use it.
"""

from __future__ import annotations

import hashlib
import struct
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

import nacl.bindings
import nacl.exceptions

from meshmsg.config import MessageLimits
from meshmsg.core.envelope import (
    HEADER_BYTES,
    KEY_BYTES,
    MAC_BYTES,
    MAX_EXPIRY_AT,
    NONCE_BYTES,
    SUITE,
    TAG_BYTES,
    VERSION,
    Envelope,
    expiry_from,
)
from meshmsg.core.identity import PUBLIC_BYTES, Identity, PublicIdentity
from meshmsg.core.keyschedule import (
    future_periods,
    kdf,
    period_of,
    receive_window,
    u64,
    x25519,
)
from meshmsg.core.rng import Rng
from meshmsg.errors import HandshakeError, InvalidContactCode, InvalidMessage, LocalProtocolError

PERSON_FC_TAG_KEY: Final = b"meshmsg1/fctagk"
PERSON_FC_TAG: Final = b"meshmsg1/fctag"
PERSON_FC_ID: Final = b"meshmsg1/fcid"
PERSON_FC_MSG: Final = b"meshmsg1/fcmsg"

EPHEMERAL_BYTES: Final = 32
SENDER_BLOCK: Final = PUBLIC_BYTES + MAC_BYTES  # 177
MESSAGE_OFFSET: Final = HEADER_BYTES + EPHEMERAL_BYTES + SENDER_BLOCK  # 259
OVERHEAD_BYTES: Final = MESSAGE_OFFSET + MAC_BYTES  # 275: envelope size minus padded inner
_HEADER: Final = struct.Struct(">BB16sQ24s")
_TOP_BIT: Final = 0x80


def tag_key(recipient: PublicIdentity) -> bytes:
    """The recipient's public tag key: anyone with the contact code can compute it."""
    return hashlib.blake2b(
        recipient.identity_key + recipient.e2e_key, digest_size=KEY_BYTES, person=PERSON_FC_TAG_KEY
    ).digest()


def first_contact_tag(key: bytes, period: int, slot: int) -> bytes:
    return kdf(PERSON_FC_TAG, key, u64(period), bytes([slot]), size=TAG_BYTES)


def bucket_for(inner_bytes: int, buckets: tuple[int, ...]) -> int:
    """The envelope size a first-contact inner plaintext of ``inner_bytes`` is padded to."""
    for bucket in buckets:
        if inner_bytes < bucket - OVERHEAD_BYTES:
            return bucket
    raise LocalProtocolError(f"inner plaintext of {inner_bytes} bytes fits no first-contact bucket")


def _context(ephemeral: bytes, recipient: PublicIdentity) -> bytes:
    return ephemeral + recipient.identity_key + recipient.e2e_key


def _aead_seal(plain: bytes, ad: bytes, nonce: bytes, key: bytes) -> bytes:
    return nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(plain, ad, nonce, key)


def _aead_open(cipher: bytes, ad: bytes, nonce: bytes, key: bytes) -> bytes:
    try:
        return nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(cipher, ad, nonce, key)
    except nacl.exceptions.CryptoError as exc:
        raise InvalidMessage("first-contact envelope failed authentication") from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class SealedFirstContact:
    envelope: bytes
    tag: bytes
    expiry_at: int
    period: int


def seal_first_contact(
    *,
    sender: Identity,
    recipient: PublicIdentity,
    inner: bytes,
    now: float,
    ttl_s: float,
    rng: Rng,
    limits: MessageLimits,
    slots: int,
) -> SealedFirstContact:
    """Seal ``inner`` for ``recipient`` with nothing but its public identity.

    Raises:
        LocalProtocolError: ``inner`` too large, a bad TTL, or a recipient key that is degenerate
            (a verified contact code never has one).
    """
    if len(inner) > limits.max_inner_bytes:
        raise LocalProtocolError(f"inner plaintext over {limits.max_inner_bytes} bytes")
    if not 0 < ttl_s <= min(limits.latency_budget_s, limits.max_ttl_s):
        raise LocalProtocolError("first-contact TTL outside (0, latency budget]")
    if not 0 < slots <= 256:
        raise LocalProtocolError("first-contact slots must be in 1..256")
    period = period_of(now, limits)
    tag = first_contact_tag(tag_key(recipient), period, rng.randbelow(slots))
    expiry_at = expiry_from(now, ttl_s)
    if expiry_at > MAX_EXPIRY_AT:
        raise LocalProtocolError("expiry out of range")
    secret = rng.randbytes(KEY_BYTES)
    ephemeral = nacl.bindings.crypto_scalarmult_base(secret)
    try:
        es = x25519(secret, recipient.e2e_key)
        ss = x25519(sender.e2e_private, recipient.e2e_key)
    except HandshakeError as exc:
        raise LocalProtocolError(f"cannot seal to this key: {exc}") from exc
    ctx = _context(ephemeral, recipient)
    sender_bytes = sender.public.to_bytes()
    k_id = kdf(PERSON_FC_ID, es, ctx)
    k_msg = kdf(PERSON_FC_MSG, es + ss, ctx, sender_bytes)
    nonce = rng.randbytes(NONCE_BYTES)
    # The top bit of an X25519 public key is always 0; a relay could tell first-contact mail by
    # it. X25519 ignores the bit (RFC 7748 §5), so it is drawn at random on the wire.
    wire_e = ephemeral[:-1] + bytes([ephemeral[-1] | (rng.randbelow(2) * _TOP_BIT)])
    head = _HEADER.pack(VERSION, SUITE, tag, expiry_at, nonce) + wire_e
    head += _aead_seal(sender_bytes, head, nonce, k_id)
    block = bucket_for(len(inner), limits.envelope_size_buckets) - OVERHEAD_BYTES
    padded = nacl.bindings.sodium_pad(inner, block)
    data = head + _aead_seal(padded, head, nonce, k_msg)
    return SealedFirstContact(envelope=data, tag=tag, expiry_at=expiry_at, period=period)


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenedFirstContact:
    sender: PublicIdentity  # certificate verified: these keys belong to this identity key
    inner: bytes


def open_first_contact(
    envelope: Envelope, *, recipient: Identity, limits: MessageLimits
) -> OpenedFirstContact:
    """Open a first-contact envelope addressed to ``recipient`` (its tag was recognised).

    Raises:
        InvalidMessage: too short, failed authentication, a bad sender identity, a degenerate
            key, bad padding or an oversized inner plaintext.
    """
    data = envelope.data
    if len(data) <= OVERHEAD_BYTES:
        raise InvalidMessage("envelope too small for first contact")
    wire_e = data[HEADER_BYTES : HEADER_BYTES + EPHEMERAL_BYTES]
    ephemeral = wire_e[:-1] + bytes([wire_e[-1] & (_TOP_BIT - 1)])
    try:
        es = x25519(recipient.e2e_private, ephemeral)
    except HandshakeError as exc:
        raise InvalidMessage(f"first contact: {exc}") from exc
    ctx = _context(ephemeral, recipient.public)
    head = data[: HEADER_BYTES + EPHEMERAL_BYTES]
    sender_bytes = _aead_open(
        data[len(head) : MESSAGE_OFFSET], head, envelope.nonce, kdf(PERSON_FC_ID, es, ctx)
    )
    try:
        sender = PublicIdentity.from_bytes(sender_bytes)
        ss = x25519(recipient.e2e_private, sender.e2e_key)
    except (InvalidContactCode, HandshakeError) as exc:
        raise InvalidMessage(f"first contact: bad sender identity: {exc}") from exc
    k_msg = kdf(PERSON_FC_MSG, es + ss, ctx, sender_bytes)
    padded = _aead_open(data[MESSAGE_OFFSET:], data[:MESSAGE_OFFSET], envelope.nonce, k_msg)
    try:
        inner = nacl.bindings.sodium_unpad(padded, len(padded))
    except nacl.exceptions.CryptoError as exc:
        raise InvalidMessage("first contact: bad padding") from exc
    if len(inner) > limits.max_inner_bytes:
        raise InvalidMessage(f"inner plaintext over {limits.max_inner_bytes} bytes")
    return OpenedFirstContact(sender=sender, inner=inner)


class FirstContactIndex:
    """Our own first-contact tags for the periods we accept: tag -> period, one dict lookup.

    Periods ``[P - W + 1, P + F]`` of our monotonic period ``P``, as the B+ receive windows:
    mail sealed within the latency budget by a sender whose clock is within the skew finds its
    tag. Tags are shared by every sender, so nothing here is consumed: duplicates are dropped
    by message id, as for any mail.
    """

    def __init__(self, own: PublicIdentity, limits: MessageLimits, slots: int) -> None:
        self._key = tag_key(own)
        self._limits = limits
        self._slots = slots
        self._period = -1
        self._tags: dict[bytes, int] = {}
        # Envelopes already opened: offers of them are answered "have" (they carry no purge
        # token); bounded, a forgotten one costs one more transfer, dropped as a duplicate.
        self._opened: OrderedDict[bytes, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tags)

    def advance(self, now: float) -> bool:
        """Move the window to ``now``'s period (never back). True when it changed."""
        period = period_of(now, self._limits)
        if period <= self._period:
            return False
        self._period = period
        low = max(0, period - receive_window(self._limits) + 1)
        high = period + future_periods(self._limits)
        self._tags = {
            first_contact_tag(self._key, p, s): p
            for p in range(low, high + 1)
            for s in range(self._slots)
        }
        return True

    def lookup(self, tag: bytes) -> int | None:
        return self._tags.get(tag)

    def opened(self, envelope_id: bytes) -> bool:
        return envelope_id in self._opened

    def remember_opened(self, envelope_id: bytes, limit: int) -> None:
        self._opened[envelope_id] = None
        while len(self._opened) > limit:
            self._opened.popitem(last=False)

    def next_deadline(self) -> float:
        return (self._period + 1) * self._limits.period_s

    def tags(self) -> list[bytes]:
        return list(self._tags)
