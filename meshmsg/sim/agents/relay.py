"""Epidemic and binary Spray-and-Wait with the ONE's router rules (reference agents).

See :class:`RelayNode`. They check the engine and the ONE-mode link model against the ONE's own
figures on the reference trace, without the protocol core (docs/simulator.md, "Validation of
ONE mode with reference agents").
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping, Sequence
from typing import ClassVar

from meshmsg.core.effects import Effect, LinkId, Transmit
from meshmsg.core.events import (
    DropReason,
    EnvelopeAccepted,
    EnvelopeDropped,
    Event,
    MessageQueued,
    MessageReceived,
)
from meshmsg.errors import ConfigError
from meshmsg.sim.agents.common import TTL_CHECK_INTERVAL_S, address_of, ident, make_room
from meshmsg.sim.host import NodeSetup, PrePairing, RecordKey, SimulatedNode
from meshmsg.sim.onesize import TEXT_BODY_BYTES
from meshmsg.sim.rng import SeededRng

RELAY_POLICIES = ("epidemic", "spray-and-wait", "direct")
"""Policies :class:`RelayFactory` serves; with ``direct`` a node offers only mail for the peer
(:class:`~meshmsg.sim.agents.DirectFactory` is the calibrated direct agent, crash-safe too)."""


class RelayNode:
    """Epidemic or binary Spray-and-Wait with the ONE's router rules, for ONE-mode validation.

    On a new link both sides send a hello listing what they hold or received (Vahdat and
    Becker's summary vector). Then a small offer/reply handshake stands in for the ONE's
    ``startTransfer`` check (a destination refuses what it already received; a node refuses what
    it holds or is receiving, and makes room for it as the ONE's ``checkReceiving`` does):
    ``O<id> <size>`` offer, ``Y<id>``/``N<id>`` reply (control frames), then the envelope
    ``M<json>`` (one envelope, ``size`` bytes), then ``K<id>`` ack; a message larger than a text
    body is announced by ``A<id> <size>``, which the ONE link model delivers when its transfer
    can start, and the receiver makes room then rather than at the offer; ``X<id>`` withdraws an
    accepted offer whose message the sender dropped meanwhile. One offer is outstanding per
    link. Mail for the peer goes first, then (Epidemic) every other message or (Spray-and-Wait)
    those with more than one copy. Binary spraying hands ``floor(n/2)`` copies and keeps
    ``ceil(n/2)``, as in Spyropoulos et al. and in the ONE's ``SprayAndWaitRouter`` since 2017
    (the 1.6.0 release of 2015 did the reverse; the reference run has the later rule, see
    docs/simulator.md, "Hop counts"); every completed transfer, delivery included, leaves the
    sender ``ceil(n/2)``. Carriers keep delivered messages (``deleteDelivered = false``); TTL as
    in :class:`DirectNode`. Buffers are the ONE's: ``size`` bytes per message in
    ``buffer_bytes``; a created message, and an accepted offer (before its transfer starts, even
    if it is then cut, and also at the destination, which keeps nothing), drop the oldest
    received messages not being sent until it fits
    (:func:`~meshmsg.sim.agents.common.make_room`); an offer that cannot fit is refused. 1-2 kB
    messages never fill 5 MB, so on the reference trace nothing is dropped for room."""

    # Its frames are whole messages, not a byte stream: the engine hands each Transmit over in
    # one piece, where it reads a large one in socket-sized pieces for a real Node.
    frames_whole: ClassVar[bool] = True

    def __init__(self, setup: NodeSetup, now: float, policy: str, copies: int) -> None:
        self.address = setup.address
        self.policy = policy
        self.initial_copies = copies
        self.ttl_min = int(setup.ttl_s // 60)
        self.capacity = setup.buffer_bytes
        self.used = 0  # bytes of the messages in ``buffer``
        self.sending: dict[LinkId, str] = {}  # envelope sent on the link, not yet acknowledged
        self.buffer: dict[str, dict[str, object]] = {}
        self.delivered: set[str] = set()
        self.incoming: dict[str, LinkId] = {}  # accepted offers not yet arrived
        self.peer: dict[LinkId, int] = {}
        self.peer_has: dict[LinkId, set[str]] = {}
        self.outstanding: dict[LinkId, str | None] = {}
        self.last_check = now
        self._effects: deque[Effect] = deque()
        self._events: deque[Event] = deque()

    def peer_discovered(self, address: str, *, now: float) -> None:
        return None  # the simulator has no discovery: links come from the contact trace

    def link_opened(
        self, link: LinkId, *, initiator: bool, now: float, address: str | None = None
    ) -> None:
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
            mid, _, size = rest.decode().partition(" ")
            ok = mid not in self.buffer and mid not in self.delivered and mid not in self.incoming
            if int(size) <= TEXT_BODY_BYTES:  # a larger one makes room when announced (A)
                ok = ok and self._make_room(int(size))  # the ONE's DENIED_NO_SPACE otherwise
            if ok:
                self.incoming[mid] = link
            self._effects.append(Transmit(link=link, data=(b"Y" if ok else b"N") + mid.encode()))
        elif kind == b"A":
            self._make_room(int(rest.decode().rpartition(" ")[2]))
        elif kind == b"X":
            self.incoming.pop(rest.decode(), None)
        elif kind in (b"Y", b"N"):
            self._reply(link, rest.decode(), accepted=kind == b"Y", now=now)
        elif kind == b"M":
            self._arrived(link, json.loads(rest[: rest.index(b"}") + 1]), now)
        elif kind == b"K":
            self._acked(link, rest.decode(), now)

    def _reply(self, link: LinkId, mid: str, *, accepted: bool, now: float) -> None:
        msg = self.buffer.get(mid)
        if accepted and msg is None:  # dropped for room since it was offered
            self._effects.append(Transmit(link=link, data=b"X" + mid.encode()))
        if not accepted or msg is None:
            self.peer_has[link].add(mid)
            self.outstanding[link] = None
            self._pump(link, now)
            return
        copies = int(str(msg["copies"]))
        header = json.dumps({**msg, "copies": copies // 2 if self.binary else copies})
        size = int(str(msg["size"]))
        self.sending[link] = mid
        if size > TEXT_BODY_BYTES:  # announced when the transfer can start: make room then
            announce = f"A{mid} {size}".encode()
            self._effects.append(Transmit(link=link, data=announce, one_bytes=size))
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
        self._make_room(int(str(msg["size"])))  # made at the offer; only a created one may fill it
        self.buffer[mid] = {**msg, "hops": hops, "received": now}
        self.used += int(str(msg["size"]))
        self._pump_all(now)

    def _acked(self, link: LinkId, mid: str, now: float) -> None:
        self.peer_has[link].add(mid)
        self.outstanding[link] = None
        self.sending.pop(link, None)
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
            offer = f"O{mid} {first[0]['size']}".encode()
            self._effects.append(Transmit(link=link, data=offer))

    def link_lost(self, link: LinkId, *, now: float) -> None:
        self.peer.pop(link, None)
        self.peer_has.pop(link, None)
        self.outstanding.pop(link, None)
        self.sending.pop(link, None)
        for mid in [m for m, lk in self.incoming.items() if lk == link]:
            del self.incoming[mid]  # the transfer was cut: it may be offered again

    def handle_timer(self, *, now: float) -> None:
        if now < self.last_check + TTL_CHECK_INTERVAL_S:
            return
        self.last_check = now
        for mid in list(self.buffer):
            age = now - float(str(self.buffer[mid]["created"]))
            if int((self.ttl_min * 60 - age) / 60.0) <= 0:
                self.used -= int(str(self.buffer.pop(mid)["size"]))
                self._events.append(
                    EnvelopeDropped(envelope_id=mid.encode(), reason=DropReason.EXPIRED)
                )

    def storage_committed(self, token: int, *, now: float) -> None:
        pass

    def send_message(
        self, peer_id: bytes, body: str, *, now: float, ttl_s: float | None = None,
        one_size: int = 0,
    ) -> bytes:  # fmt: skip
        mid = body.partition(":")[0]
        dest = address_of(peer_id)
        copies = self.initial_copies if self.binary else 1
        size = one_size or len(body)
        self._make_room(size)  # the ONE adds a created message even when it did not fit
        self.buffer[mid] = {
            "mid": mid, "source": self.address, "dest": dest, "created": now,
            "size": size, "copies": copies, "hops": 0, "received": now,
        }  # fmt: skip
        self.used += size
        self._events.append(
            MessageQueued(message_id=mid.encode(), peer_id=peer_id, envelope_id=mid.encode())
        )
        self._pump_all(now)
        return mid.encode()

    def _make_room(self, size: int) -> bool:
        """Drop the oldest messages not being sent until ``size`` bytes fit; whether they do."""
        if self.used + size <= self.capacity:
            return True  # always so with small messages: the reference trace never gets here
        held = {mid: (float(str(m["received"])), int(str(m["size"])))
                for mid, m in self.buffer.items()}  # fmt: skip
        victims, fits = make_room(held, size, self.capacity, set(self.sending.values()))
        for mid in victims:
            self.used -= int(str(self.buffer.pop(mid)["size"]))
            self._events.append(
                EnvelopeDropped(envelope_id=mid.encode(), reason=DropReason.EVICTED)
            )
        return fits

    def next_effect(self) -> Effect | None:
        return self._effects.popleft() if self._effects else None

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def next_deadline(self) -> float | None:
        return self.last_check + TTL_CHECK_INTERVAL_S if self.buffer else None


class RelayFactory:
    """NodeFactory for :class:`RelayNode`; the policy comes from the scenario's ``[routing]``."""

    def prepare(self, setups: Sequence[NodeSetup], *, seed: int, pre_pair: PrePairing) -> None:
        """Refuse a policy these rules do not cover, before any node runs.

        Raises:
            ConfigError: ``routing.policy`` is not epidemic, spray-and-wait or direct.
        """
        for setup in setups[:1]:
            policy = str(setup.routing.get("policy", "epidemic"))
            if policy not in RELAY_POLICIES:
                raise ConfigError(
                    f"RelayFactory follows the ONE's rules for {', '.join(RELAY_POLICIES)}; "
                    f'routing.policy = {policy!r} needs the core (agent = "core")'
                )

    def identity(self, address: int) -> bytes:
        return ident(address)

    def build(
        self, setup: NodeSetup, *, rng: SeededRng, now: float, records: Mapping[RecordKey, bytes]
    ) -> SimulatedNode:
        policy = str(setup.routing.get("policy", "epidemic"))
        copies = int(str(setup.routing.get("copies", 6)))
        return RelayNode(setup, now, policy, copies)
