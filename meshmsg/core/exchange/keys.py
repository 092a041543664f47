"""Contact keys: pairing and healing at a meeting, and the key schedule between meetings.

At a meeting with a contact each side sends a ``KeyExchange`` share; the two shares pair the
contact (first meeting) or heal its keys (later meetings), and ``KeyConfirm`` proves both sides
derived the same. Between meetings :meth:`ContactKeys.advance` ratchets every contact's keys as
periods end. This part owns ``channels_due_at``, the earliest key-schedule deadline.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

from meshmsg.core import codec
from meshmsg.core.clockcheck import meeting_skew
from meshmsg.core.contacts import Contact
from meshmsg.core.conversations import StoredMessage
from meshmsg.core.e2e import ContactChannel
from meshmsg.core.events import ContactHealed, ContactPaired, DropReason, MessageStatus
from meshmsg.core.exchange.holdings import Holdings
from meshmsg.core.exchange.opening import Opening
from meshmsg.core.exchange.receipts import Receipts
from meshmsg.core.exchange.renewal import Renewal
from meshmsg.core.exchange.sending import Sending
from meshmsg.core.keyschedule import KeyShare, can_heal
from meshmsg.core.link import LinkState
from meshmsg.core.outbox import CommitAction, Outbox
from meshmsg.core.records import KeyConfirm, KeyExchange
from meshmsg.core.session import KeyExchangeState, PeerSession
from meshmsg.core.state import NodeState
from meshmsg.core.store import Tier
from meshmsg.errors import RemoteProtocolError


class ContactKeys:
    """Pairs, heals, confirms and advances the contacts' end-to-end keys."""

    __slots__ = (
        "_holdings", "_opening", "_out", "_receipts", "_renewal", "_sending", "_state",
        "channels_due_at",
    )  # fmt: skip

    def __init__(
        self,
        state: NodeState,
        out: Outbox,
        holdings: Holdings,
        sending: Sending,
        opening: Opening,
        renewal: Renewal,
        receipts: Receipts,
    ) -> None:
        self._state = state
        self._receipts = receipts
        self._out = out
        self._holdings = holdings
        self._sending = sending
        self._opening = opening
        self._renewal = renewal
        # Earliest key-schedule deadline over all contacts. Recomputed whenever channels are
        # advanced; may only be earlier than the truth (an early wake-up is harmless), which
        # keeps next_deadline() O(links) instead of O(contacts) on the driver's hot path.
        self.channels_due_at: float | None = None
        for contact in state.contacts:
            if contact.channel is not None:
                self._note_deadline(contact.channel.next_deadline())

    # ============================================================= meetings

    def start(self, session: PeerSession, contact: Contact, now: float) -> None:
        self._renewal.start(session, contact, now)

    def on_key_exchange(self, session: PeerSession, record: KeyExchange, now: float) -> None:
        state = self._state
        contact = state.contacts.get(session.peer_id or b"")
        if contact is None:
            # The peer added us, we have not added it (issue #12): not an error, or the two
            # would link and drop in a loop. Kept: adding it during this link pairs at once.
            session.stranger_share = record.share
            return
        if session.key_exchange is None:  # added while linked; its share came first
            self._renewal.start(session, contact, now)
        exchange = session.key_exchange
        settled = exchange is not None and exchange.done
        theirs = KeyShare.from_bytes(record.share)  # DecodeError closes the link
        if settled and contact.channel is not None:
            exchange = self._answer_live_heal(session, contact, theirs, now)
        if exchange is None or exchange.done:
            raise RemoteProtocolError("unexpected KeyExchange")
        exchange.done = True
        skew = meeting_skew(contact.peer_id, exchange.share, theirs, now, state.config.message)
        if skew is not None:  # issue 11 #2: a clock fault is shown, never a silent wedge
            self._out.emit(skew)
        peer = session.link.peer
        assert peer is not None
        contact.exchanging = False
        if contact.channel is not None and can_heal(exchange.share, theirs):
            result = contact.channel.heal(
                our_secret=exchange.secret, ours=exchange.share, theirs=theirs,
                handshake_hash=peer.handshake_hash, now=now,
            )  # fmt: skip
            if result.abandoned_epoch is not None:
                self._reseal_epoch(contact, result.abandoned_epoch, now)
            if session.heals == 0:  # a meeting's heal; on a live link our mail is moving
                self._reseal_beyond_retention(contact, result.epoch, now)
            session.heals += 1
            # Our KeyConfirm tells the peer we left the older epochs for good: it then trims
            # them to the counts our share reported. Sent before the new epoch is durable, a
            # crash would bring us back in the old epoch, sealing counters the peer no longer
            # recognises (kill -9 test): so it waits for the commit, like a Custody.
            exchange.confirm_pending = True
            confirm = functools.partial(
                self._confirm_durable, session, exchange, contact.channel.confirmation
            )
            self.install(contact, contact.channel, now, healed=True, then=confirm)  # seals again
            self._receipts.after_heal(contact.peer_id, result.abandoned_epoch, now)
            return
        exchange.confirmed = True  # a pairing has no older epoch to confirm the leaving of
        lost = None if contact.channel is None else contact.channel.epoch  # a pairing afresh
        channel = ContactChannel.pair(
            our_ik=state.identity.public.identity_key,
            their_ik=contact.public.identity_key,
            our_secret=exchange.secret, ours=exchange.share, theirs=theirs,
            handshake_hash=peer.handshake_hash, now=now, limits=state.config.message,
            index=state.tags, peer_id=contact.peer_id,
        )  # fmt: skip
        self.install(contact, channel, now, healed=False)
        self._receipts.after_heal(contact.peer_id, lost, now)

    def _answer_live_heal(
        self, session: PeerSession, contact: Contact, theirs: KeyShare, now: float
    ) -> KeyExchangeState | None:
        """A live heal (core/pacing.py, issue #17): the peer renews the channel on a link that
        stays up. Answer with a fresh share of ours; the caller heals as at a meeting.

        A peer asks only once the previous exchange is confirmed both ways (its KeyConfirm
        precedes its share on this ordered link), and only to heal the channel, never to pair
        afresh. Anything else closes the link: a stray share (fuzz, 2026-12-07) made each side
        take the other's answer for a new request, and the two healed, and wrote their
        channel to disk, in a loop.
        """
        exchange = session.key_exchange
        assert exchange is not None
        if not exchange.confirmed or exchange.confirm_pending:
            raise RemoteProtocolError("KeyExchange before the previous one was confirmed")
        self._renewal.start(session, contact, now)
        exchange = session.key_exchange
        if exchange is not None and not can_heal(exchange.share, theirs):
            raise RemoteProtocolError("a live KeyExchange must heal the channel, not pair afresh")
        return exchange

    def _confirm_durable(
        self, session: PeerSession, exchange: KeyExchangeState, confirmation: bytes, now: float
    ) -> None:
        """Commit action of a heal: the new epoch is durable, so confirm it to the peer."""
        exchange.confirm_pending = False
        if session.link_id not in self._state.sessions or session.key_exchange is not exchange:
            return  # the link closed meanwhile: the peer learns it from our next message
        self._out.transmit(session, [KeyConfirm(confirmation=confirmation)])
        contact = self._state.contacts.get(session.peer_id or b"")
        if contact is not None:
            self._renewal.renew_if_low(contact, now)  # a live heal may have waited for this

    def contact_added(
        self, contact: Contact, now: float
    ) -> list[tuple[PeerSession, RemoteProtocolError]]:
        """A contact was added (or a request accepted) while a link to it may be up: pair on it.

        The link came up with a stranger, so no key exchange started (issue #12: mail then
        waited for the next meeting). Both ends are authenticated already: our share goes now,
        and a share the peer sent while we had not added it is answered at once. Returns the
        links whose kept share turned out bad (the caller closes them).
        """
        failed: list[tuple[PeerSession, RemoteProtocolError]] = []
        for session in list(self._state.sessions.values()):
            up = session.link.state is LinkState.ESTABLISHED
            if session.peer_id != contact.peer_id or not up:
                continue
            session.is_contact = True
            session.tier = Tier.VERIFIED if contact.verified else Tier.CONTACT
            share, session.stranger_share = session.stranger_share, None
            try:
                if session.key_exchange is None:
                    self._renewal.start(session, contact, now)
                if share is not None:
                    self.on_key_exchange(session, KeyExchange(share=share), now)
            except RemoteProtocolError as exc:
                failed.append((session, exc))
        return failed

    def contact_removed(self, peer_id: bytes) -> None:
        """Links to a removed contact go on as links to a stranger."""
        for session in self._state.sessions.values():
            if session.peer_id == peer_id:
                session.is_contact = False
                session.tier = Tier.STRANGER
                session.key_exchange = None

    def awaiting_acceptance(self, peer_id: bytes, now: float) -> bool:
        """Linked to this contact, our share unanswered for a while: it has not added us."""
        wait = self._state.config.first_contact.accept_wait_s
        return any(
            s.peer_id == peer_id and s.key_exchange is not None and not s.key_exchange.done
            and now - s.key_exchange.sent_at >= wait
            for s in self._state.sessions.values()
        )  # fmt: skip

    def on_key_confirm(self, session: PeerSession, confirmation: bytes, now: float) -> None:
        contact = self._state.contacts.get(session.peer_id or b"")
        exchange = session.key_exchange
        if contact is None or contact.channel is None or exchange is None or not exchange.done:
            raise RemoteProtocolError("unexpected KeyConfirm")
        if contact.channel.confirm(confirmation):
            exchange.confirmed = True  # only a matching one: a stale one must not start a heal
            self._out.persist([codec.channel_record(contact.peer_id, contact.channel)])
        self._renewal.renew_if_low(contact, now)  # the budget may have run low while we waited

    def on_closed(self, session: PeerSession, now: float) -> None:
        """The link ended: an exchange still running died with it."""
        contact = self._state.contacts.get(session.peer_id or b"")
        exchange = session.key_exchange
        # Issue 11 #5: `contact.exchanging`, not `not exchange.done`: an exchange that failed
        # after its share arrived (unparseable share) must not keep blocking sealing either.
        if contact is not None and exchange is not None and contact.exchanging:
            contact.exchanging = False
            self._sending.seal_waiting(contact, now)

    def _reseal_epoch(self, contact: Contact, epoch: int, now: float) -> None:
        """The peer never had ``epoch``: what we sealed in it is unreadable, so seal it again."""
        self._unseal([m for m in self._waiting_sealed(contact, now) if m.epoch == epoch])

    def _reseal_beyond_retention(self, contact: Contact, new_epoch: int, now: float) -> None:
        """Seal again what waits in epochs the peer may have let go of (issue #17).

        The peer keeps the receive keys of ``max_epochs_retained`` epochs: the new one, the
        previous one until its final counts are confirmed, and older ones while mail is
        pending in them, the oldest dropped first. Meetings that heal and end before our mail
        moves (a flaky link, a peer killed at every restart) each add an epoch with our mail
        pending, and the oldest went out of the peer's reach: it took custody and found
        "its key period has expired". So at a meeting's heal only the newest
        ``max_epochs_retained - 2`` older epochs with our undelivered mail keep it; the rest
        is sealed again in the new epoch (same message ids: a copy that still opens is a
        duplicate the peer ignores). Live heals on a link that stays up (core/pacing.py) do not
        do it: the mail of their epochs is moving on that link, and sealing it again there
        would only chase its own budget.
        """
        keep = max(1, self._state.config.message.max_epochs_retained - 2)
        waiting = [m for m in self._waiting_sealed(contact, now) if m.epoch != new_epoch]
        epochs = sorted({m.epoch for m in waiting if m.epoch is not None}, reverse=True)
        beyond = set(epochs[keep:])
        self._unseal([m for m in waiting if m.epoch in beyond])

    def _waiting_sealed(self, contact: Contact, now: float) -> Iterator[StoredMessage]:
        """Our sealed mail to ``contact`` that is neither delivered nor expired."""
        for m in self._state.conversations.with_peer(contact.peer_id):
            if m.outgoing and m.sealed and m.status < MessageStatus.DELIVERED and m.expiry_at > now:
                yield m

    def _unseal(self, messages: list[StoredMessage]) -> None:
        """Drop these messages' envelopes: they are sealed again in the current epoch."""
        state = self._state
        keep = state.config.message.max_epochs_retained
        for message in messages:
            message.sealed = False
            # Durably unsealed before its envelope goes: a crash in between leaves a
            # message sealed again at the next meeting, never one pointing at nothing.
            self._out.persist([codec.message_record(message)])
            if message.envelope_id is None:
                continue
            item = state.store.get(message.envelope_id)
            if item is not None:  # a copy may still travel: its token must still count
                state.conversations.supersede(message, item.tag, keep=keep)
            self._holdings.drop_item(message.envelope_id, DropReason.EXPIRED)

    def install(
        self,
        contact: Contact,
        channel: ContactChannel,
        now: float,
        *,
        healed: bool,
        then: CommitAction | None = None,
    ) -> None:
        """Give ``contact`` new keys: persist them (``then`` runs once they are durable), seal
        what waited, open what we carry."""
        contact.channel = channel
        channel.register(self._state.tags, contact.peer_id)  # replaces any older channel's tags
        self._note_deadline(channel.next_deadline())
        self._out.persist([codec.channel_record(contact.peer_id, channel)], then=then)
        event = ContactHealed if healed else ContactPaired
        self._out.emit(event(peer_id=contact.peer_id))
        self._sending.seal_waiting(contact, now)
        self._opening.check_store_for_new_tags(channel, now)

    # ======================================================= key schedule

    def advance_if_due(self, now: float) -> None:
        """Ratchet every contact's keys (delete old periods, expire tags); persist changes."""
        if self.channels_due_at is None or now < self.channels_due_at:
            return
        due: float | None = None
        for contact in self._state.contacts:
            channel = contact.channel
            if channel is None:
                continue
            # stale: an open() or seal() moved the clock but its state was never written
            stale = self._state.erasure.stale(contact.peer_id, channel)
            if channel.advance(now) or stale:
                self._out.persist([codec.channel_record(contact.peer_id, channel)])
                self._sending.seal_waiting(contact, now)  # a new period may bring counters
            deadline = channel.next_deadline()
            due = deadline if due is None else min(due, deadline)
        self.channels_due_at = due

    def _note_deadline(self, deadline: float) -> None:
        due = self.channels_due_at
        self.channels_due_at = deadline if due is None else min(due, deadline)
