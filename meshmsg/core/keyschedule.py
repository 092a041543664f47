"""The B+ key schedule: every KDF, the X25519 step, the period windows and the key share.

Theory of operation
-------------------
One KDF, keyed BLAKE2b, with a distinct 16-byte-max personalisation string per purpose. Secrets
go in the key (at most 64 bytes), public context in the message, so the whole schedule reads::

    pair root   = KDF("pair",    DH,               IK_a ‖ IK_b ‖ transcript)
    heal root   = KDF("heal",    H[base] ‖ DH,     transcript ‖ base ‖ new)
    K_d[start]  = KDF("chain",   root,             d ‖ epoch ‖ start)      d in {"AB", "BA"}
    T_d[start]  = KDF("tchain",  root,             d ‖ epoch ‖ start)
    H[epoch]    = KDF("healkey", root,             epoch)
    confirm     = KDF("confirm", root,             epoch)[:16]
    K[p+1]      = KDF("rot",     K[p],             p+1)
    T[p+1]      = KDF("tagrot",  T[p],             p+1)
    message key = KDF("msg",     K[p],             ctr)
    token       = KDF("token",   T[p],             ctr)[:16]
    tag         = BLAKE2b-128("tag", token)          (meshmsg.core.envelope)

with ``transcript = pub_a ‖ rand_a ‖ period_a ‖ pub_b ‖ rand_b ‖ period_b ‖ len(h) ‖ h``,
integers big-endian (epoch, ctr: 4 bytes; periods: 8 bytes), and the strings prefixed
``meshmsg1/``. Roots are used for the six derivations and then dropped by the caller.

This module holds no state; :mod:`meshmsg.core.e2e` keeps the keys and deletes them.
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass
from typing import Final

import nacl.bindings
import nacl.exceptions

from meshmsg.config import MessageLimits
from meshmsg.core.envelope import KEY_BYTES, TOKEN_BYTES
from meshmsg.errors import DecodeError, HandshakeError, LocalProtocolError

PERSON_PAIR: Final = b"meshmsg1/pair"
PERSON_HEAL: Final = b"meshmsg1/heal"
PERSON_CHAIN: Final = b"meshmsg1/chain"
PERSON_TAG_CHAIN: Final = b"meshmsg1/tchain"
PERSON_HEAL_KEY: Final = b"meshmsg1/healkey"
PERSON_CONFIRM: Final = b"meshmsg1/confirm"
PERSON_ROT: Final = b"meshmsg1/rot"
PERSON_TAG_ROT: Final = b"meshmsg1/tagrot"
PERSON_MSG: Final = b"meshmsg1/msg"
PERSON_TOKEN: Final = b"meshmsg1/token"

RANDOM_BYTES: Final = 32
CONFIRM_BYTES: Final = 16
MAX_PERIOD: Final = (1 << 63) - 1
MAX_EPOCH: Final = (1 << 32) - 2  # 0xFFFFFFFF encodes "none" in key shares
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


def kdf(person: bytes, key: bytes, *parts: bytes, size: int = KEY_BYTES) -> bytes:
    """Keyed BLAKE2b over the concatenated ``parts``; ``person`` names the purpose."""
    return hashlib.blake2b(b"".join(parts), digest_size=size, key=key, person=person).digest()


def u32(n: int) -> bytes:
    return _U32.pack(n)


def u64(n: int) -> bytes:
    return _U64.pack(n)


def ratchet(key: bytes, tag_key: bytes, period: int) -> tuple[bytes, bytes]:
    """One-way step: the message and tag chain keys of ``period + 1`` from those of ``period``."""
    nxt = u64(period + 1)
    return kdf(PERSON_ROT, key, nxt), kdf(PERSON_TAG_ROT, tag_key, nxt)


def message_key(key: bytes, counter: int) -> bytes:
    return kdf(PERSON_MSG, key, u32(counter))


def token(tag_key: bytes, counter: int) -> bytes:
    return kdf(PERSON_TOKEN, tag_key, u32(counter), size=TOKEN_BYTES)


def x25519(secret: bytes, public: bytes) -> bytes:
    """X25519 with a peer's public key; a degenerate (low-order) key is the peer's fault.

    Raises:
        HandshakeError: a key is not 32 bytes, or the shared secret is all zero.
    """
    if len(secret) != 32 or len(public) != 32:
        raise HandshakeError("X25519 keys are 32 bytes")
    try:
        return nacl.bindings.crypto_scalarmult(secret, public)
    except nacl.exceptions.RuntimeError as exc:  # libsodium refuses an all-zero output
        raise HandshakeError("degenerate X25519 key share") from exc


def receive_window(limits: MessageLimits) -> int:
    """W = ceil((D + L)/R) + 1: periods, the current one included, whose receive keys stay."""
    return math.ceil((limits.clock_skew_s + limits.latency_budget_s) / limits.period_s) + 1


def future_periods(limits: MessageLimits) -> int:
    """F = ceil(D/R): periods ahead of ours that a sender with a fast clock may already use."""
    return math.ceil(limits.clock_skew_s / limits.period_s)


def meeting_periods(limits: MessageLimits) -> int:
    """How many periods apart two shares may be and still heal: ``max_meeting_skew_s`` in
    periods, never less than F."""
    return max(future_periods(limits), math.ceil(limits.max_meeting_skew_s / limits.period_s))


def period_of(now: float, limits: MessageLimits) -> int:
    return max(0, math.floor(now / limits.period_s))


@dataclass(frozen=True, slots=True, kw_only=True)
class EpochKeys:
    """Everything an epoch root yields; the root itself is not kept."""

    send_key: bytes
    send_tag_key: bytes
    recv_key: bytes
    recv_tag_key: bytes
    heal_key: bytes
    confirmation: bytes


def epoch_keys(root: bytes, epoch: int, start: int, *, we_are_a: bool) -> EpochKeys:
    """Chain keys of both directions at period ``start``, the heal key and the confirmation."""
    context = u32(epoch) + u64(start)
    send, recv = (b"AB", b"BA") if we_are_a else (b"BA", b"AB")
    return EpochKeys(
        send_key=kdf(PERSON_CHAIN, root, send, context),
        send_tag_key=kdf(PERSON_TAG_CHAIN, root, send, context),
        recv_key=kdf(PERSON_CHAIN, root, recv, context),
        recv_tag_key=kdf(PERSON_TAG_CHAIN, root, recv, context),
        heal_key=kdf(PERSON_HEAL_KEY, root, u32(epoch)),
        confirmation=kdf(PERSON_CONFIRM, root, u32(epoch), size=CONFIRM_BYTES),
    )


# The fixed binary form of a KeyShare (docs/protocol/e2e.md, "Key share"). Module constants
# rather than class attributes, so that the core compiles with mypyc (.ci/mypyc_setup.py).
_SHARE_FIXED: Final = struct.Struct(">B32s32sQIIQB")
_SHARE_COUNT: Final = struct.Struct(">QI")
_SHARE_VERSION: Final = 1
_SHARE_NONE: Final = 0xFFFFFFFF


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyShare:
    """What one side sends in a pairing or healing exchange (inside the Noise session).

    ``epoch``/``previous``: the sender's current epoch and the older epoch it can still heal
    from (both ``None`` without a channel). ``final_counts``: for the sender's current epoch,
    ``(period, messages sealed)`` for each period since ``counts_from`` in which it sealed;
    periods in ``[counts_from, period]`` that are absent had none.
    """

    public: bytes
    random: bytes
    period: int
    epoch: int | None = None
    previous: int | None = None
    counts_from: int = 0
    final_counts: tuple[tuple[int, int], ...] = ()

    def to_bytes(self) -> bytes:
        """Fixed binary form (docs/protocol/e2e.md, "Key share")."""
        none = _SHARE_NONE
        head = _SHARE_FIXED.pack(
            _SHARE_VERSION, self.public, self.random, self.period,
            none if self.epoch is None else self.epoch,
            none if self.previous is None else self.previous,
            self.counts_from, len(self.final_counts),
        )  # fmt: skip
        return head + b"".join(_SHARE_COUNT.pack(p, c) for p, c in self.final_counts)

    @classmethod
    def from_bytes(cls, data: bytes) -> KeyShare:
        """Parse strictly. Raises :class:`DecodeError` on any bad length or field."""
        if len(data) < _SHARE_FIXED.size:
            raise DecodeError("key share too short")
        version, public, rand, period, epoch, prev, counts_from, n = _SHARE_FIXED.unpack_from(data)
        if version != _SHARE_VERSION:
            raise DecodeError(f"unknown key share version {version}")
        if len(data) != _SHARE_FIXED.size + n * _SHARE_COUNT.size:
            raise DecodeError("key share length does not match its count list")
        offsets = (_SHARE_FIXED.size + i * _SHARE_COUNT.size for i in range(n))
        counts = tuple(_SHARE_COUNT.unpack_from(data, offset) for offset in offsets)
        share = cls(
            public=public, random=rand, period=period,
            epoch=None if epoch == _SHARE_NONE else epoch,
            previous=None if prev == _SHARE_NONE else prev,
            counts_from=counts_from, final_counts=counts,
        )  # fmt: skip
        share.check()
        return share

    def check(self) -> None:
        """Raise :class:`DecodeError` unless every field is in range and counts are ordered."""
        if len(self.public) != 32 or len(self.random) != RANDOM_BYTES:
            raise DecodeError("key share public key and random must be 32 bytes")
        if not 0 <= self.counts_from <= self.period <= MAX_PERIOD:
            raise DecodeError("key share periods out of range")
        for e in (self.epoch, self.previous):
            if e is not None and not 0 <= e <= MAX_EPOCH:
                raise DecodeError("key share epoch out of range")
        if self.previous is not None and (self.epoch is None or self.previous >= self.epoch):
            raise DecodeError("key share previous epoch must be older than its epoch")
        periods = [p for p, _ in self.final_counts]
        if periods != sorted(set(periods)):
            raise DecodeError("key share counts must be in increasing period order")
        if any(not self.counts_from <= p <= self.period or c < 1 for p, c in self.final_counts):
            raise DecodeError("key share count out of range")


def heal_base(ours: KeyShare, theirs: KeyShare) -> int | None:
    """The epoch a heal starts from, or ``None`` when the Node must pair afresh.

    Each side holds the heal key of its current epoch and of the epoch that one was healed
    from; the base is the newest epoch both hold. Symmetric: both sides compute the same
    value from the same two shares. Normally both are at the same epoch; after a heal only
    one side completed (link lost mid-exchange, crash before commit) the base is older.

    ``None`` too when the new epoch, ``max(epochs) + 1``, would pass :data:`MAX_EPOCH` (a
    share may carry any epoch up to it): the channel could not be encoded in a share any more,
    so both sides pair afresh at epoch 0 instead of wedging.
    """
    if ours.epoch is None or theirs.epoch is None or max(ours.epoch, theirs.epoch) >= MAX_EPOCH:
        return None
    held = {ours.epoch, ours.previous} & {theirs.epoch, theirs.previous}
    held.discard(None)
    return max((e for e in held if e is not None), default=None)


def can_heal(ours: KeyShare, theirs: KeyShare) -> bool:
    """Whether the two shares heal the existing channel (else the Node pairs afresh)."""
    return heal_base(ours, theirs) is not None


def transcript(a: KeyShare, b: KeyShare, handshake_hash: bytes) -> bytes:
    """Public context of an exchange, A's share first, ending with the Noise handshake hash."""
    if not 0 < len(handshake_hash) <= 64:
        raise LocalProtocolError("handshake hash must be 1..64 bytes")
    parts = [a.public, a.random, u64(a.period), b.public, b.random, u64(b.period)]
    return b"".join(parts) + bytes([len(handshake_hash)]) + handshake_hash
