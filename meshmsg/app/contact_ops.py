"""Contact commands the core has no single command for, shared by the API and the offline CLI."""

from __future__ import annotations

from meshmsg.core.contacts import Contact
from meshmsg.core.identity import ContactCard
from meshmsg.core.node import Node
from meshmsg.errors import LocalProtocolError


def named(node: Node, name: str) -> list[Contact]:
    """The contacts called ``name`` (case-insensitive)."""
    return [c for c in node.contacts if c.name.casefold() == name.casefold()]


def rename_contact(node: Node, contact: Contact, name: str, *, now: float) -> Contact:
    """Give ``contact`` a new local name (checked with ``datadir.check_name`` by the caller).

    The core has no rename: adding the same identity again with a name updates the name and
    keeps everything else (verified, keys, history).

    Raises:
        LocalProtocolError: another contact already has that name (names must tell them apart).
    """
    if any(c.peer_id != contact.peer_id for c in named(node, name)):
        raise LocalProtocolError(f"another contact is already named {name!r}")
    card = ContactCard(public=contact.public)
    return node.add_contact(card, verified=contact.verified, now=now, name=name)


__all__ = ["named", "rename_contact"]
