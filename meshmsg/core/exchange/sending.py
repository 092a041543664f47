"""Sending our own mail: sealing messages for a contact into envelopes in our outbox.

A message is sealed at once when the contact's keys are ready, else it waits (unsealed,
persisted) for pairing, for a key exchange to end, for the next key period's counters or for
room in our outbox; :meth:`Sending.seal_waiting` seals what waited. A sealed envelope is offered
only once its Persist is durable: the driver confirms, then it leaves.
"""

from __future__ import annotations

from meshmsg.core import codec
from meshmsg.core.contacts import Contact
from meshmsg.core.conversations import StoredMessage
from meshmsg.core.envelope import bucket_for
from meshmsg.core.events import MessageQueued
from meshmsg.core.exchange.holdings import Holdings
from meshmsg.core.exchange.renewal import Renewal
from meshmsg.core.exchange.sync import Sync
from meshmsg.core.outbox import Outbox
from meshmsg.core.records import TextMessage
from meshmsg.core.state import NodeState
from meshmsg.core.store import StoreItem, Tier
from meshmsg.core.wire import Record, encode_records
from meshmsg.errors import InvalidMessage, LocalProtocolError

_MS = 1000.0


class Sending:
    """Seals messages (and, for :mod:`.receipts`, any inner records) into own store items."""

    __slots__ = ("_holdings", "_out", "_renewal", "_state", "_sync")

    def __init__(
        self, state: NodeState, out: Outbox, holdings: Holdings, sync: Sync, renewal: Renewal
    ) -> None:
        self._state = state
        self._out = out
        self._holdings = holdings
        self._sync = sync
        self._renewal = renewal

    def send_text(self, peer_id: bytes, body: str, *, now: float, ttl_s: float | None) -> bytes:
        state = self._state
        limits = state.config.message
        contact = state.contacts.require(peer_id)
        if len(body.encode()) > limits.max_body_bytes:
            raise InvalidMessage(f"message body over {limits.max_body_bytes} bytes")
        ttl = limits.default_ttl_s if ttl_s is None else ttl_s
        if not 0 < ttl <= limits.max_ttl_s:
            raise LocalProtocolError(f"ttl must be within (0, {limits.max_ttl_s}] seconds")
        message = StoredMessage(
            message_id=state.rng.randbytes(16), peer_id=peer_id, outgoing=True, body=body,
            sent_at=now, expiry_at=now + ttl, sealed=False,
        )  # fmt: skip
        channel = contact.channel
        ready = channel is not None and not contact.exchanging
        if ready and not self.room_for([[text_of(message)]]):
            # Refused before anything changed: no half-sent message is left behind.
            raise LocalProtocolError("outbox full: the store has no room for more own mail")
        state.conversations.add(message)
        if channel is None or contact.exchanging or channel.capacity(now) <= 0:
            # Sealed once the keys are ready, or (max_messages_per_period reached) after a live
            # heal, a meeting or in the next period: a period cannot end early.
            self._out.persist([codec.message_record(message)])
        else:
            self._seal_text(contact, message, now)
        self._renewal.renew_if_low(contact, now)
        return message.message_id

    def seal_waiting(self, contact: Contact, now: float) -> None:
        """Seal the messages that waited for pairing or for a key exchange to end."""
        if contact.channel is None or contact.exchanging:
            return
        for message in self._state.conversations.unsealed_for(contact.peer_id):
            if message.expiry_at > now:
                if contact.channel.capacity(now) <= 0:
                    break  # counters used up: a live heal (below), a meeting or the next period
                if not self.room_for([[text_of(message)]]):
                    self._holdings.want_room(contact.peer_id)  # tried again once room frees
                    break
                self._seal_text(contact, message, now)
        self._renewal.renew_if_low(contact, now)

    def room_for(self, envelopes: list[list[Record]]) -> bool:
        """Whether our store takes these envelopes (each a list of inner records) of own mail."""
        buckets = self._state.config.message.envelope_size_buckets
        size = sum(bucket_for(len(encode_records(records)), buckets) for records in envelopes)
        return self._state.store.own_room(size, len(envelopes))

    def _seal_text(self, contact: Contact, message: StoredMessage, now: float) -> None:
        item, epoch = self.seal(contact, [text_of(message)], message.expiry_at, now)
        message.epoch = epoch
        message.sealed = True
        message.envelope_id = item.envelope_id
        self._state.conversations.index_envelope(message)
        puts = [
            codec.channel_record(contact.peer_id, contact.channel),  # type: ignore[arg-type]
            codec.envelope_record(item),
            codec.message_record(message),
        ]

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

        self._out.persist(puts, then=committed)

    def seal(
        self, contact: Contact, records: list[Record], expiry_at: float, now: float
    ) -> tuple[StoreItem, int]:
        """Seal records for a contact into a new own store item; return it and its epoch.

        The item is not offered before :meth:`offer_when_committed` (or the caller's own
        commit action) says its Persist is durable.
        """
        state = self._state
        channel = contact.channel
        if channel is None or contact.exchanging:
            raise LocalProtocolError("contact keys are not ready for sealing")
        ttl = min(expiry_at - now, state.config.message.latency_budget_s)
        sealed = channel.seal(encode_records(records), now, ttl, state.rng)
        item = StoreItem(
            envelope_id=sealed.envelope_id, envelope=sealed.envelope, tag=sealed.tag,
            expiry_at=float(sealed.expiry_at), copies=state.router.initial_copies(), hops=0,
            tier=Tier.OWN, source=None, received_at=now,
            route_hint=contact.route if state.router.needs_route_hint else None,
        )  # fmt: skip
        if not self._holdings.admit_item(item, now):
            raise LocalProtocolError("outbox full: the store has no room for more own mail")
        self._holdings.mark_uncommitted(item.envelope_id)
        return item, sealed.epoch

    def offer_when_committed(self, item: StoreItem, _: float) -> None:
        """Commit action of a sealed item: it is durable, so it may be offered."""
        self._holdings.mark_committed(item.envelope_id)
        if item.envelope_id in self._state.store:
            self._sync.offer_new(item)


def text_of(message: StoredMessage) -> TextMessage:
    return TextMessage(
        message_id=message.message_id, sent_at=int(message.sent_at * _MS), body=message.body
    )
