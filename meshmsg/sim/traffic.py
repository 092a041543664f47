"""Workload and fault generators: messages (uniform interval, one-to-each), crashes, partitions.

Each generator draws from its own named random stream (``traffic``, ``faults``), so changing
the traffic never moves a node and changing the faults never changes the traffic (research
note §4.3, the ONE's determinism trap). All generators yield events in time order.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator

from meshmsg.sim.faults import NodeCrash, NodeRestart, Partition
from meshmsg.sim.rng import SeededRng
from meshmsg.sim.scenario import FaultsSection, TrafficSection, parse_addresses
from meshmsg.sim.traces import MessageEvent


def generate_messages(
    spec: TrafficSection, *, count: int, duration_s: float, rng: SeededRng
) -> Iterator[MessageEvent]:
    """The ONE's MessageEventGenerator: one message every ``interval_s`` (uniform), random
    sender and a different random receiver, size uniform in ``size_bytes``."""
    senders = parse_addresses(spec.senders, count, "traffic.senders")
    receivers = parse_addresses(spec.receivers, count, "traffic.receivers")
    end = duration_s if spec.end_s is None else min(spec.end_s, duration_s)
    low, high = spec.interval_s
    t = spec.start_s + rng.uniform(low, high)
    n = 0
    while t < end:
        source = senders[rng.randbelow(len(senders))]
        choices = [r for r in receivers if r != source]
        if choices:
            n += 1
            destination = choices[rng.randbelow(len(choices))]
            size = spec.size_bytes[0] + rng.randbelow(spec.size_bytes[1] - spec.size_bytes[0] + 1)
            yield MessageEvent(
                time=t,
                message_id=f"{spec.prefix}{n}",
                source=source,
                destination=destination,
                size=size,
            )
        t += rng.uniform(low, high)


def one_to_each(
    spec: TrafficSection, *, count: int, duration_s: float, rng: SeededRng
) -> Iterator[MessageEvent]:
    """Every sender writes once to every receiver, one message per interval (round robin)."""
    senders = parse_addresses(spec.senders, count, "traffic.senders")
    receivers = parse_addresses(spec.receivers, count, "traffic.receivers")
    end = duration_s if spec.end_s is None else min(spec.end_s, duration_s)
    pairs = [(s, r) for s in senders for r in receivers if s != r]
    t = spec.start_s
    for n, (source, destination) in enumerate(pairs, 1):
        t += rng.uniform(*spec.interval_s)
        if t >= end:
            return
        size = spec.size_bytes[0] + rng.randbelow(spec.size_bytes[1] - spec.size_bytes[0] + 1)
        yield MessageEvent(
            time=t, message_id=f"{spec.prefix}{n}", source=source, destination=destination,
            size=size,
        )  # fmt: skip


def fault_events(
    spec: FaultsSection, *, count: int, duration_s: float, rng: SeededRng
) -> list[NodeCrash | NodeRestart | Partition]:
    """Scheduled and random crashes (with restarts) and partitions, sorted by time.

    Random crashes are a Poisson process of ``crash_rate_per_h`` per node; a crashed node stays
    down for a uniform ``downtime_s`` and cannot crash again while down.
    """
    events: list[tuple[float, int, NodeCrash | NodeRestart | Partition]] = []
    seq = 0

    def add(event: NodeCrash | NodeRestart | Partition) -> None:
        nonlocal seq
        seq += 1
        events.append((event.time, seq, event))

    for c in spec.crashes:
        add(NodeCrash(time=c.at_s, address=c.address))
        if c.restart_after_s is not None:
            add(NodeRestart(time=c.at_s + c.restart_after_s, address=c.address))
    if spec.crash_rate_per_h > 0:
        mean_gap_s = 3_600.0 / spec.crash_rate_per_h
        for address in range(count):
            t = _exponential(rng, mean_gap_s)
            while t < duration_s:
                add(NodeCrash(time=t, address=address))
                t += rng.uniform(*spec.downtime_s)
                add(NodeRestart(time=t, address=address))
                t += _exponential(rng, mean_gap_s)
    for p in spec.partitions:
        add(Partition(time=p.start_s, groups=p.groups))
        add(Partition(time=p.end_s, groups=()))
    return [e for _, _, e in heapq.nsmallest(len(events), events)]


def _exponential(rng: SeededRng, mean: float) -> float:
    return -mean * math.log(1.0 - rng.random())
