"""Receipts: telling a contact we received (or read) their messages, in batches.

Owed receipts are durable: each has a META record (``codec.owed_receipt_record``), put in the
Persist that caused it and deleted in the Persist of the envelope that carries it, and a
restarted node queues them again (:meth:`Receipts.owe`). Sending one twice is harmless.
Receipts wait ``receipt_delay_s`` to be batched: fewer envelopes, less timing signal.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from meshmsg.core import codec
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

    __slots__ = ("_due_at", "_out", "_pending", "_renewal", "_sending", "_state")

    def __init__(self, state: NodeState, out: Outbox, sending: Sending, renewal: Renewal) -> None:
        self._state = state
        self._out = out
        self._sending = sending
        self._renewal = renewal
        self._pending: dict[bytes, dict[int, list[bytes]]] = {}  # peer -> kind -> ids
        self._due_at: float | None = None

    @property
    def due_at(self) -> float | None:
        return self._due_at

    def queue(self, peer_id: bytes, kind: int, message_id: bytes, now: float) -> None:
        """Owe a receipt if receipts are on (the caller persists the owed record)."""
        if self._state.config.message.send_receipts:
            self.owe(peer_id, kind, message_id, now)

    def owe(self, peer_id: bytes, kind: int, message_id: bytes, now: float) -> None:
        """Queue a receipt for the next batch (also: restoring one owed before a restart)."""
        self._pending.setdefault(peer_id, {}).setdefault(kind, []).append(message_id)
        if self._due_at is None:
            self._due_at = now + self._state.config.message.receipt_delay_s

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
        if self._due_at is None or now < self._due_at:
            return
        pending, self._pending, self._due_at = self._pending, {}, None
        for peer_id, kinds in pending.items():
            self._send_to(peer_id, kinds, now)

    def _send_to(self, peer_id: bytes, kinds: dict[int, list[bytes]], now: float) -> None:
        state = self._state
        delay = state.config.message.receipt_delay_s
        contact = state.contacts.get(peer_id)
        if contact is None or contact.channel is None:
            gone = [(k, m) for k, ids in kinds.items() for m in ids]
            self._out.persist([], deletes=_owed_keys(peer_id, gone))
            return
        if contact.exchanging:
            self._pending.setdefault(peer_id, kinds)  # retry after the exchange
            self._due_at = now + delay
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
            due = self._due_at
            self._due_at = retry if due is None else min(due, retry)
            return
        for group in groups:
            expiry = now + state.config.message.default_ttl_s
            item, _ = self._sending.seal(contact, group, expiry, now)
            carried = [(r.status, m) for r in group if isinstance(r, Receipt)
                       for m in r.message_ids]  # fmt: skip
            self._out.persist(
                [codec.channel_record(peer_id, channel), codec.envelope_record(item)],
                deletes=_owed_keys(peer_id, carried),
                then=functools.partial(self._sending.offer_when_committed, item),
            )
        self._renewal.renew_if_low(contact, now)  # receipts spend the same budget (issue #17)


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
