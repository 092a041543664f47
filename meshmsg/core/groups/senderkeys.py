"""Sender chains: one per member and generation, sealing group mail once for every member.

Theory of operation
-------------------
Each member seals its group messages under its own *sender chain*, drawn fresh (32 random
bytes) for each *generation* and handed to every other current member over the pairwise
channels (record ``GroupKey``). A generation ends when the sender's view of the membership
enters a new epoch (a removal or a leave), after ``rotation_interval_s``, or after
``rotation_after_messages``; the next one is random again, so nothing of the old chain helps
with the new one: a removed member who kept everything reads nothing sent after it.

Per generation, with ``ctx = group ‖ sender ‖ u32 generation``, and ``p`` key periods as in the
pairwise schedule (docs/protocol/groups.md §4)::

    K[s]      = KDF("gchain",  seed, ctx ‖ u64 s)        period key of the start period s
    T[s]      = KDF("gtchain", seed, ctx ‖ u64 s)        tag key
    K[p+1]    = KDF("grot",    K[p], u64 p+1)            one way, like the pairwise "rot"
    T[p+1]    = KDF("gtagrot", T[p], u64 p+1)
    C[p,0]    = K[p]
    C[p,c+1]  = KDF("gstep",   C[p,c], u32 c+1)          a step per message
    key(p,c)  = KDF("gmsg",    C[p,c], u32 c)
    token     = KDF("gtoken",  T[p], u32 c)[:16];   tag = BLAKE2b-128("meshmsg1/tag", token)

The per-message step is what lets a new member read *from the moment it was added*: it is
given ``C[p,c]`` for the next counter ``c`` and ``K[p+1]``, from which no earlier message key
follows. The sender keeps only ``C[p,c]`` and ``K[p+1]``: its own past keys are gone after each
message. Each message is also signed with a per-generation Ed25519 key (its public half travels
with the chain), so one member cannot forge mail as another; tags and envelopes are exactly
those of pairwise mail, so a relay cannot tell group mail from pairwise mail.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import nacl.exceptions
import nacl.signing

from meshmsg.config import GroupLimits, MessageLimits
from meshmsg.core.envelope import (
    Envelope,
    expiry_from,
    open_envelope,
    seal_envelope,
    tag_of_token,
)
from meshmsg.core.keyschedule import future_periods, kdf, period_of, u32, u64
from meshmsg.core.rng import Rng
from meshmsg.errors import GroupError, InvalidMessage, LocalProtocolError

PERSON_CHAIN: Final = b"meshmsg1/gchain"
PERSON_TAG_CHAIN: Final = b"meshmsg1/gtchain"
PERSON_ROT: Final = b"meshmsg1/grot"
PERSON_TAG_ROT: Final = b"meshmsg1/gtagrot"
PERSON_STEP: Final = b"meshmsg1/gstep"
PERSON_MSG: Final = b"meshmsg1/gmsg"
PERSON_TOKEN: Final = b"meshmsg1/gtoken"
SIGN_CONTEXT: Final = b"meshmsg group msg v1\x00"
SIGNATURE_BYTES: Final = 64


def _ctx(group: bytes, sender: bytes, generation: int) -> bytes:
    return group + sender + u32(generation)


def step(chain: bytes, counter: int) -> bytes:
    """C[p, counter + 1] from C[p, counter]."""
    return kdf(PERSON_STEP, chain, u32(counter + 1))


def chain_at(chain: bytes, first: int, counter: int) -> bytes:
    """C[p, counter] from C[p, first] (counter >= first)."""
    for c in range(first, counter):
        chain = step(chain, c)
    return chain


def group_token(tag_key: bytes, counter: int) -> bytes:
    return kdf(PERSON_TOKEN, tag_key, u32(counter), size=16)


def group_tag(tag_key: bytes, counter: int) -> bytes:
    return tag_of_token(group_token(tag_key, counter))


def signed_message(tag: bytes, expiry_at: int, payload: bytes) -> bytes:
    """What a sender signs: the envelope's tag and expiry (its place in the chain) and payload."""
    return SIGN_CONTEXT + tag + u64(expiry_at) + payload


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainKey:
    """What a member hands another over their pairwise channel (record ``GroupKey``)."""

    group: bytes
    sender: bytes  # the sender's identity key (implied by the pairwise channel, checked)
    epoch_id: bytes
    generation: int
    period: int
    first: int  # the first counter the receiver may open in ``period``
    chain: bytes  # C[period, first]
    next_key: bytes  # K[period + 1]
    tag_key: bytes  # T[period]
    verify_key: bytes  # Ed25519 public key of this generation


@dataclass(slots=True, kw_only=True)
class SenderChain:
    """Our own chain in one group: the current period's state only."""

    group: bytes
    sender: bytes
    epoch_id: bytes
    generation: int
    started_at: float
    period: int
    counter: int
    chain: bytes  # C[period, counter]
    next_key: bytes  # K[period + 1]
    tag_key: bytes  # T[period]
    signing_seed: bytes
    sent: int  # messages sealed in this generation

    @classmethod
    def start(
        cls, *, group: bytes, sender: bytes, epoch_id: bytes, generation: int, rng: Rng,
        now: float, limits: MessageLimits,
    ) -> SenderChain:  # fmt: skip
        seed = rng.randbytes(32)
        period = period_of(now, limits)
        ctx = _ctx(group, sender, generation) + u64(period)
        key = kdf(PERSON_CHAIN, seed, ctx)
        return cls(
            group=group, sender=sender, epoch_id=epoch_id, generation=generation,
            started_at=now, period=period, counter=0, chain=key,
            next_key=kdf(PERSON_ROT, key, u64(period + 1)),
            tag_key=kdf(PERSON_TAG_CHAIN, seed, ctx), signing_seed=rng.randbytes(32), sent=0,
        )  # fmt: skip

    @property
    def verify_key(self) -> bytes:
        return bytes(nacl.signing.SigningKey(self.signing_seed).verify_key)

    def advance(self, now: float, limits: MessageLimits) -> None:
        """Ratchet to the period of ``now`` (never back), overwriting the old keys."""
        target = period_of(now, limits)
        while self.period < target:
            self.period += 1
            key = self.next_key
            self.next_key = kdf(PERSON_ROT, key, u64(self.period + 1))
            self.tag_key = kdf(PERSON_TAG_ROT, self.tag_key, u64(self.period))
            self.chain, self.counter = key, 0

    def share(self) -> ChainKey:
        return ChainKey(
            group=self.group, sender=self.sender, epoch_id=self.epoch_id,
            generation=self.generation, period=self.period, first=self.counter, chain=self.chain,
            next_key=self.next_key, tag_key=self.tag_key, verify_key=self.verify_key,
        )  # fmt: skip

    def due(self, now: float, epoch_id: bytes, limits: GroupLimits) -> bool:
        """Whether a new generation must start before the next message."""
        return (
            epoch_id != self.epoch_id
            or now - self.started_at >= limits.rotation_interval_s
            or self.sent >= limits.rotation_after_messages
        )

    def seal(
        self, payload: bytes, *, now: float, ttl_s: float, rng: Rng, limits: MessageLimits
    ) -> tuple[bytes, bytes]:
        """Sign and seal ``payload`` (a strict CBOR record); return (envelope, purge token).

        Raises:
            GroupError: this period's counters are used up (wait for the next period).
        """
        self.advance(now, limits)
        if self.counter >= limits.max_messages_per_period:
            raise GroupError("this group's messages for today are used up; wait for tomorrow")
        tag = group_tag(self.tag_key, self.counter)
        expiry_at = expiry_from(now, ttl_s)
        signature = (
            nacl.signing.SigningKey(self.signing_seed)
            .sign(signed_message(tag, expiry_at, payload))
            .signature
        )
        key = kdf(PERSON_MSG, self.chain, u32(self.counter))
        envelope = seal_envelope(
            key=key, tag=tag, expiry_at=expiry_at, inner=signature + payload, rng=rng,
            limits=limits,
        )  # fmt: skip
        token = group_token(self.tag_key, self.counter)
        self.chain = step(self.chain, self.counter)  # the used key is gone
        self.counter += 1
        self.sent += 1
        return envelope, token


@dataclass(slots=True, kw_only=True)
class ReceiveChain:
    """Another member's chain of one generation, as far as we may still open it."""

    key: ChainKey  # as received; ``anchor`` fields below move forward
    anchor: int  # oldest period we still hold keys for
    chain: bytes  # C[anchor, first]
    first: int
    next_key: bytes  # K[anchor + 1]
    tag_key: bytes  # T[anchor]
    received: dict[int, set[int]]  # period -> counters opened
    last_period: int | None = None  # set when the sender moved to a newer generation

    @classmethod
    def from_key(cls, key: ChainKey) -> ReceiveChain:
        return cls(
            key=key, anchor=key.period, chain=key.chain, first=key.first,
            next_key=key.next_key, tag_key=key.tag_key, received={},
        )  # fmt: skip

    def keys_at(self, period: int) -> tuple[bytes, int, bytes]:
        """(C[period, first], first, T[period]) for ``period >= anchor``."""
        *_, (_, chain, first, tag_key) = self._walk(period)
        return chain, first, tag_key

    def _walk(self, top: int) -> Iterator[tuple[int, bytes, int, bytes]]:
        """(period, C[period, first], first, T[period]) from the anchor up to ``top``, one
        derivation per period: callers walk once instead of deriving each period afresh."""
        chain, first, tag_key, nxt = self.chain, self.first, self.tag_key, self.next_key
        yield self.anchor, chain, first, tag_key
        for p in range(self.anchor + 1, top + 1):
            chain, first = nxt, 0
            nxt = kdf(PERSON_ROT, nxt, u64(p + 1))
            tag_key = kdf(PERSON_TAG_ROT, tag_key, u64(p))
            yield p, chain, first, tag_key

    def forget_before(self, period: int) -> bool:
        """Delete the keys of periods before ``period``; True if any went."""
        if period <= self.anchor:
            return False
        self.chain, self.first, self.tag_key = self.keys_at(period)
        self.next_key = kdf(PERSON_ROT, self.chain, u64(period + 1))
        self.anchor = period
        for p in [p for p in self.received if p < period]:
            del self.received[p]
        return True

    def periods(self, now: float, limits: MessageLimits) -> range:
        """Periods whose mail we accept now: the pairwise window, after our anchor."""
        top = period_of(now, limits) + future_periods(limits)
        if self.last_period is not None:
            top = min(top, self.last_period)
        return range(self.anchor, top + 1)

    def tags(self, now: float, limits: MessageLimits, window: int) -> dict[bytes, tuple[int, int]]:
        """Tag -> (period, counter) of the counters we expect next in each open period."""
        out: dict[bytes, tuple[int, int]] = {}
        periods = self.periods(now, limits)
        if not periods:
            return out
        for p, _, first, tag_key in self._walk(periods.stop - 1):
            got = self.received.get(p, set())
            base = first
            while base in got:
                base += 1
            top = min(base + window, limits.max_messages_per_period)
            for c in range(base, top):
                if c not in got:
                    out[group_tag(tag_key, c)] = (p, c)
        return out

    def open(self, envelope: Envelope, period: int, counter: int, limits: MessageLimits) -> bytes:
        """Authenticate, decrypt and check the signature; return the payload.

        Raises:
            InvalidMessage: a counter we may not open, a bad AEAD or a bad signature.
        """
        if period < self.anchor or counter in self.received.get(period, set()):
            raise InvalidMessage("group message: keys gone or already received")
        start, first, tag_key = self.keys_at(period)
        if counter < first or counter >= limits.max_messages_per_period:
            raise InvalidMessage("group message from before we were given the chain")
        if group_tag(tag_key, counter) != envelope.tag:
            raise LocalProtocolError("tag does not match its index entry")
        key = kdf(PERSON_MSG, chain_at(start, first, counter), u32(counter))
        inner = open_envelope(envelope, key, limits)
        signature, payload = inner[:SIGNATURE_BYTES], inner[SIGNATURE_BYTES:]
        try:
            nacl.signing.VerifyKey(self.key.verify_key).verify(
                signed_message(envelope.tag, envelope.expiry_at, payload), signature
            )
        except nacl.exceptions.CryptoError as exc:
            raise InvalidMessage("group message: bad sender signature") from exc
        self.received.setdefault(period, set()).add(counter)
        return payload
