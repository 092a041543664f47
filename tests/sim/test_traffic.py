"""Traffic and fault generators."""

from __future__ import annotations

import itertools

from meshmsg.sim.faults import NodeCrash, NodeRestart, Partition
from meshmsg.sim.rng import SeededRng
from meshmsg.sim.scenario import CrashSpec, FaultsSection, PartitionSpec, TrafficSection
from meshmsg.sim.traffic import fault_events, generate_messages, one_to_each


def test_generator_follows_interval_size_and_pairs() -> None:
    spec = TrafficSection(source="generator", interval_s=(25.0, 35.0), size_bytes=(1000, 2000),
                          senders="0-2", receivers="3-5")  # fmt: skip
    msgs = list(generate_messages(spec, count=6, duration_s=3600.0, rng=SeededRng(1, "traffic")))
    assert 3600 / 35 - 1 <= len(msgs) <= 3600 / 25
    gaps = [b.time - a.time for a, b in itertools.pairwise(msgs)]
    assert all(25.0 <= g <= 35.0 for g in gaps)
    assert all(m.source in (0, 1, 2) and m.destination in (3, 4, 5) for m in msgs)
    assert all(1000 <= m.size <= 2000 for m in msgs)
    assert [m.message_id for m in msgs[:2]] == ["M1", "M2"]
    again = list(generate_messages(spec, count=6, duration_s=3600.0, rng=SeededRng(1, "traffic")))
    assert again == msgs


def test_one_to_each_covers_every_pair_once() -> None:
    spec = TrafficSection(source="one-to-each", interval_s=(1.0, 1.0), senders="0-2")
    msgs = list(one_to_each(spec, count=3, duration_s=100.0, rng=SeededRng(1, "t")))
    assert sorted((m.source, m.destination) for m in msgs) == [
        (0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1),
    ]  # fmt: skip


def test_faults_are_sorted_and_every_random_crash_restarts() -> None:
    spec = FaultsSection(
        crashes=(CrashSpec(address=1, at_s=50.0, restart_after_s=10.0),),
        crash_rate_per_h=3.0,
        downtime_s=(5.0, 10.0),
        partitions=(PartitionSpec(start_s=20.0, end_s=30.0, groups=((0,), (1, 2))),),
    )
    events = fault_events(spec, count=3, duration_s=3600.0, rng=SeededRng(2, "faults"))
    assert [e.time for e in events] == sorted(e.time for e in events)
    assert NodeCrash(time=50.0, address=1) in events
    assert NodeRestart(time=60.0, address=1) in events
    assert Partition(time=20.0, groups=((0,), (1, 2))) in events
    assert Partition(time=30.0, groups=()) in events
    crashes = [e for e in events if isinstance(e, NodeCrash)]
    restarts = [e for e in events if isinstance(e, NodeRestart)]
    assert len(crashes) == len(restarts) > 3
