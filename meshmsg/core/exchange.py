"""The meeting protocol: pairing/healing, reconciliation, offers, transfers, custody, purges.

Theory of operation
-------------------
This module holds the rules of what two nodes say to each other once their Noise link is up
(the order is in :mod:`meshmsg.core.node`), and what a node does with mail: sealing its own,
taking custody of others', opening what is addressed to it, sending receipts, expiring. It
reads and changes the :class:`~meshmsg.core.node.Node`'s state through the node's small set of
helpers (``persist``, ``emit``, ``transmit``, ``admit_item``, ``drop_item``), so the node stays
the one owner of effects and events.

Every record handler validates what the peer sent against what the session expects; a record
that makes no sense in the current state raises :class:`RemoteProtocolError`, which closes that
link only. An envelope that fails validation raises nothing: it is refused in ``Custody`` and
counted (Briar's split between a broken link and a bad message).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshmsg.core import codec
from meshmsg.core.clockcheck import meeting_skew
from meshmsg.core.contacts import Contact
from meshmsg.core.conversations import StoredMessage
from meshmsg.core.e2e import ContactChannel, Expired, Match, MatchKind, new_key_share
from meshmsg.core.effects import RecordKind, StoredRecord
from meshmsg.core.envelope import (
    Envelope,
    bucket_for,
    envelope_id,
    parse_envelope,
    tag_of_token,
)
from meshmsg.core.events import (
    DropReason,
    EnvelopeAccepted,
    EnvelopeDropped,
    MessageQueued,
    MessageReceived,
    MessageStatus,
    UndecryptableMessage,
)
from meshmsg.core.firstcontact import bucket_for as fc_bucket_for
from meshmsg.core.identity import PublicIdentity
from meshmsg.core.keyschedule import KeyShare, can_heal
from meshmsg.core.link import LinkState, PeerHandshake, PeerVerdict
from meshmsg.core.org import orgcodec
from meshmsg.core.reconcile import Reconciler, SyncBudget
from meshmsg.core.records import (
    INNER_RECORDS,
    Custody,
    DirectoryChunk,
    DirectoryHave,
    IdentityProof,
    KeyConfirm,
    KeyExchange,
    Offer,
    OfferEntry,
    Purge,
    Receipt,
    Reply,
    RouteEntry,
    RouteTable,
    SyncMessage,
    TextMessage,
    Transfer,
)
from meshmsg.core.routing import PeerRouting, peer_routing, route_id
from meshmsg.core.session import InFlight, KeyExchangeState, PeerSession
from meshmsg.core.store import StoreItem, Tier
from meshmsg.core.tombstones import Tombstone, judge
from meshmsg.core.wire import Record, decode_records, encode_records
from meshmsg.errors import (
    CloseReason,
    DecodeError,
    HandshakeError,
    InvalidContactCode,
    InvalidMessage,
    LocalProtocolError,
    RemoteProtocolError,
)

if TYPE_CHECKING:
    from meshmsg.core.node import Node

@dataclass(slots=True, kw_only=True)
class _Consumed:
    """What opening an envelope addressed to us produced: writes to commit, then to report."""

    puts: list[StoredRecord]
    received: list[StoredMessage]
    stone: Tombstone | None
    expired: bool


RECEIPT_DELIVERED = 0
RECEIPT_READ = 1
_RECEIPT_IDS = 64  # Receipt.message_ids max_items
_RECEIPTS_PER_ENVELOPE = 16  # 16 full Receipts (~17 kB) fit max_inner_bytes with room to spare
_MS = 1000.0


class Exchange:
    """Meeting and mail rules of one node (see the module docstring)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._receipts: dict[bytes, dict[int, list[bytes]]] = {}  # peer -> kind -> ids
        self._receipts_due_at: float | None = None
        # Contacts whose waiting messages found our outbox full, and when to try them again
        # (set when an item leaves the store; a timer, so sealing never nests in a drop).
        self._room_wanted: set[bytes] = set()
        self._room_check_at: float | None = None
        self._verified: dict[bytes, PublicIdentity] = {}  # identity proof -> its identity
        # What all reconciliation sessions of this node may hold together (issue #11, 7).
        self._sync_budget = SyncBudget(node.config.sync.max_node_session_ids)

    # ============================================================ handshake

    def decide(self, peer: PeerHandshake) -> PeerVerdict:
        public = self.peer_identity(peer)
        contact = self.node.contacts.get(public.peer_id)
        if contact is None:
            return PeerVerdict.STRANGER
        if contact.blocked:
            return PeerVerdict.BLOCKED
        if contact.public.noise_key != public.noise_key:
            # The contact's code named another device key: an impostor or a re-installed peer.
            raise HandshakeError("peer presents a different device key than its contact code")
        return PeerVerdict.CONTACT

    def peer_identity(self, peer: PeerHandshake) -> PublicIdentity:
        proofs = [r for r in peer.records if isinstance(r, IdentityProof)]
        if len(proofs) != 1:
            raise HandshakeError("handshake must carry exactly one IdentityProof")
        public = self._verified_identity(proofs[0].public)
        if public.noise_key != peer.remote_static:
            raise HandshakeError("identity proof names another Noise key")
        if public.peer_id == self.node.identity.peer_id:
            raise HandshakeError("peer claims our own identity")
        return public

    def _verified_identity(self, proof: bytes) -> PublicIdentity:
        """Parse and verify an identity proof, remembering proofs that passed.

        The result depends only on the bytes, so a cached answer is the same answer; only
        proofs that verified are cached (a forged one is checked, and refused, every time).
        """
        cache, size = self._verified, self.node.config.link.verified_identity_cache
        public = cache.pop(proof, None)
        if public is None:
            try:
                public = PublicIdentity.from_bytes(proof)
            except InvalidContactCode as exc:
                raise HandshakeError(f"bad identity proof: {exc}") from exc
            while cache and len(cache) >= size:
                del cache[next(iter(cache))]  # least recently used first
        if size > 0:
            cache[proof] = public  # (re)inserted last: most recently used
        return public

    def on_established(self, session: PeerSession, peer: PeerHandshake, now: float) -> None:
        node = self.node
        public = self.peer_identity(peer)
        session.peer_id = public.peer_id
        session.identity_key = public.identity_key
        contact = node.contacts.get(public.peer_id)
        session.is_contact = contact is not None
        session.tier = _tier_of(contact)
        session.route = PeerRouting(route_id=route_id(public.identity_key), predictabilities={})
        if self._duplicate_of_existing(session, now):
            raise RemoteProtocolError(
                "second link to the same peer", reason=CloseReason.DUPLICATE_LINK
            )
        if contact is not None:
            self._start_key_exchange(session, contact, now)
        if len(node.orgs):
            node.transmit(session, [orgcodec.have(node)])
        if node.router.needs_route_hint:
            entries = [RouteEntry(route=d, p=q) for d, q in node.router.table(now)]
            node.transmit(session, [RouteTable(entries=tuple(entries))])
        if session.link.initiator:
            salt = node.rng.randbytes(16)
            session.reconciler = Reconciler(
                node.items, initiator=True, salt=salt, config=node.config.sync,
                budget=self._sync_budget,
            )
            node.transmit(session, [SyncMessage(payload=session.reconciler.start())])

    def _duplicate_of_existing(self, session: PeerSession, now: float) -> bool:
        """Of two links to one peer both sides keep the same one: the lower initiator id wins.

        True: drop the new link. When the new link wins, the older one is closed here (both
        sides decide alike), so two links never both carry a key exchange with one contact:
        concurrent exchanges could complete in different orders on the two sides and leave
        them with different keys (issue #12, found with static peers dialled both ways).
        """
        me = self.node.identity.peer_id
        for other in list(self.node.sessions.values()):
            if other is session or other.peer_id != session.peer_id or other.peer_id is None:
                continue
            mine = (me if session.link.initiator else session.peer_id) or b""
            theirs = (me if other.link.initiator else other.peer_id) or b""
            if (mine, session.link_id) > (theirs, other.link_id) or mine == theirs:
                return True
            self.node.close_link(other.link_id, CloseReason.DUPLICATE_LINK, "a better link", now)
            return False
        return False

    # ====================================================== record dispatch

    def handle(self, session: PeerSession, record: Record, now: float) -> None:
        if session.peer_id is None:
            raise RemoteProtocolError("records before the handshake finished")
        match record:
            case KeyExchange():
                self._on_key_exchange(session, record, now)
            case KeyConfirm(confirmation=confirmation):
                self._on_key_confirm(session, confirmation)
            case RouteTable(entries=entries):
                self._on_route_table(session, entries, now)
            case SyncMessage(payload=payload):
                self._on_sync(session, payload, now)
            case Offer(entries=entries):
                self._on_offer(session, entries)
            case Reply(for_me=for_me, have=have):
                self._on_reply(session, for_me, have, now)
            case Transfer():
                self._on_transfer(session, record, now)
            case Custody(accepted=accepted, refused=refused):
                self._on_custody(session, accepted, refused, now)
            case Purge(token=token, expiry_at=expiry_at):
                self._on_purge(session, token, expiry_at / _MS, now)
            case DirectoryHave():
                orgcodec.on_have(self.node, session, record)
            case DirectoryChunk():
                orgcodec.on_chunk(self.node, session, record)
            case _:
                raise RemoteProtocolError(f"unexpected {type(record).__name__} on a live link")

    # ===================================================== pairing, healing

    def contact_added(self, contact: Contact, now: float) -> None:
        """A contact was added (or accepted) while a link to it may be up: pair on that link.

        The link was established with a stranger, so no key exchange started (issue #12: mail
        then waited for the next meeting). Both ends are authenticated already; our share goes
        now, and a share the peer sent while we had not added it is answered at once.
        """
        node = self.node
        for session in list(node.sessions.values()):
            up = session.link.state is LinkState.ESTABLISHED
            if session.peer_id != contact.peer_id or not up:
                continue
            session.is_contact = True
            session.tier = _tier_of(contact)
            share, session.stranger_share = session.stranger_share, None
            try:
                if session.key_exchange is None:
                    self._start_key_exchange(session, contact, now)
                if share is not None:
                    self._on_key_exchange(session, KeyExchange(share=share), now)
            except RemoteProtocolError as exc:
                node.close_link(session.link_id, exc.reason, str(exc), now)

    def contact_removed(self, peer_id: bytes) -> None:
        for session in self.node.sessions.values():
            if session.peer_id == peer_id:
                session.is_contact = False
                session.tier = Tier.STRANGER
                session.key_exchange = None

    def awaiting_acceptance(self, peer_id: bytes, now: float) -> bool:
        """Linked to this contact, our share unanswered for a while: it has not added us."""
        wait = self.node.config.first_contact.accept_wait_s
        return any(
            s.peer_id == peer_id and s.key_exchange is not None and not s.key_exchange.done
            and now - s.key_exchange.sent_at >= wait
            for s in self.node.sessions.values()
        )  # fmt: skip

    def _start_key_exchange(self, session: PeerSession, contact: Contact, now: float) -> None:
        node = self.node
        secret, share = new_key_share(node.rng, now, node.config.message, contact.channel)
        session.key_exchange = KeyExchangeState(secret=secret, share=share, sent_at=now)
        contact.exchanging = True  # no sealing for this contact until the exchange ends
        node.transmit(session, [KeyExchange(share=share.to_bytes())])

    def _on_key_exchange(self, session: PeerSession, record: KeyExchange, now: float) -> None:
        contact = self.node.contacts.get(session.peer_id or b"")
        if contact is None:
            # The peer added us, we have not added it (issue #12): not an error, or the two
            # would link and drop in a loop. Kept: adding it during this link pairs at once.
            session.stranger_share = record.share
            return
        if session.key_exchange is None:  # added while linked; its share came first
            self._start_key_exchange(session, contact, now)
        state = session.key_exchange
        if state is None or state.done:
            raise RemoteProtocolError("unexpected KeyExchange")
        state.done = True
        theirs = KeyShare.from_bytes(record.share)  # DecodeError closes the link
        skew = meeting_skew(contact.peer_id, state.share, theirs, now, self.node.config.message)
        if skew is not None:  # issue 11 #2: a clock fault is shown, never a silent wedge
            self.node.emit(skew)
        peer = session.link.peer
        assert peer is not None
        contact.exchanging = False
        if contact.channel is not None and can_heal(state.share, theirs):
            result = contact.channel.heal(
                our_secret=state.secret, ours=state.share, theirs=theirs,
                handshake_hash=peer.handshake_hash, now=now,
            )  # fmt: skip
            self.node.transmit(session, [KeyConfirm(confirmation=contact.channel.confirmation)])
            if result.abandoned_epoch is not None:
                self._reseal_epoch(contact, result.abandoned_epoch, now)
            self.install_channel(contact, contact.channel, now, healed=True)  # seals them again
            return
        channel = ContactChannel.pair(
            our_ik=self.node.identity.public.identity_key,
            their_ik=contact.public.identity_key,
            our_secret=state.secret, ours=state.share, theirs=theirs,
            handshake_hash=peer.handshake_hash, now=now, limits=self.node.config.message,
            index=self.node.tags, peer_id=contact.peer_id,
        )  # fmt: skip
        self.install_channel(contact, channel, now, healed=False)

    def _on_key_confirm(self, session: PeerSession, confirmation: bytes) -> None:
        contact = self.node.contacts.get(session.peer_id or b"")
        state = session.key_exchange
        if contact is None or contact.channel is None or state is None or not state.done:
            raise RemoteProtocolError("unexpected KeyConfirm")
        if contact.channel.confirm(confirmation):
            self.node.persist([codec.channel_record(contact.peer_id, contact.channel)])

    def _reseal_epoch(self, contact: Contact, epoch: int, now: float) -> None:
        """The peer never had ``epoch``: what we sealed in it is unreadable, so seal it again."""
        node = self.node
        for message in node.conversations.with_peer(contact.peer_id):
            lost = message.outgoing and message.sealed and message.epoch == epoch
            if lost and message.status < MessageStatus.DELIVERED and message.expiry_at > now:
                message.sealed = False
                # Durably unsealed before its envelope goes: a crash in between leaves a
                # message sealed again at the next meeting, never one pointing at nothing.
                node.persist([codec.message_record(message)])
                if message.envelope_id is not None:
                    node.drop_item(message.envelope_id, DropReason.EXPIRED)

    def install_channel(
        self, contact: Contact, channel: ContactChannel, now: float, *, healed: bool
    ) -> None:
        node = self.node
        contact.channel = channel
        channel.register(node.tags, contact.peer_id)  # replaces any older channel's tags
        node.note_channel_deadline(channel.next_deadline())
        node.persist([codec.channel_record(contact.peer_id, channel)])
        node.channel_installed(contact, healed=healed)
        self.seal_waiting(contact, now)
        self._check_store_for_new_tags(channel, now)

    def seal_waiting(self, contact: Contact, now: float) -> None:
        """Seal the messages that waited for pairing, a key exchange or room in our outbox."""
        if contact.channel is None:
            self._seal_waiting_first_contact(contact, now)
            return
        if contact.exchanging:
            return
        for message in self.node.conversations.unsealed_for(contact.peer_id):
            if message.expiry_at > now:
                if contact.channel.capacity(now) <= 0:
                    return  # the period's counters are used up: the next period seals them
                if not self._room_for([[_text_of(message)]]):
                    self._room_wanted.add(contact.peer_id)  # tried again once room frees
                    return
                self._seal_text(contact, message, now)

    def _seal_waiting_first_contact(self, contact: Contact, now: float) -> None:
        for message in self.node.conversations.unsealed_for(contact.peer_id):
            if message.expiry_at > now:
                if not self._room_for([[_text_of(message)]], first_contact=True):
                    self._room_wanted.add(contact.peer_id)
                    return
                self.node.firstmail.seal_text(contact, message, now)

    def _check_store_for_new_tags(self, channel: ContactChannel, now: float) -> None:
        """Envelopes we carry may be ours under keys we just derived: take them."""
        node = self.node
        # Only this channel's tags can have become ours (every other tag was checked when its
        # envelope arrived): a few dozen probes of the store instead of one per stored item,
        # at every pairing and heal, against stores of thousands of envelopes.
        for tag in channel.openable_tags():
            for item in node.store.with_tag(tag):
                match = node.tags.lookup(item.tag)  # again: opening one may have used the tag
                if match is not None and match.kind is MatchKind.LIVE and item.tier is not Tier.OWN:
                    self._open_stored(item, match, now)

    def _on_route_table(
        self, session: PeerSession, entries: tuple[RouteEntry, ...], now: float
    ) -> None:
        limit = self.node.config.routing.max_route_entries
        if len(entries) > limit:
            raise RemoteProtocolError("route table too large", reason=CloseReason.TOO_LARGE)
        assert session.route is not None
        view = peer_routing(session.route.route_id, [(e.route, e.p) for e in entries])
        session.route = view
        self.node.router.meet(view, now)
        # Predictabilities are what PRoPHET learnt from past meetings: keep them over restarts.
        self.node.persist([codec.router_record(*self.node.router.export_state())])

    # ======================================================= reconciliation

    def _on_sync(self, session: PeerSession, payload: bytes, now: float) -> None:
        node = self.node
        if session.reconciler is None:
            if session.link.initiator:
                raise RemoteProtocolError("reconciliation answer before our request")
            session.reconciler = Reconciler(
                node.items, initiator=False, salt=b"", config=node.config.sync,
                budget=self._sync_budget,
            )
        reconciler = session.reconciler
        answer = reconciler.receive(payload)
        if answer is not None:
            node.transmit(session, [SyncMessage(payload=answer)])
        if reconciler.done and not session.synced:
            session.synced = True
            self.offer(session, list(reconciler.have_ids))
            session.reconciler = None

    def offer(self, session: PeerSession, ids: list[bytes]) -> None:
        """Offer envelopes the peer lacks (with their tags) and push purge tokens outright."""
        node = self.node
        offered: list[StoreItem] = []
        purges: list[Record] = []
        for item_id in ids:
            if item_id in session.peer_has or item_id in session.in_flight:
                continue
            if item_id in session.offered:
                continue  # already offered, awaiting its Reply
            item = node.store.get(item_id)
            if item is not None and node.offerable(item_id):
                offered.append(item)
                session.offered[item_id] = None
                continue
            stone = node.tombstones.by_id(item_id)
            if stone is not None and node.config.message.purge_on_delivery:
                purges.append(Purge(token=stone.token, expiry_at=int(stone.expiry_at * _MS)))
        # Oldest first: one sender's mail then arrives in counter order, which keeps it inside
        # the recipient's tag window (a recipient recognises only tag_window counters ahead).
        offered.sort(key=lambda i: i.seq)
        entries = [self._offer_entry(i) for i in offered]
        max_items = node.config.wire.max_container_items
        for start in range(0, len(entries), max_items):
            batch = tuple(entries[start : start + max_items])
            session.offer_batches.append(tuple(e.envelope_id for e in batch))
            node.transmit(session, [Offer(entries=batch)])
        if purges:
            node.transmit(session, purges)

    @staticmethod
    def _offer_entry(item: StoreItem) -> OfferEntry:
        """The item's entry in Offers, built once: Spray-and-Wait offers a waiting copy to
        every peer it meets, and building (validating) the record each time showed in
        profiles."""
        if item.offer_entry is None:
            item.offer_entry = OfferEntry(envelope_id=item.envelope_id, tag=item.tag)
        return item.offer_entry

    def offer_new(self, item: StoreItem) -> None:
        """A new item became durable: offer it to every synced link but the one it came from."""
        for session in list(self.node.sessions.values()):
            if session.synced and session.peer_id != item.source:
                self.offer(session, [item.envelope_id])

    def _on_offer(self, session: PeerSession, entries: tuple[OfferEntry, ...]) -> None:
        node = self.node
        for_me: list[bytes] = []
        have: list[bytes] = []
        purges: list[Record] = []
        for entry in entries:
            stone = node.tombstones.by_tag(entry.tag)
            if stone is not None and node.config.message.purge_on_delivery:
                # The peer carries what the token purges, so it lacks the token: even one we do
                # not believe (and never spread) goes to it; its own copy lets it check it.
                purges.append(Purge(token=stone.token, expiry_at=int(stone.expiry_at * _MS)))
            first = node.firstmail
            if entry.envelope_id in node.store or stone is not None:
                have.append(entry.envelope_id)
            elif first.already_opened(entry.envelope_id):
                have.append(entry.envelope_id)  # first contact: opened, and no purge token
            elif node.tags.lookup(entry.tag) is not None or first.recognises(entry.tag):
                for_me.append(entry.envelope_id)
        node.transmit(session, [Reply(for_me=tuple(for_me), have=tuple(have)), *purges])

    def _on_reply(
        self, session: PeerSession, for_me: tuple[bytes, ...],
        have: tuple[bytes, ...], now: float
    ) -> None:
        node = self.node
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
        candidates = [i for i in batch if i not in wanted and i not in session.peer_has]
        transfers: list[tuple[StoreItem, int, bool]] = []
        for item_id in for_me:
            item = node.store.get(item_id)
            if item is not None:
                transfers.append((item, item.copies, True))
        view = session.route or PeerRouting(route_id=b"", predictabilities={})
        items = [node.store.get(i) for i in candidates]
        for item in node.router.order_for([i for i in items if i is not None], view):
            given = node.router.copies_to_give(item, view, now)
            if given > 0:
                transfers.append((item, given, False))
            else:
                session.declined[item.envelope_id] = None
        cap = node.config.sync.max_transfers_per_sync
        for item, _, _ in transfers[cap:]:
            session.declined[item.envelope_id] = None
        self._send_transfers(session, transfers[:cap])

    def _send_transfers(
        self, session: PeerSession, transfers: list[tuple[StoreItem, int, bool]]
    ) -> None:
        node = self.node
        per_transmit = max(1, node.config.sync.envelopes_per_transmit)
        batch: list[Record] = []
        for item, copies, to_recipient in transfers:
            session.in_flight[item.envelope_id] = InFlight(copies=copies, to_recipient=to_recipient)
            if not to_recipient:
                item.reserved += copies  # until custody, refusal or the link's end
            batch.append(
                Transfer(
                    envelope=item.envelope,
                    copies=copies,
                    hops=item.hops + 1,
                    route_hint=item.route_hint,
                )
            )
            if len(batch) >= per_transmit:
                node.transmit(session, batch, envelopes=len(batch))
                batch = []
        if batch:
            node.transmit(session, batch, envelopes=len(batch))

    # ============================================================ custody

    def _on_transfer(self, session: PeerSession, record: Transfer, now: float) -> None:
        node = self.node
        try:
            envelope = parse_envelope(
                record.envelope, buckets=node.config.message.envelope_size_buckets
            )
        except InvalidMessage:
            return  # a carrier cannot check more than the format; no id to refuse by
        env_id = envelope_id(record.envelope)
        match = node.tags.lookup(envelope.tag)
        if match is not None:
            self._deliver_to_us(session, envelope, env_id, match, record, now)
            return
        if node.firstmail.recognises(envelope.tag):
            self._deliver_first_contact(session, envelope, env_id, record, now)
            return
        duplicate = env_id in node.store or node.tombstones.has_tag(envelope.tag)
        too_far = record.hops > node.config.message.max_hops
        if duplicate or too_far or envelope.expiry_at <= now:
            self._custody(session, refused=[env_id])
            return
        item = StoreItem(
            envelope_id=env_id, envelope=record.envelope, tag=envelope.tag,
            expiry_at=envelope.expiry_at, copies=record.copies, hops=record.hops,
            tier=session.tier, source=session.peer_id, received_at=now,
            route_hint=record.route_hint,
        )  # fmt: skip
        if not node.admit_item(item, now):
            node.emit(EnvelopeDropped(envelope_id=env_id, reason=DropReason.REFUSED))
            self._custody(session, refused=[env_id])
            return
        node.mark_uncommitted(env_id)

        def committed(_: float) -> None:
            node.mark_committed(env_id)
            self._custody(session, accepted=[env_id])
            node.emit(
                EnvelopeAccepted(
                    envelope_id=env_id, link=session.link_id, hops=item.hops,
                    copies=item.copies, for_us=False,
                )
            )  # fmt: skip
            if env_id in node.store:
                self.offer_new(item)

        node.persist([codec.envelope_record(item)], then=committed)

    def _custody(
        self,
        session: PeerSession,
        *,
        accepted: Sequence[bytes] = (),
        refused: Sequence[bytes] = (),
    ) -> None:
        if session.link_id in self.node.sessions:
            custody = Custody(accepted=tuple(accepted), refused=tuple(refused))
            self.node.transmit(session, [custody])

    def _on_custody(
        self, session: PeerSession, accepted: tuple[bytes, ...],
        refused: tuple[bytes, ...], now: float
    ) -> None:
        node = self.node
        for env_id in refused:
            self._land(session, env_id)
        delivered = False
        for env_id in accepted:
            flight = self._land(session, env_id)
            if flight is None:
                raise RemoteProtocolError("custody for an envelope we did not send")
            session.peer_has.add(env_id)
            delivered = delivered or flight.to_recipient
            item = node.store.get(env_id)
            if item is None:
                continue
            if item.tier is Tier.OWN:
                message = node.conversations.by_envelope(env_id)
                if message is not None:
                    node.status_changed(message, MessageStatus.RELAYED, now)
            kept = node.router.copies_kept(item, flight.copies, to_recipient=flight.to_recipient)
            if kept <= 0:
                reason = DropReason.DELIVERED if flight.to_recipient else DropReason.HANDED_OVER
                node.tombstones.note_handed_over(item.tag, item.tier, item.expiry_at)
                node.drop_item(env_id, reason)
            elif kept != item.copies:
                item.copies = kept
                node.persist([codec.envelope_record(item)])
        if delivered and session.declined:
            # The peer recognises only a window of its next counters; having taken mail for
            # it, it recognises later ones: more of what it declined may now be its own.
            again = list(session.declined)
            session.declined.clear()
            self.offer(session, again)

    def _land(self, session: PeerSession, env_id: bytes) -> InFlight | None:
        """The transfer of ``env_id`` on this link is over: release its reserved copies."""
        flight = session.in_flight.pop(env_id, None)
        item = self.node.store.get(env_id)
        if flight is not None and item is not None and not flight.to_recipient:
            item.reserved = max(0, item.reserved - flight.copies)  # the item may be a newer copy
        return flight

    # ====================================================== mail for us

    def _deliver_to_us(
        self,
        session: PeerSession,
        envelope: Envelope,
        env_id: bytes,
        match: Match,
        record: Transfer,
        now: float,
    ) -> None:
        node = self.node
        consumed = self._consume(envelope, match, record.hops, now)
        if consumed is None:
            self._custody(session, refused=[env_id])
            return

        def committed(_: float) -> None:
            self._custody(session, accepted=[env_id])
            node.emit(
                EnvelopeAccepted(
                    envelope_id=env_id, link=session.link_id, hops=record.hops,
                    copies=record.copies, for_us=True,
                )
            )  # fmt: skip
            self._report_consumed(match.peer_id, consumed, now)

        node.persist(consumed.puts, then=committed)
        self._after_open(match, now)

    def _deliver_first_contact(
        self, session: PeerSession, envelope: Envelope, env_id: bytes, record: Transfer,
        now: float,
    ) -> None:  # fmt: skip
        node = self.node
        opened = node.firstmail.open(envelope, env_id, record.hops, now)
        if opened is None:
            self._custody(session, refused=[env_id])
            return

        def committed(_: float) -> None:
            self._custody(session, accepted=[env_id])
            node.emit(
                EnvelopeAccepted(
                    envelope_id=env_id, link=session.link_id, hops=record.hops,
                    copies=record.copies, for_us=True,
                )
            )  # fmt: skip
            node.firstmail.report(opened)

        node.persist(opened.puts, then=committed)

    def _open_stored(self, item: StoreItem, match: Match, now: float) -> None:
        """An envelope we carried turned out to be ours (its tag became known later)."""
        node = self.node
        envelope = parse_envelope(item.envelope, buckets=node.config.message.envelope_size_buckets)
        consumed = self._consume(envelope, match, item.hops, now)
        node.drop_item(item.envelope_id, DropReason.DELIVERED)
        if consumed is not None:
            node.persist(
                consumed.puts,
                then=lambda at: self._report_consumed(match.peer_id, consumed, at),
            )
            self._after_open(match, now)

    def _after_open(self, match: Match, now: float) -> None:
        """Opening a counter may have slid the contact's window over mail we carry: take it.

        Only after the opened envelope's own Persist: a nested open persists a newer channel
        state, which must not be overwritten by this older one.
        """
        contact = self.node.contacts.get(match.peer_id)
        if match.kind is MatchKind.LIVE and contact is not None and contact.channel is not None:
            self._check_store_for_new_tags(contact.channel, now)

    def _consume(
        self, envelope: Envelope, match: Match, hops: int, now: float
    ) -> _Consumed | None:
        """Open an envelope addressed to us. None: it failed authentication (refuse it)."""
        node = self.node
        contact = node.contacts.get(match.peer_id)
        if contact is None or contact.channel is None:
            return _Consumed(puts=[], received=[], stone=None, expired=False)
        channel = contact.channel
        try:
            result = channel.open(envelope, now)
        except InvalidMessage:
            return None
        puts = [codec.channel_record(contact.peer_id, channel)]
        if result is None:  # a copy we already handled: idempotent
            return _Consumed(puts=[], received=[], stone=None, expired=False)
        if isinstance(result, Expired):
            return _Consumed(puts=puts, received=[], stone=None, expired=True)
        token = Tombstone(token=result.token, tag=result.tag, expiry_at=float(result.expiry_at))
        stone = token if self._remember(token) else None  # None: pushed straight out
        if stone is not None:
            puts.append(codec.tombstone_record(stone))
        try:
            inner = decode_records(result.inner, INNER_RECORDS, node.config.wire)
        except DecodeError:
            inner = []  # authentic but unreadable (a newer client?): consumed, nothing shown
        received: list[StoredMessage] = []
        for message in inner:
            received.extend(self.apply_inner(contact, message, hops, now))
        puts.extend(codec.message_record(m) for m in received)
        # The delivered receipts _apply_inner queued: committed with the messages, so a crash
        # before their batch is sealed cannot lose them (the sender would stay at RELAYED).
        puts.extend(self._owed(contact.peer_id, RECEIPT_DELIVERED, m.message_id) for m in received)
        return _Consumed(puts=puts, received=received, stone=stone, expired=False)

    def _report_consumed(self, peer_id: bytes, consumed: _Consumed, now: float) -> None:
        node = self.node
        if consumed.expired:
            node.emit(UndecryptableMessage(peer_id=peer_id, reason="its key period has expired"))
        for m in consumed.received:
            node.emit(
                MessageReceived(
                    message_id=m.message_id, peer_id=peer_id, sent_at=m.sent_at,
                    received_at=now, body=m.body, hops=m.hops,
                )
            )  # fmt: skip
        stone = consumed.stone
        held = stone is not None and node.tombstones.by_id(stone.item_id) is not None
        if stone is not None and held and node.config.message.purge_on_delivery:
            node.items.add(stone.item_id, int(stone.expiry_at))
            self._spread_purge(stone, source=None)

    def owed_delivered(self, peer_id: bytes, message: StoredMessage) -> StoredRecord:
        return self._owed(peer_id, RECEIPT_DELIVERED, message.message_id)

    def queue_delivered(self, peer_id: bytes, message_id: bytes, now: float) -> None:
        """Owe (durably) a delivered receipt, e.g. for a request just accepted."""
        if self.node.config.message.send_receipts:
            self._queue_receipt(peer_id, RECEIPT_DELIVERED, message_id, now)
            self.node.persist([self._owed(peer_id, RECEIPT_DELIVERED, message_id)])

    def apply_inner(
        self, contact: Contact, message: Record, hops: int, now: float
    ) -> list[StoredMessage]:
        node = self.node
        match message:
            case TextMessage(message_id=mid, sent_at=sent_ms, body=body):
                if node.conversations.get(mid) is not None:
                    return []
                stored = StoredMessage(
                    message_id=mid, peer_id=contact.peer_id, outgoing=False, body=body,
                    sent_at=sent_ms / _MS, received_at=now, status=MessageStatus.DELIVERED,
                    hops=hops,
                )  # fmt: skip
                node.conversations.add(stored)
                self._queue_receipt(contact.peer_id, RECEIPT_DELIVERED, mid, now)
                return [stored]
            case Receipt(status=status, message_ids=ids):
                target = MessageStatus.READ if status == RECEIPT_READ else MessageStatus.DELIVERED
                for mid in ids:
                    own = node.conversations.get(mid)
                    if own is not None and own.outgoing and own.peer_id == contact.peer_id:
                        node.status_changed(own, target, now)
                return []
            case _:
                return []

    # ============================================================= purges

    def _on_purge(self, session: PeerSession, token: bytes, expiry_at: float, now: float) -> None:
        node = self.node
        if not node.config.message.purge_on_delivery or expiry_at <= now:
            return
        tag = tag_of_token(token)
        before = node.tombstones.by_tag(tag)
        if before is not None and before.believed and before.tier <= session.tier:
            return  # nothing to learn: no better-founded than what we hold
        held = node.store.with_tag(tag)
        # Believed only with a reason (tombstones.judge): a stranger's random tokens stay local.
        matched = [item.tier for item in held] + node.tombstones.handed_over(tag, now)
        tier, believed = judge(session.tier, matched)
        horizon = now + node.config.message.max_ttl_s  # a forged far-future expiry is capped
        stone = Tombstone(
            token=token, tag=tag, expiry_at=min(expiry_at, horizon), tier=tier,
            source=session.peer_id, believed=believed,
        )  # fmt: skip
        kept = self._remember(stone)
        now_held = node.tombstones.by_tag(tag)
        fresh = kept and now_held is not None and now_held.believed
        fresh = fresh and (before is None or not before.believed)
        if fresh:
            node.items.add(stone.item_id, int(stone.expiry_at))
        for item in held:
            if item.tier is Tier.OWN:
                message = node.conversations.by_envelope(item.envelope_id)
                if message is not None:
                    node.status_changed(message, MessageStatus.DELIVERED, now)
            node.drop_item(item.envelope_id, DropReason.PURGED)
        if fresh:
            node.persist([codec.tombstone_record(stone)])
            self._spread_purge(stone, source=session.peer_id)

    def _spread_purge(self, stone: Tombstone, *, source: bytes | None) -> None:
        """A token is an item too: push it on every reconciled link at once, as new mail is,
        so carriers met right now drop their copies (and a sender sees DELIVERED)."""
        for session in list(self.node.sessions.values()):
            if session.synced and session.peer_id != source:
                self.offer(session, [stone.item_id])

    def _remember(self, stone: Tombstone) -> bool:
        """Keep a purge token; forget (items and records) those it pushes out of the bounded
        table, so the reconciliation set never names a token we can no longer send. False:
        the token itself was the one pushed out."""
        node = self.node
        # Only believed tokens are in the set and on disk (tombstones.judge).
        evicted = [old for old in node.tombstones.add(stone) if old.believed]
        for old in evicted:
            node.items.remove(old.item_id)
        if evicted:
            node.persist([], deletes=[(codec.RecordKind.TOMBSTONE, old.tag) for old in evicted])
        return node.tombstones.by_id(stone.item_id) is not None

    # ======================================================= sending mail

    def send_text(self, peer_id: bytes, body: str, *, now: float, ttl_s: float | None) -> bytes:
        node = self.node
        limits = node.config.message
        contact = node.contacts.require(peer_id)
        if len(body.encode()) > limits.max_body_bytes:
            raise InvalidMessage(f"message body over {limits.max_body_bytes} bytes")
        ttl = limits.default_ttl_s if ttl_s is None else ttl_s
        if not 0 < ttl <= limits.max_ttl_s:
            raise LocalProtocolError(f"ttl must be within (0, {limits.max_ttl_s}] seconds")
        message = StoredMessage(
            message_id=node.rng.randbytes(16), peer_id=peer_id, outgoing=True, body=body,
            sent_at=now, expiry_at=now + ttl, sealed=False,
        )  # fmt: skip
        channel = contact.channel
        ready = channel is not None and not contact.exchanging
        if ready and not self._room_for([[_text_of(message)]]):
            # Refused before anything changed: no half-sent message is left behind.
            raise LocalProtocolError("outbox full: the store has no room for more own mail")
        node.conversations.add(message)
        if channel is None and self._room_for([[_text_of(message)]], first_contact=True):
            # Never met: first contact through relays now (issue #12); pairing at the first
            # meeting takes over for later mail.
            node.firstmail.seal_text(contact, message, now)
        elif channel is None or contact.exchanging or channel.capacity(now) <= 0:
            if channel is None:
                self._room_wanted.add(peer_id)  # our outbox is full: sealed once room frees
            # Sealed once the keys are ready, or (max_messages_per_period reached) in the next
            # period: a period cannot end early, so sealing waits rather than fails.
            node.persist([codec.message_record(message)])
        else:
            self._seal_text(contact, message, now)
        return message.message_id

    def _room_for(self, envelopes: list[list[Record]], *, first_contact: bool = False) -> bool:
        """Whether our store takes these envelopes (each a list of inner records) of own mail."""
        buckets = self.node.config.message.envelope_size_buckets
        fit = fc_bucket_for if first_contact else bucket_for
        size = sum(fit(len(encode_records(records)), buckets) for records in envelopes)
        return self.node.store.own_room(size, len(envelopes))

    def _seal_text(self, contact: Contact, message: StoredMessage, now: float) -> None:
        inner = _text_of(message)
        item, epoch = self._seal(contact, [inner], message.expiry_at, now)
        message.epoch = epoch
        message.sealed = True
        message.envelope_id = item.envelope_id
        node = self.node
        node.conversations.index_envelope(message)
        puts = [
            codec.channel_record(contact.peer_id, contact.channel),  # type: ignore[arg-type]
            codec.envelope_record(item),
            codec.message_record(message),
        ]

        def committed(_: float) -> None:
            node.mark_committed(item.envelope_id)
            node.emit(
                MessageQueued(
                    message_id=message.message_id, peer_id=contact.peer_id,
                    envelope_id=item.envelope_id,
                )
            )  # fmt: skip
            if item.envelope_id in node.store:
                self.offer_new(item)

        node.persist(puts, then=committed)

    def _seal(
        self, contact: Contact, records: list[Record], expiry_at: float, now: float
    ) -> tuple[StoreItem, int]:
        """Seal records for a contact into a new own store item; return it and its epoch."""
        node = self.node
        channel = contact.channel
        if channel is None or contact.exchanging:
            raise LocalProtocolError("contact keys are not ready for sealing")
        ttl = min(expiry_at - now, node.config.message.latency_budget_s)
        sealed = channel.seal(encode_records(records), now, ttl, node.rng)
        item = StoreItem(
            envelope_id=sealed.envelope_id, envelope=sealed.envelope, tag=sealed.tag,
            expiry_at=float(sealed.expiry_at), copies=node.router.initial_copies(), hops=0,
            tier=Tier.OWN, source=None, received_at=now,
            route_hint=contact.route if node.router.needs_route_hint else None,
        )  # fmt: skip
        if not node.admit_item(item, now):
            raise LocalProtocolError("outbox full: the store has no room for more own mail")
        node.mark_uncommitted(item.envelope_id)
        return item, sealed.epoch

    # =========================================================== receipts

    # Owed receipts are durable: each has a META record (codec.owed_receipt_record), put in the
    # Persist that caused it and deleted in the Persist of the envelope that carries it, and a
    # restarted node queues them again (owe_receipt). Sending one twice is harmless.

    def _queue_receipt(self, peer_id: bytes, kind: int, message_id: bytes, now: float) -> None:
        if not self.node.config.message.send_receipts:
            return
        self.owe_receipt(peer_id, kind, message_id, now)

    def owe_receipt(self, peer_id: bytes, kind: int, message_id: bytes, now: float) -> None:
        """Queue a receipt for the next batch (also: restoring one owed before a restart)."""
        self._receipts.setdefault(peer_id, {}).setdefault(kind, []).append(message_id)
        if self._receipts_due_at is None:
            self._receipts_due_at = now + self.node.config.message.receipt_delay_s

    def _owed(self, peer_id: bytes, kind: int, message_id: bytes) -> StoredRecord:
        return codec.owed_receipt_record(peer_id, kind, message_id)

    def mark_read(self, peer_id: bytes, message_ids: list[bytes], now: float) -> None:
        owed: list[StoredRecord] = []
        for mid in message_ids:
            message = self.node.conversations.get(mid)
            if message is not None and not message.outgoing and message.peer_id == peer_id:
                self._queue_receipt(peer_id, RECEIPT_READ, mid, now)
                owed.append(self._owed(peer_id, RECEIPT_READ, mid))
        if owed and self.node.config.message.send_receipts:
            self.node.persist(owed)

    def _send_receipts(self, now: float) -> None:
        node = self.node
        pending, self._receipts, self._receipts_due_at = self._receipts, {}, None
        for peer_id, kinds in pending.items():
            contact = node.contacts.get(peer_id)
            if contact is None:
                gone = [(k, m) for k, ids in kinds.items() for m in ids]
                node.persist([], deletes=_owed_keys(peer_id, gone))
                continue
            if contact.channel is None:
                self._send_receipts_first_contact(contact, kinds, now)
                continue
            if contact.exchanging:
                self._receipts.setdefault(peer_id, kinds)  # retry after the exchange
                self._receipts_due_at = now + node.config.message.receipt_delay_s
                continue
            # A Receipt names at most _RECEIPT_IDS messages: more go in further records, and
            # more records than fit one envelope's inner plaintext in further envelopes.
            records: list[Record] = [
                Receipt(status=k, message_ids=tuple(ids[i : i + _RECEIPT_IDS]))
                for k, ids in kinds.items()
                for i in range(0, len(ids), _RECEIPT_IDS)
            ]
            groups = [
                records[start : start + _RECEIPTS_PER_ENVELOPE]
                for start in range(0, len(records), _RECEIPTS_PER_ENVELOPE)
            ]
            channel = contact.channel
            if channel.capacity(now) < len(groups) or not self._room_for(groups):
                # Out of counters this period (a chatty contact) or our outbox is full: try
                # again later; they stay owed (and durable) meanwhile.
                self._receipts.setdefault(peer_id, kinds)
                retry = max(now + node.config.message.receipt_delay_s, channel.next_deadline())
                due: float | None = self._receipts_due_at
                self._receipts_due_at = retry if due is None else min(due, retry)
                continue
            for group in groups:
                expiry = now + node.config.message.default_ttl_s
                item, _ = self._seal(contact, group, expiry, now)

                def committed(_: float, item: StoreItem = item) -> None:
                    node.mark_committed(item.envelope_id)
                    if item.envelope_id in node.store:
                        self.offer_new(item)

                carried = [(r.status, m) for r in group if isinstance(r, Receipt)
                           for m in r.message_ids]  # fmt: skip
                node.persist(
                    [codec.channel_record(peer_id, contact.channel), codec.envelope_record(item)],
                    deletes=_owed_keys(peer_id, carried),
                    then=committed,
                )

    def _send_receipts_first_contact(
        self, contact: Contact, kinds: dict[int, list[bytes]], now: float
    ) -> None:
        """Receipts to a contact we never met: sealed by first contact, like its mail came."""
        node = self.node
        records: list[Record] = [
            Receipt(status=k, message_ids=tuple(ids[i : i + _RECEIPT_IDS]))
            for k, ids in kinds.items()
            for i in range(0, len(ids), _RECEIPT_IDS)
        ]
        groups = [
            records[start : start + _RECEIPTS_PER_ENVELOPE]
            for start in range(0, len(records), _RECEIPTS_PER_ENVELOPE)
        ]
        if not self._room_for(groups, first_contact=True):
            self._receipts.setdefault(contact.peer_id, kinds)
            self._receipts_due_at = now + node.config.message.receipt_delay_s
            return
        for group in groups:
            item, puts = node.firstmail.seal_receipts(contact, group, now)

            def committed(_: float, item: StoreItem = item) -> None:
                node.mark_committed(item.envelope_id)
                if item.envelope_id in node.store:
                    self.offer_new(item)

            carried = [(r.status, m) for r in group if isinstance(r, Receipt)
                       for m in r.message_ids]  # fmt: skip
            node.persist(puts, deletes=_owed_keys(contact.peer_id, carried), then=committed)

    # ============================================================== timers

    def room_freed(self, now: float) -> None:
        """An item left the store: messages that found the outbox full may fit now."""
        if self._room_wanted and self._room_check_at is None:
            self._room_check_at = now

    def next_deadline(self) -> float | None:
        candidates = [
            self._receipts_due_at, self._room_check_at, self.node.tombstones.next_expiry(),
            self.node.firstmail.next_deadline(),
        ]
        present = [c for c in candidates if c is not None]
        return min(present) if present else None

    def on_timer(self, now: float) -> None:
        node = self.node
        for env_id in node.store.expire(now):
            node.items.remove(env_id)
            node.persist([], deletes=[(codec.RecordKind.ENVELOPE, env_id)])
            node.emit(EnvelopeDropped(envelope_id=env_id, reason=DropReason.EXPIRED))
            self.room_freed(now)
        for stone in node.tombstones.expire(now):
            if not stone.believed:
                continue  # never in the set nor on disk
            node.items.remove(stone.item_id)
            node.persist([], deletes=[(codec.RecordKind.TOMBSTONE, stone.tag)])
        for message in node.conversations.due_expiries(now):
            node.status_changed(message, MessageStatus.EXPIRED, now)
        if node.channels_due_at is not None and now >= node.channels_due_at:
            self._advance_channels(now)
        node.firstmail.advance(now)
        if self._receipts_due_at is not None and now >= self._receipts_due_at:
            self._send_receipts(now)
        if self._room_check_at is not None and now >= self._room_check_at:
            self._room_check_at = None
            waiting, self._room_wanted = sorted(self._room_wanted), set()
            for peer_id in waiting:
                contact = node.contacts.get(peer_id)
                if contact is not None:
                    self.seal_waiting(contact, now)

    def _advance_channels(self, now: float) -> None:
        """Ratchet every contact's keys (delete old periods, expire tags); persist changes."""
        node = self.node
        due: float | None = None
        for contact in node.contacts:
            channel = contact.channel
            if channel is None:
                continue
            # stale: an open() or seal() moved the clock but its state was never written
            stale = node.erasure.stale(contact.peer_id, channel)
            if channel.advance(now) or stale:
                node.persist([codec.channel_record(contact.peer_id, channel)])
                self.seal_waiting(contact, now)  # a new period may bring counters for them
            deadline = channel.next_deadline()
            due = deadline if due is None else min(due, deadline)
        node.channels_due_at = due

    def on_closed(self, session: PeerSession, now: float) -> None:
        contact = self.node.contacts.get(session.peer_id or b"")
        exchange = session.key_exchange
        # Issue 11 #5: `contact.exchanging`, not `not exchange.done`: an exchange that failed
        # after its share arrived (unparseable share) must not keep blocking sealing either.
        if contact is not None and exchange is not None and contact.exchanging:
            contact.exchanging = False  # the exchange died with the link
            self.seal_waiting(contact, now)
        session.reconciler = None
        for env_id in list(session.in_flight):
            self._land(session, env_id)
        session.offered.clear()
        session.offer_batches.clear()
        session.declined.clear()


def _owed_keys(
    peer_id: bytes, receipts: Iterable[tuple[int, bytes]]
) -> list[tuple[RecordKind, bytes]]:
    """The META keys of owed receipts (kind, message id) to ``peer_id``."""
    return [(RecordKind.META, codec.owed_receipt_key(peer_id, k, m)) for k, m in receipts]


def _text_of(message: StoredMessage) -> TextMessage:
    return TextMessage(
        message_id=message.message_id, sent_at=int(message.sent_at * _MS), body=message.body
    )


def _tier_of(contact: Contact | None) -> Tier:
    if contact is None:
        return Tier.STRANGER
    return Tier.VERIFIED if contact.verified else Tier.CONTACT
