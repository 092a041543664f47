"""Contact keys: pairing and healing at a meeting, and the key schedule between meetings.

At a meeting with a contact each side sends a ``KeyExchange`` share; the two shares pair the
contact (first meeting) or heal its keys (later meetings), and ``KeyConfirm`` proves both sides
derived the same. Between meetings :meth:`ContactKeys.advance` ratchets every contact's keys as
periods end. This part owns ``channels_due_at``, the earliest key-schedule deadline.
"""

from __future__ import annotations

from meshmsg.core import codec
from meshmsg.core.clockcheck import meeting_skew
from meshmsg.core.contacts import Contact
from meshmsg.core.e2e import ContactChannel
from meshmsg.core.events import ContactHealed, ContactPaired, DropReason, MessageStatus
from meshmsg.core.exchange.holdings import Holdings
from meshmsg.core.exchange.opening import Opening
from meshmsg.core.exchange.renewal import Renewal
from meshmsg.core.exchange.sending import Sending
from meshmsg.core.keyschedule import KeyShare, can_heal
from meshmsg.core.outbox import Outbox
from meshmsg.core.records import KeyConfirm, KeyExchange
from meshmsg.core.session import PeerSession
from meshmsg.core.state import NodeState
from meshmsg.errors import RemoteProtocolError


class ContactKeys:
    """Pairs, heals, confirms and advances the contacts' end-to-end keys."""

    __slots__ = (
        "_holdings", "_opening", "_out", "_renewal", "_sending", "_state", "channels_due_at",
    )  # fmt: skip

    def __init__(
        self,
        state: NodeState,
        out: Outbox,
        holdings: Holdings,
        sending: Sending,
        opening: Opening,
        renewal: Renewal,
    ) -> None:
        self._state = state
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
        exchange = session.key_exchange
        contact = state.contacts.get(session.peer_id or b"")
        settled = exchange is not None and exchange.done
        if settled and contact is not None and contact.channel is not None:
            # A live heal (core/pacing.py, issue #17): the peer renews the channel on a link
            # that stays up. Answer with a fresh share of ours, then heal as at a meeting.
            self._renewal.start(session, contact, now)
            exchange = session.key_exchange
        if exchange is None or contact is None or exchange.done:
            raise RemoteProtocolError("unexpected KeyExchange")
        exchange.done = True
        theirs = KeyShare.from_bytes(record.share)  # DecodeError closes the link
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
            self._out.transmit(session, [KeyConfirm(confirmation=contact.channel.confirmation)])
            if result.abandoned_epoch is not None:
                self._reseal_epoch(contact, result.abandoned_epoch, now)
            self.install(contact, contact.channel, now, healed=True)  # seals them again
            return
        exchange.confirmed = True  # a pairing has no older epoch to confirm the leaving of
        channel = ContactChannel.pair(
            our_ik=state.identity.public.identity_key,
            their_ik=contact.public.identity_key,
            our_secret=exchange.secret, ours=exchange.share, theirs=theirs,
            handshake_hash=peer.handshake_hash, now=now, limits=state.config.message,
            index=state.tags, peer_id=contact.peer_id,
        )  # fmt: skip
        self.install(contact, channel, now, healed=False)

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
        for message in self._state.conversations.with_peer(contact.peer_id):
            lost = message.outgoing and message.sealed and message.epoch == epoch
            if lost and message.status < MessageStatus.DELIVERED and message.expiry_at > now:
                message.sealed = False
                # Durably unsealed before its envelope goes: a crash in between leaves a
                # message sealed again at the next meeting, never one pointing at nothing.
                self._out.persist([codec.message_record(message)])
                if message.envelope_id is not None:
                    self._holdings.drop_item(message.envelope_id, DropReason.EXPIRED)

    def install(
        self, contact: Contact, channel: ContactChannel, now: float, *, healed: bool
    ) -> None:
        """Give ``contact`` new keys: persist them, seal what waited, open what we carry."""
        contact.channel = channel
        channel.register(self._state.tags, contact.peer_id)  # replaces any older channel's tags
        self._note_deadline(channel.next_deadline())
        self._out.persist([codec.channel_record(contact.peer_id, channel)])
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
