"""Groups as JSON for the API and the CLI: members, admins, epoch, pending changes, messages."""

from __future__ import annotations

from typing import Any

from meshmsg.core.groups.book import Entry, GroupMessage
from meshmsg.core.identity import peer_id_of
from meshmsg.core.node import Node

JSON = dict[str, Any]

HISTORY_NOTE = "new members read messages sent after they were added, not the history"


def member_name(node: Node, key: bytes) -> str:
    """A member's contact name, 'you', or its peer id prefix (members need not be contacts)."""
    if key == node.identity.public.identity_key:
        return "you"
    contact = node.contacts.get(peer_id_of(key))
    return contact.name if contact is not None else peer_id_of(key).hex()[:8]


def group_view(node: Node, entry: Entry) -> JSON:
    state = entry.group.state
    me = node.identity.public.identity_key
    members = sorted(state.members.items(), key=lambda kv: (not kv[1].admin, kv[0]))
    return {
        "group_id": entry.group.id.hex(),
        "name": state.name,
        "epoch": state.epoch,
        "member": me in state.members,
        "admin": me in state.admins,
        "members": [
            {
                "peer_id": peer_id_of(key).hex(),
                "name": member_name(node, key),
                "admin": member.admin,
                "contact": node.contacts.get(peer_id_of(key)) is not None,
                "keys": key == me or any(s == key for s, _ in entry.keys.chains),
            }
            for key, member in members
        ],
        "removed": sorted(peer_id_of(k).hex() for k in state.removed),
        "pending_changes": len(entry.group.pending),
        "dropped_changes": len(state.dropped),
        "operations": len(entry.group.ops),
        "messages": len(entry.messages),
        "note": HISTORY_NOTE,
    }


def group_row(node: Node, entry: Entry) -> JSON:
    state = entry.group.state
    last = max(entry.messages.values(), key=lambda m: m.sent_at, default=None)
    return {
        "group_id": entry.group.id.hex(),
        "name": state.name,
        "members": len(state.members),
        "epoch": state.epoch,
        "member": node.identity.public.identity_key in state.members,
        "last_at": last.sent_at if last else None,
        "last": {"body": last.body, "sender": member_name(node, last.sender)} if last else None,
        "unread": sum(1 for m in entry.messages.values() if not m.outgoing and not m.read_by_me),
    }


def group_message_view(node: Node, message: GroupMessage) -> JSON:
    recipients = len(message.recipients)
    return {
        "message_id": message.message_id.hex(),
        "group_id": message.group.hex(),
        "sender_id": peer_id_of(message.sender).hex(),
        "sender": member_name(node, message.sender),
        "direction": "out" if message.outgoing else "in",
        "body": message.body,
        "sent_at": message.sent_at,
        "received_at": message.received_at,
        "expiry_at": message.expiry_at,
        "delivered": len(message.delivered) if message.outgoing else None,
        "read": len(message.read) if message.outgoing else None,
        "recipients": recipients if message.outgoing else None,
        "status": _status(message),
        "receipts": _receipts(node, message) if message.outgoing else None,
    }


def _receipts(node: Node, message: GroupMessage) -> list[JSON]:
    """Each recipient of our message and how far it got with them: read, delivered or sent."""
    rows = [
        {"peer_id": peer_id_of(key).hex(), "name": member_name(node, key),
         "state": "read" if key in message.read else
                  "delivered" if key in message.delivered else "sent"}
        for key in message.recipients
    ]  # fmt: skip
    return sorted(rows, key=lambda r: (r["name"].lower(), r["peer_id"]))


def _status(message: GroupMessage) -> str:
    if not message.outgoing:
        return "received"
    total = len(message.recipients)
    if message.read:
        return f"read by {len(message.read)} of {total}"
    if message.delivered:
        return f"delivered to {len(message.delivered)} of {total}"
    return "queued"
