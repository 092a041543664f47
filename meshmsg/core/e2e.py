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
from dataclasses import dataclass

import nacl.bindings

from meshmsg.config import MessageLimits
from meshmsg.core.e2ecodec import decode_state, encode_state
from meshmsg.core.e2estate import ChannelState, FinalReport, RecvEpoch, SendChain, Slot, trail_depth
from meshmsg.core.envelope import (
    Envelope,
    envelope_id,
    expiry_from,
    open_envelope,
    seal_envelope,
    tag_of_token,
)
from meshmsg.core.keyschedule import (
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
from meshmsg.core.tagindex import Match, MatchKind, TagIndex
from meshmsg.errors import (
    DecodeError,
    HandshakeError,
    InvalidMessage,
    LocalProtocolError,
)


def tag_budget(limits: MessageLimits) -> int:
    """Most TagIndex entries one contact can hold (live, received, skipped and expired)."""
    per_slot = limits.tag_window + limits.max_skipped_per_period + trail_depth(limits)
    slots = receive_window(limits) + future_periods(limits)
    return limits.max_epochs_retained * slots * per_slot + limits.max_expired_tags


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


class ContactChannel(ChannelState):
    """End-to-end key state shared with one contact (see the module docstring).

    Create with :meth:`pair` or :meth:`from_bytes`, attach to the node's index with
    :meth:`register`. Every method that takes ``now`` first moves the monotonic clock.
    """

    __slots__ = ()

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
            left.pending = FinalReport(
                last=theirs.period, counts_from=theirs.counts_from, counts=counts
            )
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
        self._send = SendChain(
            epoch=epoch, start=start, period=start, key=keys.send_key,
            tag_key=keys.send_tag_key, counts={},
        )  # fmt: skip
        limit = self._limits.max_messages_per_period
        first = Slot(start, keys.recv_key, keys.recv_tag_key, limit)
        self._recv[epoch] = RecvEpoch(epoch=epoch, start=start, slots={start: first})
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

    def _advance_send(self) -> None:
        send = self._send
        while send.period < self._period:
            send.key, send.tag_key = ratchet(send.key, send.tag_key, send.period)
            send.period += 1
            send.counter = 0
        floor = self._period - self._span()
        for p in [p for p in send.counts if p < floor]:
            del send.counts[p]

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

    # --------------------------------------------------------------- index and persistence

    def to_bytes(self) -> bytes:
        """The whole key state, strictly encoded (format version 1; see docs/protocol/e2e.md).

        Holds only keys that are still live: deleted period keys and the roots are absent.
        """
        return encode_state(self)

    @classmethod
    def from_bytes(cls, data: bytes, *, limits: MessageLimits) -> ContactChannel:
        """Restore a channel from :meth:`to_bytes` output (attach it with :meth:`register`).

        Raises:
            KeystoreError: the bytes are damaged, of another version, or exceed the limits.
        """
        return decode_state(cls, data, limits)


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
