"""Purge tokens: letting carriers drop mail that was delivered.

Opening an envelope reveals its purge token; the recipient spreads it (``Purge`` records, and as
an item of reconciliation) and every carrier that learns it drops the envelope whose tag the
token hashes to. A sender that learns it marks its message DELIVERED.
"""

from __future__ import annotations

from meshmsg.core import codec
from meshmsg.core.conversations import StoredMessage
from meshmsg.core.envelope import capped_expiry, tag_of_token
from meshmsg.core.events import DropReason, MessageStatus
from meshmsg.core.exchange.holdings import Delete, Holdings
from meshmsg.core.exchange.sync import Sync
from meshmsg.core.outbox import Outbox
from meshmsg.core.session import PeerSession
from meshmsg.core.state import NodeState
from meshmsg.core.store import Tier
from meshmsg.core.tombstones import Tombstone, judge


class Purges:
    """Receives purge tokens, drops what they name, and spreads them."""

    __slots__ = ("_holdings", "_out", "_state", "_sync")

    def __init__(self, state: NodeState, out: Outbox, holdings: Holdings, sync: Sync) -> None:
        self._state = state
        self._out = out
        self._holdings = holdings
        self._sync = sync

    def on_purge(self, session: PeerSession, token: bytes, expiry_at: float, now: float) -> None:
        """The peer of ``session`` sent a purge token."""
        state = self._state
        if not state.config.message.purge_on_delivery or expiry_at <= now:
            return
        tag = tag_of_token(token)
        before = state.tombstones.by_tag(tag)
        if before is not None and before.believed and before.tier <= session.tier:
            return  # nothing to learn: no better-founded than what we hold
        held = state.store.with_tag(tag)
        # Our own mail sealed again after a heal (exchange/keys.py): the earlier copy's token.
        resealed = state.conversations.by_superseded_tag(tag)
        # Believed only with a reason (tombstones.judge): a stranger's random tokens stay local.
        matched = [item.tier for item in held] + state.tombstones.handed_over(tag, now)
        if resealed is not None:
            matched.append(Tier.OWN)  # the preimage of a tag we sealed: as good as a match
        tier, believed = judge(session.tier, matched)
        stone = Tombstone(
            token=token, tag=tag, expiry_at=capped_expiry(expiry_at, state.config.message, now),
            tier=tier, source=session.peer_id, believed=believed,
        )  # fmt: skip
        kept = self._holdings.remember(stone)
        now_held = state.tombstones.by_tag(tag)
        fresh = kept and now_held is not None and now_held.believed
        fresh = fresh and (before is None or not before.believed)
        if fresh:
            state.items.add(stone.item_id, int(stone.expiry_at))
            # Passed on (Purge, offers) only once it is durable here, as a token of our own.
            self._holdings.mark_uncommitted(stone.item_id)
        deletes: list[Delete] = []
        for item in held:
            if item.tier is Tier.OWN:
                message = state.conversations.by_envelope(item.envelope_id)
                if message is not None:
                    self._holdings.status_changed(message, MessageStatus.DELIVERED, now)
            deletes += self._holdings.release_item(item.envelope_id, DropReason.PURGED)
        if resealed is not None:
            deletes += self._resealed_delivered(resealed, now)
        if not fresh:
            if deletes:
                self._out.persist([], deletes=deletes)
            return
        source = session.peer_id

        def committed(_: float) -> None:
            self._holdings.mark_committed(stone.item_id)
            if state.tombstones.by_id(stone.item_id) is not None:  # not pushed out meanwhile
                self.spread(stone, source=source)

        # The copies it purges leave the disk with it: a crash between two commits must not
        # leave them gone and the token unknown (we would take them again).
        self._out.persist([codec.tombstone_record(stone)], deletes=deletes, then=committed)

    def _resealed_delivered(self, message: StoredMessage, now: float) -> list[Delete]:
        """The recipient opened an earlier sealing of ``message``: it is delivered, and our
        later copy, which it has read already, need not travel."""
        self._holdings.status_changed(message, MessageStatus.DELIVERED, now)
        if message.envelope_id is None or message.envelope_id not in self._state.store:
            return []
        return self._holdings.release_item(message.envelope_id, DropReason.PURGED)

    def spread(self, stone: Tombstone, *, source: bytes | None) -> None:
        """A token is an item too: push it on every reconciled link at once, as new mail is,
        so carriers met right now drop their copies (and a sender sees DELIVERED)."""
        self._sync.offer_to_all(stone.item_id, source=source)
