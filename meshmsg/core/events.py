"""Events: facts the core reports to the application and to measuring drivers (past tense).

Drained with ``Node.next_event()``. The messenger UI shows them; the simulator turns the envelope
events into the ONE's statistics (created, relayed, delivered, dropped, hop counts).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from meshmsg.core.effects import LinkId
from meshmsg.errors import CloseReason


class MessageStatus(enum.IntEnum):
    """A sent message's timeline steps, in order of progress."""

    QUEUED = 0  # sealed and in our outbox
    RELAYED = 1  # a copy was taken into custody by another node (hop by hop)
    DELIVERED = 2  # the recipient's delivered receipt came back
    READ = 3  # the recipient's read receipt came back
    EXPIRED = 4  # the TTL ran out with no delivered receipt


class DropReason(enum.IntEnum):
    """Why a node let go of an envelope copy."""

    EXPIRED = 0  # TTL passed
    EVICTED = 1  # store full: evicted by the documented eviction order
    PURGED = 2  # a delivered receipt's token showed it arrived
    DELIVERED = 3  # we are the recipient and consumed it
    HANDED_OVER = 4  # the last copy was handed on (single-copy routing)
    REFUSED = 5  # refused at arrival: quota, hop limit or duplicate
    UNREADABLE = 6  # its body, on disk only, could not be read back (the row is gone)


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerConnected:
    link: LinkId
    peer_id: bytes
    is_contact: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkClosed:
    link: LinkId
    reason: CloseReason
    peer_id: bytes | None  # None: closed before the peer was identified
    detail: str = ""
    address: str | None = None  # the address we dialled; None for a link the peer dialled


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactPaired:
    """The first direct session with this contact created the pairwise root key."""

    peer_id: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactHealed:
    """A direct meeting mixed a fresh key exchange into the pairwise keys."""

    peer_id: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageQueued:
    """``send_message`` sealed a message; ``envelope_id`` is what relays will see."""

    message_id: bytes
    peer_id: bytes
    envelope_id: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageReceived:
    message_id: bytes
    peer_id: bytes
    sent_at: float
    received_at: float
    body: str
    hops: int
    # Non-empty when the sender deserves a warning: "revoked by <organisation>" (issue #12).
    flag: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageStatusChanged:
    message_id: bytes
    peer_id: bytes
    status: MessageStatus
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class UndecryptableMessage:
    """Mail from a contact arrived after its keys were deleted: shown, never silently lost."""

    peer_id: bytes
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ClockSkewDetected:
    """At a meeting, the contact's key period was more than ``clock_skew_s`` from ours.

    ``skew_s`` is theirs minus ours, in whole key periods (positive: the contact's clock is
    ahead). ``repaired``: our channel clock had run ahead of our wall clock (one wrong reading
    is enough) and this meeting brought it back, with mail re-sent; otherwise one of the two
    clocks is wrong now, and mail between the two cannot be read until it is corrected.
    """

    peer_id: bytes
    skew_s: float
    repaired: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvelopeAccepted:
    """We took custody of an envelope copy from a peer (a completed transfer)."""

    envelope_id: bytes
    link: LinkId
    hops: int
    copies: int
    for_us: bool
    # What the transfer left of the copy's life, by our clock (None: not known, group mail).
    lifetime_s: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvelopeHandedOver:
    """A peer took custody of copies we transferred (its ``Custody`` came).

    ``claimed``: the peer had claimed the envelope as its own mail (``Reply.for_me``), which is
    what a relay learns of a recipient (docs/threat-model.md); the simulator's relay observer
    (``meshmsg/sim/observer.py``) measures it.
    """

    envelope_id: bytes
    link: LinkId
    copies: int
    claimed: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvelopeDropped:
    envelope_id: bytes
    reason: DropReason


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupChanged:
    """A group's membership or name changed (we authored it, or operations arrived)."""

    group_id: bytes
    name: str
    epoch: int
    members: int
    member: bool  # False once we left or were removed


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupMessageReceived:
    group_id: bytes
    message_id: bytes
    sender_id: bytes  # the sender's peer id
    sent_at: float
    received_at: float
    body: str


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupMessageStatus:
    """Receipts for one of our group messages, aggregated: "read by 7 of 9"."""

    group_id: bytes
    message_id: bytes
    delivered: int
    read: int
    recipients: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AttachmentProgress:
    """A chunk of an attachment we fetch (or carry) is now stored."""

    attachment_id: bytes
    held: int
    count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AttachmentComplete:
    """Every chunk of an attachment addressed to us is stored and checked: it can be saved."""

    attachment_id: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class AttachmentDelivered:
    """The recipient's completion receipt for an attachment we sent came back."""

    attachment_id: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class AttachmentDropped:
    """We let go of an attachment's chunks: ``reason`` is expired, evicted or purged."""

    attachment_id: bytes
    reason: str


AttachEvent = AttachmentProgress | AttachmentComplete | AttachmentDelivered | AttachmentDropped


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageRequested:
    """First-contact mail from someone we have not added: a request (accept, decline, block)."""

    peer_id: bytes
    message_id: bytes
    body: str
    sent_at: float
    flag: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestDropped:
    """A stranger's first-contact message was dropped: blocked, or over the request quota."""

    peer_id: bytes
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectoryUpdated:
    """A newer signed directory of an organisation we joined was verified and taken."""

    org_id: bytes
    serial: int
    members: int
    revoked: int


Event = (
    PeerConnected
    | LinkClosed
    | ContactPaired
    | ContactHealed
    | MessageQueued
    | MessageReceived
    | MessageStatusChanged
    | UndecryptableMessage
    | ClockSkewDetected
    | EnvelopeAccepted
    | EnvelopeDropped
    | EnvelopeHandedOver
    | GroupChanged
    | GroupMessageReceived
    | GroupMessageStatus
    | AttachmentProgress
    | AttachmentComplete
    | AttachmentDelivered
    | AttachmentDropped
    | MessageRequested
    | RequestDropped
    | DirectoryUpdated
)
