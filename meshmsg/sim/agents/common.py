"""What the reference agents share: identities by address, the ONE's TTL check period and its
drop-oldest buffer."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Final

TTL_CHECK_INTERVAL_S: Final = 60.0
"""The ONE checks TTLs once a minute (``ActiveRouter.TTL_CHECK_INTERVAL``)."""


def ident(address: int) -> bytes:
    """The peer id of the agent at ``address`` (what the engine passes to ``send_message``)."""
    return b"n" + address.to_bytes(4, "big")


def address_of(peer_id: bytes) -> int:
    """The address an :func:`ident` names."""
    return int.from_bytes(peer_id[1:], "big")


def make_room(
    held: Mapping[str, tuple[float, int]], size: int, capacity: int, sending: Collection[str]
) -> tuple[list[str], bool]:
    """What the ONE drops so a message of ``size`` bytes fits a buffer of ``capacity`` bytes.

    ``held`` maps each buffered message to ``(receive time, size)``. This is the ONE's
    ``MessageRouter.makeRoomForMessage``: returns the ids to drop and whether the message then
    fits. A message larger than the buffer drops nothing and does not fit; otherwise messages go
    oldest by receive time first, skipping those being sent (``getNextMessageToRemove(true)``;
    a strictly earlier time wins, so on a tie the one held longest, here insertion order). As
    in the ONE, what was dropped stays dropped when even that does not make room
    (``DENIED_NO_SPACE``).
    """
    if size > capacity:
        return [], False
    free = capacity - sum(s for _, s in held.values())
    victims: list[str] = []
    if free >= size:
        return victims, True
    candidates = [(t, order, mid) for order, (mid, (t, _)) in enumerate(held.items())]
    for _, _, mid in sorted(candidates):
        if mid in sending:
            continue
        victims.append(mid)
        free += held[mid][1]
        if free >= size:
            return victims, True
    return victims, False
