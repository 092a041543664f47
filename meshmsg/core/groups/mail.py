"""Group mail: membership operations, sender chains and group envelopes at the node.

Theory of operation
-------------------
The decisions are the :class:`~meshmsg.core.groups.book.GroupBook`'s (in the node state); this
part carries them out with the other parts of the exchange:

* end-to-end records for one member (operations, chains, receipts) are queued per contact,
  durably (``GROUP_QUEUE`` records), and sealed over the pairwise channel as soon as it can
  seal (paired, no key exchange running, counters left, room in our outbox); what waits is
  tried again every ``groups.queue_retry_s``;
* our group message is sealed once (one ciphertext for every member) into our store, after the
  pairwise envelopes carrying a new chain, and offered like any own mail;
* a group envelope a peer offers is claimed when one of our chains recognises its tag; we open
  it, and keep it in our store with the copies handed to us, to carry it on to the other members
  we meet: relays never learn it is group mail, and the copy budget is one for the whole group;
  we spread no purge token for it (one member's delivery is not everyone's);
* a chain that arrives may open group mail we already carry (it outran its key): the store is
  probed with the chain's tags.

docs/protocol/groups.md §5 has the table of what travels to whom. The part takes its
collaborators as small protocols (:class:`State`, :class:`Out`, :class:`Holdings`,
:class:`Sending`, :class:`Sync`): the exchange's parts satisfy them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

from meshmsg.config import NodeConfig
from meshmsg.core import codec
from meshmsg.core.attach.assembly import AttachmentRef
from meshmsg.core.attach.wirestate import ref_entry
from meshmsg.core.contacts import Contact, ContactBook
from meshmsg.core.deadline import Deadline
from meshmsg.core.effects import LinkId, RecordKind, StoredRecord
from meshmsg.core.envelope import Envelope, capped_expiry, envelope_id, parse_envelope
from meshmsg.core.events import (
    EnvelopeAccepted,
    Event,
    GroupChanged,
    GroupMessageReceived,
    GroupMessageStatus,
)
from meshmsg.core.groups import persist
from meshmsg.core.groups.book import Entry, GroupBook, GroupMessage, Outgoing
from meshmsg.core.groups.keyring import GroupMatch
from meshmsg.core.groups.ops import OpKind
from meshmsg.core.groups.records import (
    GROUP_PAIRWISE_RECORDS,
    GroupKey,
    GroupOps,
    GroupReceipt,
)
from meshmsg.core.identity import PublicIdentity, peer_id_of
from meshmsg.core.receiptholds import ReceiptHolds, relayed_receipt_delay
from meshmsg.core.records import Custody, Transfer
from meshmsg.core.rng import Rng
from meshmsg.core.routing import Router
from meshmsg.core.session import PeerSession
from meshmsg.core.store import RelayStore, StoreItem, Tier
from meshmsg.core.wire import Record, decode_records, encode_records
from meshmsg.errors import DecodeError, GroupError, InvalidMessage, StorageError


class State(Protocol):
    """What this part reads of the node's state (``NodeState``)."""

    @property
    def groups(self) -> GroupBook: ...
    @property
    def contacts(self) -> ContactBook: ...
    @property
    def store(self) -> RelayStore: ...
    @property
    def config(self) -> NodeConfig: ...
    @property
    def router(self) -> Router: ...
    @property
    def sessions(self) -> Mapping[LinkId, PeerSession]: ...
    @property
    def rng(self) -> Rng: ...
    @property
    def receipt_holds(self) -> ReceiptHolds: ...


class Out(Protocol):
    """Where effects and events go (the ``Outbox``)."""

    def persist(
        self,
        puts: list[StoredRecord],
        *,
        deletes: Iterable[tuple[RecordKind, bytes]] = (),
        then: Callable[[float], None] | None = None,
    ) -> object: ...
    def emit(self, event: Event) -> None: ...
    def transmit(self, session: PeerSession, records: list[Record], envelopes: int = 0) -> None: ...


class Holdings(Protocol):
    def admit_item(self, item: StoreItem, now: float) -> bool: ...
    def mark_uncommitted(self, envelope_id: bytes) -> None: ...
    def mark_committed(self, envelope_id: bytes) -> None: ...
    def load_body(
        self, envelope_id: bytes, *, to_open: bool = False, via: bytes | None = None
    ) -> None: ...


class Sending(Protocol):
    def seal(
        self, contact: Contact, records: list[Record], expiry_at: float, now: float
    ) -> tuple[StoreItem, int]: ...
    def room_for(self, envelopes: list[list[Record]]) -> bool: ...
    def offer_when_committed(self, item: StoreItem, at: float) -> None: ...


class Sync(Protocol):
    def offer_new(self, item: StoreItem) -> None: ...


class Files(Protocol):
    """The node's attachment carrier, for group messages with files (``Attachments``)."""

    def add_group_own(self, refs: Sequence[AttachmentRef], message_id: bytes, expiry_at: float,
                      ) -> None: ...  # fmt: skip
    def want_group(self, message: GroupMessage, now: float) -> None: ...


_ACTIONS = {
    "add": OpKind.ADD, "remove": OpKind.REMOVE, "promote": OpKind.PROMOTE,
    "demote": OpKind.DEMOTE, "leave": OpKind.LEAVE, "rename": OpKind.RENAME,
}  # fmt: skip


class GroupMail:
    """See the module docstring."""

    __slots__ = (
        "_files", "_held", "_holdings", "_key_deletes_pending", "_out", "_persisted", "_queue",
        "_retry", "_sending", "_seq", "_state", "_sync",
    )  # fmt: skip

    def __init__(
        self, state: State, out: Out, holdings: Holdings, sync: Sync, sending: Sending,
        files: Files,
    ) -> None:  # fmt: skip
        self._state = state
        self._files = files
        self._out = out
        self._holdings = holdings
        self._sync = sync
        self._sending = sending
        self._queue: dict[bytes, dict[bytes, tuple[Record, ...]]] = {}  # peer -> key -> records
        # Queued receipts for group mail a relay handed us: key -> (not before, that relay).
        # Not persisted: after a restart they go at once (the relay's link ended anyway).
        self._held: dict[bytes, tuple[float, bytes]] = {}
        self._seq = 0
        self._retry = Deadline()  # follows a wall clock stepped back (core/deadline.py)
        self._persisted: set[bytes] = set()  # GROUP_KEY record keys on disk
        self._key_deletes_pending: list[tuple[RecordKind, bytes]] = []

    # ================================================================ restore

    def restore(self, records: Iterable[StoredRecord], now: float) -> None:
        records = list(records)
        self._persisted = persist.restore(self._state.groups, records, now)
        for record in records:
            if record.kind is RecordKind.GROUP_QUEUE:
                wire = self._state.config.wire
                try:
                    queued = tuple(decode_records(record.value, GROUP_PAIRWISE_RECORDS, wire))
                except DecodeError as exc:
                    raise StorageError(f"GROUP_QUEUE record does not decode: {exc}") from exc
                self._queue.setdefault(record.key[:16], {})[record.key] = queued
                self._seq = max(self._seq, int.from_bytes(record.key[16:], "big") + 1)
        if self._queue:
            self._retry.no_later_than(now, now)

    # ================================================================ commands

    def create(self, name: str, members: Sequence[bytes], now: float) -> bytes:
        publics = [self._state.contacts.require(p).public for p in members]
        entry, out = self._state.groups.create(name, publics, now)
        self._persist_entry(entry)
        self._dispatch(out, now)
        self._changed(entry)
        return entry.group.id

    def change(
        self, group: bytes, action: str, *, member: bytes | None, name: str | None, now: float
    ) -> None:
        book = self._state.groups
        entry = book.find(group)
        kind = _ACTIONS.get(action)
        if kind is None:
            raise GroupError(f"unknown group change {action!r}")
        target: PublicIdentity | bytes | None = None
        if kind is OpKind.ADD:
            if member is None:
                raise GroupError("add whom?")
            target = self._state.contacts.require(member).public
        elif kind in (OpKind.REMOVE, OpKind.PROMOTE, OpKind.DEMOTE):
            target = self._member_key(entry, member)
        out = book.change(entry, kind, now, target=target, name=name)
        self._persist_entry(entry)
        self._dispatch(out, now)
        self._changed(entry)

    def send_text(
        self, group: bytes, body: str, now: float, ttl_s: float | None,
        refs: Sequence[AttachmentRef] = (),
    ) -> bytes:  # fmt: skip
        """Seal one message for the whole group; with ``refs``, attachments the application
        sealed into the chunk store: one encrypted copy for every member, its key inside the
        message (docs/protocol/groups.md §5)."""
        state = self._state
        limits = state.config.message
        entry = state.groups.find(group)
        if len(refs) > state.config.attach.max_attachments_per_message:
            raise GroupError("too many attachments for one message")
        for ref in refs:
            ref.check(state.config.attach)  # InvalidAttachment before anything changed
        entries = tuple(ref_entry(ref) for ref in refs)
        ttl = limits.default_ttl_s if ttl_s is None else ttl_s
        if not 0 < ttl <= limits.latency_budget_s:
            raise GroupError(f"ttl must be within (0, {limits.latency_budget_s:g}] seconds")
        if not state.store.own_room(limits.envelope_size_buckets[-1], 1):
            raise GroupError("outbox full: the store has no room for more own mail")
        sealed = state.groups.seal_text(entry, body, now, ttl, entries)
        self._dispatch(sealed.shares, now)  # the chain leaves before the message it opens
        if refs:  # before the message is offered: its chunks are advertised with it
            self._files.add_group_own(refs, sealed.message.message_id, now + ttl)
        envelope = parse_envelope(sealed.envelope, buckets=limits.envelope_size_buckets)
        item = self._item(sealed.envelope, envelope, copies=state.router.initial_copies(),
                          hops=0, tier=Tier.OWN, source=None, now=now)  # fmt: skip
        sealed.message.envelope_id = item.envelope_id
        state.groups.own_envelopes.add(item.envelope_id)
        admitted = self._holdings.admit_item(item, now)
        if admitted:
            self._holdings.mark_uncommitted(item.envelope_id)
        puts = [*self._key_puts(entry), persist.message_record(sealed.message)]
        puts += [codec.envelope_record(item)] if admitted else []

        def committed(at: float) -> None:
            if admitted:
                self._sending.offer_when_committed(item, at)

        self._out.persist(puts, deletes=self._key_deletes, then=committed)
        return sealed.message.message_id

    def mark_read(self, group: bytes, message_ids: Sequence[bytes], now: float) -> None:
        entry = self._state.groups.find(group)
        fresh = [m for m in message_ids if m in entry.messages and not entry.messages[m].read_by_me]
        for mid in fresh:
            entry.messages[mid].read_by_me = True
        self._out.persist([persist.message_record(entry.messages[m]) for m in fresh])
        self._dispatch(self._state.groups.mark_read(entry, fresh), now)

    # ======================================================= pairwise records

    def on_pairwise(
        self, contact: Contact, record: GroupOps | GroupKey | GroupReceipt, now: float
    ) -> None:
        """A group record inside an envelope from ``contact`` (opened by :mod:`.opening`)."""
        book, sender = self._state.groups, contact.public.identity_key
        match record:
            case GroupOps():
                known = record.group in book.entries
                changed, out = book.on_ops(sender, record, now)
                entry = book.entries.get(record.group)
                if entry is not None and (changed or not known):
                    self._persist_entry(entry)
                    self._changed(entry)
                    self._probe(entry, now, None)  # chains that waited for an ADD are in now
                self._dispatch(out, now)
            case GroupKey():
                if book.on_key(sender, record, now):
                    entry = book.entries[record.group]
                    self._out.persist(self._key_puts(entry), deletes=self._key_deletes)
                    self._probe(entry, now, sender)
            case GroupReceipt():
                for message in book.on_receipt(sender, record):
                    self._out.persist([persist.message_record(message)])
                    self._out.emit(_status(message))

    # ========================================================== group envelopes

    def deliver(
        self, session: PeerSession, envelope: Envelope, env_id: bytes, record: Transfer,
        now: float,
    ) -> None:  # fmt: skip
        """A transfer whose tag one of our chains recognises: open it, carry it on."""
        found = self._state.groups.lookup(envelope.tag)
        assert found is not None
        entry, match = found
        try:
            message, out = self._state.groups.open(entry, envelope, match, now)
        except InvalidMessage:
            self._acknowledge(session, refused=[env_id])
            return
        item = self._item(record.envelope, envelope, copies=record.copies, hops=record.hops,
                          tier=session.tier, source=session.peer_id, now=now)  # fmt: skip
        duplicate = env_id in self._state.store
        admitted = not duplicate and self._holdings.admit_item(item, now)
        puts = self._key_puts(entry)
        puts += [persist.message_record(message)] if message is not None else []
        puts += [codec.envelope_record(item)] if admitted else []
        if admitted:
            self._holdings.mark_uncommitted(env_id)

        def committed(at: float) -> None:
            self._acknowledge(session, accepted=[env_id])
            self._out.emit(EnvelopeAccepted(
                envelope_id=env_id, link=session.link_id, hops=record.hops,
                copies=record.copies, for_us=True,
            ))  # fmt: skip
            if message is not None:
                self._out.emit(_received(message, at))
            if admitted:
                self._holdings.mark_committed(env_id)
                if env_id in self._state.store:
                    self._sync.offer_new(item)

        self._out.persist(puts, deletes=self._key_deletes, then=committed)
        if message is not None and message.refs:
            self._files.want_group(message, now)
        direct = session.peer_id == peer_id_of(match.sender)
        relay = None if direct else (session.peer_id or b"")
        self._dispatch(out, now, relay=relay)
        self._probe(entry, now, match.sender)  # the sender's window slid: more may be ours

    def _probe(self, entry: Entry, now: float, sender: bytes | None) -> None:
        """Group mail we carry that a sender's chain now recognises (it outran the chain, or
        the window slid over it): open it, until nothing more opens."""
        store = self._state.store
        opened = True
        while opened:
            opened = False
            for tag in entry.keys.tags(sender):
                for item in store.with_tag(tag):
                    match = entry.keys.lookup(item.tag)
                    if match is not None:
                        opened = self._open_carried(entry, item, match, now) or opened

    def open_loaded(self, item: StoreItem, now: float) -> None:
        """A carried envelope's body came back from disk for an opening: open it if a chain
        recognises it, then what that opening made recognisable (exchange/bodies.py)."""
        found = self._state.groups.lookup(item.tag)
        if found is not None and self._open_carried(found[0], item, found[1], now):
            self._probe(found[0], now, found[1].sender)

    def _open_carried(self, entry: Entry, item: StoreItem, match: GroupMatch, now: float) -> bool:
        if item.envelope is None:  # on disk only: opened once read back (open_loaded)
            self._holdings.load_body(item.envelope_id, to_open=True)
            return False
        buckets = self._state.config.message.envelope_size_buckets
        envelope = parse_envelope(item.envelope, buckets=buckets)
        try:
            message, out = self._state.groups.open(entry, envelope, match, now)
        except InvalidMessage:
            return False  # a forgery under a real tag: it stays a relay item until it expires
        puts = self._key_puts(entry)
        puts += [persist.message_record(message)] if message is not None else []

        def committed(at: float) -> None:
            if message is not None:
                self._out.emit(_received(message, at))

        self._out.persist(puts, deletes=self._key_deletes, then=committed)
        if message is not None and message.refs:
            self._files.want_group(message, now)
        relay = None if item.source == peer_id_of(match.sender) else (item.source or b"")
        self._dispatch(out, now, relay=relay)
        return True

    def _acknowledge(self, session: PeerSession, *, accepted: Sequence[bytes] = (),
                     refused: Sequence[bytes] = ()) -> None:  # fmt: skip
        if session.link_id in self._state.sessions:
            self._out.transmit(session, [Custody(accepted=tuple(accepted), refused=tuple(refused))])

    # ================================================================ timers

    def next_deadline(self) -> float | None:
        due = [self._retry.at]
        due += [e.keys.next_deadline() for e in self._state.groups.entries.values()]
        present = [d for d in due if d is not None]
        return min(present) if present else None

    def on_timer(self, now: float) -> None:
        for entry in self._state.groups.entries.values():
            deadline = entry.keys.next_deadline()
            if deadline is not None and now >= deadline and entry.keys.advance(now):
                self._out.persist(self._key_puts(entry), deletes=self._key_deletes)
        if self._retry.due(now):
            self._retry.clear()
            for peer_id in sorted(self._queue):
                self._flush(peer_id, now)

    # ================================================================ helpers

    def _dispatch(
        self, outgoing: Iterable[Outgoing], now: float, *, relay: bytes | None = None
    ) -> None:
        """Queue records for members durably, then seal what can be sealed now.

        ``relay``: the peer (not the sender) that handed over the mail these records answer;
        its receipts are then sealed after the relayed delay and kept from that relay, as
        pairwise receipts are (exchange/receipts.py, issue #11 finding 4)."""
        peers: list[bytes] = []
        puts: list[StoredRecord] = []
        deletes: list[tuple[RecordKind, bytes]] = []
        bound = self._state.config.groups.max_queued_per_member
        for out in outgoing:
            queue = self._queue.setdefault(out.peer_id, {})
            for records in _envelopes(out.records):
                key = out.peer_id + self._seq.to_bytes(8, "big")
                self._seq += 1
                queue[key] = records
                if relay is not None and _receipts_only(records):
                    self._hold_receipt(key, relay, now)
                puts.append(StoredRecord(kind=RecordKind.GROUP_QUEUE, key=key,
                                         value=encode_records(list(records))))  # fmt: skip
            while len(queue) > bound:  # the oldest go (a member we never met)
                oldest = next(iter(queue))
                del queue[oldest]
                deletes.append((RecordKind.GROUP_QUEUE, oldest))
                puts = [p for p in puts if p.key != oldest]
            peers.append(out.peer_id)
        if puts or deletes:
            self._out.persist(puts, deletes=deletes)
        for peer_id in dict.fromkeys(peers):
            self._flush(peer_id, now)

    def _flush(self, peer_id: bytes, now: float) -> None:
        queue = self._queue.get(peer_id)
        if not queue:
            self._queue.pop(peer_id, None)
            return
        contact = self._state.contacts.get(peer_id)
        ready = contact is not None and contact.channel is not None and not contact.exchanging
        for key, records in list(queue.items()):
            if not ready or contact is None or contact.channel is None:
                break
            held = self._held.get(key)
            if held is not None and held[0] > now:
                self._retry.no_later_than(held[0], now)
                continue  # a relayed receipt waits; later records need not
            if contact.channel.capacity(now) <= 0 or not self._sending.room_for([list(records)]):
                break
            expiry = now + self._state.config.message.default_ttl_s
            item, _ = self._sending.seal(contact, list(records), expiry, now)
            del queue[key]
            if held is not None:
                del self._held[key]
                self._keep_from(item.envelope_id, held[1], now)
            self._out.persist(
                [codec.channel_record(peer_id, contact.channel), codec.envelope_record(item)],
                deletes=[(RecordKind.GROUP_QUEUE, key)],
                then=functools.partial(self._sending.offer_when_committed, item),
            )
        if queue:
            self._retry.no_later_than(now + self._state.config.groups.queue_retry_s, now)
        else:
            del self._queue[peer_id]

    def _hold_receipt(self, key: bytes, relay: bytes, now: float) -> None:
        """Seal the queued receipt ``key`` only after the relayed delay (outside ONE mode)."""
        state = self._state
        if state.store.one_mode:
            return
        self._held[key] = (now + relayed_receipt_delay(state.config.message, state.rng), relay)

    def _keep_from(self, envelope_id: bytes, relay: bytes, now: float) -> None:
        hold = self._state.config.message.receipt_hold_s
        if relay and hold > 0:
            self._state.receipt_holds.hold(envelope_id, [relay], now + hold, now)

    def _item(self, data: bytes, envelope: Envelope, *, copies: int, hops: int, tier: Tier,
              source: bytes | None, now: float) -> StoreItem:  # fmt: skip
        return StoreItem(
            envelope_id=envelope_id(data), envelope=data, tag=envelope.tag,
            expiry_at=capped_expiry(envelope.expiry_at, self._state.config.message, now),
            copies=copies, hops=hops, tier=tier,
            source=source, received_at=now, route_hint=None,
        )  # fmt: skip

    def _member_key(self, entry: Entry, member: bytes | None) -> bytes:
        for key in entry.group.state.members:
            if peer_id_of(key) == member:
                return key
        raise GroupError("not a member of this group")

    def _persist_entry(self, entry: Entry) -> None:
        self._out.persist([persist.group_record(entry), *self._key_puts(entry)],
                          deletes=self._key_deletes)  # fmt: skip

    def _key_puts(self, entry: Entry) -> list[StoredRecord]:
        puts, self._key_deletes_pending = persist.key_writes(entry, self._persisted)
        return puts

    @property
    def _key_deletes(self) -> list[tuple[RecordKind, bytes]]:
        deletes, self._key_deletes_pending = self._key_deletes_pending, []
        return deletes

    def _changed(self, entry: Entry) -> None:
        state = entry.group.state
        self._out.emit(GroupChanged(
            group_id=entry.group.id, name=state.name, epoch=state.epoch,
            members=len(state.members), member=self._state.groups.me in state.members,
        ))  # fmt: skip


def _envelopes(records: Sequence[Record]) -> list[tuple[Record, ...]]:
    """Records grouped so that each group fits one envelope's inner plaintext."""
    groups: list[list[Record]] = [[]]
    size = 0
    for record in records:
        length = len(encode_records([record]))
        if groups[-1] and size + length > _INNER_BUDGET:
            groups.append([])
            size = 0
        groups[-1].append(record)
        size += length
    return [tuple(g) for g in groups if g]


def _received(message: GroupMessage, at: float) -> GroupMessageReceived:
    return GroupMessageReceived(
        group_id=message.group, message_id=message.message_id,
        sender_id=peer_id_of(message.sender), sent_at=message.sent_at,
        received_at=message.received_at or at, body=message.body,
    )  # fmt: skip


def _status(message: GroupMessage) -> GroupMessageStatus:
    return GroupMessageStatus(
        group_id=message.group, message_id=message.message_id,
        delivered=len(message.delivered), read=len(message.read),
        recipients=len(message.recipients),
    )  # fmt: skip


_INNER_BUDGET = 30_000  # under max_inner_bytes (34,816): room for the CBOR sequence framing


def _receipts_only(records: tuple[Record, ...]) -> bool:
    return bool(records) and all(isinstance(r, GroupReceipt) for r in records)
