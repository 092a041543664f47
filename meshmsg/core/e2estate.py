"""A B+ channel's state, and its receive side: epochs, period slots, tag windows, expired tags.

:class:`ChannelState` holds everything a :class:`~meshmsg.core.e2e.ContactChannel` keeps (the
channel is this state plus the operations on it: pairing, healing, sealing, opening; see
``core/e2e.py`` for the theory of operation) and maintains the receive side.

*Receive epochs and slots.* Per epoch the receiver keeps a slot for each period of the window
``[P - W + 1, P + F]`` (:meth:`ChannelState._refresh` derives them as the period moves and
deletes the ones below). An epoch the peer has left is closed at its last period and trimmed to
the final counts it reported (``_close_left_epochs``, ``_finalise_older``), and dropped once
every reported message arrived (``_retire_if_complete``).

*Recognition.* Each slot precomputes the tags of a window of ``tag_window`` counters starting
at ``base``, the lowest counter not yet received, and puts them in the node-wide
:class:`TagIndex`. Receiving a counter in the upper half of the window slides it (Briar's rule);
overtaken counters stay decryptable as *skipped* (bounded); received ones stay RECEIVED in the
*trail* just below the window, so a second copy is a no-op. Deleted keys leave the tags of
their likely-sent, unreceived counters EXPIRED for a grace time (``_expire``), so a late
envelope is reported instead of silently lost.

The state's byte format is ``core/e2ecodec.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from meshmsg.config import MessageLimits
from meshmsg.core.envelope import check_limits, tag_of_token
from meshmsg.core.keyschedule import (
    CONFIRM_BYTES,
    future_periods,
    period_of,
    ratchet,
    receive_window,
    token,
)
from meshmsg.core.tagindex import MatchKind, TagEntry, TagIndex


def trail_depth(limits: MessageLimits) -> int:
    """Received counters just below a window's base that stay recognised as duplicates.

    Not deeper than ``max_skipped_per_period``: then every counter in the trail is either
    received or still skipped, so the trail is derived from (base, skipped) on restore.
    """
    return min(limits.tag_window, limits.max_skipped_per_period)


class Slot:
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
class FinalReport:
    """A peer's report on an epoch it is leaving: applied once it is known to have left."""

    last: int
    counts_from: int
    counts: dict[int, int]


@dataclass(slots=True, kw_only=True)
class RecvEpoch:
    epoch: int
    start: int
    last: int | None = None  # the peer's last period in this epoch, once final
    pending: FinalReport | None = None
    slots: dict[int, Slot]  # period -> slot, ascending


@dataclass(slots=True, kw_only=True)
class SendChain:
    epoch: int
    start: int
    period: int
    key: bytes
    tag_key: bytes
    counter: int = 0
    counts: dict[int, int]  # period -> messages sealed, for the final-count report


@dataclass(slots=True, kw_only=True)
class ExpiredTag:
    until: float
    epoch: int
    period: int
    counter: int
    reported: bool = False


class ChannelState:
    """The state of one contact's channel, and the upkeep of its receive epochs and windows.

    The base of :class:`~meshmsg.core.e2e.ContactChannel`, never used on its own: it holds the
    fields (``core/e2ecodec.py`` encodes them) and keeps the receive side consistent with the
    tag index; the channel adds the operations that move it (pair, heal, advance, seal, open).
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
        self._recv: dict[int, RecvEpoch] = {}
        self._expired: dict[bytes, ExpiredTag] = {}
        self._send = SendChain(epoch=0, start=0, period=0, key=b"", tag_key=b"", counts={})

    # --------------------------------------------------------------- periods

    def _span(self) -> int:
        return receive_window(self._limits) + future_periods(self._limits)

    def _future(self) -> int:
        return future_periods(self._limits)

    def _refresh(self, epoch: RecvEpoch) -> None:
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
                    slot = Slot(period + 1, key, tag_key, limits.max_messages_per_period)
                    epoch.slots[period + 1] = slot
                    self._fill(epoch, slot)
        for period in [p for p in epoch.slots if p < low]:
            self._drop_slot(epoch, epoch.slots[period], expire=True)
        if not epoch.slots and epoch.epoch != self._epoch:
            del self._recv[epoch.epoch]

    # --------------------------------------------------------------- windows

    def _entry(self, epoch: int, period: int, counter: int, kind: MatchKind) -> TagEntry:
        return (self._peer_id, epoch, period, counter, kind)

    def _fill(self, epoch: RecvEpoch, slot: Slot) -> None:
        """Derive and index the window's tags up to ``min(base + tag_window, limit)``."""
        end = min(slot.base + self._limits.tag_window, slot.limit)
        for counter in range(slot.base + len(slot.tags), end):
            tag = tag_of_token(token(slot.tag_key, counter))
            slot.tags.append(tag)
            seen = (slot.seen >> (counter - slot.base)) & 1
            kind = MatchKind.RECEIVED if seen else MatchKind.LIVE
            self._index.put(tag, self._entry(epoch.epoch, slot.period, counter, kind))

    def _mark_received(self, epoch: RecvEpoch, slot: Slot, counter: int) -> None:
        skipped = slot.skipped.pop(counter, None)
        if skipped is not None:
            if counter >= slot.base - trail_depth(self._limits):
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

    def _shift(self, epoch: RecvEpoch, slot: Slot, n: int) -> None:
        for i, tag in enumerate(slot.tags[:n]):
            if (slot.seen >> i) & 1:
                slot.trail[slot.base + i] = tag  # still RECEIVED: a late duplicate is a no-op
            else:
                slot.skipped[slot.base + i] = tag  # overtaken: still decryptable, still LIVE
        del slot.tags[:n]
        slot.seen >>= n
        depth = trail_depth(self._limits)
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
        self._expired[tag] = ExpiredTag(
            until=self._clock + limits.expired_tag_grace_s, epoch=epoch,
            period=period, counter=counter,
        )  # fmt: skip
        self._index.put(tag, self._entry(epoch, period, counter, MatchKind.EXPIRED))
        while len(self._expired) > limits.max_expired_tags:
            oldest = next(iter(self._expired))
            del self._expired[oldest]
            self._index.drop(oldest, self._peer_id)

    def _drop_slot(self, epoch: RecvEpoch, slot: Slot, *, expire: bool) -> None:
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

    def _close_epoch(self, epoch: RecvEpoch, last: int, final: FinalReport | None) -> None:
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

    def _set_limit(self, epoch: RecvEpoch, slot: Slot, count: int) -> None:
        """Counters at or above the sender's final count never exist: stop recognising them."""
        slot.limit = max(min(count, slot.limit), slot.base)
        keep = slot.limit - slot.base
        for tag in slot.tags[keep:]:
            self._index.drop(tag, self._peer_id)
        del slot.tags[keep:]
        slot.seen &= (1 << keep) - 1

    def _retire_if_complete(self, epoch: RecvEpoch) -> None:
        """Drop an old epoch early once every message the peer reported has arrived."""
        if epoch.last is None or epoch.epoch == self._epoch:
            return
        if all(slot.complete() for slot in epoch.slots.values()):
            self._drop_epoch(epoch.epoch, expire=False)

    # --------------------------------------------------------------- the tag index

    def _reindex(self) -> None:
        """Recompute every slot's tags into the index (after a restore)."""
        depth = trail_depth(self._limits)
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

    def openable_tags(self, *, in_order: bool = False) -> list[bytes]:
        """Tags of every counter this channel may still open: each window and each skipped
        counter (a few dozen; some may already be RECEIVED, so check the index).

        ``in_order``: only the lower half of each window (and the skipped counters), whose
        opening never slides the window. A carried copy far ahead of the mail still on its way
        would otherwise overtake up to a window of counters at once, and past
        ``max_skipped_per_period`` their keys go (issue #11, decoy claims bring such copies)."""
        tags: list[bytes] = []
        for epoch in self._recv.values():
            for slot in epoch.slots.values():
                tags += slot.tags[: len(slot.tags) // 2] if in_order else slot.tags
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
