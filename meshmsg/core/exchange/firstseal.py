"""Sealing by first contact (issue #12): mail and receipts to a contact we never met.

The envelope (:mod:`meshmsg.core.firstcontact`) enters our store as own mail and travels like
any other; the message is marked with :data:`FIRST_CONTACT_EPOCH` so the status can say how it
went out. Opening is :mod:`.firstmail`'s.
"""

from __future__ import annotations

from typing import Final

from meshmsg.core import codec
from meshmsg.core.contacts import Contact
from meshmsg.core.conversations import StoredMessage
from meshmsg.core.envelope import envelope_id
from meshmsg.core.events import MessageQueued
from meshmsg.core.exchange.holdings import Holdings
from meshmsg.core.exchange.origin import origin_hops, origin_ttl_cut
from meshmsg.core.exchange.sync import Sync
from meshmsg.core.firstcontact import bucket_for, seal_first_contact
from meshmsg.core.outbox import Outbox
from meshmsg.core.records import TextMessage
from meshmsg.core.state import NodeState
from meshmsg.core.store import StoreItem, Tier
from meshmsg.core.wire import Record, encode_records
from meshmsg.errors import LocalProtocolError

FIRST_CONTACT_EPOCH: Final = 0xFFFFFFFF  # MessageState.epoch of mail sealed by first contact
_MS: Final = 1000.0


class FirstSealing:
    """Seals inner records to a contact by first contact into own store items."""

    __slots__ = ("_holdings", "_out", "_state", "_sync")

    def __init__(self, state: NodeState, out: Outbox, holdings: Holdings, sync: Sync) -> None:
        self._state = state
        self._out = out
        self._holdings = holdings
        self._sync = sync

    def seal(
        self, contact: Contact, records: list[Record], expiry_at: float, now: float
    ) -> StoreItem:
        state = self._state
        limits = state.config.message
        ttl = min(expiry_at - now, limits.latency_budget_s)
        sealed = seal_first_contact(
            sender=state.identity, recipient=contact.public, inner=encode_records(records),
            now=now, ttl_s=ttl - origin_ttl_cut(state, ttl), rng=state.rng,
            limits=limits, slots=state.config.first_contact.tag_slots,
        )  # fmt: skip
        item = StoreItem(
            envelope_id=envelope_id(sealed.envelope), envelope=sealed.envelope, tag=sealed.tag,
            expiry_at=float(sealed.expiry_at), copies=state.router.initial_copies(),
            hops=origin_hops(state),
            tier=Tier.OWN, source=None, received_at=now,
            route_hint=contact.route if state.router.needs_route_hint else None,
        )  # fmt: skip
        if not self._holdings.admit_item(item, now):
            raise LocalProtocolError("outbox full: the store has no room for more own mail")
        self._holdings.mark_uncommitted(item.envelope_id)
        return item

    def seal_text(
        self, contact: Contact, message: StoredMessage, now: float, inner: Record | None = None
    ) -> None:
        """Seal one of our messages by first contact; ``inner`` is its inner record when it is
        not plain text (a message with attachments carries their references)."""
        if inner is None:
            inner = TextMessage(
                message_id=message.message_id, sent_at=int(message.sent_at * _MS), body=message.body
            )
        item = self.seal(contact, [inner], message.expiry_at, now)
        message.epoch = FIRST_CONTACT_EPOCH
        message.sealed = True
        message.envelope_id = item.envelope_id
        self._state.conversations.index_envelope(message)

        def committed(_: float) -> None:
            self._holdings.mark_committed(item.envelope_id)
            self._out.emit(
                MessageQueued(
                    message_id=message.message_id, peer_id=contact.peer_id,
                    envelope_id=item.envelope_id,
                )
            )  # fmt: skip
            if item.envelope_id in self._state.store:
                self._sync.offer_new(item)

        puts = [codec.envelope_record(item), codec.message_record(message)]
        self._out.persist(puts, then=committed)

    def room_for(self, envelopes: list[list[Record]]) -> bool:
        """Whether our store takes these first-contact envelopes of own mail."""
        buckets = self._state.config.message.envelope_size_buckets
        size = sum(bucket_for(len(encode_records(records)), buckets) for records in envelopes)
        return self._state.store.own_room(size, len(envelopes))
