"""First-contact mail (issue #12): sealing to contacts we never met, recognising and opening
what is addressed to us, message requests.

Theory of operation
-------------------
A contact without a B+ channel (never met) is written to at once by first contact
(:mod:`meshmsg.core.firstcontact`; sealing is :mod:`.firstseal`'s): the envelope enters our
store as own mail and travels like any other. The first meeting pairs the contact; from then on
mail is B+. Receipts to such a contact go the same way (:mod:`.receipts`).

On the receiving side the node's :class:`~meshmsg.core.firstcontact.FirstContactIndex` answers
offers (``for_me``) and transfers; :class:`FirstOpening` opens what it recognises. An opened
envelope names its authenticated sender:

* a contact (not blocked, same device keys as its code): its records apply as B+ mail does;
* a stranger: a message request (:mod:`meshmsg.core.requests`) within its quotas, else dropped;
* anyone blocked: dropped on arrival. Dropped envelopes are still acknowledged (custody), so a
  relay stops offering them, and remembered as opened (offers of them get "have").

First-contact tags are shared by every sender, so no purge token exists: copies live at relays
until their TTL or copy budget runs out (docs/protocol/e2e.md §14).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Final

from meshmsg.core import codec
from meshmsg.core.contacts import Contact
from meshmsg.core.conversations import StoredMessage
from meshmsg.core.effects import RecordKind, StoredRecord
from meshmsg.core.envelope import Envelope, parse_envelope
from meshmsg.core.events import (
    DropReason,
    Event,
    MessageReceived,
    MessageRequested,
    MessageStatus,
    RequestDropped,
)
from meshmsg.core.exchange.holdings import Holdings
from meshmsg.core.exchange.opening import Opening
from meshmsg.core.exchange.origin import received_hops
from meshmsg.core.exchange.receipts import RECEIPT_DELIVERED
from meshmsg.core.firstcontact import OpenedFirstContact, open_first_contact
from meshmsg.core.identity import PublicIdentity
from meshmsg.core.org.directory import OrgStatus
from meshmsg.core.outbox import Outbox
from meshmsg.core.records import INNER_RECORDS, TextMessage
from meshmsg.core.requests import BLOCKED_KEY, REQUEST_KEY, Admission, Request
from meshmsg.core.state import NodeState
from meshmsg.core.store import StoreItem, Tier
from meshmsg.core.wire import Record, decode_records
from meshmsg.errors import DecodeError, InvalidMessage, LocalProtocolError

_MS: Final = 1000.0


@dataclass(slots=True, kw_only=True)
class Opened:
    """What opening one first-contact envelope produced: writes, then what to report."""

    puts: list[StoredRecord] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


class FirstOpening:
    """Recognises, opens and applies first-contact mail; keeps the request book."""

    __slots__ = ("_holdings", "_opening", "_out", "_state")

    def __init__(self, state: NodeState, out: Outbox, holdings: Holdings, opening: Opening) -> None:
        self._state = state
        self._out = out
        self._holdings = holdings
        self._opening = opening
        state.first_index.advance(out.now)

    def recognises(self, tag: bytes) -> bool:
        return self._state.first_index.lookup(tag) is not None

    def next_deadline(self) -> float:
        return self._state.first_index.next_deadline()

    def advance(self, now: float) -> None:
        """A new period: new tags are ours, so envelopes we carry may be for us now."""
        state = self._state
        if not state.first_index.advance(now):
            return
        for tag in state.first_index.tags():
            for item in state.store.with_tag(tag):
                if item.tier is not Tier.OWN:
                    self.open_carried(item, now)

    def open_carried(self, item: StoreItem, now: float) -> None:
        """A carried envelope under one of our first-contact tags: open it (with its body on
        disk only, once the driver read it back: exchange/bodies.py)."""
        if item.envelope is None:
            self._holdings.load_body(item.envelope_id, to_open=True)
            return
        buckets = self._state.config.message.envelope_size_buckets
        envelope = parse_envelope(item.envelope, buckets=buckets)
        opened = self.open(envelope, item.envelope_id, item.hops, now)
        # In the opening's own Persist: deleted ahead of it, a crash between the two commits
        # would lose mail we took custody of (#17).
        deletes = self._holdings.release_item(item.envelope_id, DropReason.DELIVERED)
        puts = [] if opened is None else opened.puts
        report = None if opened is None else functools.partial(self._report, opened)
        self._out.persist(puts, deletes=deletes, then=report)

    def open(
        self, envelope: Envelope, env_id: bytes, hops: int, now: float,
        link_peer: bytes | None = None,
    ) -> Opened | None:  # fmt: skip
        """Open a recognised envelope. None: it failed authentication (refuse custody).

        ``link_peer``: who handed it over, when it came over a link (not out of our store)."""
        state = self._state
        if state.first_index.opened(env_id):
            return Opened()
        try:
            opened = open_first_contact(
                envelope, recipient=state.identity, limits=state.config.message
            )
        except InvalidMessage:
            return None
        state.first_index.remember_opened(env_id, state.config.first_contact.opened_memory)
        try:
            inner = decode_records(opened.inner, INNER_RECORDS, state.config.wire)
        except DecodeError:
            return Opened()  # authentic but unreadable (a newer client?): consumed, not shown
        sender = opened.sender
        if sender.peer_id == state.identity.peer_id:
            return Opened()
        contact = state.contacts.get(sender.peer_id)
        if contact is not None:
            if link_peer is not None:
                hops = received_hops(hops, from_sender=link_peer == sender.peer_id)
            relay = None if link_peer == sender.peer_id else (link_peer or b"")
            return self._from_contact(contact, opened, inner, hops, now, relay)
        return self._request(sender, inner, now)

    def report(self, opened: Opened) -> None:
        for event in opened.events:
            self._out.emit(event)

    def _report(self, opened: Opened, _: float) -> None:
        self.report(opened)

    def _from_contact(
        self, contact: Contact, opened: OpenedFirstContact, inner: list[Record], hops: int,
        now: float, relay: bytes | None,
    ) -> Opened:  # fmt: skip
        if contact.blocked or contact.public != opened.sender:
            # Blocked, or the same identity with other device keys than its code: not shown.
            reason = "blocked" if contact.blocked else "device keys differ from the contact code"
            return Opened(events=[RequestDropped(peer_id=contact.peer_id, reason=reason)])
        result = Opened()
        flag = self.flag(contact.peer_id, now)
        for record in inner:
            for message in self._opening.apply_inner(contact, record, hops, now, relay=relay):
                result.puts.append(codec.message_record(message))
                if self._state.config.message.send_receipts:  # else none is owed (opening.py)
                    result.puts.append(codec.owed_receipt_record(
                        contact.peer_id, RECEIPT_DELIVERED, message.message_id))  # fmt: skip
                result.events.append(
                    MessageReceived(
                        message_id=message.message_id, peer_id=contact.peer_id,
                        sent_at=message.sent_at, received_at=now, body=message.body,
                        hops=hops, flag=flag,
                    )
                )  # fmt: skip
        return result

    def _request(self, sender: PublicIdentity, inner: list[Record], now: float) -> Opened:
        state = self._state
        result = Opened()
        flag = self.flag(sender.peer_id, now)
        for record in inner:
            if not isinstance(record, TextMessage) or state.conversations.get(record.message_id):
                continue  # receipts from a stranger mean nothing to us
            size = len(record.body.encode())
            admission = state.requests.admit(sender, size)
            if admission is not Admission.ACCEPTED:
                state.requests.dropped += 1
                result.events.append(RequestDropped(peer_id=sender.peer_id, reason=admission.value))
                continue
            request = state.requests.add(sender, record.message_id, size, now)
            message = StoredMessage(
                message_id=record.message_id, peer_id=sender.peer_id, outgoing=False,
                body=record.body, sent_at=record.sent_at / _MS, received_at=now,
                status=MessageStatus.DELIVERED,
            )  # fmt: skip
            state.conversations.add(message)
            result.puts += [request_record(request), codec.message_record(message)]
            result.events.append(
                MessageRequested(
                    peer_id=sender.peer_id, message_id=message.message_id, body=message.body,
                    sent_at=message.sent_at, flag=flag,
                )
            )  # fmt: skip
        return result

    def flag(self, peer_id: bytes, now: float) -> str:
        """``revoked by <organisation>`` when an organisation we joined revoked this key."""
        revoked = [m.org.name for m in self._state.orgs.status(peer_id, now)
                   if m.status is OrgStatus.REVOKED]  # fmt: skip
        return f"revoked by {', '.join(revoked)}" if revoked else ""

    # ============================================================= requests

    def contact_added(self, contact: Contact) -> list[bytes]:
        """A pending request from this contact becomes its conversation: the ids of its
        messages, now owed delivered receipts (the caller queues them)."""
        request = self._state.requests.remove(contact.peer_id)
        if request is None:
            return []
        self._out.persist([], deletes=[(RecordKind.META, REQUEST_KEY + contact.peer_id)])
        return list(request.message_ids)

    def decline(self, peer_id: bytes, *, block: bool) -> None:
        """Delete a request's messages; with ``block``, drop the sender's mail from now on."""
        state = self._state
        request = state.requests.remove(peer_id)
        deletes = [(RecordKind.META, REQUEST_KEY + peer_id)]
        if request is not None:
            deletes += [(RecordKind.MESSAGE, m) for m in request.message_ids]
            state.conversations.remove_peer(peer_id)
        if block:
            forgotten = state.requests.block(peer_id)
            deletes += [(RecordKind.META, BLOCKED_KEY + p) for p in forgotten]
            blocked = StoredRecord(kind=RecordKind.META, key=BLOCKED_KEY + peer_id, value=b"")
            self._out.persist([blocked], deletes=deletes)
        elif request is None:
            raise LocalProtocolError(f"no request from {peer_id.hex()[:16]}")
        else:
            self._out.persist([], deletes=deletes)

    def unblock(self, peer_id: bytes) -> None:
        if not self._state.requests.unblock(peer_id):
            raise LocalProtocolError(f"{peer_id.hex()[:16]} is not blocked")
        self._out.persist([], deletes=[(RecordKind.META, BLOCKED_KEY + peer_id)])


def request_record(request: Request) -> StoredRecord:
    return StoredRecord(
        kind=RecordKind.META, key=REQUEST_KEY + request.peer_id, value=request.to_bytes()
    )
