"""Message requests: first-contact mail from someone we have not added, shown apart.

Theory of operation
-------------------
A stranger who holds our contact code can write to us through relays (first contact,
:mod:`meshmsg.core.firstcontact`). Its mail is not put in a conversation: it becomes a
*request* the user can accept (the sender becomes a contact and the messages a conversation),
decline (the messages are deleted; a later message starts a new request) or block (the sender's
mail is dropped on arrival from then on, before it is stored).

A request is quota-bound (:class:`~meshmsg.config.FirstContactConfig`): at most
``max_requests`` senders, ``max_request_messages`` messages each and ``max_request_bytes`` of
bodies in all. Past a quota a stranger's message is dropped (and counted), never stored: a
flood from a thousand identities costs a bounded amount of disk and never reaches the inbox,
and mail from contacts does not pass through here at all. Relays are bounded separately by the
store's stranger quotas.

Persisted as META records (``codec``): ``request:`` ‖ peer id → the sender's public identity
and when it first wrote; ``blocked:`` ‖ peer id → empty. The messages themselves are ordinary
MESSAGE records whose peer is the stranger.
"""

from __future__ import annotations

import enum
import struct
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from meshmsg.config import FirstContactConfig
from meshmsg.core.conversations import Conversations
from meshmsg.core.identity import PUBLIC_BYTES, PublicIdentity
from meshmsg.errors import InvalidContactCode, StorageError

REQUEST_KEY: Final = b"request:"
BLOCKED_KEY: Final = b"blocked:"
_MS: Final = 1000
_U64: Final = struct.Struct(">Q")


class Admission(enum.Enum):
    ACCEPTED = "accepted"
    BLOCKED = "blocked"  # the user blocked this sender: dropped, never shown
    TOO_MANY_SENDERS = "too many pending requests"
    SENDER_FULL = "this sender's request is full"
    BYTES_FULL = "the request quota is full"


@dataclass(slots=True, kw_only=True)
class Request:
    sender: PublicIdentity
    first_at: float
    message_ids: list[bytes] = field(default_factory=list)
    body_bytes: int = 0

    @property
    def peer_id(self) -> bytes:
        return self.sender.peer_id

    def to_bytes(self) -> bytes:
        return self.sender.to_bytes() + _U64.pack(int(self.first_at * _MS))

    @classmethod
    def from_bytes(cls, data: bytes) -> Request:
        if len(data) != PUBLIC_BYTES + 8:
            raise StorageError("persisted request is damaged: wrong length")
        try:
            sender = PublicIdentity.from_bytes(data[:PUBLIC_BYTES])
        except InvalidContactCode as exc:
            raise StorageError(f"persisted request is damaged: {exc}") from exc
        return cls(sender=sender, first_at=_U64.unpack(data[PUBLIC_BYTES:])[0] / _MS)


class RequestBook:
    """Pending requests and blocked strangers, bounded (see the module docstring)."""

    def __init__(self, limits: FirstContactConfig) -> None:
        self.limits = limits
        self._pending: dict[bytes, Request] = {}
        self._blocked: OrderedDict[bytes, None] = OrderedDict()
        self._bytes = 0
        self.dropped = 0  # messages refused by a quota or a block since start (for status)

    def __iter__(self) -> Iterator[Request]:
        return iter(sorted(self._pending.values(), key=lambda r: r.first_at))

    def __len__(self) -> int:
        return len(self._pending)

    def get(self, peer_id: bytes) -> Request | None:
        return self._pending.get(peer_id)

    def is_blocked(self, peer_id: bytes) -> bool:
        return peer_id in self._blocked

    @property
    def blocked(self) -> list[bytes]:
        return list(self._blocked)

    @property
    def held_bytes(self) -> int:
        """Body bytes the pending requests hold (bounded by ``max_request_bytes``)."""
        return self._bytes

    def admit(self, sender: PublicIdentity, size: int) -> Admission:
        """May a message of ``size`` body bytes from this stranger be kept? (no change)"""
        if sender.peer_id in self._blocked:
            return Admission.BLOCKED
        request = self._pending.get(sender.peer_id)
        if request is None and len(self._pending) >= self.limits.max_requests:
            return Admission.TOO_MANY_SENDERS
        if request is not None and len(request.message_ids) >= self.limits.max_request_messages:
            return Admission.SENDER_FULL
        if self._bytes + size > self.limits.max_request_bytes:
            return Admission.BYTES_FULL
        return Admission.ACCEPTED

    def add(self, sender: PublicIdentity, message_id: bytes, size: int, now: float) -> Request:
        """Record an admitted message; return its request (new or existing)."""
        request = self._pending.get(sender.peer_id)
        if request is None:
            request = self._pending[sender.peer_id] = Request(sender=sender, first_at=now)
        request.message_ids.append(message_id)
        request.body_bytes += size
        self._bytes += size
        return request

    def restore(self, request: Request) -> None:
        self._pending[request.peer_id] = request

    def restore_message(self, peer_id: bytes, message_id: bytes, size: int) -> bool:
        request = self._pending.get(peer_id)
        if request is None:
            return False
        request.message_ids.append(message_id)
        request.body_bytes += size
        self._bytes += size
        return True

    def remove(self, peer_id: bytes) -> Request | None:
        """Accepted or declined: the request leaves the book (its messages are the caller's)."""
        request = self._pending.pop(peer_id, None)
        if request is not None:
            self._bytes -= request.body_bytes
        return request

    def block(self, peer_id: bytes) -> list[bytes]:
        """Block a sender; return the blocked ids pushed out of the bounded list."""
        self._blocked[peer_id] = None
        self._blocked.move_to_end(peer_id)
        forgotten: list[bytes] = []
        while len(self._blocked) > self.limits.max_blocked:
            forgotten.append(self._blocked.popitem(last=False)[0])
        return forgotten

    def unblock(self, peer_id: bytes) -> bool:
        return self._blocked.pop(peer_id, False) is None


def restore_record(book: RequestBook, key: bytes, value: bytes) -> bool:
    """A persisted request or block (META)? Restore it (True), else leave it to the caller.

    Raises:
        StorageError: a damaged request record.
    """
    if key.startswith(REQUEST_KEY):
        book.restore(Request.from_bytes(value))
        return True
    if key.startswith(BLOCKED_KEY):
        book.block(key[len(BLOCKED_KEY) :])
        return True
    return False


def reattach_messages(book: RequestBook, conversations: Conversations) -> None:
    """After messages are restored: each request's messages count against its quota again."""
    for request in list(book):
        for message in conversations.with_peer(request.peer_id):
            book.restore_message(request.peer_id, message.message_id, len(message.body.encode()))
