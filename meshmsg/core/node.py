"""The Node: the one interface both drivers (trio in ``net/``, virtual time in ``sim/``) use.

Theory of operation
-------------------
A ``Node`` owns everything one device knows: its identity, contacts and their end-to-end key
state, the relay store, the routing state, conversations, and one :class:`~meshmsg.core.link.Link`
per open transport. It never does I/O: drivers feed it *inputs* and carry out its *effects*.

Contract (docs/architecture.md): after any input, the driver drains :meth:`next_effect` and
:meth:`next_event` until they return ``None``, then re-reads :meth:`next_deadline` and calls
:meth:`handle_timer` no later than that time. Every ``Persist`` effect must be committed durably
and answered with :meth:`storage_committed`; custody acknowledgements, received-message events
and the departure of freshly sealed envelopes wait for that answer.

A meeting (one established link) runs, in order: the handshake records (``Hello`` and the
``IdentityProof`` that binds the Noise key to an identity); for contacts, a ``KeyExchange`` that
pairs or heals the pairwise keys; for PRoPHET, the ``RouteTable``; then set reconciliation
(``SyncMessage`` rounds driven by the initiator); then each side ``Offer``s the envelopes the
other lacks, the other ``Reply``s with the ones addressed to it and the ones it already has, and
envelopes move as ``Transfer`` records — mail for the peer first, then what the routing policy
allows — each acknowledged by ``Custody`` once the receiver committed it. Purge tokens travel as
``Purge`` records. Items that arrive later are offered to every synced link at once.

One bad peer never raises out of an input method: a :class:`RemoteProtocolError` closes only its
link (``CloseLink`` effect and ``LinkClosed`` event). :class:`LocalProtocolError` means the
driver or application misused the node.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterable

from meshmsg.config import NodeConfig
from meshmsg.core import codec
from meshmsg.core.contacts import Contact, ContactBook
from meshmsg.core.conversations import Conversations, StoredMessage
from meshmsg.core.e2e import ContactChannel, TagIndex, new_key_share
from meshmsg.core.effects import (
    CloseLink,
    Dial,
    Effect,
    LinkId,
    Persist,
    RecordKind,
    StoredRecord,
    Transmit,
)
from meshmsg.core.erasure import KeyErasure
from meshmsg.core.events import (
    ContactHealed,
    ContactPaired,
    DropReason,
    EnvelopeDropped,
    Event,
    LinkClosed,
    MessageStatus,
    MessageStatusChanged,
    PeerConnected,
)
from meshmsg.core.exchange import Exchange
from meshmsg.core.firstmail import FirstMail
from meshmsg.core.identity import ContactCard, Identity
from meshmsg.core.itemset import ItemSet
from meshmsg.core.link import Link, LinkState, PeerHandshake, PeerVerdict
from meshmsg.core.noise import StaticKey
from meshmsg.core.org import orgcodec
from meshmsg.core.org.directory import Directory, OrgBook
from meshmsg.core.org.keys import OrgPublic
from meshmsg.core.records import SESSION_RECORDS, Hello, IdentityProof
from meshmsg.core.requests import RequestBook
from meshmsg.core.rng import Rng
from meshmsg.core.routing import make_router, route_id
from meshmsg.core.session import PeerSession
from meshmsg.core.store import RelayStore, StoreItem
from meshmsg.core.tombstones import Tombstones
from meshmsg.core.wire import Record
from meshmsg.errors import CloseReason, LocalProtocolError, RemoteProtocolError

CAPABILITIES = (1,)  # 1 = sync v1 (reconciliation, offer/reply, transfer, custody, purge)


class Node:
    """One meshmsg node, sans-IO. See the module docstring for the driver contract."""

    def __init__(
        self,
        *,
        identity: Identity,
        config: NodeConfig,
        rng: Rng,
        now: float,
        records: Iterable[StoredRecord] = (),
        one_mode: bool = False,
    ) -> None:
        """Create a node, restoring persisted state from ``records`` (from a previous run).

        Args:
            identity: this node's private keys.
            config: every limit and interval.
            rng: the randomness source (a CSPRNG in production, seeded in the simulator).
            now: current time in seconds (any epoch, but the same one for every input).
            records: everything earlier ``Persist`` effects committed, in any order.
            one_mode: ONE-simulator compatible buffers (drop-oldest, no tiers), for research.

        Raises:
            StorageError: a persisted record could not be decoded.
        """
        self.identity = identity
        self.config = config
        self.rng = rng
        self.now = now  # the latest time an input told us; used only to stamp queued output
        self.contacts = ContactBook(config.message.max_contacts)
        self.tags = TagIndex(max_contacts=config.message.max_contacts)
        self.store = RelayStore(config.store, one_mode=one_mode)
        self.items = ItemSet()
        self.erasure = KeyErasure()
        self.tombstones = Tombstones(config.message.dedup_entries, config.store)
        self.router = make_router(config.routing, route_id(identity.public.identity_key))
        self.conversations = Conversations()
        self.sessions: dict[LinkId, PeerSession] = {}
        self._effects: deque[Effect] = deque()
        self._events: deque[Event] = deque()
        self._next_token = 1
        self._on_commit: dict[int, list[Callable[[float], None]]] = {}
        self._uncommitted: set[bytes] = set()  # envelope ids not yet durable: not offered
        # Earliest key-schedule deadline over all contacts. Recomputed whenever channels are
        # advanced; may only be earlier than the truth (an early wake-up is harmless), which
        # keeps next_deadline() O(links) instead of O(contacts) on the driver's hot path.
        self.channels_due_at: float | None = None
        self.exchange = Exchange(self)
        self.orgs = OrgBook(config.org)
        self.firstmail = FirstMail(self)
        self.firstmail.index.advance(now)
        self._noise_static = StaticKey(identity.noise_private)  # prepared once, used per link
        self._handshake_records: list[Record] = [
            Hello(version=1, capabilities=CAPABILITIES, agent="meshmsg"),
            IdentityProof(public=identity.public.to_bytes()),
        ]
        codec.restore_node(self, records, now)

    # ================================================================ outputs

    def next_effect(self) -> Effect | None:
        """The next thing the driver must do, or None."""
        return self._effects.popleft() if self._effects else None

    def next_event(self) -> Event | None:
        """The next fact to report to the application, or None."""
        return self._events.popleft() if self._events else None

    def next_deadline(self) -> float | None:
        """Absolute time by which :meth:`handle_timer` must be called, or None."""
        deadlines = [s.link.next_deadline() for s in self.sessions.values()]
        deadlines.append(self.store.next_expiry())
        deadlines.append(self.exchange.next_deadline())
        deadlines.append(self.conversations.next_expiry())
        deadlines.append(self.channels_due_at)
        deadlines.append(self.firstmail.next_deadline())
        present = [d for d in deadlines if d is not None]
        return min(present) if present else None

    # ========================================================== app commands

    def add_contact(
        self, card: ContactCard, *, verified: bool, now: float, name: str | None = None
    ) -> Contact:
        """Add (or update) a contact from a decoded contact code.

        Raises:
            LocalProtocolError: the contact list is full, or the card is our own.
        """
        self.now = now
        if card.peer_id == self.identity.peer_id:
            raise LocalProtocolError("that contact code is our own")
        existing = self.contacts.get(card.peer_id)
        display = name or card.name or card.peer_id.hex()[:8]
        if existing is not None:
            existing.verified = existing.verified or verified
            existing.name = display
            contact = existing
        else:
            contact = Contact(public=card.public, name=display, verified=verified, added_at=now)
            self.contacts.add(contact)
        self.persist([codec.contact_record(contact)])
        self.firstmail.contact_added(contact, now)  # a pending request becomes a conversation
        self.exchange.contact_added(contact, now)  # a live link pairs now, not at next meeting
        return contact

    def set_verified(self, peer_id: bytes, verified: bool, *, now: float) -> None:
        self.now = now
        contact = self.contacts.require(peer_id)
        contact.verified = verified
        self.persist([codec.contact_record(contact)])

    def set_blocked(self, peer_id: bytes, blocked: bool, *, now: float) -> None:
        self.now = now
        contact = self.contacts.require(peer_id)
        contact.blocked = blocked
        self.persist([codec.contact_record(contact)])
        if blocked:
            for link, session in list(self.sessions.items()):
                if session.peer_id == peer_id:
                    self._close(link, CloseReason.PEER_BLOCKED, "contact blocked", now)

    def remove_contact(self, peer_id: bytes, *, now: float) -> None:
        self.now = now
        contact = self.contacts.require(peer_id)
        if contact.channel is not None:
            self.tags.forget_contact(peer_id)
        self.contacts.remove(peer_id)
        self.exchange.contact_removed(peer_id)
        self.persist([], deletes=[(RecordKind.CONTACT, peer_id), (RecordKind.CHANNEL, peer_id)])

    def send_message(
        self, peer_id: bytes, body: str, *, now: float, ttl_s: float | None = None
    ) -> bytes:
        """Queue a text message to a contact; return its 16-byte message id.

        The message is sealed at once if the contact is paired, else when the first direct
        meeting pairs it. Its timeline is reported by ``MessageStatusChanged`` events.

        Raises:
            LocalProtocolError: unknown contact, or a TTL over the configured maximum.
            InvalidMessage: the body is larger than ``max_body_bytes``.
        """
        self.now = now
        return self.exchange.send_text(peer_id, body, now=now, ttl_s=ttl_s)

    def mark_read(self, peer_id: bytes, message_ids: Iterable[bytes], *, now: float) -> None:
        """The user read these received messages: send a read receipt (if receipts are on)."""
        self.now = now
        self.exchange.mark_read(peer_id, list(message_ids), now)

    # ================================================== requests, organisations

    @property
    def requests(self) -> RequestBook:
        """Pending message requests and blocked strangers (read them; commands below)."""
        return self.firstmail.requests

    def accept_request(self, peer_id: bytes, *, now: float) -> Contact:
        """Accept a message request: the sender becomes an unverified contact.

        Raises:
            LocalProtocolError: no request from that peer, or the contact list is full.
        """
        self.now = now
        return self.firstmail.accept(peer_id, now)

    def decline_request(self, peer_id: bytes, *, block: bool, now: float) -> None:
        """Delete a request; ``block`` also drops the sender's later mail on arrival."""
        self.now = now
        self.firstmail.decline(peer_id, block=block, now=now)

    def unblock_sender(self, peer_id: bytes, *, now: float) -> None:
        self.now = now
        self.firstmail.unblock(peer_id)

    def awaiting_acceptance(self, peer_id: bytes, *, now: float) -> bool:
        """Linked to this contact, which has not added us (our key share goes unanswered)."""
        return self.exchange.awaiting_acceptance(peer_id, now)

    def join_org(self, org: OrgPublic, *, now: float) -> None:
        """Join an organisation by its code: its directories are accepted from now on."""
        self.now = now
        self.orgs.join(org)
        self.persist([orgcodec.org_record(self.orgs, org.org_id)])

    def import_directory(self, org_id: bytes, data: bytes, *, now: float) -> Directory:
        """Take a directory handed to us locally (a file from the administrator).

        Raises:
            DirectoryError: unknown organisation, forged, malformed, or not newer.
        """
        self.now = now
        return orgcodec.accept_directory(self, org_id, data, source=None)

    # =========================================================== driver inputs

    def link_opened(
        self, link: LinkId, *, initiator: bool, now: float, address: str | None = None
    ) -> None:
        """A transport connected (we dialed: ``initiator``; or we accepted)."""
        self.now = now
        if link in self.sessions:
            raise LocalProtocolError(f"link {link} is already open")
        noise_link = Link(
            initiator=initiator,
            static_private=self._noise_static,
            config=self.config,
            rng=self.rng,
            now=now,
            handshake_records=self._handshake_records,
            decide=self._decide,
            registry=SESSION_RECORDS,
        )
        self.sessions[link] = PeerSession(link_id=link, link=noise_link, address=address)
        self._flush(link, now)

    def receive_data(self, link: LinkId, data: bytes, *, now: float) -> None:
        """Bytes arrived on ``link``. Never raises for anything the peer sent."""
        self.now = now
        session = self._session(link)
        was_handshake = session.link.state is LinkState.HANDSHAKE
        try:
            records = session.link.receive_data(data, now)
            if was_handshake and session.link.state is LinkState.ESTABLISHED:
                self._on_established(session, now)
            for record in records:
                self.exchange.handle(session, record, now)
        except RemoteProtocolError as exc:
            self._close(link, exc.reason, str(exc), now, tell_peer=False)
            return
        if session.link.state is LinkState.CLOSED:
            self._forget(link, session.link.close_reason or CloseReason.NORMAL, "closed by peer")
            self._effects.append(CloseLink(link=link, reason=CloseReason.NORMAL))
            return
        self._flush(link, now)

    def link_lost(self, link: LinkId, *, now: float) -> None:
        """The transport went away (reset, contact ended). Idempotent for unknown links."""
        self.now = now
        if link in self.sessions:
            self._forget(link, CloseReason.LINK_LOST, "transport lost")

    def peer_discovered(self, address: str, *, now: float) -> None:
        """Discovery (or a static peer list) reported an address: dial it unless linked."""
        self.now = now
        if any(s.address == address for s in self.sessions.values()):
            return
        self._effects.append(Dial(address=address))

    def handle_timer(self, *, now: float) -> None:
        """Time passed: timeouts, keepalives, rekeys, expiries, receipts, key rotation."""
        self.now = now
        for link, session in list(self.sessions.items()):
            try:
                session.link.handle_timer(now)
            except RemoteProtocolError as exc:
                self._close(link, exc.reason, str(exc), now, tell_peer=False)
                continue
            self._flush(link, now)
        self.exchange.on_timer(now)
        for link in list(self.sessions):
            self._flush(link, now)

    def storage_committed(self, token: int, *, now: float) -> None:
        """The driver durably committed the ``Persist`` effect with this token."""
        self.now = now
        for action in self._on_commit.pop(token, []):
            action(now)
        for link in list(self.sessions):
            self._flush(link, now)

    # ============================================================ internals

    def emit(self, event: Event) -> None:
        self._events.append(event)

    def persist(
        self,
        puts: list[StoredRecord],
        *,
        deletes: Iterable[tuple[RecordKind, bytes]] = (),
        then: Callable[[float], None] | None = None,
    ) -> int:
        """Emit one atomic ``Persist``; run ``then`` once the driver confirms it."""
        token = self._next_token
        self._next_token += 1
        deletes = tuple(deletes)
        erases = self.erasure.erases(puts, self.contacts)  # key state: see core/erasure.py
        erases = erases or any(kind is RecordKind.CHANNEL for kind, _ in deletes)
        self._effects.append(
            Persist(token=token, puts=tuple(puts), deletes=deletes, erases_keys=erases)
        )
        if then is not None:
            self._on_commit.setdefault(token, []).append(then)
        return token

    def transmit(self, session: PeerSession, records: list[Record], envelopes: int = 0) -> None:
        """Queue records on a link; envelope-carrying sends may be split for pacing."""
        if session.link.state is not LinkState.ESTABLISHED:
            return
        session.link.send(records)
        if envelopes:
            data = session.link.data_to_send(self.now)
            if data:
                self._effects.append(Transmit(link=session.link_id, data=data, envelopes=envelopes))

    def admit_item(self, item: StoreItem, now: float) -> bool:
        """Put an item into the store and the reconciliation set; report evictions."""
        result = self.store.admit(item, now)
        for victim in result.evicted:
            # The store already removed the victims: drop_item would find nothing and skip
            # the reconciliation set, the stored record and the event.
            self._forget_item(victim, DropReason.EVICTED)
        if result.admission.value != "accepted":
            return False
        self.items.add(item.envelope_id, int(item.expiry_at))
        return True

    def drop_item(self, envelope_id: bytes, reason: DropReason) -> None:
        if self.store.remove(envelope_id) is not None:
            self._forget_item(envelope_id, reason)

    def _forget_item(self, envelope_id: bytes, reason: DropReason) -> None:
        """Everything but the store itself lets go of an item that left the store."""
        self.items.remove(envelope_id)
        self._uncommitted.discard(envelope_id)
        self.persist([], deletes=[(RecordKind.ENVELOPE, envelope_id)])
        self.emit(EnvelopeDropped(envelope_id=envelope_id, reason=reason))
        self.exchange.room_freed(self.now)

    def offerable(self, envelope_id: bytes) -> bool:
        return envelope_id not in self._uncommitted

    def mark_uncommitted(self, envelope_id: bytes) -> None:
        self._uncommitted.add(envelope_id)

    def mark_committed(self, envelope_id: bytes) -> None:
        self._uncommitted.discard(envelope_id)

    def status_changed(self, message: StoredMessage, status: MessageStatus, now: float) -> None:
        if self.conversations.advance(message, status, now):
            self.persist([codec.message_record(message)])
            self.emit(
                MessageStatusChanged(
                    message_id=message.message_id, peer_id=message.peer_id, status=status, at=now
                )
            )

    def note_channel_deadline(self, deadline: float) -> None:
        due = self.channels_due_at
        self.channels_due_at = deadline if due is None else min(due, deadline)

    def channel_installed(self, contact: Contact, *, healed: bool) -> None:
        event = ContactHealed if healed else ContactPaired
        self.emit(event(peer_id=contact.peer_id))

    # ------------------------------------------------------------- sessions

    def _session(self, link: LinkId) -> PeerSession:
        session = self.sessions.get(link)
        if session is None:
            raise LocalProtocolError(f"unknown link {link}")
        return session

    def _decide(self, peer: PeerHandshake) -> PeerVerdict:
        return self.exchange.decide(peer)

    def _on_established(self, session: PeerSession, now: float) -> None:
        peer = session.link.peer
        assert peer is not None
        self.exchange.on_established(session, peer, now)
        self.emit(
            PeerConnected(
                link=session.link_id,
                peer_id=session.peer_id or b"",
                is_contact=session.link.verdict is PeerVerdict.CONTACT,
            )
        )

    def _flush(self, link: LinkId, now: float) -> None:
        session = self.sessions.get(link)
        if session is None:
            return
        data = session.link.data_to_send(now)
        if data:
            self._effects.append(Transmit(link=link, data=data))

    def close_link(self, link: LinkId, reason: CloseReason, detail: str, now: float) -> None:
        """Close one link for a protocol error its peer made (tells the peer why)."""
        self._close(link, reason, detail, now)

    def _close(
        self, link: LinkId, reason: CloseReason, detail: str, now: float, *, tell_peer: bool = True
    ) -> None:
        session = self.sessions.get(link)
        if session is None:
            return
        if tell_peer:
            session.link.close(reason, detail)
            self._flush(link, now)
        self._effects.append(CloseLink(link=link, reason=reason))
        self._forget(link, reason, detail)

    def _forget(self, link: LinkId, reason: CloseReason, detail: str) -> None:
        session = self.sessions.pop(link)
        self.exchange.on_closed(session, self.now)
        self.emit(LinkClosed(link=link, reason=reason, peer_id=session.peer_id, detail=detail))


def pair_offline(a: Node, b: Node, *, now: float) -> None:
    """Give two nodes pairwise keys as if they had met (simulation and tests only).

    Real users pair at their first direct meeting. The simulator starts scenarios with every
    pair of contacts already paired; this runs the same pairing computation both nodes would
    run inside a Noise session, with each node's own randomness, and installs the result. Both
    nodes must already have each other as contacts.
    """
    contact_b = a.contacts.require(b.identity.peer_id)
    contact_a = b.contacts.require(a.identity.peer_id)
    secret_a, share_a = new_key_share(a.rng, now, a.config.message, None)
    secret_b, share_b = new_key_share(b.rng, now, b.config.message, None)
    binding = hashlib.blake2b(
        a.identity.peer_id + b.identity.peer_id, digest_size=64, person=b"meshmsg-offline"
    ).digest()
    for node, contact, secret, ours, theirs in (
        (a, contact_b, secret_a, share_a, share_b),
        (b, contact_a, secret_b, share_b, share_a),
    ):
        channel = ContactChannel.pair(
            our_ik=node.identity.public.identity_key, their_ik=contact.public.identity_key,
            our_secret=secret, ours=ours, theirs=theirs, handshake_hash=binding, now=now,
            limits=node.config.message, index=node.tags, peer_id=contact.peer_id,
        )  # fmt: skip
        node.now = now
        node.exchange.install_channel(contact, channel, now, healed=False)
