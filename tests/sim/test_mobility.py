"""Random-waypoint contacts: well-formed, symmetric, within range, deterministic; presence."""

from __future__ import annotations

import math
from collections import deque

from hypothesis import given, settings
from hypothesis import strategies as st

from meshmsg.sim.mobility import (
    Walker,
    in_range_intervals,
    presence_contacts,
    random_waypoint_contacts,
)
from meshmsg.sim.rng import SeededRng
from meshmsg.sim.scenario import MobilitySection, PresenceSection, StaticNode
from meshmsg.sim.traces import ContactEvent

SPEC = MobilitySection(world_m=(120.0, 120.0), speed_mps=(1.0, 4.0), pause_s=(0.0, 20.0),
                       range_m=12.0, scan_interval_s=0.0)  # fmt: skip


def contacts(
    spec: MobilitySection, n: int = 25, duration: float = 600.0, seed: int = 3
) -> list[ContactEvent]:
    return list(random_waypoint_contacts(spec, count=n, duration_s=duration, seed=seed))


def test_contacts_alternate_up_down_in_time_order() -> None:
    events = contacts(SPEC)
    assert len(events) > 50
    assert [e.time for e in events] == sorted(e.time for e in events)
    state: dict[tuple[int, int], bool] = {}
    for e in events:
        assert e.a < e.b
        assert state.get((e.a, e.b), False) != e.up
        state[(e.a, e.b)] = e.up


def test_nodes_are_within_range_exactly_during_contacts() -> None:
    events = contacts(SPEC, n=12, duration=300.0)
    walkers = [Walker(SPEC, SeededRng(3, f"mobility:{i}"), None) for i in range(12)]
    for w in walkers:
        w.cover(300.0)
    spans: dict[tuple[int, int], list[tuple[float, float]]] = {}
    opened: dict[tuple[int, int], float] = {}
    for e in events:
        if e.up:
            opened[(e.a, e.b)] = e.time
        else:
            spans.setdefault((e.a, e.b), []).append((opened.pop((e.a, e.b)), e.time))
    for pair, t in opened.items():
        spans.setdefault(pair, []).append((t, 300.0))
    for t in [i * 0.73 for i in range(1, 400)]:
        for i in range(12):
            for j in range(i + 1, 12):
                (xi, yi), (xj, yj) = walkers[i].position(t), walkers[j].position(t)
                d = math.hypot(xi - xj, yi - yj)
                inside = any(s <= t <= e for s, e in spans.get((i, j), []))
                if abs(d - SPEC.range_m) > 1e-6:
                    assert inside == (d < SPEC.range_m), (t, i, j, d)


def test_same_seed_same_contacts_and_other_seed_differs() -> None:
    assert contacts(SPEC) == contacts(SPEC)
    assert contacts(SPEC) != contacts(SPEC, seed=4)


def test_adding_a_node_does_not_move_the_others() -> None:
    few = [e for e in contacts(SPEC, n=10) if e.b < 10]
    more = [e for e in contacts(SPEC, n=11) if e.b < 10]
    assert few == more


def test_scan_interval_rounds_up_and_drops_blips() -> None:
    spec = MobilitySection(world_m=(120.0, 120.0), speed_mps=(1.0, 4.0), pause_s=(0.0, 20.0),
                           range_m=12.0, scan_interval_s=0.5)  # fmt: skip
    events = contacts(spec)
    assert all(abs(e.time * 2 - round(e.time * 2)) < 1e-6 for e in events)
    assert len(events) <= len(contacts(SPEC))


def test_static_nodes_stay_put() -> None:
    spec = MobilitySection(world_m=(50.0, 50.0), static=(StaticNode(address=0, x=25.0, y=25.0),))
    w = Walker(spec, SeededRng(1, "mobility:0"), (25.0, 25.0))
    w.cover(1000.0)
    assert w.position(0.0) == w.position(999.0) == (25.0, 25.0)


@settings(max_examples=200)
@given(
    st.floats(-50, 50), st.floats(-50, 50), st.floats(-5, 5), st.floats(-5, 5),
    st.floats(1, 30),
)  # fmt: skip
def test_interval_solver_matches_sampling(
    px: float, py: float, vx: float, vy: float, r: float
) -> None:
    a = deque([(0.0, math.inf, px, py, vx, vy)])
    b = deque([(0.0, math.inf, 0.0, 0.0, 0.0, 0.0)])
    spans = in_range_intervals(a, b, 0.0, 10.0, r * r)
    for k in range(101):
        t = k * 0.1
        d = math.hypot(px + vx * t, py + vy * t)
        if abs(d - r) > 1e-6:
            assert any(s - 1e-9 <= t <= e + 1e-9 for s, e in spans) == (d < r)


def test_presence_links_everyone_present() -> None:
    spec = PresenceSection(arrive_s=(100.0, 200.0), leave_s=(300.0, 400.0), always="0")
    events = list(presence_contacts(spec, count=5, duration_s=1000.0, seed=1))
    ups = {(e.a, e.b) for e in events if e.up}
    assert ups == {(i, j) for i in range(5) for j in range(i + 1, 5)}
    assert not any(not e.up and e.a == 0 and e.b == 0 for e in events)
    assert all(100.0 <= e.time <= 400.0 for e in events)
