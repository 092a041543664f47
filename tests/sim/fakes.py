"""Test agents for the simulator: tiny nodes that speak the driver interface, not the protocol.

``DirectNode`` behaves like the ONE's DirectDeliveryRouter so the ONE-mode link model can be
calibrated on the reference trace without the real core: a node hands a message only to its
destination; the source keeps it after delivery (``deleteDelivered = false``); the TTL is checked
every 60 s (``ActiveRouter.TTL_CHECK_INTERVAL``) and a message goes once
``int((ttl_min * 60 - age) / 60) <= 0`` (``Message.getTtl``). On a new link both sides send a
hello naming themselves and the messages they already received, so nothing is sent twice.

Frames: ``H<json>`` (hello, control) and ``M<json><padding>`` (one message, ``size`` bytes).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from meshmsg.core.effects import Effect, LinkId, Persist, RecordKind, StoredRecord, Transmit
from meshmsg.core.events import (
    DropReason,
    EnvelopeAccepted,
    EnvelopeDropped,
    Event,
    MessageQueued,
    MessageReceived,
)
from meshmsg.sim.host import NodeSetup, PrePairing, RecordKey, SimulatedNode
from meshmsg.sim.rng import SeededRng

TTL_CHECK_INTERVAL_S = 60.0


def ident(address: int) -> bytes:
    return b"n" + address.to_bytes(4, "big")


@dataclass(slots=True, kw_only=True)
class _Msg:
    mid: str
    source: int
    dest: int
    created: float
    size: int


class DirectNode:
    """A direct-delivery agent with the ONE's TTL rules."""

    def __init__(
        self, setup: NodeSetup, now: float, records: Mapping[RecordKey, bytes] | None = None
    ) -> None:
        self.address = setup.address
        self.ttl_min = int(setup.ttl_s // 60)
        self.buffer: dict[str, _Msg] = {}
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
    def link_opened(self, link: LinkId, *, initiator: bool, now: float) -> None:
        self.peers[link] = None
        self.sent_on[link] = set()
        hello = {"from": self.address, "have": sorted(self.delivered)}
        self._effects.append(Transmit(link=link, data=b"H" + json.dumps(hello).encode()))

    def receive_data(self, link: LinkId, data: bytes, *, now: float) -> None:
        if data[:1] == b"H":
            hello = json.loads(data[1:])
            self.peers[link] = hello["from"]
            self.sent_on[link].update(hello["have"])
            self._offer(link)
            return
        header = json.loads(data[1 : data.index(b"}") + 1])
        msg = _Msg(**header)
        eid = msg.mid.encode()
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
        self, peer_id: bytes, body: str, *, now: float, ttl_s: float | None = None
    ) -> bytes:
        mid, _, _ = body.partition(":")
        dest = int.from_bytes(peer_id[1:], "big")
        msg = _Msg(mid=mid, source=self.address, dest=dest, created=now, size=len(body))
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

    # outputs
    def next_effect(self) -> Effect | None:
        return self._effects.popleft() if self._effects else None

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def next_deadline(self) -> float | None:
        return self.last_check + TTL_CHECK_INTERVAL_S if self.buffer else None


class DirectFactory:
    """NodeFactory for :class:`DirectNode` (``agent = "tests.sim.fakes:DirectFactory"``)."""

    def prepare(self, setups: Sequence[NodeSetup], *, seed: int, pre_pair: PrePairing) -> None:
        self.count = len(setups)

    def identity(self, address: int) -> bytes:
        return ident(address)

    def build(
        self, setup: NodeSetup, *, rng: SeededRng, now: float, records: Mapping[RecordKey, bytes]
    ) -> SimulatedNode:
        return DirectNode(setup, now, records)


@dataclass(frozen=True, slots=True, kw_only=True)
class Send:
    """A frame a :class:`ScriptNode` sends when a link opens (to the peer with this address)."""

    to: int
    data: bytes
    envelopes: int = 1


class ScriptNode:
    """Records every input with its time; sends scripted frames when a link opens.

    The peer of a link is learnt from a 1-byte-address hello (control frame) each side sends
    first, so scripts can address peers by number.
    """

    def __init__(self, address: int, script: Sequence[Send], now: float) -> None:
        self.address = address
        self.script = list(script)
        self.log: list[tuple[float, str, int, bytes]] = [(now, "boot", -1, b"")]
        self.links: dict[LinkId, int | None] = {}
        self.deadline: float | None = None
        self.timer_calls: list[float] = []
        self.committed: list[int] = []
        self._effects: deque[Effect] = deque()
        self._events: deque[Event] = deque()

    def link_opened(self, link: LinkId, *, initiator: bool, now: float) -> None:
        self.log.append((now, "open", link, b""))
        self.links[link] = None
        self._effects.append(Transmit(link=link, data=b"h" + bytes([self.address])))

    def receive_data(self, link: LinkId, data: bytes, *, now: float) -> None:
        self.log.append((now, "rx", link, data))
        if data[:1] == b"h":
            peer = data[1]
            self.links[link] = peer
            for send in self.script:
                if send.to == peer:
                    self._effects.append(
                        Transmit(link=link, data=send.data, envelopes=send.envelopes)
                    )

    def link_lost(self, link: LinkId, *, now: float) -> None:
        self.log.append((now, "lost", link, b""))
        self.links.pop(link, None)

    def handle_timer(self, *, now: float) -> None:
        self.timer_calls.append(now)
        self.deadline = None

    def storage_committed(self, token: int, *, now: float) -> None:
        self.committed.append(token)

    def send_message(
        self, peer_id: bytes, body: str, *, now: float, ttl_s: float | None = None
    ) -> bytes:
        return body.encode()

    def push_effect(self, effect: Effect) -> None:
        self._effects.append(effect)

    def push_event(self, event: Event) -> None:
        self._events.append(event)

    def next_effect(self) -> Effect | None:
        return self._effects.popleft() if self._effects else None

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def next_deadline(self) -> float | None:
        return self.deadline

    def received(self) -> list[tuple[float, bytes]]:
        """Data frames received (hellos left out), with their times."""
        return [(t, d) for t, kind, _, d in self.log if kind == "rx" and d[:1] != b"h"]


class ScriptFactory:
    """Builds :class:`ScriptNode` s from per-address scripts; keeps every node it built."""

    def __init__(self, scripts: Mapping[int, Sequence[Send]] | None = None) -> None:
        self.scripts = dict(scripts or {})
        self.built: dict[int, list[ScriptNode]] = {}
        self.records_seen: list[Mapping[RecordKey, bytes]] = []

    def prepare(self, setups: Sequence[NodeSetup], *, seed: int, pre_pair: PrePairing) -> None:
        self.pre_pair = pre_pair

    def identity(self, address: int) -> bytes:
        return ident(address)

    def build(
        self, setup: NodeSetup, *, rng: SeededRng, now: float, records: Mapping[RecordKey, bytes]
    ) -> SimulatedNode:
        node = ScriptNode(setup.address, self.scripts.get(setup.address, ()), now)
        self.built.setdefault(setup.address, []).append(node)
        self.records_seen.append(records)
        return node

    def node(self, address: int) -> ScriptNode:
        return self.built[address][-1]


class RelayNode:
    """Epidemic or binary Spray-and-Wait with the ONE's router rules, for ONE-mode validation.

    On a new link both sides send a hello listing what they hold or received (Vahdat and
    Becker's summary vector). Then a small offer/reply handshake stands in for the ONE's
    ``startTransfer`` check
    (a destination refuses what it already received; a node refuses what it holds or is
    receiving): ``O<id>`` offer, ``Y<id>``/``N<id>`` reply (control frames), then the envelope
    ``M<json>`` (one envelope, ``size`` bytes), then ``K<id>`` ack. One offer is outstanding per
    link. Mail for the peer goes first, then (Epidemic) every other message or (Spray-and-Wait)
    those with more than one copy. Binary spraying hands ``floor(n/2)`` copies and keeps
    ``ceil(n/2)``, as in Spyropoulos et al. and in the ONE's ``SprayAndWaitRouter`` since 2017
    (the 1.6.0 release of 2015 did the reverse; the reference run has the later rule, see
    docs/simulator.md, "Hop counts"); every completed transfer, delivery included, leaves the
    sender ``ceil(n/2)``. Carriers keep delivered messages (``deleteDelivered = false``); TTL as
    in :class:`DirectNode`; buffers are not bounded (1-2 kB messages never fill 5 MB).
    """

    def __init__(self, setup: NodeSetup, now: float, policy: str, copies: int) -> None:
        self.address = setup.address
        self.policy = policy
        self.initial_copies = copies
        self.ttl_min = int(setup.ttl_s // 60)
        self.buffer: dict[str, dict[str, object]] = {}
        self.delivered: set[str] = set()
        self.incoming: dict[str, LinkId] = {}  # accepted offers not yet arrived
        self.peer: dict[LinkId, int] = {}
        self.peer_has: dict[LinkId, set[str]] = {}
        self.outstanding: dict[LinkId, str | None] = {}
        self.last_check = now
        self._effects: deque[Effect] = deque()
        self._events: deque[Event] = deque()

    def link_opened(self, link: LinkId, *, initiator: bool, now: float) -> None:
        self.peer_has[link] = set()
        self.outstanding[link] = None
        have = sorted([*self.buffer, *self.delivered])  # a summary vector, as Epidemic's
        hello = json.dumps({"from": self.address, "have": have}).encode()
        self._effects.append(Transmit(link=link, data=b"H" + hello))

    def receive_data(self, link: LinkId, data: bytes, *, now: float) -> None:
        kind, rest = data[:1], data[1:]
        if kind == b"H":
            hello = json.loads(rest)
            self.peer[link] = hello["from"]
            self.peer_has[link].update(hello["have"])
            self._pump(link, now)
        elif kind == b"O":
            mid = rest.decode()
            ok = mid not in self.buffer and mid not in self.delivered and mid not in self.incoming
            if ok:
                self.incoming[mid] = link
            self._effects.append(Transmit(link=link, data=(b"Y" if ok else b"N") + rest))
        elif kind in (b"Y", b"N"):
            self._reply(link, rest.decode(), accepted=kind == b"Y", now=now)
        elif kind == b"M":
            self._arrived(link, json.loads(rest[: rest.index(b"}") + 1]), now)
        elif kind == b"K":
            self._acked(link, rest.decode(), now)

    def _reply(self, link: LinkId, mid: str, *, accepted: bool, now: float) -> None:
        msg = self.buffer.get(mid)
        if not accepted or msg is None:
            self.peer_has[link].add(mid)
            self.outstanding[link] = None
            self._pump(link, now)
            return
        copies = int(str(msg["copies"]))
        header = json.dumps({**msg, "copies": copies // 2 if self.binary else copies})
        size = int(str(msg["size"]))
        data = b"M" + header.encode()
        self._effects.append(Transmit(link=link, data=data + b"\0" * max(0, size - len(data)),
                                      envelopes=1))  # fmt: skip

    @property
    def binary(self) -> bool:
        return self.policy == "spray-and-wait"

    def _arrived(self, link: LinkId, msg: dict[str, object], now: float) -> None:
        mid = str(msg["mid"])
        self.incoming.pop(mid, None)
        self._effects.append(Transmit(link=link, data=b"K" + mid.encode()))
        hops = int(str(msg["hops"])) + 1
        for_us = msg["dest"] == self.address
        copies = int(str(msg["copies"]))
        accepted = EnvelopeAccepted(
            envelope_id=mid.encode(), link=link, hops=hops, copies=copies, for_us=for_us
        )
        self._events.append(accepted)
        if for_us:
            self.delivered.add(mid)
            self._events.append(MessageReceived(message_id=mid.encode(), peer_id=ident(0),
                                                sent_at=float(str(msg["created"])),
                                                received_at=now, body="", hops=hops))  # fmt: skip
            return
        self.buffer[mid] = {**msg, "hops": hops, "received": now}
        self._pump_all(now)

    def _acked(self, link: LinkId, mid: str, now: float) -> None:
        self.peer_has[link].add(mid)
        self.outstanding[link] = None
        msg = self.buffer.get(mid)
        if msg is not None and self.binary:
            msg["copies"] = (int(str(msg["copies"])) + 1) // 2
        self._pump(link, now)

    def _pump_all(self, now: float) -> None:
        for link in list(self.peer):
            self._pump(link, now)

    def _pump(self, link: LinkId, now: float) -> None:
        if link not in self.peer or self.outstanding.get(link) is not None:
            return
        peer, has = self.peer[link], self.peer_has[link]
        mine = [m for m in self.buffer.values() if str(m["mid"]) not in has]
        first = [m for m in mine if m["dest"] == peer]
        if self.policy == "epidemic":
            first += [m for m in mine if m["dest"] != peer]
        elif self.binary:
            first += [m for m in mine if m["dest"] != peer and int(str(m["copies"])) > 1]
        if first:
            mid = str(first[0]["mid"])
            self.outstanding[link] = mid
            self._effects.append(Transmit(link=link, data=b"O" + mid.encode()))

    def link_lost(self, link: LinkId, *, now: float) -> None:
        self.peer.pop(link, None)
        self.peer_has.pop(link, None)
        self.outstanding.pop(link, None)
        for mid in [m for m, lk in self.incoming.items() if lk == link]:
            del self.incoming[mid]  # the transfer was cut: it may be offered again

    def handle_timer(self, *, now: float) -> None:
        if now < self.last_check + TTL_CHECK_INTERVAL_S:
            return
        self.last_check = now
        for mid in list(self.buffer):
            age = now - float(str(self.buffer[mid]["created"]))
            if int((self.ttl_min * 60 - age) / 60.0) <= 0:
                del self.buffer[mid]
                self._events.append(
                    EnvelopeDropped(envelope_id=mid.encode(), reason=DropReason.EXPIRED)
                )

    def storage_committed(self, token: int, *, now: float) -> None:
        pass

    def send_message(
        self, peer_id: bytes, body: str, *, now: float, ttl_s: float | None = None
    ) -> bytes:
        mid = body.partition(":")[0]
        dest = int.from_bytes(peer_id[1:], "big")
        copies = self.initial_copies if self.binary else 1
        self.buffer[mid] = {
            "mid": mid, "source": self.address, "dest": dest, "created": now,
            "size": len(body), "copies": copies, "hops": 0, "received": now,
        }  # fmt: skip
        self._events.append(
            MessageQueued(message_id=mid.encode(), peer_id=peer_id, envelope_id=mid.encode())
        )
        self._pump_all(now)
        return mid.encode()

    def next_effect(self) -> Effect | None:
        return self._effects.popleft() if self._effects else None

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def next_deadline(self) -> float | None:
        return self.last_check + TTL_CHECK_INTERVAL_S if self.buffer else None


class RelayFactory:
    """NodeFactory for :class:`RelayNode`; the policy comes from the scenario's ``[routing]``."""

    def prepare(self, setups: Sequence[NodeSetup], *, seed: int, pre_pair: PrePairing) -> None:
        pass

    def identity(self, address: int) -> bytes:
        return ident(address)

    def build(
        self, setup: NodeSetup, *, rng: SeededRng, now: float, records: Mapping[RecordKey, bytes]
    ) -> SimulatedNode:
        policy = str(setup.routing.get("policy", "epidemic"))
        copies = int(str(setup.routing.get("copies", 6)))
        return RelayNode(setup, now, policy, copies)
