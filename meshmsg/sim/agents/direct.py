"""The ONE's DirectDeliveryRouter as a simulated node (a reference agent, not the protocol).

``DirectNode`` behaves like the ONE's DirectDeliveryRouter, so the ONE-mode link model can be
calibrated on the reference trace without the real core: a node hands a message only to its
destination; the source keeps it after delivery (``deleteDelivered = false``); the TTL is checked
every 60 s (``ActiveRouter.TTL_CHECK_INTERVAL``) and a message goes once
``int((ttl_min * 60 - age) / 60) <= 0`` (``Message.getTtl``). On a new link both sides send a
hello naming themselves and the messages they already received, so nothing is sent twice.
Buffers are the ONE's: a message of ``size`` bytes occupies ``size`` bytes of
``buffer_bytes``, and a created or incoming message makes room by dropping the oldest received
messages that are not being sent (:func:`~meshmsg.sim.agents.common.make_room`). As in the ONE,
the destination makes that room when the transfer is announced, before it starts, even though
it keeps nothing it receives (``ActiveRouter.checkReceiving``), and a cut transfer does not
give the dropped messages back.

Frames: ``H<json>`` (hello, control), ``P<id> <size>`` (a transfer is coming: make room;
control; for a message over a text body it is an announcement that the ONE link model delivers
when the transfer can start, ``Transmit.one_bytes``), ``M<json><padding>`` (one message,
``size`` bytes) and ``K<id>`` (it arrived, so it is no longer being sent; control). Its
committed records (one per message carried, one tombstone per message received) rebuild it after
a crash, so it also serves crash/restart scenarios."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from meshmsg.core.effects import Effect, LinkId, Persist, RecordKind, StoredRecord, Transmit
from meshmsg.core.events import (
    DropReason,
    EnvelopeAccepted,
    EnvelopeDropped,
    Event,
    MessageQueued,
    MessageReceived,
)
from meshmsg.sim.agents.common import TTL_CHECK_INTERVAL_S, address_of, ident, make_room
from meshmsg.sim.host import NodeSetup, PrePairing, RecordKey, SimulatedNode
from meshmsg.sim.onesize import TEXT_BODY_BYTES
from meshmsg.sim.rng import SeededRng


@dataclass(slots=True, kw_only=True)
class _Msg:
    mid: str
    source: int
    dest: int
    created: float
    size: int


class DirectNode:
    """A direct-delivery agent with the ONE's TTL rules."""

    # Its frames are whole messages, not a byte stream: the engine hands each Transmit over in
    # one piece, where it reads a large one in socket-sized pieces for a real Node.
    frames_whole: ClassVar[bool] = True

    def __init__(
        self, setup: NodeSetup, now: float, records: Mapping[RecordKey, bytes] | None = None
    ) -> None:
        self.address = setup.address
        self.ttl_min = int(setup.ttl_s // 60)
        self.capacity = setup.buffer_bytes
        self.buffer: dict[str, _Msg] = {}
        self.sending: dict[LinkId, set[str]] = {}  # sent on the link, not yet acknowledged
        self.delivered: dict[str, float] = {}
        self.peers: dict[LinkId, int | None] = {}
        self.sent_on: dict[LinkId, set[str]] = {}
        self.last_check = now
        self._effects: deque[Effect] = deque()
        self._events: deque[Event] = deque()
        self._token = 0
        for (kind, key), value in sorted((records or {}).items()):
            if kind == RecordKind.TOMBSTONE:
                self.delivered[key.decode()] = float(value)
            elif kind == RecordKind.ENVELOPE:
                self.buffer[key.decode()] = _Msg(**json.loads(value))

    def _persist(self, puts: tuple[StoredRecord, ...], deletes: tuple[RecordKey, ...] = ()) -> None:
        self._token += 1
        self._effects.append(Persist(token=self._token, puts=puts, deletes=deletes))

    # inputs
    def peer_discovered(self, address: str, *, now: float) -> None:
        return None  # the simulator has no discovery: links come from the contact trace

    def link_opened(
        self, link: LinkId, *, initiator: bool, now: float, address: str | None = None
    ) -> None:
        self.peers[link] = None
        self.sent_on[link] = set()
        self.sending[link] = set()
        hello = {"from": self.address, "have": sorted(self.delivered)}
        self._effects.append(Transmit(link=link, data=b"H" + json.dumps(hello).encode()))

    def receive_data(self, link: LinkId, data: bytes, *, now: float) -> None:
        if data[:1] == b"H":
            hello = json.loads(data[1:])
            self.peers[link] = hello["from"]
            self.sent_on[link].update(hello["have"])
            self._offer(link)
            return
        if data[:1] == b"P":
            size = data[1:].decode().rpartition(" ")[2]
            self._make_room(int(size))
            return
        if data[:1] == b"K":
            self.sending.get(link, set()).discard(data[1:].decode())
            return
        header = json.loads(data[1 : data.index(b"}") + 1])
        msg = _Msg(**header)
        eid = msg.mid.encode()
        self._effects.append(Transmit(link=link, data=b"K" + eid))
        self._events.append(
            EnvelopeAccepted(envelope_id=eid, link=link, hops=1, copies=1, for_us=True)
        )
        if msg.mid not in self.delivered:
            self.delivered[msg.mid] = now
            self._persist((StoredRecord(kind=RecordKind.TOMBSTONE, key=eid, value=b"%r" % now),))
            self._events.append(
                MessageReceived(
                    message_id=eid,
                    peer_id=ident(msg.source),
                    sent_at=msg.created,
                    received_at=now,
                    body="",
                    hops=1,
                )
            )

    def link_lost(self, link: LinkId, *, now: float) -> None:
        self.peers.pop(link, None)
        self.sent_on.pop(link, None)
        self.sending.pop(link, None)

    def handle_timer(self, *, now: float) -> None:
        if now < self.last_check + TTL_CHECK_INTERVAL_S:  # the deadline we asked for
            return
        self.last_check = now
        for mid in list(self.buffer):
            msg = self.buffer[mid]
            if int((self.ttl_min * 60 - (now - msg.created)) / 60.0) <= 0:
                del self.buffer[mid]
                self._persist((), ((RecordKind.ENVELOPE, mid.encode()),))
                self._events.append(
                    EnvelopeDropped(envelope_id=mid.encode(), reason=DropReason.EXPIRED)
                )

    def storage_committed(self, token: int, *, now: float) -> None:
        pass

    def send_message(
        self, peer_id: bytes, body: str, *, now: float, ttl_s: float | None = None,
        one_size: int = 0,
    ) -> bytes:  # fmt: skip
        mid, _, _ = body.partition(":")
        dest = address_of(peer_id)
        msg = _Msg(mid=mid, source=self.address, dest=dest, created=now, size=one_size or len(body))
        self._make_room(msg.size)  # the ONE adds a created message even when it did not fit
        self.buffer[mid] = msg
        value = json.dumps(
            {"mid": mid, "source": msg.source, "dest": dest, "created": now, "size": msg.size}
        ).encode()
        self._persist((StoredRecord(kind=RecordKind.ENVELOPE, key=mid.encode(), value=value),))
        self._events.append(
            MessageQueued(message_id=mid.encode(), peer_id=peer_id, envelope_id=mid.encode())
        )
        for link in list(self.peers):
            self._offer(link)
        return mid.encode()

    def _offer(self, link: LinkId) -> None:
        peer = self.peers.get(link)
        if peer is None:
            return
        sent = self.sent_on[link]
        for msg in self.buffer.values():
            if msg.dest == peer and msg.mid not in sent:
                sent.add(msg.mid)
                self.sending[link].add(msg.mid)
                announce = f"P{msg.mid} {msg.size}".encode()
                declared = msg.size if msg.size > TEXT_BODY_BYTES else 0  # held to its start
                self._effects.append(Transmit(link=link, data=announce, one_bytes=declared))
                header = json.dumps(
                    {
                        "mid": msg.mid,
                        "source": msg.source,
                        "dest": msg.dest,
                        "created": msg.created,
                        "size": msg.size,
                    }
                ).encode()
                data = b"M" + header + b"\0" * max(0, msg.size - len(header) - 1)
                self._effects.append(Transmit(link=link, data=data, envelopes=1))

    def _make_room(self, size: int) -> None:
        """Drop the oldest messages not being sent until ``size`` bytes fit (the ONE's rule)."""
        if sum(m.size for m in self.buffer.values()) + size <= self.capacity:
            return  # a direct agent holds only its own few messages: summing them is cheap
        held = {mid: (m.created, m.size) for mid, m in self.buffer.items()}  # only its own
        busy = set().union(*self.sending.values())
        victims, _ = make_room(held, size, self.capacity, busy)
        for mid in victims:
            del self.buffer[mid]
            self._persist((), ((RecordKind.ENVELOPE, mid.encode()),))
            self._events.append(
                EnvelopeDropped(envelope_id=mid.encode(), reason=DropReason.EVICTED)
            )

    # outputs
    def next_effect(self) -> Effect | None:
        return self._effects.popleft() if self._effects else None

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def next_deadline(self) -> float | None:
        return self.last_check + TTL_CHECK_INTERVAL_S if self.buffer else None


class DirectFactory:
    """NodeFactory for :class:`DirectNode` (``agent = "meshmsg.sim.agents:DirectFactory"``)."""

    def prepare(self, setups: Sequence[NodeSetup], *, seed: int, pre_pair: PrePairing) -> None:
        self.count = len(setups)

    def identity(self, address: int) -> bytes:
        return ident(address)

    def build(
        self, setup: NodeSetup, *, rng: SeededRng, now: float, records: Mapping[RecordKey, bytes]
    ) -> SimulatedNode:
        return DirectNode(setup, now, records)
