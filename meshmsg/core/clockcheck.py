"""Clock faults between contacts, made visible instead of wedging channels (issue 11 #2).

Each channel's clock is monotonic (``docs/protocol/e2e.md`` §2): one wrong reading of ``now``
far ahead moves it for good, and a clock that is wrong now puts the two contacts' periods apart.
Either way mail between them stops being readable. The channel repairs the first case at the
next meeting (:meth:`ContactChannel.heal`); this module tells the application about both:

* :func:`meeting_skew`: at a key exchange, from the two shares, an event for the Node to emit;
* :func:`channels_ahead`: at any time, the channels whose clock is ahead of ``now`` by more
  than ``clock_skew_s`` (what a status view lists until the next meeting with each contact).
"""

from __future__ import annotations

from collections.abc import Iterable

from meshmsg.config import MessageLimits
from meshmsg.core.contacts import Contact
from meshmsg.core.events import ClockSkewDetected
from meshmsg.core.keyschedule import KeyShare, future_periods, meeting_periods, period_of


def meeting_skew(
    peer_id: bytes, ours: KeyShare, theirs: KeyShare, now: float, limits: MessageLimits
) -> ClockSkewDetected | None:
    """The event for a key exchange whose two periods are more than F apart, else ``None``.

    ``repaired`` when our share's period ran ahead of the peer's but our wall clock agrees with
    it: the heal (or a fresh pairing) brings our channel clock back to ``now``.
    """
    f = future_periods(limits)
    skew = theirs.period - ours.period
    if abs(skew) <= f:
        return None
    repaired = (
        -skew <= meeting_periods(limits)
        and ours.period > theirs.period + f
        and period_of(now, limits) <= theirs.period + f
    )
    return ClockSkewDetected(peer_id=peer_id, skew_s=skew * limits.period_s, repaired=repaired)


def channels_ahead(
    contacts: Iterable[Contact], now: float, limits: MessageLimits
) -> list[tuple[bytes, float]]:
    """``(peer id, seconds ahead)`` of every channel whose clock is ahead of ``now`` by more
    than ``clock_skew_s``: mail with those contacts waits for the next meeting with each."""
    ahead = []
    for contact in contacts:
        channel = contact.channel
        if channel is not None and channel.clock - now > limits.clock_skew_s:
            ahead.append((contact.peer_id, channel.clock - now))
    return ahead
