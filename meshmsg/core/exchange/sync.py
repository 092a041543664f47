"""Reconciliation and offers: learning what the peer lacks and handing envelopes over.

After the handshake the initiator starts set reconciliation (``SyncMessage`` rounds); once it
is done each side ``Offer``s what the other lacks, the other ``Reply``s with what is addressed
to it and what it already holds, and envelopes move as ``Transfer`` records: mail for the peer
first, then what the routing policy allows. PRoPHET's ``RouteTable`` is handled here too, as
it only feeds the routing decisions made in :meth:`Sync.on_reply`.
"""

from __future__ import annotations

import math

from meshmsg.core import codec
from meshmsg.core.exchange.claims import decoy_claims, hand_over_claim
from meshmsg.core.exchange.directfirst import released_by, waits_for_its_recipient
from meshmsg.core.exchange.holdings import Holdings
from meshmsg.core.exchange.onesend import OneSender
from meshmsg.core.lateoffers import offer_everywhere, take_parked
from meshmsg.core.outbox import Outbox
from meshmsg.core.reconcile import Reconciler, SyncBudget
from meshmsg.core.records import (
    MAX_LIFETIME_MS,
    Hello,
    Offer,
    OfferEntry,
    OneModeSize,
    Purge,
    Reply,
    RouteEntry,
    RouteTable,
    SyncMessage,
    TimedTransfer,
    Transfer,
)
from meshmsg.core.routing import PeerRouting, peer_routing
from meshmsg.core.session import InFlight, PeerSession
from meshmsg.core.state import NodeState
from meshmsg.core.store import StoreItem
from meshmsg.core.wire import Record
from meshmsg.errors import CloseReason, RemoteProtocolError

_MS = 1000.0
# Hello capability: the peer reads ``TimedTransfer`` (lifetimes relative to the link, issue #11
# finding 2); a peer without it gets ``Transfer`` and judges the absolute expiry by its clock.
TIMED_TRANSFER = 3


def takes_timed_transfers(session: PeerSession) -> bool:
    """Whether the peer of this link announced capability 3 (``TimedTransfer``)."""
    peer = session.link.peer
    if peer is None:
        return False
    return any(isinstance(r, Hello) and TIMED_TRANSFER in r.capabilities for r in peer.records)


class Sync:
    """Route tables, reconciliation, offers, replies and the transfers they decide."""

    __slots__ = ("_holdings", "_out", "_state", "_sync_budget", "one")

    def __init__(self, state: NodeState, out: Outbox, holdings: Holdings) -> None:
        self._state = state
        self._out = out
        self._holdings = holdings
        # What all reconciliation sessions of this node may hold together (issue #11, 7).
        self._sync_budget = SyncBudget(state.config.sync.max_node_session_ids)
        # ONE mode: declared-size transfers leave one at a time, in the ONE's order.
        self.one = OneSender(state, out, self._send_transfers)

    # ================================================================ start

    def start(self, session: PeerSession, now: float) -> None:
        """The link is up: send our route table (PRoPHET) and, as initiator, start syncing."""
        state = self._state
        if state.store.one_mode:
            self.one.publish()  # a new peer hears whether we are in a transfer
        if state.router.needs_route_hint:
            entries = [RouteEntry(route=d, p=q) for d, q in state.router.table(now)]
            self._out.transmit(session, [RouteTable(entries=tuple(entries))])
        if session.link.initiator:
            salt = state.rng.randbytes(16)
            session.reconciler = Reconciler(
                state.items,
                initiator=True,
                salt=salt,
                config=state.config.sync,
                budget=self._sync_budget,
            )
            self._out.transmit(session, [SyncMessage(payload=session.reconciler.start())])

    def on_route_table(
        self, session: PeerSession, entries: tuple[RouteEntry, ...], now: float
    ) -> None:
        state = self._state
        if len(entries) > state.config.routing.max_route_entries:
            raise RemoteProtocolError("route table too large", reason=CloseReason.TOO_LARGE)
        assert session.route is not None
        view = peer_routing(session.route.route_id, [(e.route, e.p) for e in entries])
        session.route = view
        state.router.meet(view, now)
        # Predictabilities are what PRoPHET learnt from past meetings: keep them over restarts.
        self._out.persist([codec.router_record(*state.router.export_state())])

    def on_closed(self, session: PeerSession, now: float) -> None:
        """The link ended: its reconciliation and outstanding offers end with it; own mail that
        waited for this peer (``directfirst.py``) is offered on every other link."""
        if self._state.store.one_mode:
            self.one.closed(session, now)
        session.reconciler = None
        session.offered.clear()
        session.offer_batches.clear()
        session.declined.clear()
        for item in released_by(self._state, session):
            self.offer_new(item)
        peer = session.peer_id
        sessions = self._state.sessions.values()
        if peer is not None and not any(s.peer_id == peer and s is not session for s in sessions):
            self._state.receipt_holds.link_ended(peer)  # its next link reconciles afresh

    def release_receipt_holds(self, now: float) -> None:
        """Receipts whose hold from a relay ended: offered on that relay's links now (it may
        be our only peer, core/receiptholds.py)."""
        state = self._state
        for envelope_id, relay in state.receipt_holds.take_due(now):
            if envelope_id not in state.store and state.tombstones.by_id(envelope_id) is None:
                continue
            for session in list(state.sessions.values()):
                if session.peer_id == relay and session.synced:
                    self.offer(session, [envelope_id])

    # ======================================================= reconciliation

    def on_sync(self, session: PeerSession, payload: bytes) -> None:
        state = self._state
        if session.reconciler is None:
            if session.link.initiator:
                raise RemoteProtocolError("reconciliation answer before our request")
            session.reconciler = Reconciler(
                state.items,
                initiator=False,
                salt=b"",
                config=state.config.sync,
                budget=self._sync_budget,
            )
        reconciler = session.reconciler
        answer = reconciler.receive(payload)
        if answer is not None:
            self._out.transmit(session, [SyncMessage(payload=answer)])
        if reconciler.done and not session.synced:
            session.synced = True
            # With what became durable during the reconciliation (issue #17.2): it may have
            # missed those, and they would wait for the next meeting.
            self.offer(session, [*reconciler.have_ids, *take_parked(state.store, session)])
            session.reconciler = None

    # =============================================================== offers

    def offer(self, session: PeerSession, ids: list[bytes]) -> None:
        """Offer envelopes the peer lacks (with their tags) and push purge tokens outright."""
        state = self._state
        offered: list[StoreItem] = []
        purges: list[Record] = []
        for item_id in ids:
            if item_id in session.peer_has or item_id in session.in_flight:
                continue
            if item_id in session.offered:
                continue  # already offered, awaiting its Reply
            item = state.store.get(item_id)
            if item is not None and self._holdings.offerable(item_id):
                if waits_for_its_recipient(state, item, session):
                    continue  # offered everywhere if the recipient's link ends first
                if state.receipt_holds.keeps_from(item_id, session.peer_id):
                    continue  # a receipt kept from the relay of its mail: offered after the hold
                offered.append(item)
                session.offered[item_id] = None
                continue
            stone = state.tombstones.by_id(item_id)
            if stone is not None and self._pushable_to(stone.item_id, session):
                purges.append(Purge(token=stone.token, expiry_at=int(stone.expiry_at * _MS)))
        # Oldest first: one sender's mail then arrives in counter order, which keeps it inside
        # the recipient's tag window (a recipient recognises only tag_window counters ahead).
        offered.sort(key=lambda i: i.seq)
        entries = [_offer_entry(i) for i in offered]
        max_items = state.config.wire.max_container_items
        for start in range(0, len(entries), max_items):
            batch = tuple(entries[start : start + max_items])
            session.offer_batches.append(tuple(e.envelope_id for e in batch))
            self._out.transmit(session, [Offer(entries=batch)])
        if purges:
            self._out.transmit(session, purges)

    def offer_new(self, item: StoreItem) -> None:
        """A new item became durable: offer it to every synced link but the one it came from;
        links still reconciling get it when they end (issue #17.2, core/lateoffers.py)."""
        self.offer_to_all(item.envelope_id, source=item.source)

    def offer_to_all(self, item_id: bytes, *, source: bytes | None) -> None:
        """Push an item (a purge token) on every reconciled link but ``source``'s at once;
        links still reconciling get it when they end (issue #17.2, core/lateoffers.py)."""
        offer_everywhere(self._state.sessions.values(), self.offer, [item_id], source)

    def on_offer(self, session: PeerSession, entries: tuple[OfferEntry, ...]) -> None:
        state = self._state
        for_me: list[bytes] = []
        have: list[bytes] = []
        lacking: list[bytes] = []
        purges: list[Record] = []
        for entry in entries:
            stone = state.tombstones.by_tag(entry.tag)
            if stone is not None and self._pushable_to(stone.item_id, session):
                # The peer carries what the token purges, so it lacks the token: even one we do
                # not believe (and never spread) goes to it; its own copy lets it check it.
                # One whose opening is not durable yet waits: it is pushed once it is.
                purges.append(Purge(token=stone.token, expiry_at=int(stone.expiry_at * _MS)))
            first = state.first_index  # first contact (issue #12): no purge token, so the
            if (
                entry.envelope_id in state.store
                or stone is not None
                or first.opened(entry.envelope_id)
            ):  # ids of opened ones are remembered
                have.append(entry.envelope_id)
            elif (
                state.tags.lookup(entry.tag) is not None
                or state.groups.lookup(entry.tag)
                or first.lookup(entry.tag) is not None
            ):
                for_me.append(entry.envelope_id)
            else:
                lacking.append(entry.envelope_id)
        for_me.extend(decoy_claims(state, session, lacking))  # a claim must not name us
        if state.store.one_mode:
            self.one.expect(session, for_me)
            self.one.peer_holds(session, [e.envelope_id for e in entries])
        self._out.transmit(session, [Reply(for_me=tuple(for_me), have=tuple(have)), *purges])

    def _pushable(self, token_id: bytes) -> bool:
        """A purge token may go to a peer: purging is on and the token is durable."""
        return self._state.config.message.purge_on_delivery and self._holdings.offerable(token_id)

    def _pushable_to(self, token_id: bytes, session: PeerSession) -> bool:
        """... and it is not held from this peer: the relay that handed us its mail gets it
        after the hold, as the receipt (receiptholds.py)."""
        held = self._state.receipt_holds.keeps_from(token_id, session.peer_id)
        return not held and self._pushable(token_id)

    # ============================================================ transfers

    def on_reply(
        self, session: PeerSession, for_me: tuple[bytes, ...],
        have: tuple[bytes, ...], now: float
    ) -> None:  # fmt: skip
        state = self._state
        if not session.offer_batches:
            raise RemoteProtocolError("reply without an offer")
        # Several Offers may be outstanding (over max_container_items, or items that became
        # durable meanwhile): this Reply answers the oldest one only.
        batch = session.offer_batches.popleft()
        asked = set(batch)
        if any(i not in asked for i in [*for_me, *have]):
            raise RemoteProtocolError("reply names envelopes we did not offer")
        for item_id in batch:
            session.offered.pop(item_id, None)
        session.peer_has.update(have)
        wanted = set(for_me)
        transfers: list[tuple[StoreItem, InFlight]] = []
        for item_id in for_me:
            item = state.store.get(item_id)
            if item is not None:
                claim = hand_over_claim(state, item, session)
                flight = InFlight(copies=claim.copies, to_recipient=True, keeps=claim.keeps)
                transfers.append((item, flight))
        candidates = [i for i in batch if i not in wanted and i not in session.peer_has]
        view = session.route or PeerRouting(route_id=b"", predictabilities={})
        items = [state.store.get(i) for i in candidates]
        for item in state.router.order_for([i for i in items if i is not None], view):
            given = state.router.copies_to_give(item, view, now)
            if given > 0:
                transfers.append((item, InFlight(copies=given, to_recipient=False)))
            else:
                session.declined[item.envelope_id] = None
        if state.store.one_mode:  # declared sizes: one at a time, picked when this node is free
            self.one.queue(session, [t for t in transfers if t[0].one_size], now)
            transfers = [t for t in transfers if not t[0].one_size]
        cap = state.config.sync.max_transfers_per_sync
        for item, _ in transfers[cap:]:
            session.declined[item.envelope_id] = None
        self._send_transfers(session, transfers[:cap], now)

    def _send_transfers(
        self, session: PeerSession, transfers: list[tuple[StoreItem, InFlight]], now: float
    ) -> None:
        per_transmit = max(1, self._state.config.sync.envelopes_per_transmit)
        timed = takes_timed_transfers(session)
        batch: list[Record] = []
        count = one_bytes = 0
        for item, flight in transfers:
            session.in_flight[item.envelope_id] = flight
            copies = flight.copies
            if not flight.to_recipient:
                item.reserved += copies  # until custody, refusal or the link's end
            if item.envelope is None:  # on disk only: sent once the driver read it back
                flight.loading = True
                self._holdings.load_body(item.envelope_id)
                continue
            if item.one_size:  # ONE mode: announced ahead (the receiver makes room), charged
                item.sending += 1
                self._out.transmit(session, [OneModeSize(size=item.one_size)])
                self._out.flush(session, self._out.now, announces=item.one_size)  # its own frame
                one_bytes += item.one_size
            batch.append(
                _transfer(item, item.envelope, copies, now)
                if timed
                else _absolute_transfer(item, item.envelope, copies)
            )
            count += 1
            if count >= per_transmit:
                self._out.transmit(session, batch, envelopes=count, one_bytes=one_bytes)
                batch, count, one_bytes = [], 0, 0
        if batch:
            self._out.transmit(session, batch, envelopes=count, one_bytes=one_bytes)

    def send_loaded(self, envelope_id: bytes, body: bytes, now: float) -> None:
        """The driver read back a body that transfers wait for: each goes out now."""
        state = self._state
        item = state.store.get(envelope_id)
        for session in list(state.sessions.values()):
            flight = session.in_flight.get(envelope_id)
            if flight is None or not flight.loading:
                continue
            flight.loading = False
            if item is None:  # it left the store while it was read: nothing to send
                del session.in_flight[envelope_id]
                continue
            copies = flight.copies
            timed = takes_timed_transfers(session)
            record = (
                _transfer(item, body, copies, now)
                if timed
                else _absolute_transfer(item, body, copies)
            )
            self._out.transmit(session, [record], envelopes=1)

    def load_failed(self, envelope_id: bytes) -> None:
        """The body transfers wait for cannot be read: those transfers end, nothing else."""
        item = self._state.store.get(envelope_id)
        for session in list(self._state.sessions.values()):
            flight = session.in_flight.get(envelope_id)
            if flight is None or not flight.loading:
                continue
            del session.in_flight[envelope_id]
            if item is not None and not flight.to_recipient:
                item.reserved = max(0, item.reserved - flight.copies)


def _transfer(item: StoreItem, body: bytes, copies: int, now: float) -> TimedTransfer:
    """The item as a ``TimedTransfer``: its remaining life by our clock, never a date."""
    lifetime_ms = min(MAX_LIFETIME_MS, max(0, math.floor((item.expiry_at - now) * _MS)))
    return TimedTransfer(
        envelope=body, copies=copies, hops=item.hops + 1,
        route_hint=item.route_hint, lifetime_ms=lifetime_ms,
    )  # fmt: skip


def _absolute_transfer(item: StoreItem, body: bytes, copies: int) -> Transfer:
    """The item as a ``Transfer`` (a peer without capability 3 reads the envelope's expiry)."""
    return Transfer(envelope=body, copies=copies, hops=item.hops + 1, route_hint=item.route_hint)


def _offer_entry(item: StoreItem) -> OfferEntry:
    """The item's entry in Offers, built once: Spray-and-Wait offers a waiting copy to every
    peer it meets, and building (validating) the record each time showed in profiles."""
    if item.offer_entry is None:
        item.offer_entry = OfferEntry(envelope_id=item.envelope_id, tag=item.tag)
    return item.offer_entry
