"""Where the trio driver's peers come from, and how it tells the source how they fared.

A :class:`PeerSource` (``net/discovery.py``'s ``Discovery`` or ``net/peers.py``'s
``StaticPeers``) hands out addresses; :class:`PeerFeedback` forwards them to the Node and
reports back: a success when a link dialled to the address authenticates, a failure when the
dial fails or that link ends (the source then offers the peer again after a backoff).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol, TypeVar


class PeerHint(Protocol):
    """An address worth dialing, from discovery (``meshmsg.net.discovery.DiscoveredPeer``)."""

    @property
    def address(self) -> str: ...


H = TypeVar("H", bound=PeerHint)


class PeerSource(Protocol[H]):
    """Where peers come from: ``meshmsg.net.discovery.Discovery`` or ``StaticPeers``.

    The runner reports back whether a peer worked: a success when a link dialed to its address
    authenticates, a failure when the dial fails or that link ends (the source then offers the
    peer again after a backoff).
    """

    def peers(self) -> AsyncIterator[H]: ...

    def report_failure(self, peer: H) -> None: ...

    def report_success(self, peer: H) -> None: ...


class PeerFeedback:
    """The report-back function of each address a source handed out."""

    def __init__(self) -> None:
        # Bounded by the source's own peer table.
        self._hints: dict[str, Callable[[bool], None]] = {}

    async def forward(
        self, source: PeerSource[H], announce: Callable[[str], Awaitable[None]]
    ) -> None:
        """Announce every peer of ``source`` (to the Node), remembering where it came from."""
        async for peer in source.peers():

            def feedback(worked: bool, peer: H = peer) -> None:
                if worked:
                    source.report_success(peer)
                else:
                    source.report_failure(peer)

            self._hints[peer.address] = feedback
            await announce(peer.address)

    def result(self, address: str | None, worked: bool) -> None:
        """Tell the source how a peer it handed out fared (see :class:`PeerSource`)."""
        if address is None:
            return
        feedback = self._hints.get(address) if worked else self._hints.pop(address, None)
        if feedback is not None:
            feedback(worked)
