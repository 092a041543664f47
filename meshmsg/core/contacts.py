"""Contacts: the people this node exchanges end-to-end mail with.

A contact starts when the user imports a contact code (``verified`` only if the user compared
safety numbers or scanned a QR code in person: the UI always shows which). Its pairwise key
state (:class:`~meshmsg.core.e2e.ContactChannel`) is created at the first direct Noise session
between the two devices; until then messages to it wait unsealed. A blocked contact's links are
refused at the handshake.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from meshmsg.core.e2e import ContactChannel
from meshmsg.core.identity import PublicIdentity
from meshmsg.core.routing import route_id
from meshmsg.errors import LocalProtocolError


@dataclass(slots=True, kw_only=True)
class Contact:
    public: PublicIdentity
    name: str
    verified: bool
    blocked: bool = False
    added_at: float = 0.0
    channel: ContactChannel | None = None
    exchanging: bool = False  # a key exchange is under way: sealing waits (not persisted)
    route: bytes = field(init=False)

    def __post_init__(self) -> None:
        self.route = route_id(self.public.identity_key)

    @property
    def peer_id(self) -> bytes:
        return self.public.peer_id

    @property
    def paired(self) -> bool:
        return self.channel is not None


class ContactBook:
    """Contacts by peer id and by Noise static key, bounded by ``max_contacts``."""

    def __init__(self, max_contacts: int) -> None:
        self._max = max_contacts
        self._by_peer: dict[bytes, Contact] = {}
        self._by_noise_key: dict[bytes, Contact] = {}

    def __len__(self) -> int:
        return len(self._by_peer)

    def __iter__(self) -> Iterator[Contact]:
        return iter(list(self._by_peer.values()))

    def get(self, peer_id: bytes) -> Contact | None:
        return self._by_peer.get(peer_id)

    def by_noise_key(self, noise_key: bytes) -> Contact | None:
        return self._by_noise_key.get(noise_key)

    def require(self, peer_id: bytes) -> Contact:
        contact = self._by_peer.get(peer_id)
        if contact is None:
            raise LocalProtocolError(f"unknown contact {peer_id.hex()[:16]}")
        return contact

    def add(self, contact: Contact) -> None:
        existing = self._by_peer.get(contact.peer_id)
        if existing is None and len(self._by_peer) >= self._max:
            raise LocalProtocolError(f"contact list full ({self._max} contacts)")
        if existing is not None:
            self._by_noise_key.pop(existing.public.noise_key, None)
        self._by_peer[contact.peer_id] = contact
        self._by_noise_key[contact.public.noise_key] = contact

    def remove(self, peer_id: bytes) -> Contact | None:
        contact = self._by_peer.pop(peer_id, None)
        if contact is not None:
            self._by_noise_key.pop(contact.public.noise_key, None)
        return contact
