"""End-to-end key schedule "B+": per-contact period keys, healing at meetings, tag recognition.

Theory of operation
-------------------
Two contacts share a *channel*. The one whose identity key sorts lower is "A"; direction A→B
and B→A have separate keys, so both sides agree on every label. ``docs/protocol/e2e.md`` is the
specification; this docstring is the map.

*Epochs.* Pairing creates epoch 0 from a fresh X25519 exchange inside a Noise session; every
later direct meeting *heals*: a fresh exchange is mixed with the current epoch's heal key into
a new epoch root. From an epoch root both sides derive, per direction, a message chain ``K`` and
a tag chain ``T`` for the start period, plus the heal key, and then forget the root.

*Periods.* ``p = floor(clock / period_s)`` with ``clock`` the largest ``now`` seen (monotonic).
Chains ratchet one way, ``K[p+1] = KDF("rot", K[p], p+1)``. The sender keeps only the current
period's keys. The receiver keeps, per epoch, a *slot* for each period in
``[P - W + 1, P + F]`` where ``W = ceil((D + L)/R) + 1`` and ``F = ceil(D/R)`` (the sender's
clock may be ahead by up to D): keys of periods below are deleted, and with them the ability
to decrypt anything sealed in them (forward secrecy by period).

*Messages.* Counter ``ctr`` per (epoch, direction, period); message key
``KDF("msg", K[p], ctr)``; purge token ``KDF("token", T[p], ctr)``; tag ``BLAKE2b-128(token)``.

*Recognition.* Each slot precomputes the tags of a window of ``tag_window`` counters starting
at ``base``, the lowest counter not yet received, and puts them in the node-wide
:class:`TagIndex` (tag -> contact, epoch, period, counter, kind). Receiving a counter in the
upper half of the window slides it (Briar's rule) so one lost message cannot stall a period;
counters overtaken that way stay decryptable as *skipped* (bounded). A received counter's tag
stays in the index as RECEIVED while in the window or just below it (the *trail*): a second
copy is a no-op. When a slot is deleted, the tags of its unreceived counters that were likely
sent (one-way outputs, not keys) stay for a grace time as EXPIRED, so a late envelope is
reported instead of silently lost.

*Healing.* Each side sends a :class:`KeyShare` (ephemeral public key, 32 random bytes, its
period, its epoch and previous epoch, and how many messages it sealed per period of its
current epoch). Both compute the same new epoch; the sender switches at once. The receiver
keeps the old epoch open until the peer is known to have switched too (its confirmation, or a
message in the new epoch), then trims the old epoch to the reported final counts and drops it
as soon as all have arrived. If one side completed a heal the other never saw (link lost
mid-exchange, crash), the next meeting heals from the older epoch both still hold. A meeting
also repairs a channel clock that one wrong reading pushed ahead of the peer's (it is the only
time the monotonic clock may go back: ``_rebase_clock``).

What this module does not know: the wire records that carry key shares (the Node's), time
(``now`` is passed in), randomness (an injected :class:`~meshmsg.core.rng.Rng`), storage
(:meth:`ContactChannel.to_bytes` returns the state; the Node persists it in the same
transaction as the envelope it sealed, before transmitting).
"""

from __future__ import annotations

import hmac
import math
import struct
from dataclasses import dataclass
from typing import Final

import nacl.bindings

from meshmsg.config import MessageLimits
from meshmsg.core.cursor import ByteCursor
from meshmsg.core.envelope import (
    Envelope,
    check_limits,
    envelope_id,
    expiry_from,
    open_envelope,
    seal_envelope,
    tag_of_token,
)
from meshmsg.core.keyschedule import (
    CONFIRM_BYTES,
    PERSON_HEAL,
    PERSON_PAIR,
    KeyShare,
    can_heal,
    epoch_keys,
    future_periods,
    heal_base,
    kdf,
    meeting_periods,
    message_key,
    period_of,
    ratchet,
    receive_window,
    token,
    transcript,
    u32,
    x25519,
)
from meshmsg.core.rng import Rng
from meshmsg.core.tagindex import Match, MatchKind, TagEntry, TagIndex
from meshmsg.errors import (
    DecodeError,
    HandshakeError,
    InvalidMessage,
    KeystoreError,
    LocalProtocolError,
)


def tag_budget(limits: MessageLimits) -> int:
    """Most TagIndex entries one contact can hold (live, received, skipped and expired)."""
    per_slot = limits.tag_window + limits.max_skipped_per_period + _trail_depth(limits)
    slots = receive_window(limits) + future_periods(limits)
    return limits.max_epochs_retained * slots * per_slot + limits.max_expired_tags


def _trail_depth(limits: MessageLimits) -> int:
    """Received counters just below a window's base that stay recognised as duplicates.

    Not deeper than ``max_skipped_per_period``: then every counter in the trail is either
    received or still skipped, so the trail is derived from (base, skipped) on restore.
    """
    return min(limits.tag_window, limits.max_skipped_per_period)


def new_key_share(
    rng: Rng, now: float, limits: MessageLimits, channel: ContactChannel | None = None
) -> tuple[bytes, KeyShare]:
    """Draw an ephemeral X25519 key and 32 random bytes; return ``(secret, share)``.

    With ``channel`` (healing) the share also reports the channel's epochs and final counts,
    and the Node must not seal for this contact until :meth:`ContactChannel.heal` ran.
    """
    secret = rng.randbytes(32)
    public = nacl.bindings.crypto_scalarmult_base(secret)
    rand = rng.randbytes(32)
    if channel is None:
        return secret, KeyShare(public=public, random=rand, period=period_of(now, limits))
    channel.advance(now)
    return secret, channel._share(public, rand)


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True, kw_only=True)
class Sealed:
    """A sealed envelope and what the Node stores with it (after persisting the channel)."""

    envelope: bytes
    envelope_id: bytes
    tag: bytes
    token: bytes
    expiry_at: int
    epoch: int
    period: int
    counter: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Opened:
    """A decrypted envelope. ``token`` purges relay copies; ``inner`` is the plaintext."""

    inner: bytes
    token: bytes
    tag: bytes
    expiry_at: int
    epoch: int
    period: int
    counter: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Expired:
    """An envelope from this contact whose keys are already deleted: show it, never hide it."""

    tag: bytes
    expiry_at: int
    epoch: int
    period: int
    counter: int


@dataclass(frozen=True, slots=True, kw_only=True)
class HealResult:
    """``abandoned_epoch``: our previous sending epoch, when the peer cannot read all we sealed
    in it, so the Node re-sends its undelivered messages (the peer drops duplicates by message
    id). Either the peer never had it (it missed our last heal), or the two channel clocks were
    more than F periods apart (part of it lies outside the peer's windows)."""

    epoch: int
    abandoned_epoch: int | None


# ----------------------------------------------------------------------------- state


class _Slot:
    """Receive keys and recognition window of one (epoch, period)."""

    __slots__ = ("base", "key", "limit", "period", "seen", "skipped", "tag_key", "tags", "trail")

    def __init__(self, period: int, key: bytes, tag_key: bytes, limit: int) -> None:
        self.period = period
        self.key = key
        self.tag_key = tag_key
        self.base = 0  # lowest counter still in the window (every lower one was received/skipped)
        self.limit = limit  # counters >= limit never exist (cap, or the sender's final count)
        self.seen = 0  # bit i: counter base + i was received
        self.tags: list[bytes] = []  # tags of counters base .. base + len - 1 (derived)
        self.skipped: dict[int, bytes] = {}  # counter -> tag: overtaken, never received
        self.trail: dict[int, bytes] = {}  # counter -> tag: received, just below base

    def complete(self) -> bool:
        return self.base >= self.limit and not self.skipped


@dataclass(slots=True, kw_only=True)
class _Final:
    """A peer's report on an epoch it is leaving: applied once it is known to have left."""

    last: int
    counts_from: int
    counts: dict[int, int]


@dataclass(slots=True, kw_only=True)
class _RecvEpoch:
    epoch: int
    start: int
    last: int | None = None  # the peer's last period in this epoch, once final
    pending: _Final | None = None
    slots: dict[int, _Slot]  # period -> slot, ascending


@dataclass(slots=True, kw_only=True)
class _SendChain:
    epoch: int
    start: int
    period: int
    key: bytes
    tag_key: bytes
    counter: int = 0
    counts: dict[int, int]  # period -> messages sealed, for the final-count report


@dataclass(slots=True, kw_only=True)
class _ExpiredTag:
    until: float
    epoch: int
    period: int
    counter: int
    reported: bool = False


class ContactChannel:
    """End-to-end key state shared with one contact (see the module docstring).

    Create with :meth:`pair` or :meth:`from_bytes`, attach to the node's index with
    :meth:`register`. Every method that takes ``now`` first moves the monotonic clock.
    """

    __slots__ = (
        "_clock", "_confirmation", "_epoch", "_expired", "_heal_keys", "_index", "_is_a",
        "_limits", "_peer_id", "_period", "_recv", "_send",
    )  # fmt: skip

    def __init__(self, limits: MessageLimits, *, is_a: bool, clock: float) -> None:
        check_limits(limits)
        self._limits = limits
        self._is_a = is_a
        self._clock = max(0.0, clock)
        self._period = period_of(self._clock, limits)
        self._index = TagIndex()
        self._peer_id = b""
        self._epoch = 0
        self._confirmation = bytes(CONFIRM_BYTES)
        self._heal_keys: dict[int, bytes] = {}
        self._recv: dict[int, _RecvEpoch] = {}
        self._expired: dict[bytes, _ExpiredTag] = {}
        self._send = _SendChain(epoch=0, start=0, period=0, key=b"", tag_key=b"", counts={})

    # --------------------------------------------------------------- pairing and healing

    @classmethod
    def pair(
        cls,
        *,
        our_ik: bytes,
        their_ik: bytes,
        our_secret: bytes,
        ours: KeyShare,
        theirs: KeyShare,
        handshake_hash: bytes,
        now: float,
        limits: MessageLimits,
        index: TagIndex | None = None,
        peer_id: bytes = b"",
    ) -> ContactChannel:
        """Create a fresh channel (epoch 0) from a pairing exchange.

        With ``index`` and ``peer_id`` the new tags go straight into the node's index (the same
        as a later :meth:`register`, without building and moving a private index first).

        ``root = KDF("pair", key=DH(e_a, e_b), IK_a ‖ IK_b ‖ share_a ‖ share_b ‖ h)``, with
        ``h`` the Noise handshake hash (public channel binding). The root is forgotten once
        the epoch's chain and heal keys are derived.

        Raises:
            HandshakeError: their share is degenerate or their clock is too far off.
            LocalProtocolError: identity keys equal or malformed, or ``ours`` not ours.
        """
        if len(our_ik) != 32 or len(their_ik) != 32 or our_ik == their_ik:
            raise LocalProtocolError("pairing needs two distinct 32-byte identity keys")
        is_a = our_ik < their_ik
        channel = cls(limits, is_a=is_a, clock=now)
        if index is not None:
            index.forget_contact(peer_id)  # as register() would: a re-pair replaces old tags
            channel._index, channel._peer_id = index, peer_id
        a, b = (ours, theirs) if is_a else (theirs, ours)
        channel._check_shares(our_secret, ours, theirs)
        ik_a, ik_b = (our_ik, their_ik) if is_a else (their_ik, our_ik)
        dh = x25519(our_secret, theirs.public)
        root = kdf(PERSON_PAIR, dh, ik_a, ik_b, transcript(a, b, handshake_hash))
        channel._install_epoch(root, 0, min(ours.period, theirs.period), base=None)
        return channel

    def heal(
        self,
        *,
        our_secret: bytes,
        ours: KeyShare,
        theirs: KeyShare,
        handshake_hash: bytes,
        now: float,
    ) -> HealResult:
        """Mix a fresh exchange into the channel: a new epoch both sides agree on.

        ``root = KDF("heal", key=H[base] ‖ DH(e_a, e_b), transcript ‖ base ‖ new)`` where
        ``base`` is :func:`heal_base` (normally both sides' current epoch) and
        ``new = max(current epochs) + 1``. Our sending switches to the new epoch at once.

        Raises:
            HandshakeError: their share is degenerate or their clock is too far off.
            LocalProtocolError: :func:`can_heal` is false (pair afresh instead), or ``ours``
                is not this channel's current share (a message was sealed in between).
        """
        self.advance(now)
        base, mine, peer = heal_base(ours, theirs), ours.epoch, theirs.epoch
        if base is None or mine is None or peer is None:
            raise LocalProtocolError("the two sides share no heal key: pair afresh")
        self._check_shares(our_secret, ours, theirs)
        self._check_current(ours)
        skewed = abs(ours.period - theirs.period) > self._future()
        if ours.period > theirs.period + self._future():
            self._rebase_clock(now, theirs.period)
        new = max(mine, peer) + 1
        a, b = (ours, theirs) if self._is_a else (theirs, ours)
        secret = self._heal_keys[base] + x25519(our_secret, theirs.public)
        root = kdf(PERSON_HEAL, secret, transcript(a, b, handshake_hash), u32(base), u32(new))
        never_had = self._epoch not in (peer, theirs.previous)
        abandoned = self._epoch if never_had or skewed else None
        for number in [e for e in self._recv if e > peer]:
            self._drop_epoch(number, expire=False)  # the peer never had these epochs
        self._close_left_epochs(peer, min(theirs.period, ours.period + self._future()))
        left = self._recv.get(peer)
        if left is not None and left.last is None:
            counts = dict(theirs.final_counts)
            left.pending = _Final(last=theirs.period, counts_from=theirs.counts_from, counts=counts)
        self._install_epoch(root, new, min(ours.period, theirs.period), base=base)
        return HealResult(epoch=new, abandoned_epoch=abandoned)

    @property
    def confirmation(self) -> bytes:
        """16 bytes both sides derive from the latest epoch root; the Node may exchange them."""
        return self._confirmation

    def confirm(self, their_confirmation: bytes) -> bool:
        """The peer's confirmation of the latest heal. True if it matches: the peer has left
        the older epochs, so their final counts now apply (receive keys are trimmed)."""
        if not hmac.compare_digest(their_confirmation, self._confirmation):
            return False
        self._finalise_older()
        return True

    def _check_shares(self, our_secret: bytes, ours: KeyShare, theirs: KeyShare) -> None:
        ours.check()
        if len(our_secret) != 32 or nacl.bindings.crypto_scalarmult_base(our_secret) != ours.public:
            raise LocalProtocolError("our_secret does not belong to our key share")
        try:
            theirs.check()
        except DecodeError as exc:
            raise HandshakeError(f"bad key share: {exc}") from exc
        if abs(ours.period - theirs.period) > meeting_periods(self._limits):
            raise HandshakeError("the peer's clock is off ours by more than max_meeting_skew_s")
        if len(theirs.final_counts) > receive_window(self._limits) + future_periods(self._limits):
            raise HandshakeError("key share reports too many periods")

    def _check_current(self, ours: KeyShare) -> None:
        """``ours`` must still describe our sending state: no message sealed since it was made
        (the peer would trim our old epoch to counts that miss that message)."""
        now = self._share(ours.public, ours.random)
        since = max(ours.counts_from, now.counts_from)
        if (ours.epoch, ours.previous) != (now.epoch, now.previous) or [
            pc for pc in ours.final_counts if pc[0] >= since
        ] != [pc for pc in now.final_counts if pc[0] >= since]:
            raise LocalProtocolError("our key share is stale: a message was sealed since")

    def _share(self, public: bytes, rand: bytes) -> KeyShare:
        send = self._send
        counts_from = max(send.start, self._period - self._span())
        counts = tuple(sorted((p, c) for p, c in send.counts.items() if p >= counts_from))
        previous = [e for e in self._heal_keys if e != self._epoch]
        return KeyShare(
            public=public, random=rand, period=self._period, epoch=self._epoch,
            previous=previous[0] if previous else None, counts_from=counts_from,
            final_counts=counts,
        )  # fmt: skip

    def _install_epoch(self, root: bytes, epoch: int, start: int, *, base: int | None) -> None:
        """Derive the epoch's chains and heal key from ``root``; our sending switches to it."""
        if start > self._period:  # our clock went back since the share: never seal below start
            self._clock = max(self._clock, start * self._limits.period_s)
            self._period = start
        keys = epoch_keys(root, epoch, start, we_are_a=self._is_a)
        self._send = _SendChain(
            epoch=epoch, start=start, period=start, key=keys.send_key,
            tag_key=keys.send_tag_key, counts={},
        )  # fmt: skip
        limit = self._limits.max_messages_per_period
        first = _Slot(start, keys.recv_key, keys.recv_tag_key, limit)
        self._recv[epoch] = _RecvEpoch(epoch=epoch, start=start, slots={start: first})
        heal_keys = {epoch: keys.heal_key}
        if base is not None:
            heal_keys[base] = self._heal_keys[base]  # a peer that missed this heal can redo it
        self._heal_keys = heal_keys
        self._confirmation = keys.confirmation
        self._epoch = epoch
        self._advance_send()
        recv = self._recv[epoch]
        self._refresh(recv)  # derives the window's slots; a start below the window is dropped
        if first.period in recv.slots:
            self._fill(recv, first)
        while len(self._recv) > self._limits.max_epochs_retained:
            self._drop_epoch(next(iter(self._recv)), expire=True)

    # --------------------------------------------------------------- time

    def _rebase_clock(self, now: float, start: int) -> None:
        """Bring a channel clock that ran ahead of the peer's back to ``now`` (not below the
        new epoch's ``start``), at a live, authenticated meeting.

        One wrong reading of ``now`` (a bad NTP answer) pushes the monotonic clock ahead, and
        it never comes back by itself: our mail is sealed in periods the peer does not accept
        yet, our windows have passed its periods. Safe: deleted keys stay deleted (ratchets
        are one way); only the new epoch, fresh keys, starts at the agreed lower period. If
        ``now`` is still wrong, the clock stays where it is and the Node reports the skew.
        """
        limits = self._limits
        self._clock = max(now, start * limits.period_s)
        self._period = period_of(self._clock, limits)
        ceiling = self._clock + limits.expired_tag_grace_s  # keep expiry order and grace
        for entry in self._expired.values():
            entry.until = min(entry.until, ceiling)

    def advance(self, now: float) -> bool:
        """Move the monotonic clock to ``now``: ratchet, delete keys, expire old tags.

        Returns True when the state changed in a way the Node must persist (keys deleted or
        derived, tags expired). A ``now`` earlier than one seen before changes nothing.
        """
        self._clock = max(self._clock, now)
        changed = False
        period = period_of(self._clock, self._limits)
        if period > self._period:
            self._period = period
            self._advance_send()
            for epoch in list(self._recv.values()):
                self._refresh(epoch)
            changed = True
        while self._expired:
            tag, entry = next(iter(self._expired.items()))
            if entry.until > self._clock:
                break
            del self._expired[tag]
            self._index.drop(tag, self._peer_id)
            changed = True
        return changed

    def next_deadline(self) -> float:
        """When :meth:`advance` next has work: the next period or the next tag expiry."""
        deadline = (self._period + 1) * self._limits.period_s
        if self._expired:
            deadline = min(deadline, next(iter(self._expired.values())).until)
        return deadline

    @property
    def period(self) -> int:
        """The current (monotonic) period."""
        return self._period

    @property
    def clock(self) -> float:
        """The channel clock: the largest ``now`` seen (lowered only at a meeting's repair)."""
        return self._clock

    @property
    def epoch(self) -> int:
        """The current epoch: the one we seal in."""
        return self._epoch

    def _span(self) -> int:
        return receive_window(self._limits) + future_periods(self._limits)

    def _future(self) -> int:
        return future_periods(self._limits)

    def _advance_send(self) -> None:
        send = self._send
        while send.period < self._period:
            send.key, send.tag_key = ratchet(send.key, send.tag_key, send.period)
            send.period += 1
            send.counter = 0
        floor = self._period - self._span()
        for p in [p for p in send.counts if p < floor]:
            del send.counts[p]

    def _refresh(self, epoch: _RecvEpoch) -> None:
        """Derive slots up to the top of the window, delete slots below it."""
        limits = self._limits
        low = max(epoch.start, self._period - receive_window(limits) + 1)
        high = self._period + future_periods(limits) if epoch.last is None else epoch.last
        if epoch.slots:
            top = epoch.slots[next(reversed(epoch.slots))]
            key, tag_key = top.key, top.tag_key
            for period in range(top.period, high):
                key, tag_key = ratchet(key, tag_key, period)
                if period + 1 >= low:
                    slot = _Slot(period + 1, key, tag_key, limits.max_messages_per_period)
                    epoch.slots[period + 1] = slot
                    self._fill(epoch, slot)
        for period in [p for p in epoch.slots if p < low]:
            self._drop_slot(epoch, epoch.slots[period], expire=True)
        if not epoch.slots and epoch.epoch != self._epoch:
            del self._recv[epoch.epoch]

    # --------------------------------------------------------------- sealing

    def capacity(self, now: float) -> int:
        """Messages that can still be sealed in the current period."""
        self.advance(now)
        return self._limits.max_messages_per_period - self._send.counter

    def remaining(self, now: float) -> int:
        """What :meth:`capacity` would say, without moving the clock (views and pacing must
        not ratchet keys: a change made outside ``advance`` callers is never persisted)."""
        if period_of(max(self._clock, now), self._limits) > self._send.period:
            return self._limits.max_messages_per_period  # a new period: a full budget
        return self._limits.max_messages_per_period - self._send.counter

    def seal(self, inner: bytes, now: float, ttl_s: float, rng: Rng) -> Sealed:
        """Seal ``inner`` for the contact. The Node persists :meth:`to_bytes` together with
        the envelope before transmitting it (a counter must never be reused after a crash).

        Raises:
            LocalProtocolError: ``ttl_s`` outside ``(0, min(latency_budget_s, max_ttl_s)]``,
                ``inner`` over ``max_inner_bytes``, or the period's counters are used up
                (see :meth:`capacity`).
        """
        limits = self._limits
        if not 0 < ttl_s <= min(limits.latency_budget_s, limits.max_ttl_s):
            raise LocalProtocolError("ttl_s must be positive and within the latency budget")
        self.advance(now)
        send = self._send
        if send.counter >= limits.max_messages_per_period:
            raise LocalProtocolError("max_messages_per_period reached for this contact")
        counter = send.counter
        purge = token(send.tag_key, counter)
        tag = tag_of_token(purge)
        expiry_at = expiry_from(self._clock, ttl_s)
        data = seal_envelope(
            key=message_key(send.key, counter), tag=tag, expiry_at=expiry_at, inner=inner,
            rng=rng, limits=limits,
        )  # fmt: skip
        send.counter = counter + 1
        send.counts[send.period] = send.counter
        return Sealed(
            envelope=data, envelope_id=envelope_id(data), tag=tag, token=purge,
            expiry_at=expiry_at, epoch=send.epoch, period=send.period, counter=counter,
        )  # fmt: skip

    # --------------------------------------------------------------- opening

    def open(self, envelope: Envelope, now: float) -> Opened | Expired | None:
        """Open an envelope whose tag the index attributes to this contact.

        Returns :class:`Opened` once per message; :class:`Expired` once for a recognised
        envelope whose keys are deleted; ``None`` for a copy already handled (idempotent).

        Raises:
            InvalidMessage: the tag is not this contact's, or authentication failed (the tag
                stays live: a forgery cannot burn a genuine message's counter).
        """
        self.advance(now)
        entry = self._index.entry(envelope.tag)
        if entry is None or entry[0] != self._peer_id:
            raise InvalidMessage("tag not recognised for this contact")
        _, epoch_no, period, counter, kind = entry
        if kind is MatchKind.RECEIVED:
            return None
        if kind is MatchKind.EXPIRED:
            return self._report_expired(envelope)
        epoch = self._recv[epoch_no]
        slot = epoch.slots[period]
        inner = open_envelope(envelope, message_key(slot.key, counter), self._limits)
        self._mark_received(epoch, slot, counter)
        if epoch_no == self._epoch:
            self._finalise_older()  # the peer sealed in our newest epoch: it left the older ones
        self._retire_if_complete(epoch)
        return Opened(
            inner=inner, token=token(slot.tag_key, counter), tag=envelope.tag,
            expiry_at=envelope.expiry_at, epoch=epoch_no, period=period, counter=counter,
        )  # fmt: skip

    def _report_expired(self, envelope: Envelope) -> Expired | None:
        record = self._expired[envelope.tag]
        if record.reported:
            return None
        record.reported = True
        return Expired(
            tag=envelope.tag, expiry_at=envelope.expiry_at, epoch=record.epoch,
            period=record.period, counter=record.counter,
        )  # fmt: skip

    # --------------------------------------------------------------- windows

    def _entry(self, epoch: int, period: int, counter: int, kind: MatchKind) -> TagEntry:
        return (self._peer_id, epoch, period, counter, kind)

    def _fill(self, epoch: _RecvEpoch, slot: _Slot) -> None:
        """Derive and index the window's tags up to ``min(base + tag_window, limit)``."""
        end = min(slot.base + self._limits.tag_window, slot.limit)
        for counter in range(slot.base + len(slot.tags), end):
            tag = tag_of_token(token(slot.tag_key, counter))
            slot.tags.append(tag)
            seen = (slot.seen >> (counter - slot.base)) & 1
            kind = MatchKind.RECEIVED if seen else MatchKind.LIVE
            self._index.put(tag, self._entry(epoch.epoch, slot.period, counter, kind))

    def _mark_received(self, epoch: _RecvEpoch, slot: _Slot, counter: int) -> None:
        skipped = slot.skipped.pop(counter, None)
        if skipped is not None:
            if counter >= slot.base - _trail_depth(self._limits):
                slot.trail[counter] = skipped
                entry = self._entry(epoch.epoch, slot.period, counter, MatchKind.RECEIVED)
                self._index.put(skipped, entry)
            else:
                self._index.drop(skipped, self._peer_id)
            return
        offset = counter - slot.base
        slot.seen |= 1 << offset
        entry = self._entry(epoch.epoch, slot.period, counter, MatchKind.RECEIVED)
        self._index.put(slot.tags[offset], entry)
        # Keep at least half a window of tags above the highest counter received (Briar's
        # rule), then move the base past counters already received.
        shift = max(0, offset + 1 - self._limits.tag_window // 2)
        while shift < len(slot.tags) and (slot.seen >> shift) & 1:
            shift += 1
        self._shift(epoch, slot, shift)

    def _shift(self, epoch: _RecvEpoch, slot: _Slot, n: int) -> None:
        for i, tag in enumerate(slot.tags[:n]):
            if (slot.seen >> i) & 1:
                slot.trail[slot.base + i] = tag  # still RECEIVED: a late duplicate is a no-op
            else:
                slot.skipped[slot.base + i] = tag  # overtaken: still decryptable, still LIVE
        del slot.tags[:n]
        slot.seen >>= n
        depth = _trail_depth(self._limits)
        for counter in range(max(0, slot.base - depth), slot.base + n - depth):
            gone = slot.trail.pop(counter, None)
            if gone is not None:
                self._index.drop(gone, self._peer_id)
        slot.base += n
        while len(slot.skipped) > self._limits.max_skipped_per_period:
            counter = next(iter(slot.skipped))
            self._expire(slot.skipped.pop(counter), epoch.epoch, slot.period, counter)
        self._fill(epoch, slot)

    def _expire(self, tag: bytes, epoch: int, period: int, counter: int) -> None:
        """Keep a tag whose key is going away, so its envelope is reported, not lost."""
        limits = self._limits
        self._expired[tag] = _ExpiredTag(
            until=self._clock + limits.expired_tag_grace_s, epoch=epoch,
            period=period, counter=counter,
        )  # fmt: skip
        self._index.put(tag, self._entry(epoch, period, counter, MatchKind.EXPIRED))
        while len(self._expired) > limits.max_expired_tags:
            oldest = next(iter(self._expired))
            del self._expired[oldest]
            self._index.drop(oldest, self._peer_id)

    def _drop_slot(self, epoch: _RecvEpoch, slot: _Slot, *, expire: bool) -> None:
        """Delete a slot's keys; with ``expire`` its unreceived tags stay recognisable.

        Kept are the counters certainly sealed but never received (skipped ones, gaps below
        the highest received) and ``expired_tail_counters`` just above it: most of a window
        lies beyond what the sender ever used, and would only crowd the expired-tag pool.
        """
        for tag in slot.trail.values():
            self._index.drop(tag, self._peer_id)
        for counter, tag in slot.skipped.items():
            if expire:
                self._expire(tag, epoch.epoch, slot.period, counter)
            else:
                self._index.drop(tag, self._peer_id)
        keep = slot.seen.bit_length() + self._limits.expired_tail_counters if expire else 0
        for i, tag in enumerate(slot.tags):
            if i < keep and not (slot.seen >> i) & 1:
                self._expire(tag, epoch.epoch, slot.period, slot.base + i)
            else:
                self._index.drop(tag, self._peer_id)
        del epoch.slots[slot.period]

    def _drop_epoch(self, epoch_no: int, *, expire: bool) -> None:
        epoch = self._recv.pop(epoch_no)
        for slot in list(epoch.slots.values()):
            self._drop_slot(epoch, slot, expire=expire)

    def _close_left_epochs(self, peer: int, last: int) -> None:
        """At a heal, before the new epoch: close every receive epoch the peer has left.

        The peer's share says it is in epoch ``peer``. If that is our newest epoch, it completed
        our last heal (an implicit confirmation, even if its KeyConfirm was lost): the counts it
        reported then are final. Every epoch below ``peer`` it has left for good, so none may
        stay open (an open epoch derives keys for every later period: a state stolen before
        the heals could forge in it for ever). Reports older than the epoch the peer is leaving
        now are discarded: they may predate messages it sealed after a heal we did alone.
        """
        if peer == self._epoch:
            self._finalise_older()
        for epoch in list(self._recv.values()):
            epoch.pending = None
            if epoch.epoch < peer and epoch.last is None:
                self._close_epoch(epoch, last, None)

    def _finalise_older(self) -> None:
        """The peer is in our newest epoch, so it has left every older one: apply the final
        counts it reported, and close an epoch without a report at our period + F (the peer
        sealed nothing in it later than that)."""
        cap = self._period + self._future()
        for epoch in list(self._recv.values()):
            final = epoch.pending
            if epoch.epoch >= self._epoch or (final is None and epoch.last is not None):
                continue
            epoch.pending = None
            self._close_epoch(epoch, cap if final is None else min(final.last, cap), final)

    def _close_epoch(self, epoch: _RecvEpoch, last: int, final: _Final | None) -> None:
        """No slot after ``last`` (the peer's last period in the epoch); with ``final``, each
        slot recognises only the counters the peer reported sealing."""
        epoch.last = last
        self._refresh(epoch)
        if epoch.epoch not in self._recv:
            return
        for slot in list(epoch.slots.values()):
            if slot.period > last:
                self._drop_slot(epoch, slot, expire=False)
            elif final is not None and slot.period >= final.counts_from:
                self._set_limit(epoch, slot, final.counts.get(slot.period, 0))
        self._retire_if_complete(epoch)

    def _set_limit(self, epoch: _RecvEpoch, slot: _Slot, count: int) -> None:
        """Counters at or above the sender's final count never exist: stop recognising them."""
        slot.limit = max(min(count, slot.limit), slot.base)
        keep = slot.limit - slot.base
        for tag in slot.tags[keep:]:
            self._index.drop(tag, self._peer_id)
        del slot.tags[keep:]
        slot.seen &= (1 << keep) - 1

    def _retire_if_complete(self, epoch: _RecvEpoch) -> None:
        """Drop an old epoch early once every message the peer reported has arrived."""
        if epoch.last is None or epoch.epoch == self._epoch:
            return
        if all(slot.complete() for slot in epoch.slots.values()):
            self._drop_epoch(epoch.epoch, expire=False)

    # --------------------------------------------------------------- index and persistence

    def _reindex(self) -> None:
        """Recompute every slot's tags into the index (after a restore)."""
        depth = _trail_depth(self._limits)
        for epoch in self._recv.values():
            for slot in epoch.slots.values():
                for counter in range(max(0, slot.base - depth), slot.base):
                    kind = MatchKind.LIVE if counter in slot.skipped else MatchKind.RECEIVED
                    tag = tag_of_token(token(slot.tag_key, counter))
                    (slot.skipped if kind is MatchKind.LIVE else slot.trail)[counter] = tag
                    self._index.put(tag, self._entry(epoch.epoch, slot.period, counter, kind))
                for counter in [c for c in slot.skipped if c < slot.base - depth]:
                    tag = tag_of_token(token(slot.tag_key, counter))
                    slot.skipped[counter] = tag
                    entry = self._entry(epoch.epoch, slot.period, counter, MatchKind.LIVE)
                    self._index.put(tag, entry)
                self._fill(epoch, slot)
        for tag, e in self._expired.items():
            self._index.put(tag, self._entry(e.epoch, e.period, e.counter, MatchKind.EXPIRED))

    def openable_tags(self) -> list[bytes]:
        """Tags of every counter this channel may still open: each window and each skipped
        counter (a few dozen; some may already be RECEIVED, so check the index)."""
        tags: list[bytes] = []
        for epoch in self._recv.values():
            for slot in epoch.slots.values():
                tags += slot.tags
                tags += slot.skipped.values()
        return tags

    def register(self, index: TagIndex, peer_id: bytes) -> None:
        """Attach the channel to the node-wide ``index`` under ``peer_id``.

        Moves its tags there (replacing any tags ``peer_id`` had before, e.g. after a re-pair).
        """
        if index is self._index and peer_id == self._peer_id:
            return
        index.forget_contact(peer_id)
        entries = self._index.entries_of(self._peer_id)
        for tag, entry in entries:  # the first put raises if the index is full: nothing moved
            index.put(tag, (peer_id, *entry[1:]))
        for tag, _ in entries:
            self._index.drop(tag, self._peer_id)
        self._index, self._peer_id = index, peer_id

    def to_bytes(self) -> bytes:
        """The whole key state, strictly encoded (format version 1; see docs/protocol/e2e.md).

        Holds only keys that are still live: deleted period keys and the roots are absent.
        """
        return _encode(self)

    @classmethod
    def from_bytes(cls, data: bytes, *, limits: MessageLimits) -> ContactChannel:
        """Restore a channel from :meth:`to_bytes` output (attach it with :meth:`register`).

        Raises:
            KeystoreError: the bytes are damaged, of another version, or exceed the limits.
        """
        return _decode(cls, data, limits)


# ----------------------------------------------------------------------------- persistence

# Channel state format, version 1 (all integers big-endian; docs/protocol/e2e.md lists it):
#   "MMch" u8 version u8 flags(bit0: we are A) f64 clock u32 epoch 16 confirmation
#   u8 n, n x (u32 epoch, 32 heal key)
#   send: u32 epoch u64 start u64 period 32 key 32 tag key u32 counter u8 n, n x (u64 p, u32 c)
#   u8 n epochs, each: u32 epoch u64 start u64 last(all ones: open)
#       u8 pending, if 1: u64 last u64 counts_from u8 n, n x (u64 p, u32 c)
#       u8 n slots, each: u64 period 32 key 32 tag key u32 base u32 limit
#           u16 n, n bytes seen bitmap (little-endian, bit i = counter base + i)
#           u16 n, n x u32 skipped counter
#   u16 n expired, each: 16 tag f64 until u32 epoch u64 period u32 counter u8 reported
# Window tags are not stored: they are recomputed from the slot keys on restore.
_MAGIC: Final = b"MMch"
_STATE_VERSION: Final = 1
_OPEN: Final = (1 << 64) - 1


class _Writer:
    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def put(self, fmt: str, *values: int | float | bytes) -> None:
        self.parts.append(struct.pack(">" + fmt, *values))

    def counts(self, counts: dict[int, int]) -> None:
        self.put("B", len(counts))
        for period, count in sorted(counts.items()):
            self.put("QI", period, count)


class _Reader(ByteCursor):
    """Strict cursor over state bytes: every short read or bound is a KeystoreError."""

    __slots__ = ()

    def __init__(self, data: bytes) -> None:
        super().__init__(data, error=KeystoreError, truncated="channel state is truncated")

    def real(self) -> float:
        value: float = struct.unpack(">d", self.take(8))[0]
        if not math.isfinite(value) or value < 0:
            raise KeystoreError("channel state holds a bad time")
        return value

    def count(self, size: int, bound: int, what: str) -> int:
        n = self.uint(size)
        if n > bound:
            raise KeystoreError(f"channel state holds {n} {what}, over the limit of {bound}")
        return n

    def counts(self, bound: int, cap: int) -> dict[int, int]:
        pairs = [(self.uint(8), self.uint(4)) for _ in range(self.count(1, bound, "periods"))]
        if [p for p, _ in pairs] != sorted({p for p, _ in pairs}):
            raise KeystoreError("channel state counts are out of order")
        if any(not 1 <= c <= cap for _, c in pairs):
            raise KeystoreError("channel state count out of range")
        return dict(pairs)


def _encode(ch: ContactChannel) -> bytes:
    w = _Writer()
    w.parts.append(_MAGIC)
    w.put("BBdI", _STATE_VERSION, int(ch._is_a), ch._clock, ch._epoch)
    w.parts.append(ch._confirmation)
    w.put("B", len(ch._heal_keys))
    for epoch_no, key in ch._heal_keys.items():
        w.put("I32s", epoch_no, key)
    s = ch._send
    w.put("IQQ32s32sI", s.epoch, s.start, s.period, s.key, s.tag_key, s.counter)
    w.counts(s.counts)
    w.put("B", len(ch._recv))
    for epoch in ch._recv.values():
        w.put("IQQB", epoch.epoch, epoch.start, _OPEN if epoch.last is None else epoch.last,
              epoch.pending is not None)  # fmt: skip
        if epoch.pending is not None:
            w.put("QQ", epoch.pending.last, epoch.pending.counts_from)
            w.counts(epoch.pending.counts)
        w.put("B", len(epoch.slots))
        for slot in epoch.slots.values():
            seen = slot.seen.to_bytes((slot.seen.bit_length() + 7) // 8, "little")
            w.put("Q32s32sIIH", slot.period, slot.key, slot.tag_key, slot.base, slot.limit,
                  len(seen))  # fmt: skip
            w.parts.append(seen)
            w.put("H" + "I" * len(slot.skipped), len(slot.skipped), *slot.skipped)
    w.put("H", len(ch._expired))
    for tag, e in ch._expired.items():
        w.put("16sdIQIB", tag, e.until, e.epoch, e.period, e.counter, e.reported)
    return b"".join(w.parts)


def _decode(cls: type[ContactChannel], data: bytes, limits: MessageLimits) -> ContactChannel:
    r = _Reader(data)
    if r.take(4) != _MAGIC or r.uint(1) != _STATE_VERSION:
        raise KeystoreError("not a channel state of format version 1")
    flags = r.uint(1)
    if flags > 1:
        raise KeystoreError("channel state has unknown flags")
    ch = cls(limits, is_a=bool(flags), clock=r.real())
    ch._epoch = r.uint(4)
    ch._confirmation = r.take(CONFIRM_BYTES)
    n_heal = r.count(1, 2, "heal keys")
    ch._heal_keys = {r.uint(4): r.take(32) for _ in range(n_heal)}
    span = ch._span() + 1
    cap = limits.max_messages_per_period
    ch._send = _SendChain(
        epoch=r.uint(4), start=r.uint(8), period=r.uint(8), key=r.take(32), tag_key=r.take(32),
        counter=r.uint(4), counts=r.counts(span, cap),
    )  # fmt: skip
    send = ch._send
    if len(ch._heal_keys) != n_heal or ch._epoch not in ch._heal_keys or send.epoch != ch._epoch:
        raise KeystoreError("channel state epochs are inconsistent")
    if not send.start <= send.period <= ch._period or send.counter > cap:
        raise KeystoreError("channel state send counter or period out of range")
    for _ in range(r.count(1, limits.max_epochs_retained, "epochs")):
        epoch = _decode_epoch(r, limits, span)
        if (ch._recv and epoch.epoch <= next(reversed(ch._recv))) or epoch.epoch > ch._epoch:
            raise KeystoreError("channel state epochs are out of order")
        ch._recv[epoch.epoch] = epoch
    if ch._epoch not in ch._recv:
        raise KeystoreError("channel state lacks its current receive epoch")
    n_expired = r.count(2, limits.max_expired_tags, "expired tags")
    for _ in range(n_expired):
        tag, until = r.take(16), r.real()
        epoch_no, period, counter, reported = r.uint(4), r.uint(8), r.uint(4), r.uint(1)
        if reported > 1:
            raise KeystoreError("channel state has a bad reported flag")
        ch._expired[tag] = _ExpiredTag(
            until=until, epoch=epoch_no, period=period, counter=counter, reported=bool(reported)
        )
    if len(ch._expired) != n_expired or not r.at_end():
        raise KeystoreError("channel state has duplicate tags or trailing bytes")
    ch._reindex()
    return ch


def _decode_epoch(r: _Reader, limits: MessageLimits, span: int) -> _RecvEpoch:
    cap = limits.max_messages_per_period
    epoch_no, start, last, has_pending = r.uint(4), r.uint(8), r.uint(8), r.uint(1)
    epoch = _RecvEpoch(epoch=epoch_no, start=start, last=None if last == _OPEN else last, slots={})
    if has_pending > 1:
        raise KeystoreError("channel state has a bad pending flag")
    if has_pending:
        p_last, counts_from = r.uint(8), r.uint(8)
        epoch.pending = _Final(last=p_last, counts_from=counts_from, counts=r.counts(span, cap))
    for _ in range(r.count(1, span, "periods")):
        period, key, tag_key = r.uint(8), r.take(32), r.take(32)
        slot = _Slot(period, key, tag_key, limit=0)
        slot.base, slot.limit = r.uint(4), r.uint(4)
        slot.seen = int.from_bytes(r.take(r.uint(2)), "little")
        n_skipped = r.count(2, limits.max_skipped_per_period, "skipped counters")
        skipped = [r.uint(4) for _ in range(n_skipped)]
        window = min(limits.tag_window, slot.limit - slot.base)
        if not slot.base <= slot.limit <= cap or slot.seen >> max(window, 0):
            raise KeystoreError("channel state window out of range")
        if skipped != sorted(set(skipped)) or any(c >= slot.base for c in skipped):
            raise KeystoreError("channel state skipped counters out of range")
        if period < start or (epoch.slots and period <= next(reversed(epoch.slots))):
            raise KeystoreError("channel state periods out of order")
        slot.skipped = dict.fromkeys(skipped, b"")
        epoch.slots[period] = slot
    return epoch


__all__ = [
    "ContactChannel",
    "Expired",
    "HealResult",
    "KeyShare",
    "Match",
    "MatchKind",
    "Opened",
    "Sealed",
    "TagIndex",
    "can_heal",
    "future_periods",
    "heal_base",
    "new_key_share",
    "receive_window",
    "tag_budget",
]
