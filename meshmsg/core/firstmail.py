"""First-contact mail in the node: sealing to unpaired contacts, recognising and opening what
is addressed to us, message requests, and receipts back without a channel.

Theory of operation
-------------------
A contact without a B+ channel (never met) is written to at once by first contact
(:mod:`meshmsg.core.firstcontact`): the envelope enters our store as own mail and travels like
any other. Its message is marked with :data:`FIRST_CONTACT_EPOCH`, so the status can say how it
went out. The first meeting pairs the contact; from then on mail is B+.

On the receiving side the :class:`~meshmsg.core.firstcontact.FirstContactIndex` answers offers
(``for_me``) and transfers. An opened envelope names its authenticated sender:

* a contact (not blocked, same device keys as its code): its records apply as B+ mail does
  (messages, receipts); our delivered receipts go back by first contact until we are paired;
* a stranger: a message request (:mod:`meshmsg.core.requests`) within its quotas, else dropped;
* anyone blocked: dropped on arrival. Dropped envelopes are still acknowledged (custody), so a
  relay stops offering them, and remembered as opened (offers of them get "have").

First-contact tags are shared by every sender, so no purge token exists: copies live at relays
until their TTL or copy budget runs out (docs/protocol/e2e.md §14).
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from meshmsg.core import codec
from meshmsg.core.contacts import Contact
from meshmsg.core.conversations import StoredMessage
from meshmsg.core.effects import RecordKind, StoredRecord
from meshmsg.core.envelope import Envelope, envelope_id, parse_envelope
from meshmsg.core.events import (
    DropReason,
    MessageQueued,
    MessageReceived,
    MessageRequested,
    MessageStatus,
    RequestDropped,
)
from meshmsg.core.firstcontact import (
    FirstContactIndex,
    OpenedFirstContact,
    open_first_contact,
    seal_first_contact,
)
from meshmsg.core.identity import ContactCard, PublicIdentity
from meshmsg.core.records import INNER_RECORDS, TextMessage
from meshmsg.core.requests import BLOCKED_KEY, REQUEST_KEY, Admission, Request, RequestBook
from meshmsg.core.store import StoreItem, Tier
from meshmsg.core.wire import Record, decode_records, encode_records
from meshmsg.errors import DecodeError, InvalidMessage, LocalProtocolError

if TYPE_CHECKING:
    from meshmsg.core.node import Node

FIRST_CONTACT_EPOCH: Final = 0xFFFFFFFF  # MessageState.epoch of mail sealed by first contact
_MS: Final = 1000.0


@dataclass(slots=True, kw_only=True)
class Opened:
    """What opening one first-contact envelope produced: writes, then what to report."""

    puts: list[StoredRecord] = field(default_factory=list)
    events: list[object] = field(default_factory=list)


class FirstMail:
    """First-contact sending and receiving, and the request book, for one node."""

    def __init__(self, node: Node) -> None:
        self.node = node
        config = node.config.first_contact
        self.index = FirstContactIndex(node.identity.public, node.config.message, config.tag_slots)
        self.requests = RequestBook(config)
        self._opened: OrderedDict[bytes, None] = OrderedDict()  # envelope ids already opened

    # ============================================================== sending

    def seal(
        self, contact: Contact, records: list[Record], expiry_at: float, now: float
    ) -> StoreItem:
        """Seal inner records to a contact by first contact into a new own store item."""
        node = self.node
        limits = node.config.message
        ttl = min(expiry_at - now, limits.latency_budget_s)
        sealed = seal_first_contact(
            sender=node.identity, recipient=contact.public, inner=encode_records(records),
            now=now, ttl_s=ttl, rng=node.rng, limits=limits,
            slots=node.config.first_contact.tag_slots,
        )  # fmt: skip
        item = StoreItem(
            envelope_id=envelope_id(sealed.envelope), envelope=sealed.envelope, tag=sealed.tag,
            expiry_at=float(sealed.expiry_at), copies=node.router.initial_copies(), hops=0,
            tier=Tier.OWN, source=None, received_at=now,
            route_hint=contact.route if node.router.needs_route_hint else None,
        )  # fmt: skip
        if not node.admit_item(item, now):
            raise LocalProtocolError("outbox full: the store has no room for more own mail")
        node.mark_uncommitted(item.envelope_id)
        return item

    def seal_text(self, contact: Contact, message: StoredMessage, now: float) -> None:
        node = self.node
        text = TextMessage(
            message_id=message.message_id, sent_at=int(message.sent_at * _MS), body=message.body
        )
        item = self.seal(contact, [text], message.expiry_at, now)
        message.epoch = FIRST_CONTACT_EPOCH
        message.sealed = True
        message.envelope_id = item.envelope_id
        node.conversations.index_envelope(message)

        def committed(_: float) -> None:
            node.mark_committed(item.envelope_id)
            node.emit(
                MessageQueued(
                    message_id=message.message_id, peer_id=contact.peer_id,
                    envelope_id=item.envelope_id,
                )
            )  # fmt: skip
            if item.envelope_id in node.store:
                node.exchange.offer_new(item)

        node.persist([codec.envelope_record(item), codec.message_record(message)], then=committed)

    def seal_receipts(
        self, contact: Contact, group: list[Record], now: float
    ) -> tuple[StoreItem, list[StoredRecord]]:
        item = self.seal(contact, group, now + self.node.config.message.default_ttl_s, now)
        return item, [codec.envelope_record(item)]

    # ============================================================ receiving

    def recognises(self, tag: bytes) -> bool:
        return self.index.lookup(tag) is not None

    def already_opened(self, env_id: bytes) -> bool:
        return env_id in self._opened

    def advance(self, now: float) -> None:
        """A new period: new tags are ours, so envelopes we carry may be for us now."""
        if not self.index.advance(now):
            return
        node = self.node
        for tag in self.index.tags():
            for item in node.store.with_tag(tag):
                if item.tier is Tier.OWN:
                    continue
                opened = self.open(parse_envelope(item.envelope, buckets=_buckets(node)),
                                   item.envelope_id, item.hops, now)  # fmt: skip
                node.drop_item(item.envelope_id, DropReason.DELIVERED)
                if opened is not None:
                    node.persist(opened.puts, then=functools.partial(self._report_at, opened))

    def next_deadline(self) -> float:
        return self.index.next_deadline()

    def open(self, envelope: Envelope, env_id: bytes, hops: int, now: float) -> Opened | None:
        """Open a recognised envelope. None: it failed authentication (refuse custody)."""
        node = self.node
        if env_id in self._opened:
            return Opened()
        try:
            opened = open_first_contact(
                envelope, recipient=node.identity, limits=node.config.message
            )
        except InvalidMessage:
            return None
        self._remember(env_id)
        try:
            inner = decode_records(opened.inner, INNER_RECORDS, node.config.wire)
        except DecodeError:
            return Opened()  # authentic but unreadable (a newer client?): consumed, not shown
        sender = opened.sender
        contact = node.contacts.get(sender.peer_id)
        if sender.peer_id == node.identity.peer_id:
            return Opened()
        if contact is not None:
            return self._from_contact(contact, opened, inner, hops, now)
        return self._request(sender, inner, now)

    def _remember(self, env_id: bytes) -> None:
        self._opened[env_id] = None
        while len(self._opened) > self.node.config.first_contact.opened_memory:
            self._opened.popitem(last=False)

    def _from_contact(
        self, contact: Contact, opened: OpenedFirstContact, inner: list[Record], hops: int,
        now: float,
    ) -> Opened:  # fmt: skip
        node = self.node
        if contact.blocked or contact.public != opened.sender:
            # Blocked, or the same identity with other device keys than its code: not shown.
            reason = "blocked" if contact.blocked else "device keys differ from the contact code"
            return Opened(events=[RequestDropped(peer_id=contact.peer_id, reason=reason)])
        result = Opened()
        flag = self._flag(contact.peer_id)
        for record in inner:
            for message in node.exchange.apply_inner(contact, record, hops, now):
                result.puts.append(codec.message_record(message))
                result.puts.append(node.exchange.owed_delivered(contact.peer_id, message))
                result.events.append(
                    MessageReceived(
                        message_id=message.message_id, peer_id=contact.peer_id,
                        sent_at=message.sent_at, received_at=now, body=message.body,
                        hops=hops, flag=flag,
                    )
                )  # fmt: skip
        return result

    def _request(self, sender: PublicIdentity, inner: list[Record], now: float) -> Opened:
        node = self.node
        result = Opened()
        flag = self._flag(sender.peer_id)
        for record in inner:
            if not isinstance(record, TextMessage) or node.conversations.get(record.message_id):
                continue  # receipts from a stranger mean nothing to us
            size = len(record.body.encode())
            admission = self.requests.admit(sender, size)
            if admission is not Admission.ACCEPTED:
                self.requests.dropped += 1
                result.events.append(RequestDropped(peer_id=sender.peer_id, reason=admission.value))
                continue
            request = self.requests.add(sender, record.message_id, size, now)
            message = StoredMessage(
                message_id=record.message_id, peer_id=sender.peer_id, outgoing=False,
                body=record.body, sent_at=record.sent_at / _MS, received_at=now,
                status=MessageStatus.DELIVERED,
            )  # fmt: skip
            node.conversations.add(message)
            result.puts += [_request_record(request), codec.message_record(message)]
            result.events.append(
                MessageRequested(
                    peer_id=sender.peer_id, message_id=message.message_id, body=message.body,
                    sent_at=message.sent_at, flag=flag,
                )
            )  # fmt: skip
        return result

    def _flag(self, peer_id: bytes) -> str:
        orgs = self.node.orgs
        revoked = [m.org.name for m in orgs.status(peer_id, self.node.now)
                   if m.status.value == "revoked"]  # fmt: skip
        return f"revoked by {', '.join(revoked)}" if revoked else ""

    def _report_at(self, opened: Opened, _: float) -> None:
        self.report(opened)

    def report(self, opened: Opened) -> None:
        for event in opened.events:
            self.node.emit(event)  # type: ignore[arg-type]

    # ============================================================= requests

    def accept(self, peer_id: bytes, now: float) -> Contact:
        """The user accepts a request: the sender becomes an (unverified) contact."""
        request = self._require(peer_id)
        card = ContactCard(public=request.sender, name=None, hints=())
        return self.node.add_contact(card, verified=False, now=now)

    def contact_added(self, contact: Contact, now: float) -> None:
        """A pending request from this contact becomes its conversation (accepted)."""
        node = self.node
        request = self.requests.remove(contact.peer_id)
        if request is None:
            return
        node.persist([], deletes=[(RecordKind.META, REQUEST_KEY + contact.peer_id)])
        for message_id in request.message_ids:  # now they may learn that we got them
            node.exchange.queue_delivered(contact.peer_id, message_id, now)

    def decline(self, peer_id: bytes, *, block: bool, now: float) -> None:
        """Delete a request's messages; with ``block``, drop the sender's mail from now on."""
        node = self.node
        request = self.requests.remove(peer_id)
        deletes = [(RecordKind.META, REQUEST_KEY + peer_id)]
        if request is not None:
            deletes += [(RecordKind.MESSAGE, m) for m in request.message_ids]
            node.conversations.remove_peer(peer_id)
        if block:
            forgotten = self.requests.block(peer_id)
            deletes += [(RecordKind.META, BLOCKED_KEY + p) for p in forgotten]
            node.persist([StoredRecord(kind=RecordKind.META, key=BLOCKED_KEY + peer_id,
                                       value=b"")], deletes=deletes)  # fmt: skip
        elif request is None:
            raise LocalProtocolError(f"no request from {peer_id.hex()[:16]}")
        else:
            node.persist([], deletes=deletes)

    def unblock(self, peer_id: bytes) -> None:
        if not self.requests.unblock(peer_id):
            raise LocalProtocolError(f"{peer_id.hex()[:16]} is not blocked")
        self.node.persist([], deletes=[(RecordKind.META, BLOCKED_KEY + peer_id)])

    def _require(self, peer_id: bytes) -> Request:
        request = self.requests.get(peer_id)
        if request is None:
            raise LocalProtocolError(f"no request from {peer_id.hex()[:16]}")
        return request

    # ============================================================== restore

    def restore(self, record: StoredRecord) -> bool:
        """A META record of ours? Restore it (True), else leave it to the caller."""
        if record.key.startswith(REQUEST_KEY):
            self.requests.restore(Request.from_bytes(record.value))
            return True
        if record.key.startswith(BLOCKED_KEY):
            self.requests.block(record.key[len(BLOCKED_KEY) :])
            return True
        return False

    def after_restore(self) -> None:
        for request in list(self.requests):
            for message in self.node.conversations.with_peer(request.peer_id):
                self.requests.restore_message(
                    request.peer_id, message.message_id, len(message.body.encode())
                )


def _request_record(request: Request) -> StoredRecord:
    return StoredRecord(
        kind=RecordKind.META, key=REQUEST_KEY + request.peer_id, value=request.to_bytes()
    )


def _buckets(node: Node) -> tuple[int, ...]:
    return node.config.message.envelope_size_buckets


__all__ = ["FIRST_CONTACT_EPOCH", "FirstMail", "Opened"]
