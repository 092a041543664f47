"""Receipts: telling a contact we received (or read) their messages, in batches.

Owed receipts are durable: each has a META record (``codec.owed_receipt_record``), put in the
Persist that caused it and deleted in the Persist of the envelope that carries it, and a
restarted node queues them again (:meth:`Receipts.owe`). Sending one twice is harmless.
Receipts wait ``receipt_delay_s`` to be batched: fewer envelopes, less timing signal.

A sealed receipt is not safe yet: if the next heal finds the peer never had the epoch we sealed
it in (a heal only we completed, or one a crash undid on the peer's side), the peer cannot open
it. So each is remembered (``codec.sealed_receipt_record``, in the Persist of its envelope) until
a heal: owed again if that heal abandons its epoch, forgotten otherwise (:meth:`after_heal`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from meshmsg.core import codec
from meshmsg.core.contacts import Contact
from meshmsg.core.deadline import Deadline
from meshmsg.core.effects import RecordKind, StoredRecord
from meshmsg.core.exchange.renewal import Renewal
from meshmsg.core.exchange.sending import Sending
from meshmsg.core.outbox import Outbox
from meshmsg.core.records import Receipt
from meshmsg.core.state import NodeState
from meshmsg.core.wire import Record

RECEIPT_DELIVERED = 0
RECEIPT_READ = 1
_RECEIPT_IDS = 64  # Receipt.message_ids max_items
_RECEIPTS_PER_ENVELOPE = 16  # 16 full Receipts (~17 kB) fit max_inner_bytes with room to spare


class Receipts:
    """Receipts owed to contacts, batched and sealed when due."""

    __slots__ = ("_due", "_out", "_pending", "_renewal", "_sealed", "_sending", "_state")

    def __init__(self, state: NodeState, out: Outbox, sending: Sending, renewal: Renewal) -> None:
        self._state = state
        self._out = out
        self._sending = sending
        self._renewal = renewal
        self._pending: dict[bytes, dict[int, list[bytes]]] = {}  # peer -> kind -> ids
        # When the batch is sealed: relative to when it was owed, so a wall clock stepped back
        # does not hold receipts for the size of the step (core/deadline.py).
        self._due = Deadline()
        # Sealed, not yet known readable: peer -> [(epoch, kind, message id)] (durable too)
        self._sealed: dict[bytes, list[tuple[int, int, bytes]]] = {}

    @property
    def due_at(self) -> float | None:
        return self._due.at

    def queue(self, peer_id: bytes, kind: int, message_id: bytes, now: float) -> None:
        """Owe a receipt if receipts are on (the caller persists the owed record)."""
        if self._state.config.message.send_receipts:
            self.owe(peer_id, kind, message_id, now)

    def owe(self, peer_id: bytes, kind: int, message_id: bytes, now: float) -> None:
        """Queue a receipt for the next batch (also: restoring one owed before a restart)."""
        self._pending.setdefault(peer_id, {}).setdefault(kind, []).append(message_id)
        self._due.no_later_than(now + self._state.config.message.receipt_delay_s, now)

    def restore_owed(self, owed: Iterable[codec.OwedReceipt], now: float) -> None:
        """Receipts owed at the last stop go out; with receipts switched off since, their
        records are deleted instead (a user who turned receipts off sends none, old ones too)."""
        if self._state.config.message.send_receipts:
            for o in owed:
                self.owe(o.peer_id, o.kind, o.message_id, now)
            return
        stale = [(RecordKind.META, codec.owed_receipt_key(o.peer_id, o.kind, o.message_id))
                 for o in owed]  # fmt: skip
        if stale:
            self._out.persist([], deletes=stale)

    def note_sealed(self, peer_id: bytes, epoch: int, kind: int, message_id: bytes) -> None:
        """A receipt sealed in our sending ``epoch`` (also: restoring one after a restart)."""
        self._sealed.setdefault(peer_id, []).append((epoch, kind, message_id))

    def after_heal(self, peer_id: bytes, abandoned_epoch: int | None, now: float) -> None:
        """A heal with ``peer_id`` is durable (queued after its Persist): receipts sealed in
        ``abandoned_epoch`` are unreadable to the peer, so they are owed again; the others
        were sealed in an epoch the peer holds and are safe."""
        sealed = self._sealed.pop(peer_id, [])
        if not sealed:
            return
        lost = [(kind, mid) for epoch, kind, mid in sealed if epoch == abandoned_epoch]
        for kind, mid in lost:
            self.owe(peer_id, kind, mid, now)
        self._out.persist(
            [codec.owed_receipt_record(peer_id, kind, mid) for kind, mid in lost],
            deletes=[
                (RecordKind.META, codec.sealed_receipt_key(peer_id, epoch, kind, mid))
                for epoch, kind, mid in sealed
            ],
        )

    def mark_read(self, peer_id: bytes, message_ids: list[bytes], now: float) -> None:
        owed: list[StoredRecord] = []
        for mid in message_ids:
            message = self._state.conversations.get(mid)
            if message is not None and not message.outgoing and message.peer_id == peer_id:
                self.queue(peer_id, RECEIPT_READ, mid, now)
                owed.append(codec.owed_receipt_record(peer_id, RECEIPT_READ, mid))
        if owed and self._state.config.message.send_receipts:
            self._out.persist(owed)

    def send_due(self, now: float) -> None:
        """Seal the batched receipts if their delay is over."""
        if not self._due.due(now):
            return
        pending, self._pending = self._pending, {}
        self._due.clear()
        for peer_id, kinds in pending.items():
            self._send_to(peer_id, kinds, now)

    def _send_to(self, peer_id: bytes, kinds: dict[int, list[bytes]], now: float) -> None:
        state = self._state
        delay = state.config.message.receipt_delay_s
        contact = state.contacts.get(peer_id)
        if contact is None:
            gone = [(k, m) for k, ids in kinds.items() for m in ids]
            self._out.persist([], deletes=_owed_keys(peer_id, gone))
            return
        if contact.channel is None:
            self._send_first_contact(contact, kinds, now)
            return
        if contact.exchanging:
            self._pending.setdefault(peer_id, kinds)  # retry after the exchange
            self._due.no_later_than(now + delay, now)
            return
        groups = _envelopes_of(kinds)
        channel = contact.channel
        if channel.capacity(now) < len(groups) or not self._sending.room_for(groups):
            # Out of counters this period (a chatty contact) or our outbox is full: try
            # again later; they stay owed (and durable) meanwhile. A live heal (issue #17)
            # renews the counters within a round trip: then retry after the usual delay.
            self._pending.setdefault(peer_id, kinds)
            self._renewal.renew_if_low(contact, now)
            period_end = channel.next_deadline()
            retry = now + delay if contact.exchanging else max(now + delay, period_end)
            self._due.no_later_than(retry, now)
            return
        for group in groups:
            expiry = now + state.config.message.default_ttl_s
            item, epoch = self._sending.seal(contact, group, expiry, now)
            carried = [(r.status, m) for r in group if isinstance(r, Receipt)
                       for m in r.message_ids]  # fmt: skip
            for kind, mid in carried:
                self.note_sealed(peer_id, epoch, kind, mid)
            sealed = [codec.sealed_receipt_record(peer_id, epoch, k, m) for k, m in carried]
            self._out.persist(
                [codec.channel_record(peer_id, channel), codec.envelope_record(item), *sealed],
                deletes=_owed_keys(peer_id, carried),
                then=functools.partial(self._sending.offer_when_committed, item),
            )
        self._renewal.renew_if_low(contact, now)  # receipts spend the same budget (issue #17)

    def _send_first_contact(
        self, contact: Contact, kinds: dict[int, list[bytes]], now: float
    ) -> None:
        """Receipts to a contact we never met: sealed by first contact, as its mail came."""
        first = self._sending.first
        groups = _envelopes_of(kinds)
        if not first.room_for(groups):
            self._pending.setdefault(contact.peer_id, kinds)  # owed (durable) meanwhile
            self._due.no_later_than(now + self._state.config.message.receipt_delay_s, now)
            return
        for group in groups:
            expiry = now + self._state.config.message.default_ttl_s
            item = first.seal(contact, group, expiry, now)
            self._out.persist(
                [codec.envelope_record(item)],
                deletes=_owed_keys(contact.peer_id, _carried(group)),
                then=functools.partial(self._sending.offer_when_committed, item),
            )


def _carried(group: list[Record]) -> list[tuple[int, bytes]]:
    return [(r.status, m) for r in group if isinstance(r, Receipt) for m in r.message_ids]


def _envelopes_of(kinds: dict[int, list[bytes]]) -> list[list[Record]]:
    """Receipt records grouped by envelope.

    A Receipt names at most _RECEIPT_IDS messages: more go in further records, and more records
    than fit one envelope's inner plaintext in further envelopes.
    """
    records: list[Record] = [
        Receipt(status=k, message_ids=tuple(ids[i : i + _RECEIPT_IDS]))
        for k, ids in kinds.items()
        for i in range(0, len(ids), _RECEIPT_IDS)
    ]
    return [
        records[start : start + _RECEIPTS_PER_ENVELOPE]
        for start in range(0, len(records), _RECEIPTS_PER_ENVELOPE)
    ]


def _owed_keys(
    peer_id: bytes, receipts: Iterable[tuple[int, bytes]]
) -> list[tuple[RecordKind, bytes]]:
    """The META keys of owed receipts (kind, message id) to ``peer_id``."""
    return [(RecordKind.META, codec.owed_receipt_key(peer_id, k, m)) for k, m in receipts]
