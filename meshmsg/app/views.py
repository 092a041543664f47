"""JSON views of the node's state and events: what the local API returns and the CLI shows.

Ids travel as lowercase hex (peer ids 32 digits, message ids 32), times as wall-clock seconds
since the epoch (floats), enums as lowercase names. These functions only read: the API calls
them inside ``NodeRunner.call`` (the pump owns the Node), the CLI on an offline node.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping
from typing import Any

from meshmsg.app.trust_marks import contact_extras, sent_by_first_contact
from meshmsg.core.contacts import Contact
from meshmsg.core.conversations import StoredMessage
from meshmsg.core.identity import fingerprint, safety_number, safety_qr_payload
from meshmsg.core.node import Node
from meshmsg.core.pacing import outbox_waits
from meshmsg.core.store import Tier
from meshmsg.errors import LocalProtocolError

JSON = dict[str, Any]
PEER_ID_HEX = 32


def parse_peer_id(text: str) -> bytes:
    """A peer id from its 32 hex digits.

    Raises:
        LocalProtocolError: not 32 hex digits.
    """
    try:
        peer_id = bytes.fromhex(text)
    except ValueError as exc:
        raise LocalProtocolError(f"bad peer id {text[:40]!r}: expected 32 hex digits") from exc
    if len(peer_id) * 2 != PEER_ID_HEX:
        raise LocalProtocolError(f"bad peer id {text[:40]!r}: expected 32 hex digits")
    return peer_id


def contact_view(node: Node, contact: Contact) -> JSON:
    own = node.identity.public.identity_key
    other = contact.public.identity_key
    return {
        "peer_id": contact.peer_id.hex(),
        "name": contact.name,
        "fingerprint": fingerprint(contact.public),
        "verified": contact.verified,
        "blocked": contact.blocked,
        "paired": contact.paired,
        "added_at": contact.added_at,
        "safety_number": safety_number(own, other),
        "safety_qr": safety_qr_payload(own, other),
        **contact_extras(node, contact),  # pairing state, organisations' marks (issue #12)
    }


def contacts_view(node: Node) -> list[JSON]:
    return sorted((contact_view(node, c) for c in node.contacts), key=lambda c: c["name"].lower())


def message_view(message: StoredMessage) -> JSON:
    if message.outgoing:
        timeline = [{"status": s.name.lower(), "at": at} for s, at in message.timeline]
    else:  # a received message has no steps of its own: when it was written, when it came
        timeline = [{"status": "sent", "at": message.sent_at}]
        timeline.append({"status": "received", "at": message.received_at or message.sent_at})
    return {
        "message_id": message.message_id.hex(),
        "peer_id": message.peer_id.hex(),
        "direction": "out" if message.outgoing else "in",
        "body": message.body,
        "sent_at": message.sent_at,
        "received_at": message.received_at,
        "expiry_at": message.expiry_at,
        "status": message.status.name.lower() if message.outgoing else "received",
        "timeline": timeline,
        "hops": message.hops,
        "first_contact": sent_by_first_contact(message.epoch),
    }


def conversations_view(
    node: Node, read_up_to: Callable[[str], float] = lambda _peer: 0.0
) -> list[JSON]:
    """One row per peer we exchanged messages with, most recent first.

    ``read_up_to`` gives the arrival time up to which the user has read a conversation (the web
    UI's read marks, ``app/readmarks.py``); messages received after it count as unread.
    """
    rows: list[JSON] = []
    for peer_id in node.conversations.peers():
        messages = node.conversations.with_peer(peer_id)
        if not messages:
            continue
        contact = node.contacts.get(peer_id)
        if contact is None and node.requests.get(peer_id) is not None:
            continue  # a message request: shown apart (GET /requests), not as a conversation
        last, read_at = messages[-1], read_up_to(peer_id.hex())
        rows.append(
            {
                "peer_id": peer_id.hex(),
                "name": contact.name if contact is not None else None,
                "messages": len(messages),
                "received": sum(not m.outgoing for m in messages),
                "unread": sum(not m.outgoing and _later(arrived_at(m), read_at) for m in messages),
                "read_up_to": read_at,
                "last": message_view(last),
            }
        )
    return sorted(rows, key=lambda r: r["last"]["sent_at"], reverse=True)


def arrived_at(message: StoredMessage) -> float:
    """When a received message reached us (older records may lack it: then when it was sent)."""
    return message.received_at if message.received_at is not None else message.sent_at


def _later(at: float, than: float) -> bool:
    """``at`` after ``than`` to the millisecond: the core stores times in whole milliseconds,
    so a mark taken before a restart must equal the same message's time read back after it."""
    return round(at * 1000) > round(than * 1000)


def store_view(node: Node) -> JSON:
    """Relay usage: what this node carries, by trust tier, against its caps."""
    store = node.store
    config = node.config.store
    return {
        "envelopes": len(store),
        "bytes": store.total_bytes,
        "max_bytes": config.max_store_bytes,
        "max_envelopes": config.max_store_envelopes,
        "bytes_by_tier": {tier.name.lower(): store.bytes_in(tier) for tier in Tier},
        "carried_for_others": sum(1 for item in store.items() if item.tier is not Tier.OWN),
    }


def requests_quota_view(node: Node) -> JSON:
    """Message requests (issue #12): their quota, blocks and refusals, for ``/status``."""
    return {
        "pending": len(node.requests),
        "held_bytes": node.requests.held_bytes,
        "max_bytes": node.config.first_contact.max_request_bytes,
        "blocked": len(node.requests.blocked),
        "refused": node.requests.dropped,
    }


def sessions_view(node: Node, hosts: Mapping[int, str] | None = None) -> list[JSON]:
    """The peers this node has a link to now (authenticated or still handshaking).

    ``hosts`` (the driver's remote host per link) gives an inbound link its address: the
    core knows only the ``host:port`` it dialled.
    """
    rows: list[JSON] = []
    for link, session in sorted(node.sessions.items()):
        contact = node.contacts.get(session.peer_id) if session.peer_id else None
        rows.append(
            {
                "link": link,
                "peer_id": session.peer_id.hex() if session.peer_id else None,
                "name": contact.name if contact is not None else None,
                "contact": contact is not None,
                "verified": contact.verified if contact is not None else False,
                "address": session.address or (hosts or {}).get(link),
                "inbound": session.address is None,
                "synced": session.synced,
            }
        )
    return rows


def outbox_view(node: Node) -> JSON:
    """Own messages not yet delivered: sealed ones by status, unsealed ones by why they wait
    (``waiting_for_pairing`` only without a channel; core/pacing.py names the reasons)."""
    counts: dict[str, int] = {}
    for peer_id in node.conversations.peers():
        for message in node.conversations.with_peer(peer_id):
            if message.outgoing and message.sealed and message.status.name in ("QUEUED", "RELAYED"):
                key = message.status.name.lower()
                counts[key] = counts.get(key, 0) + 1
    counts.update({reason: n for reason, (n, _) in outbox_waits(node).items()})
    return counts


def to_json(value: object) -> Any:
    """Any event or value as JSON: bytes become hex, enums lowercase names."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, enum.Enum):
        return value.name.lower()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    return value


def event_view(event: object) -> JSON:
    """A Node event (or the driver's DialFailed) as ``{"type": "message_received", ...}``."""
    name = type(event).__name__
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")
    view = to_json(event)
    assert isinstance(view, dict)
    return {"type": snake, **view}


__all__ = [
    "arrived_at",
    "contact_view",
    "contacts_view",
    "conversations_view",
    "event_view",
    "message_view",
    "outbox_view",
    "parse_peer_id",
    "requests_quota_view",
    "sessions_view",
    "store_view",
    "to_json",
]
