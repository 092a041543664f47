"""What the trio driver counts: :class:`RunnerStatistics` and the counters behind it.

The runner's parts (``net/runner.py``, ``net/connections.py``, ``net/dialer.py``,
``net/persistence.py``) share one :class:`RunnerCounters`; ``NodeRunner.statistics`` adds the
live figures of the connections and queues to it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class RunnerStatistics:
    """A snapshot of the driver's state (see docs/operations.md)."""

    links: int  # open connections (inbound + outbound)
    links_inbound: int
    links_outbound: int
    half_open: int  # accepted connections whose peer is not yet authenticated
    queued_frames: int  # chunks (one per drain and link) waiting in writer queues, all links
    queued_bytes: int  # queued or being written, not yet accepted by the kernel
    bytes_sent: int  # totals since start, closed links included
    bytes_received: int
    accepted: int
    refused: int  # inbound refused: max_links reached and no half-open link to evict
    evicted_half_open: int
    first_byte_timeouts: int
    closed_slow: int  # links closed because their writer queue overflowed
    dials_started: int
    dials_succeeded: int
    dial_failures: int
    dials_dropped: int  # Dial effects dropped: duplicate address or dial queue full
    dials_pending: int
    inputs_queued: int  # inputs waiting for the pump
    persists_pending: int  # Persist effects not yet committed
    persists_committed: int
    commits: int  # storage transactions (one per group of Persists)
    storage_retries: int
    timer_fires: int
    next_deadline: float | None  # the Node's, in its clock
    subscribers: int
    subscribers_dropped: int  # subscribers disconnected for falling behind


@dataclass(slots=True)
class RunnerCounters:
    """Totals since start; each is also a field of :class:`RunnerStatistics` of the same name."""

    bytes_sent: int = 0  # of settled connections; live ones are added in the snapshot
    bytes_received: int = 0
    accepted: int = 0
    refused: int = 0
    evicted_half_open: int = 0
    first_byte_timeouts: int = 0
    closed_slow: int = 0
    dials_started: int = 0
    dials_succeeded: int = 0
    dial_failures: int = 0
    dials_dropped: int = 0
    persists_committed: int = 0
    commits: int = 0
    storage_retries: int = 0
    timer_fires: int = 0
