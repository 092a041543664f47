"""One group's keys on one node: our sender chain, the other members' chains, their tags.

Theory of operation
-------------------
:class:`GroupKeys` answers three questions for the node: *is this tag group mail for me*
(``lookup``: one dict access, like the pairwise :class:`~meshmsg.core.tagindex.TagIndex`),
*open it* (``open``), and *which keys can go* (``advance``: periods that left the receive
window, generations the sender replaced once their last period left it, chains of members who
are no longer members). Chains are accepted only from current members, and dropped the moment
a member is removed: removal cuts both ways.

Retention: a chain a sender replaced keeps its keys up to ``last_period`` (the new chain's
period + F) and goes when that leaves the receive window W, exactly like a pairwise epoch the
peer left; at most ``max_generations_retained`` per sender.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from meshmsg.config import GroupLimits, MessageLimits
from meshmsg.core.envelope import Envelope
from meshmsg.core.groups.records import (
    GroupKey,
    GroupReceiveState,
    GroupSenderState,
    ReceivedCounters,
)
from meshmsg.core.groups.senderkeys import ChainKey, ReceiveChain, SenderChain
from meshmsg.core.keyschedule import future_periods, period_of, receive_window
from meshmsg.core.rng import Rng

_MS = 1000.0


@dataclass(frozen=True, slots=True)
class GroupMatch:
    sender: bytes
    generation: int
    period: int
    counter: int


class GroupKeys:
    """See the module docstring."""

    def __init__(self, group: bytes, me: bytes, limits: GroupLimits, msg: MessageLimits) -> None:
        self.group = group
        self.me = me
        self.limits = limits
        self.msg = msg
        self.own: SenderChain | None = None
        self.chains: dict[tuple[bytes, int], ReceiveChain] = {}
        self._tags: dict[bytes, GroupMatch] = {}
        self._by_chain: dict[tuple[bytes, int], list[bytes]] = {}  # a chain's tags in _tags

    # ---------------------------------------------------------------- sending

    def sender(self, *, epoch_id: bytes, rng: Rng, now: float) -> tuple[SenderChain, bool]:
        """Our chain for a message now; True if it is new (share it before sealing)."""
        own = self.own
        if own is not None and not own.due(now, epoch_id, self.limits):
            return own, False
        generation = 0 if own is None else own.generation + 1
        self.own = SenderChain.start(
            group=self.group, sender=self.me, epoch_id=epoch_id, generation=generation,
            rng=rng, now=now, limits=self.msg,
        )  # fmt: skip
        return self.own, True

    # ---------------------------------------------------------------- receiving

    def install(self, key: ChainKey, now: float) -> bool:
        """Take a chain from a current member (the caller checked membership). False if
        it is old news (a generation we have or replaced)."""
        ident = (key.sender, key.generation)
        newest = max((g for s, g in self.chains if s == key.sender), default=-1)
        if ident in self.chains or key.generation < newest:
            return False
        oldest = period_of(now, self.msg) - receive_window(self.msg) + 1
        if key.period < oldest - math.ceil(self.limits.rotation_interval_s / self.msg.period_s):
            # Its generation was replaced (at the sender's first message after
            # rotation_interval_s) before anything we still accept was sealed; deriving
            # forward from an ancient period costs a derivation per period since (fuzzing: a
            # GroupKey of period 0 took minutes of CPU).
            return False
        for (s, _), chain in self.chains.items():
            if s == key.sender and chain.last_period is None:
                chain.last_period = key.period + future_periods(self.msg)
        received = ReceiveChain.from_key(key)
        received.forget_before(oldest)  # periods that left the window: their keys go at once
        self.chains[ident] = received
        mine = sorted(g for s, g in self.chains if s == key.sender)
        for g in mine[: max(0, len(mine) - self.limits.max_generations_retained)]:
            del self.chains[(key.sender, g)]
        self.refresh(now, only=key.sender)
        return True

    def forget_sender(self, sender: bytes, now: float) -> None:
        """A member left or was removed: every chain of theirs goes now."""
        for ident in [i for i in self.chains if i[0] == sender]:
            del self.chains[ident]
        self.refresh(now, only=sender)

    def lookup(self, tag: bytes) -> GroupMatch | None:
        return self._tags.get(tag)

    def open(self, envelope: Envelope, match: GroupMatch, now: float) -> bytes:
        """Open mail whose tag :meth:`lookup` matched; raises InvalidMessage."""
        chain = self.chains[(match.sender, match.generation)]
        payload = chain.open(envelope, match.period, match.counter, self.msg)
        self.refresh(now, only=match.sender)
        return payload

    def tags(self, sender: bytes | None = None) -> list[bytes]:
        """The tags we recognise now: of every chain, or of one sender's."""
        if sender is None:
            return list(self._tags)
        return [t for (s, _), tags in self._by_chain.items() if s == sender for t in tags]

    # ---------------------------------------------------------------- upkeep

    def advance(self, now: float) -> bool:
        """Delete keys that left the receive window; True if anything was deleted."""
        oldest = period_of(now, self.msg) - receive_window(self.msg) + 1
        changed = False
        for ident, chain in list(self.chains.items()):
            if chain.last_period is not None and chain.last_period < oldest:
                del self.chains[ident]
                changed = True
            elif chain.forget_before(oldest):
                changed = True
        if self.own is not None:
            self.own.advance(now, self.msg)
        self.refresh(now)
        return changed

    def next_deadline(self) -> float | None:
        """The start of the next period: keys may leave the window then."""
        if not self.chains and self.own is None:
            return None
        anchor = min((c.anchor for c in self.chains.values()), default=None)
        if anchor is None:
            return None
        return (anchor + receive_window(self.msg)) * self.msg.period_s

    def refresh(self, now: float, *, only: bytes | None = None) -> None:
        """Recompute the tags of the open windows of every chain, or of ``only`` one sender's
        (a few hundred BLAKE2b calls per chain)."""
        for ident in [i for i in self._by_chain if only is None or i[0] == only]:
            for tag in self._by_chain.pop(ident):
                self._tags.pop(tag, None)
        for (sender, generation), chain in self.chains.items():
            if only is not None and sender != only:
                continue
            window = chain.tags(now, self.msg, self.limits.tag_window)
            for tag, (p, c) in window.items():
                self._tags[tag] = GroupMatch(sender, generation, p, c)
            self._by_chain[(sender, generation)] = list(window)

    # ---------------------------------------------------------------- persistence

    def sender_state(self) -> GroupSenderState | None:
        own = self.own
        if own is None:
            return None
        return GroupSenderState(
            epoch_id=own.epoch_id, generation=own.generation,
            started_at=round(own.started_at * _MS), period=own.period, counter=own.counter,
            chain=own.chain, next_key=own.next_key, tag_key=own.tag_key,
            signing_seed=own.signing_seed, sent=own.sent,
        )  # fmt: skip

    def receive_states(self) -> list[GroupReceiveState]:
        return [
            GroupReceiveState(
                sender=sender,
                key=key_record(c.key),
                anchor=c.anchor,
                chain=c.chain,
                first=c.first,
                next_key=c.next_key,
                tag_key=c.tag_key,
                received=tuple(
                    ReceivedCounters(period=p, counters=tuple(sorted(cs)))
                    for p, cs in sorted(c.received.items())
                ),
                last_period=c.last_period,
            )
            for (sender, _), c in sorted(self.chains.items(), key=lambda item: item[0])
        ]

    def restore(
        self, own: GroupSenderState | None, chains: Iterable[GroupReceiveState], now: float
    ) -> None:
        if own is not None:
            self.own = SenderChain(
                group=self.group, sender=self.me, epoch_id=own.epoch_id,
                generation=own.generation, started_at=own.started_at / _MS, period=own.period,
                counter=own.counter, chain=own.chain, next_key=own.next_key,
                tag_key=own.tag_key, signing_seed=own.signing_seed, sent=own.sent,
            )  # fmt: skip
        for state in chains:
            key = chain_key(self.group, state.sender, state.key)
            self.chains[(state.sender, key.generation)] = ReceiveChain(
                key=key, anchor=state.anchor, chain=state.chain, first=state.first,
                next_key=state.next_key, tag_key=state.tag_key,
                received={r.period: set(r.counters) for r in state.received},
                last_period=state.last_period,
            )  # fmt: skip
        self.refresh(now)


def key_record(key: ChainKey) -> GroupKey:
    return GroupKey(
        group=key.group, epoch_id=key.epoch_id, generation=key.generation, period=key.period,
        first=key.first, chain=key.chain, next_key=key.next_key, tag_key=key.tag_key,
        verify_key=key.verify_key,
    )  # fmt: skip


def chain_key(group: bytes, sender: bytes, record: GroupKey) -> ChainKey:
    """The chain a ``GroupKey`` record from ``sender`` (known from the pairwise channel) gives."""
    return ChainKey(
        group=group, sender=sender, epoch_id=record.epoch_id, generation=record.generation,
        period=record.period, first=record.first, chain=record.chain, next_key=record.next_key,
        tag_key=record.tag_key, verify_key=record.verify_key,
    )  # fmt: skip
