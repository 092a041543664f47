"""The exchange: the parts of the meeting protocol, wired together, and what drives them.

Theory of operation
-------------------
This holds the rules of what two nodes say to each other once their Noise link is up (the
order is in :mod:`meshmsg.core.node`), and what a node does with mail: sealing its own, taking
custody of others', opening what is addressed to it, sending receipts, expiring. Each rule
lives in one part (see :mod:`meshmsg.core.exchange`); :class:`Exchange` builds them over one
state and one outbox, hands each record to the part that handles it, and runs the timers.

Every record handler validates what the peer sent against what the session expects; a record
that makes no sense in the current state raises :class:`RemoteProtocolError`, which closes that
link only. An envelope that fails validation raises nothing: it is refused in ``Custody`` and
counted (Briar's split between a broken link and a bad message).
"""

from __future__ import annotations

from meshmsg.core.attach.records import (
    AttachmentDone,
    Chunk,
    ChunkHoldings,
    ChunkMissing,
    ChunkRequest,
)
from meshmsg.core.events import MessageStatus
from meshmsg.core.exchange.attachments import Attachments
from meshmsg.core.exchange.bodies import Bodies
from meshmsg.core.exchange.custody import Carrying
from meshmsg.core.exchange.firstmail import FirstOpening
from meshmsg.core.exchange.holdings import Holdings
from meshmsg.core.exchange.keys import ContactKeys
from meshmsg.core.exchange.meeting import Meeting
from meshmsg.core.exchange.opening import Opening
from meshmsg.core.exchange.orgs import OrgSync
from meshmsg.core.exchange.purges import Purges
from meshmsg.core.exchange.receipts import Receipts
from meshmsg.core.exchange.renewal import Renewal
from meshmsg.core.exchange.sending import Sending
from meshmsg.core.exchange.sync import Sync
from meshmsg.core.groups.mail import GroupMail
from meshmsg.core.outbox import Outbox
from meshmsg.core.records import (
    Custody,
    DirectoryChunk,
    DirectoryHave,
    KeyConfirm,
    KeyExchange,
    Offer,
    OneModeAsk,
    OneModeBusy,
    OneModeSize,
    Purge,
    Reply,
    RouteTable,
    SyncMessage,
    TimedTransfer,
    Transfer,
)
from meshmsg.core.session import PeerSession
from meshmsg.core.state import NodeState
from meshmsg.core.wire import Record
from meshmsg.errors import RemoteProtocolError

_MS = 1000.0


class Exchange:
    """Meeting and mail rules of one node (see the module docstring)."""

    def __init__(self, state: NodeState, out: Outbox) -> None:
        self._state = state
        self.attachments = Attachments(state, out)
        self._holdings = Holdings(state, out)
        self._sync = Sync(state, out, self._holdings)
        renewal = Renewal(state, out)
        self.sending = Sending(state, out, self._holdings, self._sync, renewal, self.attachments)
        self.receipts = Receipts(state, out, self.sending, renewal)
        self._purges = Purges(state, out, self._holdings, self._sync)
        self.groups = GroupMail(
            state, out, self._holdings, self._sync, self.sending, self.attachments
        )
        opening = Opening(
            state, out, self._holdings, self._purges, self.receipts, self.groups, self.attachments
        )
        self.keys = ContactKeys(
            state, out, self._holdings, self.sending, opening, renewal, self.receipts
        )
        self.first = FirstOpening(state, out, self._holdings, opening)  # issue #12
        self._carrying = Carrying(state, out, self._holdings, self._sync, opening, self.first)
        self.orgs = OrgSync(state, out)
        self.meeting = Meeting(state, self.keys, self._sync, self.attachments, self.orgs)
        self.bodies = Bodies(
            state, out, self._holdings, self._sync, opening, self.first, self.groups
        )
        out.durable = state.store.body_durable  # a committed carried body may leave memory

    def handle(self, session: PeerSession, record: Record, now: float) -> None:
        """One record arrived on an established link: hand it to the part that handles it."""
        if session.peer_id is None:
            raise RemoteProtocolError("records before the handshake finished")
        match record:
            case KeyExchange():
                self.keys.on_key_exchange(session, record, now)
            case KeyConfirm(confirmation=confirmation):
                self.keys.on_key_confirm(session, confirmation, now)
            case RouteTable(entries=entries):
                self._sync.on_route_table(session, entries, now)
            case SyncMessage(payload=payload):
                self._sync.on_sync(session, payload)
            case Offer(entries=entries):
                self._sync.on_offer(session, entries)
            case Reply(for_me=for_me, have=have):
                self._sync.on_reply(session, for_me, have, now)
            case OneModeSize(size=size):
                self._carrying.on_one_size(session, size)
            case OneModeBusy(busy=busy):
                if self._state.store.one_mode:
                    self._sync.one.peer_busy(session, busy, now)
            case OneModeAsk(step=step, rank=rank):
                if self._state.store.one_mode:
                    self._sync.one.on_ask(session, step, rank, now)
            case Transfer():
                self._carrying.on_transfer(session, record, now)
            case TimedTransfer():
                self._carrying.on_timed_transfer(session, record, now)
            case Custody(accepted=accepted, refused=refused):
                self._carrying.on_custody(session, accepted, refused, now)
            case Purge(token=token, expiry_at=expiry_at):
                self._purges.on_purge(session, token, expiry_at / _MS, now)
            case ChunkHoldings() | ChunkRequest() | Chunk() | ChunkMissing() | AttachmentDone():
                self.attachments.handle(session, record, now)
            case DirectoryHave():
                self.orgs.on_have(session, record)
            case DirectoryChunk():
                self.orgs.on_chunk(session, record)
            case _:
                raise RemoteProtocolError(f"unexpected {type(record).__name__} on a live link")

    def on_closed(self, session: PeerSession, now: float) -> None:
        """The link ended: what was running on it stops, what was in flight comes back."""
        self.keys.on_closed(session, now)
        self._carrying.release_in_flight(session)
        self._sync.on_closed(session, now)
        self.attachments.on_closed(session)

    def next_deadline(self) -> float | None:
        candidates = [
            self.receipts.due_at,
            self._state.receipt_holds.next_at,
            self._holdings.room_check_at,
            self._state.tombstones.next_expiry(),
            self.keys.channels_due_at,
            self.groups.next_deadline(),
            self.attachments.carrier.next_deadline(),
            self.first.next_deadline(),
            self._sync.one.due_at,
        ]
        present = [c for c in candidates if c is not None]
        return min(present) if present else None

    def on_timer(self, now: float) -> None:
        """Expire what is due, advance key periods, send receipts, retry waiting messages."""
        self._holdings.expire_items(now)
        for message in self._state.conversations.due_expiries(now):
            self._holdings.status_changed(message, MessageStatus.EXPIRED, now)
        self.keys.advance_if_due(now)
        self.first.advance(now)
        self.receipts.send_due(now)
        self._sync.release_receipt_holds(now)
        self.groups.on_timer(now)
        self.attachments.carrier.on_timer(now)
        self._sync.one.on_timer(now)
        for peer_id in self._holdings.take_room_wanted(now):
            contact = self._state.contacts.get(peer_id)
            if contact is not None:
                self.sending.seal_waiting(contact, now)
