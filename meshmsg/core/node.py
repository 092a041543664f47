"""The Node: the one interface both drivers (trio in ``net/``, virtual time in ``sim/``) use.

Theory of operation
-------------------
A ``Node`` owns everything one device knows (a :class:`~meshmsg.core.state.NodeState`: its
identity, contacts and their end-to-end key state, the relay store, the routing state,
conversations, and one :class:`~meshmsg.core.link.Link` per open transport) and the
:class:`~meshmsg.core.outbox.Outbox` its output waits in. It never does I/O: drivers feed it
*inputs* and carry out its *effects* (:class:`~meshmsg.core.driver.DriverInterface`). What is
said at a meeting, and what happens to mail, is decided by the parts of
:mod:`meshmsg.core.exchange`; the node runs the links and hands them the records.

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

from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType

from meshmsg.config import NodeConfig
from meshmsg.core import codec
from meshmsg.core.attach.assembly import AttachmentRef
from meshmsg.core.attach.table import Carried
from meshmsg.core.contacts import Contact, ContactBook
from meshmsg.core.conversations import Conversations
from meshmsg.core.driver import DriverInterface
from meshmsg.core.e2e import ContactChannel, TagIndex
from meshmsg.core.effects import DeleteChunks, Effect, LinkId, RecordKind, StoredRecord
from meshmsg.core.events import Event, LinkClosed, PeerConnected
from meshmsg.core.exchange.dispatch import Exchange
from meshmsg.core.exchange.receipts import RECEIPT_DELIVERED
from meshmsg.core.exchange.sync import TIMED_TRANSFER
from meshmsg.core.groups.book import GroupBook
from meshmsg.core.identity import ContactCard, Identity
from meshmsg.core.itemset import ItemSet
from meshmsg.core.link import Link, LinkState, PeerVerdict
from meshmsg.core.noise import StaticKey
from meshmsg.core.org import orgcodec
from meshmsg.core.org.directory import Directory, OrgBook
from meshmsg.core.org.keys import OrgPublic
from meshmsg.core.outbox import Outbox
from meshmsg.core.pacing import LIVE_HEAL
from meshmsg.core.records import SESSION_RECORDS, Hello, IdentityProof
from meshmsg.core.requests import RequestBook
from meshmsg.core.rng import Rng
from meshmsg.core.routing import Router
from meshmsg.core.session import PeerSession
from meshmsg.core.store import RelayStore
from meshmsg.core.tombstones import Tombstones
from meshmsg.core.wire import Record
from meshmsg.errors import CloseReason, LocalProtocolError, RemoteProtocolError

# 1 = sync v1 (reconciliation, offer/reply, transfer, custody, purge); 2 = LIVE_HEAL: a
# KeyExchange after the meeting's exchange is answered (core/pacing.py, issue #17); 3 =
# TIMED_TRANSFER: transfers carry a relative lifetime (core/exchange/sync.py, issue #11)
CAPABILITIES = (1, LIVE_HEAL, TIMED_TRANSFER)


class Node:
    """One meshmsg node, sans-IO. See the module docstring for the driver contract.

    Its public surface is the driver inputs and outputs (:class:`~meshmsg.core.driver.
    DriverInterface`), the user commands, and read-only views of its state (listed in
    docs/architecture.md, "Node's public surface").
    """

    def __init__(
        self,
        *,
        identity: Identity,
        config: NodeConfig,
        rng: Rng,
        now: float,
        records: Iterable[StoredRecord] = (),
        one_mode: bool = False,
        chunks: Mapping[bytes, Iterable[int]] | None = None,
    ) -> None:
        """Create a node, restoring persisted state from ``records`` (from a previous run).

        Args:
            identity: this node's private keys.
            config: every limit and interval.
            rng: the randomness source (a CSPRNG in production, seeded in the simulator).
            now: current time in seconds (any epoch, but the same one for every input).
            records: everything earlier ``Persist`` effects committed, in any order.
            one_mode: ONE-simulator compatible relay store (drop-oldest, no trust tiers), for
                research: the simulator compares the production code with the ONE's reports,
                and the store's eviction rule is the one difference a driver cannot supply
                from outside (see docs/architecture.md, "Simulator concerns in the core").
            chunks: which chunks the driver's chunk store holds, by attachment id (its scan at
                start): the store is the truth about chunk bodies, the records about the rest.

        Raises:
            StorageError: a persisted record could not be decoded.
        """
        restored = codec.restore_state(
            records, identity=identity, config=config, rng=rng, one_mode=one_mode
        )
        records = restored.others  # carried envelopes were restored as they passed
        self._state = restored.state
        state = self._state
        self._out = Outbox(now, erases=lambda puts: state.erasure.erases(puts, state.contacts))
        self._exchange = Exchange(self._state, self._out)
        self._noise_static = StaticKey(identity.noise_private)  # prepared once, used per link
        self._handshake_records: list[Record] = [
            Hello(version=1, capabilities=CAPABILITIES, agent="meshmsg"),
            IdentityProof(public=identity.public.to_bytes()),
        ]
        self._exchange.groups.restore(records, now)
        carrier = self._exchange.attachments.carrier
        orphans = carrier.restore(restored.attachments, restored.attachments_done, chunks or {})
        for attachment_id in orphans:  # chunks written before a crash, their record never was
            self._out.chunk(DeleteChunks(attachment_id=attachment_id))
        self._exchange.receipts.restore_owed(restored.owed_receipts, now)
        for sealed in restored.sealed_receipts:
            receipts = self._exchange.receipts
            receipts.note_sealed(sealed.peer_id, sealed.epoch, sealed.kind, sealed.message_id)
        if not restored.empty:
            self._exchange.on_timer(now)  # expire what died while we were down

    # ========================================================= read-only views

    @property
    def identity(self) -> Identity:
        return self._state.identity

    @property
    def config(self) -> NodeConfig:
        return self._state.config

    @property
    def contacts(self) -> ContactBook:
        return self._state.contacts

    @property
    def conversations(self) -> Conversations:
        return self._state.conversations

    @property
    def store(self) -> RelayStore:
        return self._state.store

    @property
    def sessions(self) -> Mapping[LinkId, PeerSession]:
        """Open links by driver id (read them; the node alone opens and closes them)."""
        return self._state.sessions

    @property
    def tags(self) -> TagIndex:
        return self._state.tags

    @property
    def items(self) -> ItemSet:
        return self._state.items

    @property
    def tombstones(self) -> Tombstones:
        return self._state.tombstones

    @property
    def router(self) -> Router:
        return self._state.router

    @property
    def now(self) -> float:
        """The latest time an input told us (what read-only views such as
        :func:`~meshmsg.core.pacing.outbox_waits` judge by)."""
        return self._out.now

    # ================================================================ outputs

    def next_effect(self) -> Effect | None:
        """The next thing the driver must do, or None."""
        return self._out.next_effect()

    def next_event(self) -> Event | None:
        """The next fact to report to the application, or None."""
        return self._out.next_event()

    def next_deadline(self) -> float | None:
        """Absolute time by which :meth:`handle_timer` must be called, or None."""
        state = self._state
        deadlines = [s.link.next_deadline() for s in state.sessions.values()]
        deadlines.append(state.store.next_expiry())
        deadlines.append(self._exchange.next_deadline())
        deadlines.append(state.conversations.next_expiry())
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
        self._out.now = now
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
        self._out.persist([codec.contact_record(contact)])
        self._contact_added(contact, now)
        return contact

    def _contact_added(self, contact: Contact, now: float) -> None:
        """Issue #12: a pending request from it becomes its conversation (its delivered
        receipts now go), and a live link to it pairs now, not at the next meeting."""
        for message_id in self._exchange.first.contact_added(contact):
            self._exchange.receipts.queue(contact.peer_id, RECEIPT_DELIVERED, message_id, now)
            if self.config.message.send_receipts:
                owed = codec.owed_receipt_record(contact.peer_id, RECEIPT_DELIVERED, message_id)
                self._out.persist([owed])
        for session, exc in self._exchange.keys.contact_added(contact, now):
            self._close(session.link_id, exc.reason, str(exc), now)

    def set_verified(self, peer_id: bytes, verified: bool, *, now: float) -> None:
        self._out.now = now
        contact = self.contacts.require(peer_id)
        contact.verified = verified
        self._out.persist([codec.contact_record(contact)])

    def set_blocked(self, peer_id: bytes, blocked: bool, *, now: float) -> None:
        self._out.now = now
        contact = self.contacts.require(peer_id)
        contact.blocked = blocked
        self._out.persist([codec.contact_record(contact)])
        if blocked:
            for link, session in list(self._state.sessions.items()):
                if session.peer_id == peer_id:
                    self._close(link, CloseReason.PEER_BLOCKED, "contact blocked", now)

    def remove_contact(self, peer_id: bytes, *, now: float) -> None:
        self._out.now = now
        contact = self.contacts.require(peer_id)
        if contact.channel is not None:
            self.tags.forget_contact(peer_id)
        self.contacts.remove(peer_id)
        self._exchange.keys.contact_removed(peer_id)
        deletes = [(RecordKind.CONTACT, peer_id), (RecordKind.CHANNEL, peer_id)]
        self._out.persist([], deletes=deletes)

    # ================================================== requests, organisations

    @property
    def requests(self) -> RequestBook:
        """Pending message requests and blocked strangers (read them; commands below)."""
        return self._state.requests

    @property
    def orgs(self) -> OrgBook:
        """Organisations joined and their newest directories (read them; commands below)."""
        return self._state.orgs

    def accept_request(self, peer_id: bytes, *, now: float) -> Contact:
        """Accept a message request: the sender becomes an unverified contact.

        Raises:
            LocalProtocolError: no request from that peer, or the contact list is full.
        """
        request = self.requests.get(peer_id)
        if request is None:
            raise LocalProtocolError(f"no request from {peer_id.hex()[:16]}")
        card = ContactCard(public=request.sender, name=None, hints=())
        return self.add_contact(card, verified=False, now=now)

    def decline_request(self, peer_id: bytes, *, block: bool, now: float) -> None:
        """Delete a request; ``block`` also drops the sender's later mail on arrival."""
        self._out.now = now
        self._exchange.first.decline(peer_id, block=block)

    def unblock_sender(self, peer_id: bytes, *, now: float) -> None:
        self._out.now = now
        self._exchange.first.unblock(peer_id)

    def awaiting_acceptance(self, peer_id: bytes, *, now: float) -> bool:
        """Linked to this contact, which has not added us (our key share goes unanswered)."""
        return self._exchange.keys.awaiting_acceptance(peer_id, now)

    def join_org(self, org: OrgPublic, *, now: float) -> None:
        """Join an organisation by its code: its directories are accepted from now on."""
        self._out.now = now
        self.orgs.join(org)
        self._out.persist([orgcodec.org_record(self.orgs, org.org_id)])

    def import_directory(self, org_id: bytes, data: bytes, *, now: float) -> Directory:
        """Take a directory handed to us locally (the administrator's file).

        Raises:
            DirectoryError: unknown organisation, forged, malformed, or not newer.
        """
        self._out.now = now
        return self._exchange.orgs.accept(org_id, data, source=None)

    def send_message(
        self, peer_id: bytes, body: str, *, now: float, ttl_s: float | None = None,
        one_size: int = 0,
    ) -> bytes:  # fmt: skip
        """Queue a text message to a contact; return its 16-byte message id.

        The message is sealed at once if the contact is paired, else when the first direct
        meeting pairs it. Its timeline is reported by ``MessageStatusChanged`` events.
        ``one_size`` is for the simulator's ONE mode only: the payload bytes the message stands
        for, counted by stores and links in place of its envelope (docs/simulator.md).

        Raises:
            LocalProtocolError: unknown contact, a TTL over the configured maximum, or
                ``one_size`` outside ONE mode.
            InvalidMessage: the body is larger than ``max_body_bytes``.
        """
        self._out.now = now
        sending = self._exchange.sending
        return sending.send_text(peer_id, body, now=now, ttl_s=ttl_s, one_size=one_size)

    def send_files(
        self, peer_id: bytes, body: str, refs: Sequence[AttachmentRef], *, now: float,
        ttl_s: float | None = None,
    ) -> bytes:  # fmt: skip
        """Send a message with attachments the application sealed into the chunk store
        (``net/chunkstore.py``); return its message id. Each attachment travels on its own,
        chunk by chunk (docs/protocol/attachments.md); its progress is reported by events.

        Raises:
            LocalProtocolError: unknown contact, or a TTL over the configured maximum.
            InvalidMessage: body or attachment count over the limits.
            InvalidAttachment: a reference that fails its checks.
        """
        self._out.now = now
        message_id = self._exchange.sending.send_files(
            peer_id, body, list(refs), now=now, ttl_s=ttl_s
        )
        self._flush_all(now)
        return message_id

    def fetch_attachment(self, attachment_id: bytes, *, now: float) -> None:
        """Fetch an attachment the automatic download rules left pending."""
        self._out.now = now
        self._exchange.attachments.carrier.fetch(attachment_id, now)
        self._flush_all(now)

    def discard_attachment(self, attachment_id: bytes, *, now: float) -> None:
        """Forget an attachment and delete its chunks."""
        self._out.now = now
        self._exchange.attachments.carrier.discard(attachment_id)

    @property
    def attachments(self) -> Mapping[bytes, Carried]:
        """Every attachment at this node (own, wanted, carried), by id. Read only."""
        return MappingProxyType(self._exchange.attachments.carrier.table.items)

    def mark_read(self, peer_id: bytes, message_ids: Iterable[bytes], *, now: float) -> None:
        """The user read these received messages: send a read receipt (if receipts are on)."""
        self._out.now = now
        self._exchange.receipts.mark_read(peer_id, list(message_ids), now)

    # ================================================================ groups

    @property
    def groups(self) -> GroupBook:
        """Our groups (read them; change them through the methods below)."""
        return self._state.groups

    def create_group(self, name: str, members: Iterable[bytes], *, now: float) -> bytes:
        """Create a group of us (its admin) and these contacts; return its 32-byte id.

        Raises:
            GroupError: a limit (groups per node, members per group) or a bad name.
            LocalProtocolError: a member is not a contact.
        """
        self._out.now = now
        return self._exchange.groups.create(name, list(members), now)

    def change_group(
        self, group: bytes | str, action: str, *, now: float, member: bytes | None = None,
        name: str | None = None,
    ) -> None:  # fmt: skip
        """``action``: add, remove, promote, demote (``member``: a peer id), rename (``name``),
        leave. Raises GroupError when the rules refuse it (nothing is signed then)."""
        self._out.now = now
        entry = self.groups.find(group)
        self._exchange.groups.change(entry.group.id, action, member=member, name=name, now=now)

    def send_group_message(
        self, group: bytes | str, body: str, *, now: float, ttl_s: float | None = None,
        refs: Sequence[AttachmentRef] = (),
    ) -> bytes:  # fmt: skip
        """Seal one envelope for every member; return the message id. ``refs``: attachments
        sealed into the chunk store, one encrypted copy for the whole group.

        Raises:
            GroupError: see the group limits. InvalidAttachment: a reference fails its checks.
        """
        self._out.now = now
        entry = self.groups.find(group)
        message_id = self._exchange.groups.send_text(entry.group.id, body, now, ttl_s, refs)
        self._flush_all(now)
        return message_id

    def mark_group_read(
        self, group: bytes | str, message_ids: Iterable[bytes], *, now: float
    ) -> None:
        """The user read these group messages: read receipts go to their senders."""
        self._out.now = now
        entry = self.groups.find(group)
        self._exchange.groups.mark_read(entry.group.id, list(message_ids), now)

    # =========================================================== driver inputs

    def link_opened(
        self, link: LinkId, *, initiator: bool, now: float, address: str | None = None
    ) -> None:
        """A transport connected (we dialed: ``initiator``; or we accepted)."""
        self._out.now = now
        if link in self._state.sessions:
            raise LocalProtocolError(f"link {link} is already open")
        noise_link = Link(
            initiator=initiator,
            static_private=self._noise_static,
            config=self.config,
            rng=self._state.rng,
            now=now,
            handshake_records=self._handshake_records,
            decide=self._exchange.meeting.decide,
            registry=SESSION_RECORDS,
        )
        session = PeerSession(link_id=link, link=noise_link, address=address)
        self._state.sessions[link] = session
        self._out.flush(session, now)

    def receive_data(self, link: LinkId, data: bytes, *, now: float) -> None:
        """Bytes arrived on ``link``. Never raises for anything the peer sent."""
        self._out.now = now
        session = self._session(link)
        was_handshake = session.link.state is LinkState.HANDSHAKE
        try:
            records = session.link.receive_data(data, now)
            if was_handshake and session.link.state is LinkState.ESTABLISHED:
                self._on_established(session, now)
            for record in records:
                self._exchange.handle(session, record, now)
        except RemoteProtocolError as exc:
            # A duplicate link is sound: say so, or its dialler counts the close as a failure.
            duplicate = exc.reason is CloseReason.DUPLICATE_LINK
            self._close(link, exc.reason, str(exc), now, tell_peer=duplicate)
            return
        if session.link.state is LinkState.CLOSED:
            self._forget(link, session.link.close_reason or CloseReason.NORMAL, "closed by peer")
            self._out.close_link(link, CloseReason.NORMAL)
            return
        self._flush(link, now)

    def link_lost(self, link: LinkId, *, now: float) -> None:
        """The transport went away (reset, contact ended). Idempotent for unknown links."""
        self._out.now = now
        if link in self._state.sessions:
            self._forget(link, CloseReason.LINK_LOST, "transport lost")

    def peer_discovered(self, address: str, *, now: float) -> None:
        """Discovery (or a static peer list) reported an address: dial it unless linked."""
        self._out.now = now
        if any(s.address == address for s in self._state.sessions.values()):
            return
        self._out.dial(address)

    def handle_timer(self, *, now: float) -> None:
        """Time passed: timeouts, keepalives, rekeys, expiries, receipts, key rotation."""
        self._out.now = now
        for link, session in list(self._state.sessions.items()):
            try:
                session.link.handle_timer(now)
            except RemoteProtocolError as exc:
                self._close(link, exc.reason, str(exc), now, tell_peer=False)
                continue
            self._flush(link, now)
        self._exchange.on_timer(now)
        self._flush_all(now)

    def storage_committed(self, token: int, *, now: float) -> None:
        """The driver durably committed the ``Persist`` effect with this token."""
        self._out.now = now
        self._out.committed(token, now)
        self._flush_all(now)

    def envelope_loaded(self, envelope_id: bytes, value: bytes | None, *, now: float) -> None:
        """The ENVELOPE record a ``LoadEnvelope`` asked for (None: gone or unreadable)."""
        self._out.now = now
        self._exchange.bodies.loaded(envelope_id, value, now)
        self._flush_all(now)

    def chunk_stored(self, attachment_id: bytes, index: int, *, now: float) -> None:
        """The driver wrote a ``StoreChunk`` durably."""
        self._out.now = now
        self._exchange.attachments.carrier.chunk_stored(attachment_id, index, now)
        self._flush_all(now)

    def chunk_loaded(
        self, link: LinkId, attachment_id: bytes, index: int, proof: tuple[bytes, ...],
        data: bytes, *, now: float,
    ) -> None:  # fmt: skip
        """The driver read the chunk a ``LoadChunk`` asked for: it goes out on ``link`` now."""
        self._out.now = now
        self._exchange.attachments.carrier.chunk_loaded(link, attachment_id, index, proof, data)
        self._flush(link, now)

    def chunk_load_failed(
        self, link: LinkId, attachment_id: bytes, index: int, *, now: float
    ) -> None:
        """The chunk a ``LoadChunk`` asked for is gone or damaged on disk."""
        self._out.now = now
        self._exchange.attachments.carrier.chunk_load_failed(link, attachment_id, index)
        self._flush(link, now)

    def _flush_all(self, now: float) -> None:
        for link in list(self._state.sessions):
            self._flush(link, now)

    # ------------------------------------------------------------- sessions

    def _session(self, link: LinkId) -> PeerSession:
        session = self._state.sessions.get(link)
        if session is None:
            raise LocalProtocolError(f"unknown link {link}")
        return session

    def _on_established(self, session: PeerSession, now: float) -> None:
        peer = session.link.peer
        assert peer is not None
        older = self._exchange.meeting.identify(session, peer)
        if older is not None:  # this link outranks an older one to the same peer: that goes
            self._close(older, CloseReason.DUPLICATE_LINK, "duplicate link", now)
        self._exchange.meeting.begin(session, now)
        self._out.emit(
            PeerConnected(
                link=session.link_id,
                peer_id=session.peer_id or b"",
                is_contact=session.link.verdict is PeerVerdict.CONTACT,
            )
        )

    def _flush(self, link: LinkId, now: float) -> None:
        session = self._state.sessions.get(link)
        if session is not None:
            self._out.flush(session, now)

    def _close(
        self, link: LinkId, reason: CloseReason, detail: str, now: float, *, tell_peer: bool = True
    ) -> None:
        session = self._state.sessions.get(link)
        if session is None:
            return
        if tell_peer:
            session.link.close(reason, detail)
            self._flush(link, now)
        self._out.close_link(link, reason)
        self._forget(link, reason, detail)

    def _forget(self, link: LinkId, reason: CloseReason, detail: str) -> None:
        gone = self._state.sessions.pop(link)
        self._exchange.on_closed(gone, self._out.now)
        self._out.emit(LinkClosed(link=link, reason=reason, peer_id=gone.peer_id, detail=detail,
                                  address=gone.address))  # fmt: skip

    def _install_offline_channel(
        self, contact: Contact, channel: ContactChannel, now: float
    ) -> None:
        """Install keys agreed outside a meeting (``core/offlinepair.py``, its one caller)."""
        self._out.now = now
        self._exchange.keys.install(contact, channel, now, healed=False)


# The drivers hold a Node as a DriverInterface: mypy --strict checks here that it is one.
_IS_A_DRIVER_INTERFACE: type[DriverInterface] = Node
