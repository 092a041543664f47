"""What a contact's trust looks like beyond "verified in person" (issue #12): what the
organisations we joined say of it, and how its keys stand (paired, first contact, or linked
but not added back). Read-only, for ``views`` and the request and directory commands."""

from __future__ import annotations

from typing import Any

from meshmsg.core.contacts import Contact
from meshmsg.core.exchange.firstseal import FIRST_CONTACT_EPOCH
from meshmsg.core.node import Node
from meshmsg.core.org.directory import OrgStatus
from meshmsg.core.org.keys import SignedEntry

JSON = dict[str, Any]


def trust_marks(node: Node, peer_id: bytes) -> JSON:
    """What organisations say of a peer, shown apart from "verified in person"."""
    marks = node.orgs.status(peer_id, node.now)
    return {
        "org_verified": [m.org.name for m in marks if m.status is OrgStatus.MEMBER],
        "org_revoked": [m.org.name for m in marks if m.status is OrgStatus.REVOKED],
        "org_expired": [m.org.name for m in marks if m.status is OrgStatus.EXPIRED],
        "org_entry": _entry_view(next((m.entry for m in marks if m.entry is not None), None)),
    }


def pairing_state(node: Node, contact: Contact) -> str:
    """``paired`` | ``waiting_for_them`` (linked, they have not added us) | ``first_contact``."""
    if contact.paired:
        return "paired"
    if node.awaiting_acceptance(contact.peer_id, now=node.now):
        return "waiting_for_them"
    return "first_contact"


def contact_extras(node: Node, contact: Contact) -> JSON:
    return {"pairing": pairing_state(node, contact), **trust_marks(node, contact.peer_id)}


def sent_by_first_contact(epoch: int | None) -> bool:
    return epoch == FIRST_CONTACT_EPOCH


def _entry_view(entry: SignedEntry | None) -> JSON | None:
    if entry is None:
        return None
    return {"name": entry.name, "unit": entry.unit, "role": entry.role,
            "expires_at": entry.expires_at}  # fmt: skip
