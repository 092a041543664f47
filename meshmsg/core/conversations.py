"""Conversations: every message sent or received, with the timeline of each sent one.

A sent message moves forward only: QUEUED -> RELAYED -> DELIVERED -> READ, or QUEUED/RELAYED ->
EXPIRED when its envelope's TTL passes with no delivered receipt. Messages to a contact that is
not paired yet wait *unsealed* (``sealed`` is False) until the first direct meeting.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from meshmsg.core.events import MessageStatus

_ORDER = {
    MessageStatus.QUEUED: 0,
    MessageStatus.RELAYED: 1,
    MessageStatus.DELIVERED: 2,
    MessageStatus.READ: 3,
}


@dataclass(slots=True, kw_only=True)
class StoredMessage:
    message_id: bytes
    peer_id: bytes
    outgoing: bool
    body: str
    sent_at: float
    received_at: float | None = None
    expiry_at: float = 0.0
    status: MessageStatus = MessageStatus.QUEUED
    timeline: list[tuple[MessageStatus, float]] = field(default_factory=list)
    envelope_id: bytes | None = None
    sealed: bool = True
    hops: int = 0
    epoch: int | None = None  # the key epoch it was sealed in (re-sealed if the peer lacks it)


class Conversations:
    """All messages, by id, by peer, and own ones by envelope id."""

    def __init__(self) -> None:
        self._by_id: dict[bytes, StoredMessage] = {}
        self._by_peer: dict[bytes, list[bytes]] = {}
        self._by_envelope: dict[bytes, bytes] = {}
        self._expiries: list[tuple[float, bytes]] = []
        # Outer tags of own envelopes sealed again (exchange/keys.py ``_unseal``) -> message id.
        # The recipient may open the earlier copy first (a relay still carried it): its purge
        # token then names this tag, and still marks the message delivered. In memory only:
        # after a restart the delivered receipt alone does it, as before this table.
        self._superseded: dict[bytes, bytes] = {}
        self._superseded_of: dict[bytes, list[bytes]] = {}  # message id -> its earlier tags

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, message_id: bytes) -> StoredMessage | None:
        return self._by_id.get(message_id)

    def by_envelope(self, envelope_id: bytes) -> StoredMessage | None:
        message_id = self._by_envelope.get(envelope_id)
        return None if message_id is None else self._by_id.get(message_id)

    def with_peer(self, peer_id: bytes) -> list[StoredMessage]:
        """The conversation with one peer, oldest first."""
        found = (self._by_id[m] for m in self._by_peer.get(peer_id, []))
        return sorted(found, key=lambda m: m.sent_at)  # stable: ties keep arrival order

    def peers(self) -> list[bytes]:
        return list(self._by_peer)

    def unsealed_for(self, peer_id: bytes) -> list[StoredMessage]:
        """Own mail waiting to be sealed: not a message delivered meanwhile (an earlier
        sealing's token can arrive while it waits to be sealed again: exchange/purges.py)."""
        return [m for m in self.with_peer(peer_id)
                if m.outgoing and not m.sealed and m.status < MessageStatus.DELIVERED]  # fmt: skip

    def add(self, message: StoredMessage) -> None:
        if message.message_id not in self._by_id:
            self._by_peer.setdefault(message.peer_id, []).append(message.message_id)
        self._by_id[message.message_id] = message
        if not message.timeline:
            message.timeline.append((message.status, message.received_at or message.sent_at))
        unsealed = message.outgoing and message.envelope_id is None
        if unsealed and message.status < MessageStatus.DELIVERED:
            # Never sealed (the contact never paired): its TTL runs out all the same.
            heapq.heappush(self._expiries, (message.expiry_at, message.message_id))
        self.index_envelope(message)

    def index_envelope(self, message: StoredMessage) -> None:
        if message.outgoing and message.envelope_id is not None:
            self._by_envelope[message.envelope_id] = message.message_id
            if message.status < MessageStatus.DELIVERED:
                heapq.heappush(self._expiries, (message.expiry_at, message.message_id))

    def remove_peer(self, peer_id: bytes) -> None:
        for message_id in self._by_peer.pop(peer_id, []):
            message = self._by_id.pop(message_id)
            if message.envelope_id is not None:
                self._by_envelope.pop(message.envelope_id, None)
            self._forget_superseded(message_id)

    def supersede(self, message: StoredMessage, tag: bytes, *, keep: int) -> None:
        """``message``'s envelope of outer tag ``tag`` is replaced by a new sealing; remember
        the newest ``keep`` such tags per message (older ones lie in epochs the peer let go)."""
        tags = self._superseded_of.setdefault(message.message_id, [])
        tags.append(tag)
        self._superseded[tag] = message.message_id
        while len(tags) > keep:
            self._superseded.pop(tags.pop(0), None)

    def by_superseded_tag(self, tag: bytes) -> StoredMessage | None:
        message_id = self._superseded.get(tag)
        return None if message_id is None else self._by_id.get(message_id)

    def _forget_superseded(self, message_id: bytes) -> None:
        for tag in self._superseded_of.pop(message_id, ()):
            self._superseded.pop(tag, None)

    def advance(self, message: StoredMessage, status: MessageStatus, now: float) -> bool:
        """Move a sent message's timeline forward; False if that would go backwards."""
        if message.status is MessageStatus.EXPIRED and status is not MessageStatus.DELIVERED:
            return False
        if status is MessageStatus.EXPIRED:
            if message.status >= MessageStatus.DELIVERED:
                return False
        elif message.status is not MessageStatus.EXPIRED and (
            _ORDER[status] <= _ORDER[message.status]
        ):
            return False
        message.status = status
        message.timeline.append((status, now))
        if status >= MessageStatus.DELIVERED:  # EXPIRED too: no token of it is awaited
            self._forget_superseded(message.message_id)
        return True

    def due_expiries(self, now: float) -> list[StoredMessage]:
        """Sent messages whose TTL passed with no delivered receipt."""
        due: list[StoredMessage] = []
        while self._expiries and self._expiries[0][0] <= now:
            _, message_id = heapq.heappop(self._expiries)
            message = self._by_id.get(message_id)
            if message is not None and message.status < MessageStatus.DELIVERED:
                due.append(message)
        return due

    def next_expiry(self) -> float | None:
        while self._expiries:
            at, message_id = self._expiries[0]
            message = self._by_id.get(message_id)
            if message is not None and message.status < MessageStatus.DELIVERED:
                return at
            heapq.heappop(self._expiries)
        return None
