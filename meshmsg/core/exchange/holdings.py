"""What a node holds, kept consistent: store items, purge tokens, message timelines.

The relay store, the reconciliation set over it, the tombstone table and the persisted records
must agree: an item that leaves the store leaves the set and the database too, and a purge token
pushed out of its bounded table is no longer named by the set. Every part of the exchange goes
through :class:`Holdings` for these changes instead of touching the containers pairwise.

It also keeps the one piece of bookkeeping freed room triggers: contacts whose waiting messages
found our outbox full, retried (by :mod:`meshmsg.core.exchange.sending`) once an item left.
"""

from __future__ import annotations

from meshmsg.core import codec
from meshmsg.core.conversations import StoredMessage
from meshmsg.core.deadline import Deadline
from meshmsg.core.effects import RecordKind
from meshmsg.core.events import DropReason, EnvelopeDropped, MessageStatus, MessageStatusChanged
from meshmsg.core.outbox import Outbox
from meshmsg.core.state import BodyWanted, NodeState
from meshmsg.core.store import StoreItem
from meshmsg.core.tombstones import Tombstone

Delete = tuple[RecordKind, bytes]


class Holdings:
    """Admits and drops store items and purge tokens; advances message timelines."""

    __slots__ = ("_out", "_room_check", "_room_wanted", "_state")

    def __init__(self, state: NodeState, out: Outbox) -> None:
        self._state = state
        self._out = out
        # Contacts whose waiting messages found our outbox full, and when to try them again
        # (set when an item leaves the store; a timer, so sealing never nests in a drop; one
        # that a wall clock stepped back does not postpone, core/deadline.py).
        self._room_wanted: set[bytes] = set()
        self._room_check = Deadline()

    # ============================================================ store items

    def admit_item(self, item: StoreItem, now: float) -> bool:
        """Put an item into the store and the reconciliation set; report evictions."""
        state = self._state
        result = state.store.admit(item, now)
        for victim in result.evicted:
            # The store already removed the victims: drop_item would find nothing and skip
            # the reconciliation set, the stored record and the event.
            self._forget_item(victim, DropReason.EVICTED)
        if result.admission.value != "accepted":
            return False
        state.items.add(item.envelope_id, int(item.expiry_at))
        return True

    def load_body(
        self, envelope_id: bytes, *, to_open: bool = False, via: bytes | None = None,
        rewrite: bool = False,
    ) -> None:  # fmt: skip
        """Ask the driver for a carried item's body, which is on disk only (``LoadEnvelope``;
        one load per item at a time): for a transfer (``InFlight.loading``); ``to_open``, for
        an opening (``via``: the relay whose hand-over made it openable); ``rewrite``, to
        write its record again (its copies changed)."""
        wanted = self._state.body_loads.get(envelope_id)
        if wanted is None:
            wanted = self._state.body_loads[envelope_id] = BodyWanted()
            self._out.load_envelope(envelope_id)
        wanted.rewrite = wanted.rewrite or rewrite
        if to_open:
            wanted.to_open = True
            wanted.via = wanted.via or via

    def make_room(self, size: int) -> None:
        """ONE mode: a transfer of ``size`` bytes was announced; drop as the ONE does."""
        for victim in self._state.store.make_room(size):
            self._forget_item(victim, DropReason.EVICTED)

    def drop_item(self, envelope_id: bytes, reason: DropReason) -> None:
        deletes = self.release_item(envelope_id, reason)
        if deletes:
            self._out.persist([], deletes=deletes)

    def release_item(self, envelope_id: bytes, reason: DropReason) -> list[Delete]:
        """Drop an item everywhere but on disk: the delete of its record is returned, for the
        caller to put in the Persist of what the drop stands for (an opening), so that a crash
        between two commits cannot leave the record gone and the opening unwritten."""
        if self._state.store.remove(envelope_id) is None:
            return []
        return self._let_go(envelope_id, reason)

    def expire_items(self, now: float) -> None:
        """Drop the store items and purge tokens whose time is up."""
        state, out = self._state, self._out
        for env_id in state.store.expire(now):
            state.items.remove(env_id)
            out.persist([], deletes=[(RecordKind.ENVELOPE, env_id)])
            out.emit(EnvelopeDropped(envelope_id=env_id, reason=DropReason.EXPIRED))
            self.room_freed(now)
        for stone in state.tombstones.expire(now):
            state.uncommitted.discard(stone.item_id)
            if not stone.believed:
                continue  # never in the set nor on disk
            state.items.remove(stone.item_id)
            out.persist([], deletes=[(RecordKind.TOMBSTONE, stone.tag)])

    def _forget_item(self, envelope_id: bytes, reason: DropReason) -> None:
        """Everything but the store itself lets go of an item that left the store."""
        self._out.persist([], deletes=self._let_go(envelope_id, reason))

    def _let_go(self, envelope_id: bytes, reason: DropReason) -> list[Delete]:
        """As :meth:`_forget_item`, but the delete of its record is the caller's to persist."""
        self._state.items.remove(envelope_id)
        self._state.uncommitted.discard(envelope_id)
        self._out.emit(EnvelopeDropped(envelope_id=envelope_id, reason=reason))
        self.room_freed(self._out.now)
        return [(RecordKind.ENVELOPE, envelope_id)]

    # ============================================================ durability

    # Store items and purge tokens alike (their ids never collide: tombstones.tombstone_id):
    # an item whose Persist the driver has not confirmed is neither offered nor pushed, so a
    # crash before the commit cannot leave peers with what we never made durable (a purge
    # token sent early made carriers drop copies of mail whose opening was then lost).

    def offerable(self, item_id: bytes) -> bool:
        return item_id not in self._state.uncommitted

    def mark_uncommitted(self, item_id: bytes) -> None:
        self._state.uncommitted.add(item_id)

    def mark_committed(self, item_id: bytes) -> None:
        self._state.uncommitted.discard(item_id)

    # ========================================================== purge tokens

    def remember(self, stone: Tombstone) -> bool:
        """Keep a purge token; forget (items and records) those it pushes out of the bounded
        table, so the reconciliation set never names a token we can no longer send. False:
        the token itself was the one pushed out."""
        state = self._state
        # Only believed tokens are in the set and on disk (tombstones.judge).
        pushed_out = state.tombstones.add(stone)
        for old in pushed_out:
            state.uncommitted.discard(old.item_id)
        evicted = [old for old in pushed_out if old.believed]
        for old in evicted:
            state.items.remove(old.item_id)
        if evicted:
            self._out.persist([], deletes=[(RecordKind.TOMBSTONE, old.tag) for old in evicted])
        return state.tombstones.by_id(stone.item_id) is not None

    # ======================================================= message timelines

    def status_changed(self, message: StoredMessage, status: MessageStatus, now: float) -> None:
        if self._state.conversations.advance(message, status, now):
            self._out.persist([codec.message_record(message)])
            self._out.emit(
                MessageStatusChanged(
                    message_id=message.message_id, peer_id=message.peer_id, status=status, at=now
                )
            )

    # ================================================================= room

    def want_room(self, peer_id: bytes) -> None:
        """``peer_id``'s waiting messages found the outbox full: retry once room frees."""
        self._room_wanted.add(peer_id)

    def room_freed(self, now: float) -> None:
        """An item left the store: messages that found the outbox full may fit now."""
        if self._room_wanted:
            self._room_check.no_later_than(now, now)

    @property
    def room_check_at(self) -> float | None:
        return self._room_check.at

    def take_room_wanted(self, now: float) -> list[bytes]:
        """The contacts to retry, oldest check first, if the retry is due (else none)."""
        if not self._room_check.due(now):
            return []
        self._room_check.clear()
        waiting, self._room_wanted = sorted(self._room_wanted), set()
        return waiting
