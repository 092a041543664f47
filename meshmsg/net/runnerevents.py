"""What the trio driver reports to the application: Node events, :class:`DialFailed`, fan-out.

:class:`EventFanout` hands every event to each subscriber of ``NodeRunner.subscribe`` without
ever waiting: a subscriber that falls ``capacity`` events behind is disconnected instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import trio

from meshmsg.core.events import Event


@dataclass(frozen=True, slots=True, kw_only=True)
class DialFailed:
    """A ``Dial`` effect could not be carried out (a driver fact, not a Node event)."""

    address: str
    detail: str


RunnerEvent = Event | DialFailed


class EventFanout:
    """The subscribers of one runner; publishing never blocks the pump."""

    def __init__(self, default_capacity: int) -> None:
        self._default_capacity = default_capacity
        self._subscribers: list[trio.MemorySendChannel[RunnerEvent]] = []
        self.dropped = 0  # subscribers disconnected for falling behind

    def __len__(self) -> int:
        return len(self._subscribers)

    @contextmanager
    def subscribe(
        self, capacity: int | None = None
    ) -> Iterator[trio.MemoryReceiveChannel[RunnerEvent]]:
        """A channel of every event from now on (see ``NodeRunner.subscribe``)."""
        send, receive = trio.open_memory_channel[RunnerEvent](
            capacity if capacity is not None else self._default_capacity
        )
        self._subscribers.append(send)
        try:
            with receive:
                yield receive
        finally:
            if send in self._subscribers:
                self._subscribers.remove(send)
            send.close()

    def publish(self, event: RunnerEvent) -> None:
        for channel in list(self._subscribers):
            try:
                channel.send_nowait(event)
            except (trio.WouldBlock, trio.BrokenResourceError):
                self.dropped += 1
                self._subscribers.remove(channel)
                channel.close()
