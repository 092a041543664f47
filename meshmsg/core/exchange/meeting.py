"""Meetings: who the peer is, whether we talk to it, and what starts once the link is up.

During the Noise handshake the peer's ``IdentityProof`` names its identity; :meth:`Meeting.decide`
tells the link whether it is a contact, a stranger or blocked (or an impostor: the handshake
fails). Once established, the session learns the peer's identity, tier and routing id, a second
link to the same peer is settled (both sides keep the same one: :mod:`meshmsg.core.tiebreak`), and
the meeting starts: the key exchange with a contact (:mod:`.keys`), then route table and
reconciliation (:mod:`.sync`).
"""

from __future__ import annotations

from meshmsg.core import tiebreak
from meshmsg.core.contacts import Contact
from meshmsg.core.effects import LinkId
from meshmsg.core.exchange.keys import ContactKeys
from meshmsg.core.exchange.sync import Sync
from meshmsg.core.identity import PublicIdentity
from meshmsg.core.link import PeerHandshake, PeerVerdict
from meshmsg.core.records import IdentityProof
from meshmsg.core.routing import PeerRouting, route_id
from meshmsg.core.session import PeerSession
from meshmsg.core.state import NodeState
from meshmsg.core.store import Tier
from meshmsg.errors import CloseReason, HandshakeError, InvalidContactCode, RemoteProtocolError


class Meeting:
    """Handshake decisions and the start of a meeting."""

    __slots__ = ("_keys", "_state", "_sync", "_verified")

    def __init__(self, state: NodeState, keys: ContactKeys, sync: Sync) -> None:
        self._state = state
        self._keys = keys
        self._sync = sync
        self._verified: dict[bytes, PublicIdentity] = {}  # identity proof -> its identity

    def decide(self, peer: PeerHandshake) -> PeerVerdict:
        public = self.peer_identity(peer)
        contact = self._state.contacts.get(public.peer_id)
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
        if public.peer_id == self._state.identity.peer_id:
            raise HandshakeError("peer claims our own identity")
        return public

    def _verified_identity(self, proof: bytes) -> PublicIdentity:
        """Parse and verify an identity proof, remembering proofs that passed.

        The result depends only on the bytes, so a cached answer is the same answer; only
        proofs that verified are cached (a forged one is checked, and refused, every time).
        """
        cache, size = self._verified, self._state.config.link.verified_identity_cache
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

    def identify(self, session: PeerSession, peer: PeerHandshake) -> LinkId | None:
        """Learn who is on a link that just came up; settle a second link to the same peer.

        Returns an older link to the same peer that must close (this one ranks lower, see
        :mod:`meshmsg.core.tiebreak`), or None. Raises if this link is the one to close.
        Duplicates are settled before :meth:`begin`: a key exchange belongs to one link.

        Raises:
            RemoteProtocolError: DUPLICATE_LINK, this link ranks above one we already have.
        """
        public = self.peer_identity(peer)
        session.peer_id = public.peer_id
        session.identity_key = public.identity_key
        contact = self._state.contacts.get(public.peer_id)
        session.is_contact = contact is not None
        session.tier = _tier_of(contact)
        session.route = PeerRouting(route_id=route_id(public.identity_key), predictabilities={})
        for other in self._state.sessions.values():
            if other is session or other.peer_id != session.peer_id:
                continue
            if tiebreak.keeps_new(self._rank(session), self._rank(other)):
                return other.link_id
            raise RemoteProtocolError(
                "second link to the same peer", reason=CloseReason.DUPLICATE_LINK
            )
        return None

    def begin(self, session: PeerSession, now: float) -> None:
        """Start the meeting on an identified link: key exchange with a contact, then sync."""
        assert session.peer_id is not None
        contact = self._state.contacts.get(session.peer_id)
        if contact is not None:
            self._keys.start(session, contact, now)
        self._sync.start(session, now)

    def _rank(self, session: PeerSession) -> tiebreak.LinkRank:
        peer = session.link.peer
        assert peer is not None  # both links are established
        assert session.peer_id is not None
        me = self._state.identity.peer_id
        initiator = me if session.link.initiator else session.peer_id
        return tiebreak.link_rank(initiator_id=initiator, handshake_hash=peer.handshake_hash)


def _tier_of(contact: Contact | None) -> Tier:
    if contact is None:
        return Tier.STRANGER
    return Tier.VERIFIED if contact.verified else Tier.CONTACT
