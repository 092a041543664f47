"""Receipts: telling a contact we received (or read) their messages, in batches.

Owed receipts are durable: each has a META record (``codec.owed_receipt_record``), put in the
Persist that caused it and deleted in the Persist of the envelope that carries it, and a
restarted node queues them again (:meth:`Receipts.owe`). Sending one twice is harmless.
Receipts wait ``receipt_delay_s`` to be batched: fewer envelopes, less timing signal.

Outside ONE mode, a delivered receipt for mail a relay handed us (not its sender) tells that
relay who the recipient is if it comes back on its link a moment later (issue #11, finding 4).
So such a receipt is sealed a random ``receipt_relayed_delay_min_s..max_s`` after the opening,
and its envelope is kept from that relay's links for ``receipt_hold_s`` after sealing
(``core/receiptholds.py``). Mail that came over its sender's own link keeps the prompt receipt:
the sender already knows we took it. Each owed receipt has its own due time; those due together
share an envelope (a receipt never leaves before its own time, and none waits for a later one),
and that envelope is kept from every relay that delivered any of its messages. Owed receipts
restored after a restart are prompt when their mail came directly (its stored hop count is 1)
and take the random delay otherwise; holds are not persisted (a restart ended the relay's link,
which ends a hold anyway).

A sealed receipt is not safe yet: if the next heal finds the peer never had the epoch we sealed
it in (a heal only we completed, or one a crash undid on the peer's side), the peer cannot open
it. So each is remembered (``codec.sealed_receipt_record``, in the Persist of its envelope) until
a heal: owed again if that heal abandons its epoch, forgotten otherwise (:meth:`after_heal`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

from meshmsg.core import codec
from meshmsg.core.contacts import Contact
from meshmsg.core.deadline import Deadline
from meshmsg.core.effects import RecordKind, StoredRecord
from meshmsg.core.exchange.renewal import Renewal
from meshmsg.core.exchange.sending import Sending
from meshmsg.core.outbox import Outbox
from meshmsg.core.receiptholds import relayed_receipt_delay
from meshmsg.core.records import Receipt
from meshmsg.core.state import NodeState
from meshmsg.core.wire import Record

RECEIPT_DELIVERED = 0
RECEIPT_READ = 1
_RECEIPT_IDS = 64  # Receipt.message_ids max_items
_RECEIPTS_PER_ENVELOPE = 16  # 16 full Receipts (~17 kB) fit max_inner_bytes with room to spare


@dataclass(slots=True)
class _Owed:
    """One receipt owed to a contact, with its own due time."""

    kind: int
    message_id: bytes
    due: Deadline
    relay: bytes | None  # who handed the mail over, when not its sender (kept from it)


class Receipts:
    """Receipts owed to contacts, batched and sealed when due."""

    __slots__ = ("_out", "_pending", "_renewal", "_sealed", "_sending", "_state")

    def __init__(self, state: NodeState, out: Outbox, sending: Sending, renewal: Renewal) -> None:
        self._state = state
        self._out = out
        self._sending = sending
        self._renewal = renewal
        # peer -> receipts owed to it; each due relative to when it was owed, so a wall clock
        # stepped back does not hold receipts for the size of the step (core/deadline.py).
        self._pending: dict[bytes, list[_Owed]] = {}
        # Sealed, not yet known readable: peer -> [(epoch, kind, message id)] (durable too)
        self._sealed: dict[bytes, list[tuple[int, int, bytes]]] = {}

    @property
    def due_at(self) -> float | None:
        ats = [o.due.at for owed in self._pending.values() for o in owed if o.due.at is not None]
        return min(ats) if ats else None

    def queue(
        self, peer_id: bytes, kind: int, message_id: bytes, now: float,
        *, relay: bytes | None = None,
    ) -> None:  # fmt: skip
        """Owe a receipt if receipts are on (the caller persists the owed record).

        ``relay``: the peer that handed the mail over when it was not its sender (``b""``
        if unknown); None for mail from its sender's own link and for read receipts."""
        if self._state.config.message.send_receipts:
            self.owe(peer_id, kind, message_id, now, relay=relay)

    def owe(
        self, peer_id: bytes, kind: int, message_id: bytes, now: float,
        *, relay: bytes | None = None,
    ) -> None:  # fmt: skip
        """Queue a receipt for its batch (also: restoring one owed before a restart)."""
        state = self._state
        if state.store.one_mode:
            relay = None  # the ONE's semantics: every receipt after receipt_delay_s
        due = Deadline()
        due.no_later_than(now + self._delay(relay), now)
        self._pending.setdefault(peer_id, []).append(_Owed(kind, message_id, due, relay))

    def _delay(self, relay: bytes | None) -> float:
        """``receipt_delay_s`` for direct mail; a uniform random delay for relayed mail."""
        message = self._state.config.message
        if relay is None:
            return message.receipt_delay_s
        return relayed_receipt_delay(message, self._state.rng)

    def restore_owed(self, owed: Iterable[codec.OwedReceipt], now: float) -> None:
        """Receipts owed at the last stop go out: promptly for mail that came from its sender's
        own link (its stored hop count is 1, ``origin.received_hops``) and for read receipts,
        after the relayed delay otherwise (the relay is not kept: the restart ended its link);
        with receipts switched off since, their records are deleted instead (a user who turned
        receipts off sends none, old ones too)."""
        if self._state.config.message.send_receipts:
            conversations = self._state.conversations
            for o in owed:
                message = conversations.get(o.message_id)
                direct = o.kind != RECEIPT_DELIVERED or (message is not None and message.hops == 1)
                self.owe(o.peer_id, o.kind, o.message_id, now, relay=None if direct else b"")
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
        """Seal the receipts whose delay is over (those of one contact in one batch)."""
        for peer_id, owed in list(self._pending.items()):
            due = [o for o in owed if o.due.due(now)]
            if not due:
                continue
            rest = [o for o in owed if not o.due.due(now)]
            if rest:
                self._pending[peer_id] = rest
            else:
                del self._pending[peer_id]
            self._send_to(peer_id, due, now)

    def _again(self, peer_id: bytes, owed: list[_Owed], at: float, now: float) -> None:
        """Owe ``owed`` again, due at ``at`` (they stay durable meanwhile)."""
        for o in owed:
            o.due.clear()
            o.due.no_later_than(at, now)
        self._pending.setdefault(peer_id, []).extend(owed)

    def _send_to(self, peer_id: bytes, owed: list[_Owed], now: float) -> None:
        state = self._state
        delay = state.config.message.receipt_delay_s
        kinds = _kinds(owed)
        contact = state.contacts.get(peer_id)
        if contact is None:
            gone = [(k, m) for k, ids in kinds.items() for m in ids]
            self._out.persist([], deletes=_owed_keys(peer_id, gone))
            return
        if contact.channel is None:
            self._send_first_contact(contact, owed, now)
            return
        if contact.exchanging:
            self._again(peer_id, owed, now + delay, now)  # retry after the exchange
            return
        groups = _envelopes_of(kinds)
        channel = contact.channel
        if channel.capacity(now) < len(groups) or not self._sending.room_for(groups):
            # Out of counters this period (a chatty contact) or our outbox is full: try
            # again later; they stay owed (and durable) meanwhile. A live heal (issue #17)
            # renews the counters within a round trip: then retry after the usual delay.
            self._renewal.renew_if_low(contact, now)
            period_end = channel.next_deadline()
            retry = now + delay if contact.exchanging else max(now + delay, period_end)
            self._again(peer_id, owed, retry, now)
            return
        relays = _relays(owed)
        for group in groups:
            expiry = now + state.config.message.default_ttl_s
            item, epoch = self._sending.seal(contact, group, expiry, now)
            self._hold(item.envelope_id, relays, now)
            carried = _carried(group)
            for kind, mid in carried:
                self.note_sealed(peer_id, epoch, kind, mid)
            sealed = [codec.sealed_receipt_record(peer_id, epoch, k, m) for k, m in carried]
            self._out.persist(
                [codec.channel_record(peer_id, channel), codec.envelope_record(item), *sealed],
                deletes=_owed_keys(peer_id, carried),
                then=functools.partial(self._sending.offer_when_committed, item),
            )
        self._renewal.renew_if_low(contact, now)  # receipts spend the same budget (issue #17)

    def _hold(self, envelope_id: bytes, relays: list[bytes], now: float) -> None:
        """Keep a new receipt envelope from the relays that delivered its mail."""
        hold = self._state.config.message.receipt_hold_s
        if relays and hold > 0 and not self._state.store.one_mode:
            self._state.receipt_holds.hold(envelope_id, relays, now + hold, now)

    def _send_first_contact(self, contact: Contact, owed: list[_Owed], now: float) -> None:
        """Receipts to a contact we never met: sealed by first contact, as its mail came."""
        first = self._sending.first
        groups = _envelopes_of(_kinds(owed))
        if not first.room_for(groups):
            retry = now + self._state.config.message.receipt_delay_s
            self._again(contact.peer_id, owed, retry, now)  # owed (durable) meanwhile
            return
        relays = _relays(owed)
        for group in groups:
            expiry = now + self._state.config.message.default_ttl_s
            item = first.seal(contact, group, expiry, now)
            self._hold(item.envelope_id, relays, now)
            self._out.persist(
                [codec.envelope_record(item)],
                deletes=_owed_keys(contact.peer_id, _carried(group)),
                then=functools.partial(self._sending.offer_when_committed, item),
            )


def _kinds(owed: list[_Owed]) -> dict[int, list[bytes]]:
    kinds: dict[int, list[bytes]] = {}
    for o in owed:
        kinds.setdefault(o.kind, []).append(o.message_id)
    return kinds


def _relays(owed: list[_Owed]) -> list[bytes]:
    """The relays a batch is kept from: every known one that delivered any of its mail."""
    return list(dict.fromkeys(o.relay for o in owed if o.relay))


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
