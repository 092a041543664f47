"""Custody: taking envelopes a peer transfers to us, and learning what the peer took.

A ``Transfer`` is either mail for us (opened by :mod:`.opening`) or mail we carry for others
(admitted to the store under the peer's trust tier). Either way it is acknowledged by a
``Custody`` record only once its Persist is durable. On the sending side a ``Custody`` settles
the envelopes in flight: the routing policy says how many copies we keep.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from meshmsg.core import codec
from meshmsg.core.e2e import Match
from meshmsg.core.effects import StoredRecord
from meshmsg.core.envelope import Envelope, capped_expiry, envelope_id, parse_envelope
from meshmsg.core.events import (
    DropReason,
    EnvelopeAccepted,
    EnvelopeDropped,
    EnvelopeHandedOver,
    MessageStatus,
)
from meshmsg.core.exchange.claims import is_decoy_transfer, opens_in_order
from meshmsg.core.exchange.firstmail import FirstOpening
from meshmsg.core.exchange.holdings import Holdings
from meshmsg.core.exchange.opening import Opening
from meshmsg.core.exchange.sync import Sync
from meshmsg.core.outbox import Outbox
from meshmsg.core.records import Custody, TimedTransfer, Transfer
from meshmsg.core.session import InFlight, PeerSession
from meshmsg.core.state import NodeState
from meshmsg.core.store import StoreItem, Tier
from meshmsg.errors import InvalidMessage, RemoteProtocolError

_MS = 1000.0


class Carrying:
    """Receives transfers (``Transfer``) and acknowledgements (``Custody``)."""

    __slots__ = ("_declared", "_first", "_holdings", "_opening", "_out", "_state", "_sync")

    def __init__(
        self, state: NodeState, out: Outbox, holdings: Holdings, sync: Sync, opening: Opening,
        first: FirstOpening,
    ) -> None:  # fmt: skip
        self._state = state
        self._out = out
        self._holdings = holdings
        self._sync = sync
        self._opening = opening
        self._first = first
        # ONE mode: the size the next Transfer on a link stands for (``OneModeSize``).
        self._declared: dict[int, int] = {}

    # ============================================================ receiving

    def on_one_size(self, session: PeerSession, size: int) -> None:
        """ONE mode: the next Transfer stands for ``size`` bytes; outside it, skipped."""
        if self._state.store.one_mode:
            self._declared[session.link_id] = size
            self._sync.one.announced(session)
            self._holdings.make_room(size)  # when the transfer starts, as the ONE does

    def on_timed_transfer(self, session: PeerSession, record: TimedTransfer, now: float) -> None:
        """A transfer with a relative lifetime: the copy lives that long by our clock, at most
        ``max_ttl_s`` whatever the peer claims (issue #11, finding 2).

        ONE mode keeps the envelope's absolute expiry: the ONE has one global clock, and a
        lifetime re-based at each hop would add every hop's transfer time to it.
        """
        plain = Transfer(
            envelope=record.envelope, copies=record.copies, hops=record.hops,
            route_hint=record.route_hint,
        )  # fmt: skip
        if self._state.store.one_mode:
            self.on_transfer(session, plain, now)
            return
        lifetime = min(record.lifetime_ms / _MS, self._state.config.message.max_ttl_s)
        self.on_transfer(session, plain, now, expiry_at=now + lifetime)

    def on_transfer(
        self, session: PeerSession, record: Transfer, now: float, *, expiry_at: float | None = None
    ) -> None:
        """A transfer; ``expiry_at`` is when our copy expires by our clock (None: the
        envelope's own expiry, for a ``Transfer`` from a peer without capability 3)."""
        state = self._state
        one_size = self._declared.pop(session.link_id, 0) if self._declared else 0
        try:
            envelope = parse_envelope(
                record.envelope, buckets=state.config.message.envelope_size_buckets
            )
        except InvalidMessage:
            return  # a carrier cannot check more than the format; no id to refuse by
        env_id = envelope_id(record.envelope)
        if state.store.one_mode:
            self._sync.one.arrived(session, env_id, now)
        decoy = is_decoy_transfer(session, env_id)  # taken off the session's list either way
        match = state.tags.lookup(envelope.tag)
        if match is not None and decoy:
            match = opens_in_order(state, match, envelope.tag)  # else kept as a carried copy
        if match is not None:
            self._deliver_to_us(session, envelope, env_id, match, record, now)
            return
        if state.groups.lookup(envelope.tag) is not None:
            self._opening.deliver_group(session, envelope, env_id, record, now)
            return
        if self._first.recognises(envelope.tag):
            self._deliver_first_contact(session, envelope, env_id, record, now)
            return
        duplicate = env_id in state.store or state.tombstones.has_tag(envelope.tag)
        too_far = record.hops > state.config.message.max_hops
        if expiry_at is None:  # the envelope's own date (a peer without capability 3)
            expiry_at = capped_expiry(envelope.expiry_at, state.config.message, now)
        if duplicate or too_far or expiry_at <= now:
            self._acknowledge(session, refused=[env_id])
            return
        item = StoreItem(
            envelope_id=env_id, envelope=record.envelope, tag=envelope.tag,
            expiry_at=expiry_at, copies=record.copies, hops=record.hops,
            tier=session.tier, source=session.peer_id, received_at=now,
            route_hint=record.route_hint, one_size=one_size,
        )  # fmt: skip
        if not self._holdings.admit_item(item, now):
            self._out.emit(EnvelopeDropped(envelope_id=env_id, reason=DropReason.REFUSED))
            self._acknowledge(session, refused=[env_id])
            return
        self._holdings.mark_uncommitted(env_id)

        def committed(_: float) -> None:
            self._holdings.mark_committed(env_id)
            self._acknowledge(session, accepted=[env_id])
            self._out.emit(
                EnvelopeAccepted(
                    envelope_id=env_id, link=session.link_id, hops=item.hops,
                    copies=item.copies, for_us=False, lifetime_s=item.expiry_at - now,
                )
            )  # fmt: skip
            if env_id in state.store:
                self._sync.offer_new(item)

        self._out.persist([codec.envelope_record(item)], then=committed)

    def _deliver_to_us(
        self,
        session: PeerSession,
        envelope: Envelope,
        env_id: bytes,
        match: Match,
        record: Transfer,
        now: float,
    ) -> None:
        direct = session.peer_id == match.peer_id
        relay = None if direct else (session.peer_id or b"")
        consumed = self._opening.consume(envelope, match, record.hops, now, relay=relay)
        if consumed is None:
            self._acknowledge(session, refused=[env_id])
            return
        self._accept_ours(
            session, env_id, record, consumed.puts,
            lambda: self._opening.report_consumed(match.peer_id, consumed, now),
        )  # fmt: skip
        self._opening.after_open(match, now, via=relay)

    def _deliver_first_contact(
        self, session: PeerSession, envelope: Envelope, env_id: bytes, record: Transfer,
        now: float,
    ) -> None:  # fmt: skip
        opened = self._first.open(envelope, env_id, record.hops, now, link_peer=session.peer_id)
        if opened is None:
            self._acknowledge(session, refused=[env_id])
            return
        self._accept_ours(session, env_id, record, opened.puts, lambda: self._first.report(opened))

    def _accept_ours(
        self,
        session: PeerSession,
        env_id: bytes,
        record: Transfer,
        puts: list[StoredRecord],
        report: Callable[[], None],
    ) -> None:
        """Commit what opening mail for us wrote; only then take custody and report it."""

        def committed(_: float) -> None:
            self._acknowledge(session, accepted=[env_id])
            self._out.emit(
                EnvelopeAccepted(
                    envelope_id=env_id, link=session.link_id, hops=record.hops,
                    copies=record.copies, for_us=True,
                )
            )  # fmt: skip
            report()

        self._out.persist(puts, then=committed)

    def _acknowledge(
        self,
        session: PeerSession,
        *,
        accepted: Sequence[bytes] = (),
        refused: Sequence[bytes] = (),
    ) -> None:
        """Send ``Custody`` unless the link closed while the Persist was being committed."""
        if session.link_id in self._state.sessions:
            custody = Custody(accepted=tuple(accepted), refused=tuple(refused))
            self._out.transmit(session, [custody])

    # ============================================================== sending

    def on_custody(
        self, session: PeerSession, accepted: tuple[bytes, ...],
        refused: tuple[bytes, ...], now: float
    ) -> None:  # fmt: skip
        for env_id in refused:
            self._land(session, env_id)
        delivered = False
        landed = [*refused, *accepted] if self._state.store.one_mode else []
        for env_id in accepted:
            flight = self._land(session, env_id)
            if flight is None:
                raise RemoteProtocolError("custody for an envelope we did not send")
            session.peer_has.add(env_id)
            delivered = delivered or flight.to_recipient
            self._out.emit(
                EnvelopeHandedOver(
                    envelope_id=env_id, link=session.link_id, copies=flight.copies,
                    claimed=flight.to_recipient,
                )
            )  # fmt: skip
            self._handed_over(env_id, flight, now)
        if delivered and session.declined:
            # The peer recognises only a window of its next counters; having taken mail for
            # it, it recognises later ones: more of what it declined may now be its own.
            again = list(session.declined)
            session.declined.clear()
            self._sync.offer(session, again)
        for env_id in landed:  # after the copies kept are settled: the next pick sees them
            self._sync.one.landed(session, env_id, now)

    def _handed_over(self, env_id: bytes, flight: InFlight, now: float) -> None:
        """The peer took custody of ``flight``'s copies: keep what the routing policy says."""
        state = self._state
        item = state.store.get(env_id)
        if item is None:
            return
        if item.tier is Tier.OWN and (flight.keeps or not flight.to_recipient):
            # Handed to a carrier, or to a claimant that is not its recipient (a decoy, which
            # gets one copy while we keep ours: exchange/claims.py). Taken by the recipient
            # itself, it is not "relayed": its receipt or purge token says DELIVERED.
            message = state.conversations.by_envelope(env_id)
            if message is not None:
                self._holdings.status_changed(message, MessageStatus.RELAYED, now)
        if flight.keeps:
            return  # one copy to a claimant (exchange/claims.py): ours and its budget stay
        kept = state.router.copies_kept(item, flight.copies, to_recipient=flight.to_recipient)
        if kept <= 0:
            reason = DropReason.DELIVERED if flight.to_recipient else DropReason.HANDED_OVER
            state.tombstones.note_handed_over(item.tag, item.tier, item.expiry_at)
            self._holdings.drop_item(env_id, reason)
        elif kept != item.copies:
            item.copies = kept
            if item.envelope is None:  # on disk only: written again once read back (bodies.py)
                self._holdings.load_body(env_id, rewrite=True)
            else:
                self._out.persist([codec.envelope_record(item)])

    def release_in_flight(self, session: PeerSession) -> None:
        """The link ended: what it had in flight was not taken."""
        self._declared.pop(session.link_id, None)
        for env_id in list(session.in_flight):
            self._land(session, env_id)

    def _land(self, session: PeerSession, env_id: bytes) -> InFlight | None:
        """The transfer of ``env_id`` on this link is over: release its reserved copies."""
        flight = session.in_flight.pop(env_id, None)
        item = self._state.store.get(env_id)
        if flight is not None and item is not None and item.sending:
            item.sending -= 1
        if flight is not None and item is not None and not flight.to_recipient:
            item.reserved = max(0, item.reserved - flight.copies)  # the item may be a newer copy
        return flight
