"""Epidemic and binary Spray-and-Wait with the ONE's router rules (reference agents).

See :class:`RelayNode`. They check the engine and the ONE-mode link model against the ONE's own
figures on the reference trace, without the protocol core (docs/simulator.md, "Validation of
ONE mode with reference agents").
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping, Sequence
from typing import ClassVar, TypeVar

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

T = TypeVar("T")

FINISHING_S = 0.05
"""How long a receiver refuses all but its sender after a transfer: less than a 0.1 s step,
more than the microseconds the sender's ack and next offer take."""

RELAY_POLICIES = ("epidemic", "spray-and-wait", "direct")
"""Policies :class:`RelayFactory` serves; with ``direct`` a node offers only mail for the peer
(:class:`~meshmsg.sim.agents.DirectFactory` is the calibrated direct agent, crash-safe too)."""


class RelayNode:
    """Epidemic or binary Spray-and-Wait with the ONE's router rules, for ONE-mode validation.

    On a new link both sides send a hello listing what they hold or received (Vahdat and
    Becker's summary vector). Then a small offer/reply handshake stands in for the ONE's
    ``startTransfer`` call and the receiver's ``checkReceiving``: ``O<id> <size> <priority>``
    offer; reply (control frames) ``Y<id>`` accepted, ``B<id>`` busy (``TRY_LATER_BUSY``: the
    receiver has an offer out or a transfer sent or accepted and not done), ``N<id>`` already
    held or delivered (``DENIED_OLD``), ``R<id>`` no room (``DENIED_NO_SPACE``); then the
    envelope ``M<json>`` (one envelope, ``size`` bytes), then ``K<id>`` ack; a message larger
    than a text body is announced by ``A<id> <size>``, which the ONE link model delivers when its
    transfer can start, and the receiver makes room then rather than at the offer; ``X<id>``
    withdraws an accepted offer; ``D<id>`` tells the peers a message was dropped for room, so
    they offer it again (the ONE keeps no summary vector and offers at every update). As in the
    ONE, a node takes part in **one transfer at a time** and makes one offer at a time: an
    update (:meth:`_try`) walks the ONE's order of tries, mail for a peer first, then per
    connection (in the order they came up) the other messages in a shuffled order (``sendQueue
    = RANDOM``), moving to the next connection when the peer is busy; refused by a busy peer, it
    tries again at the next update instant. Offers that cross (the ONE's updates are atomic,
    ours take microseconds of control frames) are settled by the attempts' priorities: the
    earlier instant, then mail over spraying, then a random draw, goes first. A sender picks its
    next transfer as soon as the ack arrives; a receiver acts at its next update instant (the
    ONE's sender finalises and starts its next transfer in one update). Mail for
    the peer goes first, then (Epidemic) every other message or (Spray-and-Wait)
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

    def __init__(
        self, setup: NodeSetup, now: float, policy: str, copies: int, rng: SeededRng | None = None
    ) -> None:
        self.address = setup.address
        self.rng = rng or SeededRng(0, f"relay-{setup.address}")
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
        # The ONE's one-transfer-at-a-time sender: the offer awaiting its reply, the tries left of
        # this update's attempt, whether a busy peer refused one, and when to try again.
        self.offer: tuple[LinkId, str] | None = None
        self.priority = (0, 0)  # of this attempt: who goes first when offers cross
        self._offer_priority = (0, 0, 0)
        self.plan: list[tuple[LinkId, str, bool]] = []  # (link, message, busy skips the link)
        self.saw_busy = False
        self.dirty = False  # something to try changed while an attempt was under way
        self.withdrawn: set[tuple[LinkId, str]] = set()  # offers given up: ignore their replies
        self.retry_at: float | None = None
        # Just received on this link: until the next update instant only its sender may start
        # a transfer with us (it finalises and starts anew in one update of the ONE).
        self.finishing: tuple[LinkId, float] | None = None
        self.last_check = now
        self._effects: deque[Effect] = deque()
        self._events: deque[Event] = deque()

    def peer_discovered(self, address: str, *, now: float) -> None:
        return None  # the simulator has no discovery: links come from the contact trace

    def link_opened(
        self, link: LinkId, *, initiator: bool, now: float, address: str | None = None
    ) -> None:
        self.peer_has[link] = set()
        have = sorted([*self.buffer, *self.delivered])  # a summary vector, as Epidemic's
        hello = json.dumps({"from": self.address, "have": have}).encode()
        self._effects.append(Transmit(link=link, data=b"H" + hello))

    @property
    def engaged(self) -> bool:
        """The ONE's ``isTransferring``: an offer out, a transfer sent or accepted not done."""
        return self.offer is not None or bool(self.sending) or bool(self.incoming)

    def receive_data(self, link: LinkId, data: bytes, *, now: float) -> None:
        kind, rest = data[:1], data[1:]
        if kind == b"H":
            hello = json.loads(rest)
            self.peer[link] = hello["from"]
            self.peer_has[link].update(hello["have"])
            self._try(now)
        elif kind == b"O":
            self._offered(link, rest.decode(), now)
        elif kind == b"A":
            self._make_room(int(rest.decode().rpartition(" ")[2]))
        elif kind == b"X":
            if self.incoming.pop(rest.decode(), None) is not None:
                self._later(now)
        elif kind in (b"Y", b"N", b"R", b"B"):
            self._reply(link, rest.decode(), kind, now)
        elif kind == b"M":
            self._arrived(link, json.loads(rest[: rest.index(b"}") + 1]), now)
        elif kind == b"K":
            self._acked(link, rest.decode(), now)
        elif kind == b"D":
            mid = rest.decode()
            self.peer_has[link].discard(mid)
            if mid in self.buffer:
                self._try(now)

    def _offered(self, link: LinkId, text: str, now: float) -> None:
        """The ONE's ``checkReceiving``: busy, already seen, no room, or accepted."""
        mid, size_s, prio_s = text.split(" ")
        size = int(size_s)
        step, phase, draw = prio_s.split(":")
        # Offers crossed (each node's update is atomic in the ONE): the earlier, or on the same
        # instant the one with the lower draw, goes first; the other gives up its own.
        crossed = self.offer is not None and not self.sending and not self.incoming
        if crossed and (int(step), int(phase), int(draw)) < self._offer_priority:
            assert self.offer is not None
            self.withdrawn.add(self.offer)
            self.offer, self.plan = None, []
            self._later(now)
        held = self.finishing is not None and self.finishing[0] != link
        if held and self.finishing is not None and now >= self.finishing[1]:
            self.finishing, held = None, False
        if self.engaged or held:
            answer = b"B"  # TRY_LATER_BUSY
        elif mid in self.buffer or mid in self.delivered:
            answer = b"N"  # DENIED_OLD
        elif size <= TEXT_BODY_BYTES and not self._make_room(size):
            answer = b"R"  # DENIED_NO_SPACE (a larger one makes room when announced: A)
        else:
            answer = b"Y"
            self.incoming[mid] = link
        self._effects.append(Transmit(link=link, data=answer + mid.encode()))

    def _reply(self, link: LinkId, mid: str, kind: bytes, now: float) -> None:
        if (link, mid) in self.withdrawn:
            self.withdrawn.discard((link, mid))
            if kind == b"Y":  # free the peer we no longer send to
                self._effects.append(Transmit(link=link, data=b"X" + mid.encode()))
            return
        if self.offer != (link, mid):
            return
        self.offer = None
        msg = self.buffer.get(mid)
        if kind == b"Y" and msg is None:  # dropped for room since it was offered
            self._effects.append(Transmit(link=link, data=b"X" + mid.encode()))
        if kind != b"Y" or msg is None:
            if kind == b"N" or msg is None:
                self.peer_has[link].add(mid)
            elif kind == b"B":
                self.saw_busy = True
                # tryAllMessages stops at TRY_LATER_BUSY: the next connection is tried
                self.plan = [t for t in self.plan if t[0] != link or not t[2]]
            self._next_offer(now)
            return
        self.plan = []
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
        # The sender finalises the transfer and picks its next one in the same update; the
        # receiver acts at its next update (docs/simulator.md, "One transfer at a time").
        self._later(now)
        self.finishing = (link, now + FINISHING_S)
        if for_us:
            self.delivered.add(mid)
            self._events.append(MessageReceived(message_id=mid.encode(), peer_id=ident(0),
                                                sent_at=float(str(msg["created"])),
                                                received_at=now, body="", hops=hops))  # fmt: skip
            return
        self._make_room(int(str(msg["size"])))  # made at the offer; only a created one may fill it
        self.buffer[mid] = {**msg, "hops": hops, "received": now}
        self.used += int(str(msg["size"]))

    def _acked(self, link: LinkId, mid: str, now: float) -> None:
        if link in self.peer_has:
            self.peer_has[link].add(mid)
        if self.sending.get(link) != mid:
            return
        del self.sending[link]
        msg = self.buffer.get(mid)
        if msg is not None and self.binary:
            msg["copies"] = (int(str(msg["copies"])) + 1) // 2
        self._try(now)

    def _later(self, now: float) -> None:
        """Try again at the next update instant (the ONE's routers act in ``update()``)."""
        self.retry_at = now if self.retry_at is None else min(self.retry_at, now)

    def _try(self, now: float) -> None:
        """One update of the ONE's router: deliverable messages first, then the others.

        ``exchangeDeliverableMessages`` tries every (message, connection) pair for the peer in
        the queue order; then ``tryMessagesToConnections`` tries the connections in the order
        they came up, and on each the messages (Epidemic: all; Spray-and-Wait: those with more
        than one copy) in the queue order, moving to the next connection when the peer is
        busy. The queue order is the ONE's default ``sendQueue = RANDOM``: a shuffle. A node
        makes one offer at a time and starts at most one transfer (``isTransferring``)."""
        if self.engaged:
            self.dirty = True
            return
        self.dirty = False
        links = [lk for lk in self.peer_has if lk in self.peer]
        if not links or not self.buffer:
            return
        mids = list(self.buffer)
        deliverable = [(lk, mid, False) for mid in mids for lk in links
                       if self.buffer[mid]["dest"] == self.peer[lk]]  # fmt: skip
        self._shuffle(deliverable)
        if self.policy == "epidemic":
            spread = mids
        elif self.binary:
            spread = [mid for mid in mids if int(str(self.buffer[mid]["copies"])) > 1]
        else:
            spread = []
        self._shuffle(spread)
        plan = deliverable + [(lk, mid, True) for lk in links for mid in spread]
        self.plan = [t for t in plan if t[1] not in self.peer_has[t[0]]]
        self.priority = (int(now * 100), self.rng.randbelow(1 << 30))
        self.saw_busy = False
        self._next_offer(now)

    def _shuffle(self, items: list[T]) -> None:
        for i in range(len(items) - 1, 0, -1):  # Fisher-Yates, as Collections.shuffle
            j = self.rng.randbelow(i + 1)
            items[i], items[j] = items[j], items[i]

    def _next_offer(self, now: float) -> None:
        while self.plan:
            link, mid, skips = self.plan.pop(0)
            if link not in self.peer or mid not in self.buffer or mid in self.peer_has[link]:
                continue
            self.offer = (link, mid)
            step, draw = self.priority
            # deliverable mail goes before spraying on both sides of a meeting: the ONE's
            # update pulls the peer's mail for it (requestDeliverableMessages) before spraying
            self._offer_priority = (step, 1 if skips else 0, draw)
            offer = f"O{mid} {self.buffer[mid]['size']} {step}:{1 if skips else 0}:{draw}"
            self._effects.append(Transmit(link=link, data=offer.encode()))
            return
        if self.saw_busy or self.dirty:  # TRY_LATER_BUSY somewhere, or news: try next update
            self.saw_busy = self.dirty = False
            self._later(now)

    def link_lost(self, link: LinkId, *, now: float) -> None:
        self.peer.pop(link, None)
        self.peer_has.pop(link, None)
        self.withdrawn = {t for t in self.withdrawn if t[0] != link}
        freed = self.sending.pop(link, None) is not None
        if self.offer is not None and self.offer[0] == link:
            self.offer, freed = None, True
            self._next_offer(now)
        for mid in [m for m, lk in self.incoming.items() if lk == link]:
            del self.incoming[mid]  # the transfer was cut: it may be offered again
            freed = True
        if freed:
            self._later(now)

    def handle_timer(self, *, now: float) -> None:
        if self.retry_at is not None and now > self.retry_at:
            self.retry_at = None
            self._try(now)
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
        self._try(now)
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
            # The ONE's neighbours offer it again at their next update (nothing remembers who
            # held what): tell them, so a summary vector from the hello does not stay stale.
            for link in self.peer:
                self._effects.append(Transmit(link=link, data=b"D" + mid.encode()))
        return fits

    def next_effect(self) -> Effect | None:
        return self._effects.popleft() if self._effects else None

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def next_deadline(self) -> float | None:
        ttl = self.last_check + TTL_CHECK_INTERVAL_S if self.buffer else None
        if self.retry_at is None:
            return ttl
        return self.retry_at if ttl is None else min(ttl, self.retry_at)


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
        return RelayNode(setup, now, policy, copies, rng.child(f"relay-{setup.address}"))
