"""Sending our own mail: sealing messages for a contact into envelopes in our outbox.

A message is sealed at once when the contact's keys are ready, else it waits (unsealed,
persisted) for pairing, for a key exchange to end, for the next key period's counters or for
room in our outbox; :meth:`Sending.seal_waiting` seals what waited. A sealed envelope is offered
only once its Persist is durable: the driver confirms, then it leaves.
"""

from __future__ import annotations

from meshmsg.core import codec
from meshmsg.core.attach.assembly import AttachmentRef
from meshmsg.core.attach.records import AttachmentMessage
from meshmsg.core.attach.wirestate import ref_entry
from meshmsg.core.contacts import Contact
from meshmsg.core.conversations import StoredMessage
from meshmsg.core.envelope import bucket_for
from meshmsg.core.events import MessageQueued
from meshmsg.core.exchange.attachments import Attachments
from meshmsg.core.exchange.firstseal import FirstSealing
from meshmsg.core.exchange.holdings import Holdings
from meshmsg.core.exchange.origin import origin_hops, origin_ttl_cut
from meshmsg.core.exchange.renewal import Renewal
from meshmsg.core.exchange.sync import Sync
from meshmsg.core.outbox import Outbox
from meshmsg.core.records import TextMessage
from meshmsg.core.state import NodeState
from meshmsg.core.store import StoreItem, Tier
from meshmsg.core.wire import Record, encode_records
from meshmsg.errors import InvalidMessage, LocalProtocolError

_MS = 1000.0
# AttachmentMessage bounds its text so that 16 references fit the inner limit beside it.
MAX_ATTACHMENT_BODY_BYTES = 16_384


class Sending:
    """Seals messages (and, for :mod:`.receipts`, any inner records) into own store items."""

    __slots__ = ("_attachments", "_holdings", "_one_sizes", "_out", "_renewal", "_state", "_sync",
                 "first")  # fmt: skip

    def __init__(
        self, state: NodeState, out: Outbox, holdings: Holdings, sync: Sync, renewal: Renewal,
        attachments: Attachments,
    ) -> None:  # fmt: skip
        self._state = state
        self._out = out
        self._holdings = holdings
        self._sync = sync
        self._renewal = renewal
        self._attachments = attachments
        self.first = FirstSealing(state, out, holdings, sync)  # to contacts never met (#12)
        # ONE mode: message id -> the payload size it stands for, until sealed (not persisted).
        self._one_sizes: dict[bytes, int] = {}

    def send_text(
        self, peer_id: bytes, body: str, *, now: float, ttl_s: float | None, one_size: int = 0
    ) -> bytes:
        """Send a text message; ``one_size`` (ONE mode only) is the payload it stands for.

        Raises:
            LocalProtocolError: ``one_size`` outside ONE mode (a real node carries real bytes).
        """
        if one_size and not self._state.store.one_mode:
            raise LocalProtocolError("a declared ONE-mode size needs a ONE-mode node")
        return self.send_files(peer_id, body, [], now=now, ttl_s=ttl_s, one_size=one_size)

    def send_files(
        self, peer_id: bytes, body: str, refs: list[AttachmentRef], *, now: float,
        ttl_s: float | None, one_size: int = 0,
    ) -> bytes:  # fmt: skip
        """Send a message with attachments already sealed into the chunk store (none: text)."""
        state = self._state
        limits = state.config.message
        contact = state.contacts.require(peer_id)
        max_body = limits.max_body_bytes if not refs else MAX_ATTACHMENT_BODY_BYTES
        if len(body.encode()) > max_body:
            raise InvalidMessage(f"message body over {max_body} bytes")
        if len(refs) > state.config.attach.max_attachments_per_message:
            raise InvalidMessage("too many attachments for one message")
        for ref in refs:
            ref.check(state.config.attach)
        ttl = limits.default_ttl_s if ttl_s is None else ttl_s
        if not 0 < ttl <= limits.max_ttl_s:
            raise LocalProtocolError(f"ttl must be within (0, {limits.max_ttl_s}] seconds")
        message = StoredMessage(
            message_id=state.rng.randbytes(16), peer_id=peer_id, outgoing=True, body=body,
            sent_at=now, expiry_at=now + ttl, sealed=False,
        )  # fmt: skip
        channel = contact.channel
        ready = channel is not None and not contact.exchanging
        if ready and not self.room_for([[inner_of(message, refs)]]):
            # Refused before anything changed: no half-sent message is left behind.
            raise LocalProtocolError("outbox full: the store has no room for more own mail")
        for ref in refs:  # before sealing, which reads them back for the message
            self._attachments.carrier.add_own(
                ref, peer_id=peer_id, message_id=message.message_id, expiry_at=message.expiry_at
            )
        state.conversations.add(message)
        if one_size:  # read when it is sealed, now or once keys are ready
            self._one_sizes[message.message_id] = one_size
        if channel is None and self.first.room_for([[inner_of(message, refs)]]):
            # Never met: first contact through relays now (issue #12); pairing at the first
            # meeting takes over for later mail. Attachments' references go inside too.
            self.first.seal_text(contact, message, now, inner_of(message, refs))
        elif channel is None:
            self._holdings.want_room(peer_id)  # our outbox is full: sealed once room frees
            self._out.persist([codec.message_record(message)])
        elif contact.exchanging or channel.capacity(now) <= 0:
            # Sealed once the keys are ready, or (max_messages_per_period reached) after a live
            # heal, a meeting or in the next period: a period cannot end early.
            self._out.persist([codec.message_record(message)])
        else:
            self._seal_text(contact, message, now)
        self._renewal.renew_if_low(contact, now)
        return message.message_id

    def seal_waiting(self, contact: Contact, now: float) -> None:
        """Seal the messages that waited for pairing, a key exchange or room in our outbox."""
        if contact.channel is None:
            self._seal_waiting_first_contact(contact, now)
            return
        if contact.exchanging:
            return
        for message in self._state.conversations.unsealed_for(contact.peer_id):
            if message.expiry_at > now:
                if contact.channel.capacity(now) <= 0:
                    break  # counters used up: a live heal (below), a meeting or the next period
                if not self.room_for([[self._inner(message)]]):
                    self._holdings.want_room(contact.peer_id)  # tried again once room frees
                    break
                self._seal_text(contact, message, now)
        self._renewal.renew_if_low(contact, now)

    def _inner(self, message: StoredMessage) -> Record:
        return inner_of(message, self._attachments.refs_of(message.message_id))

    def _seal_waiting_first_contact(self, contact: Contact, now: float) -> None:
        for message in self._state.conversations.unsealed_for(contact.peer_id):
            if message.expiry_at > now:
                inner = self._inner(message)
                if not self.first.room_for([[inner]]):
                    self._holdings.want_room(contact.peer_id)
                    return
                self.first.seal_text(contact, message, now, inner)

    def room_for(self, envelopes: list[list[Record]]) -> bool:
        """Whether our store takes these envelopes (each a list of inner records) of own mail."""
        buckets = self._state.config.message.envelope_size_buckets
        size = sum(bucket_for(len(encode_records(records)), buckets) for records in envelopes)
        return self._state.store.own_room(size, len(envelopes))

    def _seal_text(self, contact: Contact, message: StoredMessage, now: float) -> None:
        one_size = self._one_sizes.pop(message.message_id, 0) if self._one_sizes else 0
        item, epoch = self.seal(
            contact, [self._inner(message)], message.expiry_at, now, one_size=one_size
        )
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
        self, contact: Contact, records: list[Record], expiry_at: float, now: float,
        *, one_size: int = 0,
    ) -> tuple[StoreItem, int]:  # fmt: skip
        """Seal records for a contact into a new own store item; return it and its epoch.

        The item is not offered before :meth:`offer_when_committed` (or the caller's own
        commit action) says its Persist is durable.
        """
        state = self._state
        channel = contact.channel
        if channel is None or contact.exchanging:
            raise LocalProtocolError("contact keys are not ready for sealing")
        ttl = min(expiry_at - now, state.config.message.latency_budget_s)
        ttl -= origin_ttl_cut(state, ttl)
        sealed = channel.seal(encode_records(records), now, ttl, state.rng)
        item = StoreItem(
            envelope_id=sealed.envelope_id, envelope=sealed.envelope, tag=sealed.tag,
            expiry_at=float(sealed.expiry_at), copies=state.router.initial_copies(),
            hops=origin_hops(state),
            tier=Tier.OWN, source=None, received_at=now,
            route_hint=contact.route if state.router.needs_route_hint else None,
            one_size=one_size,
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


def inner_of(message: StoredMessage, refs: list[AttachmentRef]) -> Record:
    """The record a message travels as: text, or text with its attachments' references."""
    if not refs:
        return text_of(message)
    return AttachmentMessage(
        message_id=message.message_id, sent_at=int(message.sent_at * _MS), body=message.body,
        refs=tuple(ref_entry(ref) for ref in refs),
    )  # fmt: skip


def text_of(message: StoredMessage) -> TextMessage:
    return TextMessage(
        message_id=message.message_id, sent_at=int(message.sent_at * _MS), body=message.body
    )
