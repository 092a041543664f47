"""How the local API names a contact: a peer id (32 hex digits) or the contact's name.

One module for every endpoint group (``api.py``, ``api_groups.py``, ...), so that each resolves
and refuses names the same way: 404 for no such contact, 409 for a name two contacts share.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from meshmsg.app.contact_ops import named
from meshmsg.app.views import PEER_ID_HEX, parse_peer_id
from meshmsg.core.contacts import Contact
from meshmsg.core.node import Node
from meshmsg.errors import LocalProtocolError

PeerRef = bytes | str  # a peer id, or a contact's name to look up in the node


def parse_peer(text: str) -> PeerRef:
    """32 hex digits are a peer id; anything else names a contact (resolved by the node)."""
    if len(text) == PEER_ID_HEX:
        with contextlib.suppress(LocalProtocolError):  # 32 characters, not hex: a name
            return parse_peer_id(text)
    if not text.strip():
        raise HTTPException(400, "empty peer id or contact name")
    return text


def require_contact(node: Node, ref: PeerRef) -> Contact:
    """The contact ``ref`` names (404 if none, 409 if a name fits several)."""
    if isinstance(ref, bytes):
        contact = node.contacts.get(ref)
        if contact is None:
            raise HTTPException(404, f"unknown contact {ref.hex()}")
        return contact
    found = named(node, ref)
    if not found:
        raise HTTPException(404, f"unknown contact {ref!r}")
    if len(found) > 1:
        raise HTTPException(409, f"several contacts are named {ref!r}: use a peer id")
    return found[0]


T = TypeVar("T")
Handler = Callable[[Request], Awaitable[Any]]


class ApiLike(Protocol):
    """What the endpoint groups (groups, read marks, ...) need of :class:`meshmsg.app.api.Api`,
    which imports them."""

    def endpoint(
        self, handler: Handler, status: int = 200
    ) -> Callable[[Request], Awaitable[Response]]: ...

    async def call(self, fn: Callable[[Node, float], T]) -> T: ...

    async def write(self, fn: Callable[[Node, float], T]) -> T: ...

    async def body(self, request: Request) -> dict[str, Any]: ...


__all__ = ["ApiLike", "PeerRef", "parse_peer", "require_contact"]
