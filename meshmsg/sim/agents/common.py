"""What the reference agents share: identities by address and the ONE's TTL check period."""

from __future__ import annotations

from typing import Final

TTL_CHECK_INTERVAL_S: Final = 60.0
"""The ONE checks TTLs once a minute (``ActiveRouter.TTL_CHECK_INTERVAL``)."""


def ident(address: int) -> bytes:
    """The peer id of the agent at ``address`` (what the engine passes to ``send_message``)."""
    return b"n" + address.to_bytes(4, "big")


def address_of(peer_id: bytes) -> int:
    """The address an :func:`ident` names."""
    return int.from_bytes(peer_id[1:], "big")
