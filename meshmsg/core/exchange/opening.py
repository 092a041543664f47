"""Opening mail addressed to us: decrypting, applying inner records, reporting.

An envelope is ours when its tag is in our :class:`~meshmsg.core.tagindex.TagIndex`. It reaches
us as a ``Transfer`` (see :mod:`.custody`) or turns out to be ours later, while we carry it,
when a contact's tags change (pairing, healing, a window that slides as counters are opened):
:meth:`Opening.check_store_for_new_tags` takes those. What opening produces is committed first
and reported after: received-message events wait for the driver's commit.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from meshmsg.core import codec
from meshmsg.core.attach.records import AttachmentMessage, AttachmentRefEntry
from meshmsg.core.attach.wirestate import ref_from_entry
from meshmsg.core.contacts import Contact
from meshmsg.core.conversations import StoredMessage
from meshmsg.core.e2e import ContactChannel, Expired, Match, MatchKind
from meshmsg.core.effects import StoredRecord
from meshmsg.core.envelope import Envelope, capped_expiry, parse_envelope
from meshmsg.core.events import (
    DropReason,
    MessageReceived,
    MessageStatus,
    UndecryptableMessage,
)
from meshmsg.core.exchange.attachments import Attachments
from meshmsg.core.exchange.holdings import Holdings
from meshmsg.core.exchange.origin import received_hops
from meshmsg.core.exchange.purges import Purges
from meshmsg.core.exchange.receipts import RECEIPT_DELIVERED, RECEIPT_READ, Receipts
from meshmsg.core.groups.mail import GroupMail
from meshmsg.core.groups.records import GroupKey, GroupOps, GroupReceipt
from meshmsg.core.outbox import Outbox
from meshmsg.core.records import INNER_RECORDS, Receipt, TextMessage, Transfer
from meshmsg.core.session import PeerSession
from meshmsg.core.state import NodeState
from meshmsg.core.store import StoreItem, Tier
from meshmsg.core.tombstones import Tombstone
from meshmsg.core.wire import Record, decode_records
from meshmsg.errors import DecodeError, InvalidAttachment, InvalidMessage

_MS = 1000.0


@dataclass(slots=True, kw_only=True)
class Consumed:
    """What opening an envelope addressed to us produced: writes to commit, then to report."""

    puts: list[StoredRecord]
    received: list[StoredMessage]
    stone: Tombstone | None
    expired: bool


class Opening:
    """Opens envelopes addressed to us and applies what they carry."""

    __slots__ = (
        "_attachments",
        "_groups",
        "_holdings",
        "_out",
        "_purges",
        "_receipts",
        "_state",
    )

    def __init__(
        self,
        state: NodeState,
        out: Outbox,
        holdings: Holdings,
        purges: Purges,
        receipts: Receipts,
        groups: GroupMail,
        attachments: Attachments,
    ) -> None:
        self._groups = groups
        self._attachments = attachments
        self._state = state
        self._out = out
        self._holdings = holdings
        self._purges = purges
        self._receipts = receipts

    def check_store_for_new_tags(
        self, channel: ContactChannel, now: float, *, via: bytes | None = None,
        in_order: bool = False,
    ) -> None:  # fmt: skip
        """Envelopes we carry may be ours under keys we just derived: take them.

        ``via``: the relay whose hand-over made them openable (None: none, or their sender);
        their receipts are then kept from it too, as they are timed by that hand-over.
        ``in_order``: after an opening, only copies that do not slide the window (e2estate)."""
        state = self._state
        # Only this channel's tags can have become ours (every other tag was checked when its
        # envelope arrived): a few dozen probes of the store instead of one per stored item,
        # at every pairing and heal, against stores of thousands of envelopes.
        for tag in channel.openable_tags(in_order=in_order):
            for item in state.store.with_tag(tag):
                match = state.tags.lookup(item.tag)  # again: opening one may have used the tag
                if match is not None and match.kind is MatchKind.LIVE and item.tier is not Tier.OWN:
                    self.open_stored(item, match, now, via)

    def open_stored(self, item: StoreItem, match: Match, now: float, via: bytes | None) -> None:
        """An envelope we carried turned out to be ours (its tag became known later); with its
        body on disk only, it is opened once the driver read it back (exchange/bodies.py)."""
        if item.envelope is None:
            self._holdings.load_body(item.envelope_id, to_open=True, via=via)
            return
        buckets = self._state.config.message.envelope_size_buckets
        envelope = parse_envelope(item.envelope, buckets=buckets)
        # The receipt is timed by the hand-over that made it openable (``via``), else by the
        # copy's own hand-over: prompt only if that was its sender's.
        relay = via
        if relay is None and item.source != match.peer_id:
            relay = item.source or b""
        consumed = self.consume(envelope, match, item.hops, now, relay=relay)
        # The stored copy goes in the opening's own Persist: a delete committed ahead of it
        # would lose mail we took custody of if a crash came between the two (#17).
        deletes = self._holdings.release_item(item.envelope_id, DropReason.DELIVERED)
        if consumed is None:  # a forgery under our tag: nothing to keep
            self._out.persist([], deletes=deletes)
            return
        self._out.persist(
            consumed.puts,
            deletes=deletes,
            then=lambda at: self.report_consumed(match.peer_id, consumed, at),
        )
        self.after_open(match, now, via=via)

    def after_open(self, match: Match, now: float, *, via: bytes | None = None) -> None:
        """Opening a counter may have slid the contact's window over mail we carry: take it.

        Only after the opened envelope's own Persist: a nested open persists a newer channel
        state, which must not be overwritten by this older one.
        """
        contact = self._state.contacts.get(match.peer_id)
        if match.kind is MatchKind.LIVE and contact is not None and contact.channel is not None:
            # ONE mode keeps the probe the golden replays were measured with.
            in_order = not self._state.store.one_mode
            self.check_store_for_new_tags(contact.channel, now, via=via, in_order=in_order)

    def consume(
        self, envelope: Envelope, match: Match, carried_hops: int, now: float,
        *, relay: bytes | None = None,
    ) -> Consumed | None:  # fmt: skip
        """Open an envelope addressed to us. None: it failed authentication (refuse it).

        ``relay``: who handed it over when that was not its sender (``b""``: unknown); its
        delivered receipts then wait longer and are kept from that relay (receipts.py).
        ``carried_hops``: the copy's hop count; recorded as 1 without a relay, whatever it
        carried (own copies start at a random one), on arrival and opened later from the store
        alike. The recorded count also decides, after a restart, whether an owed delivered
        receipt is prompt (receipts.restore_owed)."""
        hops = received_hops(carried_hops, from_sender=relay is None)
        state = self._state
        contact = state.contacts.get(match.peer_id)
        if contact is None or contact.channel is None:
            return Consumed(puts=[], received=[], stone=None, expired=False)
        channel = contact.channel
        try:
            result = channel.open(envelope, now)
        except InvalidMessage:
            return None
        puts = [codec.channel_record(contact.peer_id, channel)]
        if result is None:  # a copy we already handled: idempotent
            return Consumed(puts=[], received=[], stone=None, expired=False)
        if isinstance(result, Expired):
            return Consumed(puts=puts, received=[], stone=None, expired=True)
        # The contact chose the date; any u64 opens, so it is capped like a relay's copy.
        expiry_at = capped_expiry(result.expiry_at, state.config.message, now)
        token = Tombstone(token=result.token, tag=result.tag, expiry_at=expiry_at)
        stone = token if self._holdings.remember(token) else None  # None: pushed straight out
        if stone is not None:
            puts.append(codec.tombstone_record(stone))
            # Not sent to anyone (Purge, offers) before this Persist commits: report_consumed.
            self._holdings.mark_uncommitted(stone.item_id)
            if relay:  # as the receipt: the relay that handed it over would learn it was ours
                self._hold_from(stone.item_id, relay, now)
        try:
            inner = decode_records(result.inner, INNER_RECORDS, state.config.wire)
        except DecodeError:
            inner = []  # authentic but unreadable (a newer client?): consumed, nothing shown
        received: list[StoredMessage] = []
        for message in inner:
            received.extend(self.apply_inner(contact, message, hops, now, relay=relay))
        puts.extend(codec.message_record(m) for m in received)
        # The delivered receipts _apply_inner queued: committed with the messages, so a crash
        # before their batch is sealed cannot lose them (the sender would stay at RELAYED).
        # With receipts off none was queued, and none may be written: a restart would send it.
        if state.config.message.send_receipts:
            puts.extend(
                codec.owed_receipt_record(contact.peer_id, RECEIPT_DELIVERED, m.message_id)
                for m in received
            )
        return Consumed(puts=puts, received=received, stone=stone, expired=False)

    def _hold_from(self, token_id: bytes, relay: bytes, now: float) -> None:
        """Keep a purge token from the relay that delivered its envelope for the receipt hold:
        that relay kept its copy (exchange/claims.py), and a token straight back on its link
        would tell it that we were the recipient, not a decoy."""
        hold = self._state.config.message.receipt_hold_s
        if hold > 0 and not self._state.store.one_mode:
            self._state.receipt_holds.hold(token_id, [relay], now + hold, now)

    def report_consumed(self, peer_id: bytes, consumed: Consumed, now: float) -> None:
        """The opened envelope's writes are durable: report its messages, spread its token."""
        state, out = self._state, self._out
        if consumed.expired:
            out.emit(UndecryptableMessage(peer_id=peer_id, reason="its key period has expired"))
        for m in consumed.received:
            out.emit(
                MessageReceived(
                    message_id=m.message_id, peer_id=peer_id, sent_at=m.sent_at,
                    received_at=now, body=m.body, hops=m.hops,
                )
            )  # fmt: skip
        stone = consumed.stone
        if stone is not None:
            self._holdings.mark_committed(stone.item_id)
        held = stone is not None and state.tombstones.by_id(stone.item_id) is not None
        if stone is not None and held and state.config.message.purge_on_delivery:
            state.items.add(stone.item_id, int(stone.expiry_at))
            self._purges.spread(stone, source=None)

    def deliver_group(
        self, session: PeerSession, envelope: Envelope, env_id: bytes, record: Transfer,
        now: float,
    ) -> None:  # fmt: skip
        """Group mail for us (its tag is one of our groups' chains)."""
        self._groups.deliver(session, envelope, env_id, record, now)

    def _received(
        self, contact: Contact, mid: bytes, sent_ms: int, body: str, hops: int, now: float,
        relay: bytes | None,
    ) -> list[StoredMessage]:  # fmt: skip
        conversations = self._state.conversations
        if conversations.get(mid) is not None:
            return []
        stored = StoredMessage(
            message_id=mid, peer_id=contact.peer_id, outgoing=False, body=body,
            sent_at=sent_ms / _MS, received_at=now, status=MessageStatus.DELIVERED, hops=hops,
        )  # fmt: skip
        conversations.add(stored)
        self._receipts.queue(contact.peer_id, RECEIPT_DELIVERED, mid, now, relay=relay)
        return [stored]

    def _want(
        self, contact: Contact, mid: bytes, refs: tuple[AttachmentRefEntry, ...], now: float
    ) -> None:
        """Attachments of a message for us: fetched now, or pending under the download rules.
        A reference that fails its checks is left out; the text is still shown."""
        expiry = now + self._state.config.message.max_ttl_s
        for entry in refs[: self._state.config.attach.max_attachments_per_message]:
            with contextlib.suppress(InvalidAttachment):
                self._attachments.carrier.want(
                    ref_from_entry(entry), peer_id=contact.peer_id, message_id=mid,
                    expiry_at=expiry, now=now,
                )  # fmt: skip

    def apply_inner(
        self, contact: Contact, message: Record, hops: int, now: float,
        *, relay: bytes | None = None,
    ) -> list[StoredMessage]:  # fmt: skip
        conversations = self._state.conversations
        match message:
            case TextMessage(message_id=mid, sent_at=sent_ms, body=body):
                return self._received(contact, mid, sent_ms, body, hops, now, relay)
            case AttachmentMessage(message_id=mid, sent_at=sent_ms, body=body, refs=refs):
                stored = self._received(contact, mid, sent_ms, body, hops, now, relay)
                if stored:
                    self._want(contact, mid, refs, now)
                return stored
            case Receipt(status=status, message_ids=ids):
                target = MessageStatus.READ if status == RECEIPT_READ else MessageStatus.DELIVERED
                for mid in ids:
                    own = conversations.get(mid)
                    if own is not None and own.outgoing and own.peer_id == contact.peer_id:
                        self._holdings.status_changed(own, target, now)
                return []
            case GroupOps() | GroupKey() | GroupReceipt():
                self._groups.on_pairwise(contact, message, now)
                return []
            case _:
                return []
