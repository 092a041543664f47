"""ONE mode: declared-size transfers leave one at a time, in the order the ONE's routers send.

The ONE's ``ActiveRouter`` takes part in one transfer at a time (``isTransferring``) and, at
each update, first tries the messages whose destination is a connected peer
(``exchangeDeliverableMessages``, both ways: it also asks each peer for mail for itself), then
the others, connection by connection in the order they came up, each connection's messages in
a shuffled order (``sendQueue = RANDOM``, the default). The sender finalises a finished
transfer and starts its next one in the same update; the receiver acts at its next update.

With the default scenario's 500 kB-1 MB messages a transfer takes 2-4 s and most contacts are
shorter than two transfers, so that order decides what gets through (docs/simulator.md, "How
the ONE's routers send"). Outside it the core sends what a ``Reply`` asks for at once (up to
``max_transfers_per_sync``) and the ONE link model lets the transfers wait for the nodes'
slots. Here, in ONE mode, the transfers of items with a declared size (``StoreItem.one_size``)
wait in this node instead:

* at most one of them is on its way at a time (sent, custody or refusal not yet back);
* a node receiving one (``OneModeSize`` arrived, its ``Transfer`` not yet) starts none, and
  after it arrives starts its own only at the next update instant (a timer: ONE-mode timers
  fire at update instants), so the sender picks its next transfer first;
* mail for a peer goes first, on every link; a node does not spray to a peer that has told it
  (by our ``Reply``'s ``for_me``) it carries mail for us still to come (mail first on both
  sides of a meeting);
* a node asks before it sends (``OneModeAsk``): the peer answers "busy" if it is sending,
  receiving, asking or about to pick, else "go" (and counts as receiving from then on). On
  "busy" the node tries its next connection at once and the refused one at the next update
  instant, as the ONE's ``TRY_LATER_BUSY``; two nodes that pick one free peer at the same
  instant no longer both send (the second used to wait in the link model for the slot);
* which one: deliverable first in a shuffled order, then link by link in the order the links'
  first ``Reply`` came, each link's candidates shuffled; copies are decided when the transfer
  is picked (the routing policy's ``copies_to_give`` then), not when the ``Reply`` came.

Small items (no declared size: the reference trace's 1-2 kB) still go as before: their
transfers take one 0.1 s step, and the core matches the ONE on them exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from meshmsg.core.effects import LinkId
from meshmsg.core.exchange.claims import hand_over_claim
from meshmsg.core.outbox import Outbox
from meshmsg.core.records import ONE_ASK, ONE_BUSY, ONE_CANCEL, ONE_GO, OneModeAsk, OneModeBusy
from meshmsg.core.routing import PeerRouting
from meshmsg.core.session import InFlight, PeerSession
from meshmsg.core.state import NodeState
from meshmsg.core.store import StoreItem

NEXT_UPDATE_S = 0.001
"""A receiver starts its own transfer this long after one arrived: ONE-mode timers fire at the
first update instant at or after their deadline, that is the next 0.1 s step."""

T = TypeVar("T")
Send = Callable[[PeerSession, list[tuple[StoreItem, InFlight]], float], None]


class OneSender:
    """The ONE's sending order for declared-size transfers (see the module docstring)."""

    __slots__ = ("_finishing", "_next_pick", "_out", "_pending", "_refused", "_retry_at",
                 "_send", "_state", "_told", "asking", "awaiting", "busy_peers", "current",
                 "receiving")  # fmt: skip

    def __init__(self, state: NodeState, out: Outbox, send: Send) -> None:
        self._state = state
        self._out = out
        self._send = send
        self._told: dict[LinkId, bool] = {}  # what each peer last heard of our being busy
        self._finishing: LinkId | None = None  # the sender of what just arrived: free for it
        self.busy_peers: set[LinkId] = set()  # peers that told us they are in a transfer
        # Per link, what the peer's Replies asked for and was not sent yet: id -> to_recipient.
        self._pending: dict[LinkId, dict[bytes, bool]] = {}
        # Per link, mail for us the peer offered and we claimed, not arrived yet.
        self.awaiting: dict[LinkId, set[bytes]] = {}
        self.receiving: set[LinkId] = set()  # links with an announced transfer to us
        self.current: tuple[LinkId, bytes] | None = None  # our transfer on its way
        self._next_pick: float | None = None  # a receiver's next pick (the next update instant)
        # Our ask out: (link, envelope id, to the recipient, rank), until "go" or "busy".
        self.asking: tuple[LinkId, bytes, bool, int] | None = None
        self._refused: set[LinkId] = set()  # answered "busy": tried again at the next update
        self._retry_at: float | None = None

    @property
    def due_at(self) -> float | None:
        """The next instant this node picks again (a receiver's turn, or a refused retry)."""
        times = [t for t in (self._next_pick, self._retry_at) if t is not None]
        return min(times) if times else None

    def queue(
        self, session: PeerSession, transfers: list[tuple[StoreItem, InFlight]], now: float
    ) -> None:
        """The peer's Reply asked for these: send them when this node's turn comes."""
        pending = self._pending.setdefault(session.link_id, {})
        for item, flight in transfers:
            to_recipient = flight.to_recipient
            pending[item.envelope_id] = pending.get(item.envelope_id, False) or to_recipient
        self.pick(now)

    def expect(self, session: PeerSession, for_me: list[bytes]) -> None:
        """We claimed these from the peer: spray nothing to it until they came."""
        if for_me:
            self.awaiting.setdefault(session.link_id, set()).update(for_me)

    def peer_holds(self, session: PeerSession, ids: list[bytes]) -> None:
        """The peer offered us these, so it holds them: sending them would be refused at
        arrival after costing a whole transfer (the ONE asks first: ``DENIED_OLD``)."""
        pending = self._pending.get(session.link_id)
        if pending:
            for env_id in ids:
                pending.pop(env_id, None)

    def announced(self, session: PeerSession) -> None:
        """A declared-size transfer to us is starting on this link (``OneModeSize``)."""
        self.receiving.add(session.link_id)
        self.publish()

    def peer_busy(self, session: PeerSession, busy: bool, now: float) -> None:
        """The peer is (no longer) in a transfer: the ONE's ``TRY_LATER_BUSY``."""
        if busy:
            self.busy_peers.add(session.link_id)
        else:
            self.busy_peers.discard(session.link_id)
            self.pick(now)

    def arrived(self, session: PeerSession, envelope_id: bytes, now: float) -> None:
        """A transfer arrived: we pick our next one at the next update instant."""
        link = session.link_id
        waiting = self.awaiting.get(link)
        if waiting is not None:
            waiting.discard(envelope_id)
            if not waiting:
                del self.awaiting[link]
        if link in self.receiving:
            self.receiving.discard(link)
            self._next_pick = now + NEXT_UPDATE_S
            self._finishing = link  # its sender may start its next transfer with us at once
            self.publish()
        elif waiting is not None and not waiting:
            self.pick(now)  # its mail for us came: we may spray to it now

    def landed(self, session: PeerSession, envelope_id: bytes, now: float) -> None:
        """Custody or refusal of a transfer of ours: the sender picks its next one now."""
        if self.current == (session.link_id, envelope_id):
            self.current = None
            self.pick(now)

    def closed(self, session: PeerSession, now: float) -> None:
        """The link ended: what waited for it is gone; a transfer on it is over."""
        link = session.link_id
        self._pending.pop(link, None)
        self.awaiting.pop(link, None)
        self.receiving.discard(link)
        self.busy_peers.discard(link)
        self._refused.discard(link)
        self._told.pop(link, None)
        if self.current is not None and self.current[0] == link:
            self.current = None
        if self.asking is not None and self.asking[0] == link:
            self.asking = None
        self.pick(now)

    def on_timer(self, now: float) -> None:
        due = False
        if self._next_pick is not None and now >= self._next_pick:
            self._next_pick = self._finishing = None
            due = True
        if self._retry_at is not None and now >= self._retry_at:
            self._retry_at = None
            self._refused.clear()
            due = True
        if due:
            self.pick(now)

    @property
    def transferring(self) -> bool:
        """The ONE's ``isTransferring``: sending or receiving a declared-size transfer."""
        return self.current is not None or bool(self.receiving)

    @property
    def busy(self) -> bool:
        """In a transfer or asking for one: this node starts nothing else."""
        return self.transferring or self.asking is not None

    def _busy_for(self, link: LinkId) -> bool:
        """Whether this node refuses a transfer from this peer now (a receiver stays busy
        for all but its sender until its next update instant, when it picks)."""
        return self.transferring or (self._next_pick is not None and link != self._finishing)

    def on_ask(self, session: PeerSession, step: int, rank: int, now: float) -> None:
        """A ``OneModeAsk``: a peer's ask, an answer to ours, or its withdrawal."""
        link = session.link_id
        if step == ONE_ASK:
            go = not self._busy_for(link)
            if go and self.asking is not None:
                # Asks that crossed on this link go by rank; any other ask out: busy.
                go = self.asking[0] == link and rank > self.asking[3]
                if go:
                    self.asking = None  # the peer answers ours "busy" by the same rule
            self._answer(session, ONE_GO if go else ONE_BUSY)
            if go:
                self.receiving.add(link)
                self.publish()
        elif step == ONE_CANCEL:
            if link in self.receiving:
                self.receiving.discard(link)
                self.pick(now)
        elif self.asking is None or self.asking[0] != link:
            if step == ONE_GO:
                self._answer(session, ONE_CANCEL)  # not ours any more: free the peer
        elif step == ONE_GO:
            _, env_id, to_recipient, _ = self.asking
            self.asking = None
            if not self._go(link, env_id, to_recipient, now):
                self._answer(session, ONE_CANCEL)
                self.pick(now)
        else:  # ONE_BUSY: TRY_LATER_BUSY, the next connection now, this one next update
            self.asking = None
            self._refused.add(link)
            if self._retry_at is None:
                self._retry_at = now + NEXT_UPDATE_S
            self.pick(now)

    def _answer(self, session: PeerSession, step: int) -> None:
        self._out.transmit(session, [OneModeAsk(step=step, rank=0)])
        self._out.flush(session, self._out.now)

    def publish(self) -> None:
        """Tell every peer whether we are in a transfer, where that changed since it last
        heard (a receiver stays busy until its next update instant, when it picks)."""
        for link, session in self._state.sessions.items():
            busy = self._busy_for(link)
            if self._told.get(link, False) != busy and session.peer_id is not None:
                self._told[link] = busy
                self._out.transmit(session, [OneModeBusy(busy=busy)])
                self._out.flush(session, self._out.now)

    def pick(self, now: float) -> None:
        """Start the next transfer if this node is free: mail for a peer, then spraying."""
        self._pick(now)
        self.publish()

    def _pick(self, now: float) -> None:
        if self.busy or (self._next_pick is not None and now < self._next_pick):
            return
        if not self._pending:
            return
        deliverable = [(link, env_id) for link, pending in self._pending.items()
                       for env_id, to_recipient in pending.items() if to_recipient]  # fmt: skip
        self._shuffle(deliverable)
        for link, env_id in deliverable:
            if link in self.busy_peers or link in self._refused:
                continue  # TRY_LATER_BUSY: it is tried again when the peer is free
            if self._still_there(link, env_id):
                self._ask(link, env_id, True)
                return
            self._take(link, env_id)
        for link in list(self._pending):
            if self.awaiting.get(link) or link in self.busy_peers or link in self._refused:
                continue  # the peer's mail for us goes first; a busy peer refuses
            candidates = [e for e, to_recipient in self._pending[link].items() if not to_recipient]
            self._shuffle(candidates)
            for env_id in candidates:
                if not self._still_there(link, env_id):
                    self._take(link, env_id)
                    continue
                if self._spray(link, env_id, now) is not None:
                    self._ask(link, env_id, False)
                    return

    def _still_there(self, link: LinkId, env_id: bytes) -> bool:
        session = self._state.sessions.get(link)
        return (
            session is not None and env_id in self._state.store and env_id not in session.in_flight
        )

    def _spray(self, link: LinkId, env_id: bytes, now: float) -> InFlight | None:
        """The copies a spray of this item to this peer gives now; None (and the pending
        transfer declined, as a Reply's leftovers) if none."""
        session = self._state.sessions[link]
        item = self._state.store.get(env_id)
        if item is not None:
            view = session.route or PeerRouting(route_id=b"", predictabilities={})
            given = self._state.router.copies_to_give(item, view, now)
            if given > 0:
                return InFlight(copies=given, to_recipient=False)
        self._take(link, env_id)
        session.declined[env_id] = None
        return None

    def _ask(self, link: LinkId, env_id: bytes, to_recipient: bool) -> None:
        """Ask the peer whether it is free; the transfer starts on its "go"."""
        rank = (int(to_recipient) << 31) | self._state.rng.randbelow(1 << 31)
        self.asking = (link, env_id, to_recipient, rank)
        session = self._state.sessions[link]
        self._out.transmit(session, [OneModeAsk(step=ONE_ASK, rank=rank)])
        self._out.flush(session, self._out.now)

    def _go(self, link: LinkId, env_id: bytes, to_recipient: bool, now: float) -> bool:
        """The peer said "go": start the transfer, if it can still go (else False)."""
        if env_id not in self._pending.get(link, {}):
            return False  # the link ended, or the peer offered it to us meanwhile
        if not self._still_there(link, env_id):
            self._take(link, env_id)
            return False
        if to_recipient:
            session, item = self._take(link, env_id)
            if session is None or item is None:
                return False
            claim = hand_over_claim(self._state, item, session)
            flight = InFlight(copies=claim.copies, to_recipient=True, keeps=claim.keeps)
        else:
            spray = self._spray(link, env_id, now)
            if spray is None:
                return False
            session, item = self._take(link, env_id)
            if session is None or item is None:
                return False
            flight = spray
        self._start(session, item, flight, now)
        return True

    def _take(self, link: LinkId, env_id: bytes) -> tuple[PeerSession | None, StoreItem | None]:
        """Remove a pending transfer; its session and item if both are still there."""
        pending = self._pending.get(link)
        if pending is not None:
            pending.pop(env_id, None)
            if not pending:
                del self._pending[link]
        session = self._state.sessions.get(link)
        item = self._state.store.get(env_id)
        if session is None or item is None or env_id in session.in_flight:
            return None, None
        return session, item

    def _start(self, session: PeerSession, item: StoreItem, flight: InFlight, now: float) -> None:
        self.current = (session.link_id, item.envelope_id)
        self._send(session, [(item, flight)], now)

    def _shuffle(self, items: list[T]) -> None:
        rng = self._state.rng
        for i in range(len(items) - 1, 0, -1):  # Fisher-Yates, as the ONE's Collections.shuffle
            j = rng.randbelow(i + 1)
            items[i], items[j] = items[j], items[i]
