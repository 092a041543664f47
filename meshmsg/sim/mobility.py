"""Contacts from movement: random waypoint with a radio range, and office presence.

Random waypoint (the ONE's ``RandomWaypoint``): each node picks a uniform point in the world,
walks there at a uniform speed, pauses for a uniform time, and repeats. Motion is piecewise
linear, so contacts are computed exactly rather than sampled: time is cut into windows; at each
window start the nodes are binned into a grid whose cells are ``range + 2 * v_max * window``
wide, so two nodes that can meet within the window are always in neighbouring cells; for each
such pair the times when ``|p_i(t) - p_j(t)| <= range`` are solved in closed form on every piece
of the two trajectories. Work per window is O(nodes + candidate pairs), which keeps a
2,000-node hour practical in pure Python. Contact times are then rounded up to
``scan_interval_s`` (the ONE detects contacts at its 0.1 s updates, so a contact shorter than a
step between two steps is missed there too); contacts that vanish in rounding are dropped.

Presence (an office LAN): each person arrives and leaves once a day at uniform times; everyone
present is linked with everyone else present (one switched LAN).

Each node moves with its own random stream (``mobility:<address>``): the traffic never moves
a node, and adding a node does not move the others.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator

from meshmsg.sim.rng import SeededRng
from meshmsg.sim.scenario import MobilitySection, PresenceSection, parse_addresses
from meshmsg.sim.traces import ContactEvent

_EPS = 1e-9
Segment = tuple[float, float, float, float, float, float]  # t0, t1, x0, y0, vx, vy


class Walker:
    """One node's random-waypoint trajectory, generated lazily as a queue of linear pieces."""

    __slots__ = ("_rng", "_spec", "segments")

    def __init__(self, spec: MobilitySection, rng: SeededRng, static: tuple[float, float] | None):
        self._spec = spec
        self._rng = rng
        if static is not None:
            self.segments: deque[Segment] = deque([(0.0, math.inf, *static, 0.0, 0.0)])
            return
        w, h = spec.world_m
        x, y = rng.uniform(0.0, w), rng.uniform(0.0, h)
        self.segments = deque([(0.0, 0.0, x, y, 0.0, 0.0)])

    def cover(self, until: float) -> None:
        """Generate pieces until the trajectory reaches ``until``."""
        segs, spec, rng = self.segments, self._spec, self._rng
        while segs[-1][1] < until:
            t0, t1, x0, y0, vx, vy = segs[-1]
            x, y = x0 + vx * (t1 - t0), y0 + vy * (t1 - t0)
            if (vx == 0.0 and vy == 0.0 and t1 > t0) or t1 == 0.0:  # paused or just placed
                tx, ty = rng.uniform(0.0, spec.world_m[0]), rng.uniform(0.0, spec.world_m[1])
                speed = rng.uniform(*spec.speed_mps)
                dist = math.hypot(tx - x, ty - y)
                if speed <= 0.0 or dist == 0.0:
                    segs.append((t1, t1 + 1.0, x, y, 0.0, 0.0))
                    continue
                dt = dist / speed
                segs.append((t1, t1 + dt, x, y, (tx - x) / dt, (ty - y) / dt))
            else:
                pause = rng.uniform(*spec.pause_s)
                segs.append((t1, t1 + max(pause, _EPS), x, y, 0.0, 0.0))

    def drop_before(self, t: float) -> None:
        segs = self.segments
        while len(segs) > 1 and segs[0][1] <= t:
            segs.popleft()

    def position(self, t: float) -> tuple[float, float]:
        for t0, t1, x0, y0, vx, vy in self.segments:
            if t < t1 or t1 == math.inf:
                return x0 + vx * (t - t0), y0 + vy * (t - t0)
        t0, _, x0, y0, vx, vy = self.segments[-1]
        return x0 + vx * (t - t0), y0 + vy * (t - t0)


def in_range_intervals(
    a: deque[Segment], b: deque[Segment], start: float, end: float, r2: float
) -> list[tuple[float, float]]:
    """Sub-intervals of ``[start, end)`` where the two trajectories are within range."""
    out: list[tuple[float, float]] = []
    ia = ib = 0
    t = start
    while t < end:
        while a[ia][1] <= t:
            ia += 1
        while b[ib][1] <= t:
            ib += 1
        sa, sb = a[ia], b[ib]
        stop = min(sa[1], sb[1], end)
        px = sa[2] + sa[4] * (t - sa[0]) - sb[2] - sb[4] * (t - sb[0])
        py = sa[3] + sa[5] * (t - sa[0]) - sb[3] - sb[5] * (t - sb[0])
        vx, vy = sa[4] - sb[4], sa[5] - sb[5]
        qa = vx * vx + vy * vy
        qb = 2.0 * (px * vx + py * vy)
        qc = px * px + py * py - r2
        if qa == 0.0:
            if qc <= 0.0:
                _add(out, t, stop)
        else:
            disc = qb * qb - 4.0 * qa * qc
            if disc >= 0.0:
                root = math.sqrt(disc)
                lo = t + (-qb - root) / (2.0 * qa)
                hi = t + (-qb + root) / (2.0 * qa)
                if hi > t and lo < stop:
                    _add(out, max(lo, t), min(hi, stop))
        t = stop
    return out


def _add(out: list[tuple[float, float]], s: float, e: float) -> None:
    if out and s - out[-1][1] <= _EPS:
        out[-1] = (out[-1][0], max(e, out[-1][1]))
    elif e > s:
        out.append((s, e))


def random_waypoint_contacts(
    spec: MobilitySection, *, count: int, duration_s: float, seed: int
) -> Iterator[ContactEvent]:
    """Contact events of ``count`` random-waypoint nodes over ``duration_s``, in time order."""
    statics = {s.address: (s.x, s.y) for s in spec.static}
    walkers = [Walker(spec, SeededRng(seed, f"mobility:{i}"), statics.get(i)) for i in range(count)]
    v_max = spec.speed_mps[1]
    scan = spec.scan_interval_s
    window = spec.window_s or spec.range_m / v_max
    if scan > 0:
        window = max(scan, round(window / scan) * scan)  # boundaries on the scan grid
    cell = spec.range_m + 2.0 * v_max * window
    r2 = spec.range_m * spec.range_m
    in_contact: dict[tuple[int, int], float] = {}  # pair -> quantised up time
    t = 0.0
    k = 0
    while t < duration_s:
        end = min((k + 1) * window, duration_s)
        events: list[tuple[float, int, int, int]] = []
        pairs = _candidates(walkers, t, end, cell)
        for pair in list(in_contact):
            if pair not in pairs:
                pairs[pair] = None
        for i, j in pairs:
            spans = in_range_intervals(walkers[i].segments, walkers[j].segments, t, end, r2)
            _pair_events(events, (i, j), spans, t, end, in_contact, scan)
        events.sort()
        for time, down_first, i, j in events:
            yield ContactEvent(time=time, a=i, b=j, up=down_first == 1, interface=spec.interface)
        k += 1
        t = end
    for i, j in sorted(in_contact):
        del i, j  # contacts still up at the end have no "down", as in the ONE's traces


def _candidates(
    walkers: list[Walker], t: float, end: float, cell: float
) -> dict[tuple[int, int], None]:
    grid: dict[tuple[int, int], list[int]] = {}
    for i, w in enumerate(walkers):
        w.cover(end)
        w.drop_before(t)
        x, y = w.position(t)
        grid.setdefault((int(x // cell), int(y // cell)), []).append(i)
    pairs: dict[tuple[int, int], None] = {}
    for (cx, cy), members in grid.items():
        for dx, dy in ((0, 0), (1, -1), (1, 0), (1, 1), (0, 1)):
            other = members if dx == dy == 0 else grid.get((cx + dx, cy + dy))
            if not other:
                continue
            for i in members:
                for j in other:
                    if i < j:
                        pairs[(i, j)] = None
                    elif j < i and (dx or dy):
                        pairs[(j, i)] = None
    return pairs


def _pair_events(
    events: list[tuple[float, int, int, int]],
    pair: tuple[int, int],
    spans: list[tuple[float, float]],
    start: float,
    end: float,
    in_contact: dict[tuple[int, int], float],
    scan: float,
) -> None:
    """Turn one window's in-range spans into quantised up (1) / down (0) events."""
    up = pair in in_contact
    for s, e in spans:
        if up and s > start + _EPS:
            _emit_down(events, pair, start, in_contact, scan)
            up = False
        if not up:
            q = _quantise(s, scan)
            in_contact[pair] = q
            events.append((q, 1, *pair))
            up = True
        if e < end - _EPS:
            _emit_down(events, pair, e, in_contact, scan)
            up = False
    if up and not spans:
        _emit_down(events, pair, start, in_contact, scan)


def _emit_down(
    events: list[tuple[float, int, int, int]],
    pair: tuple[int, int],
    t: float,
    in_contact: dict[tuple[int, int], float],
    scan: float,
) -> None:
    up_at = in_contact.pop(pair)
    q = _quantise(t, scan)
    if q <= up_at and events and events[-1] == (up_at, 1, *pair):
        events.pop()  # shorter than a scan step: never seen, as in the ONE
        return
    events.append((q, 0, *pair))


def _quantise(t: float, scan: float) -> float:
    if scan <= 0:
        return t
    return round(math.ceil(t / scan - 1e-9) * scan, 9)


def presence_contacts(
    spec: PresenceSection, *, count: int, duration_s: float, seed: int
) -> Iterator[ContactEvent]:
    """Office LAN: people present at the same time are all linked (one day after another)."""
    always = set(parse_addresses(spec.always, count, "presence.always")) if spec.always else set()
    rng = SeededRng(seed, "presence")
    days = max(1, math.ceil(duration_s / 86_400.0))
    events: list[tuple[float, int, int, int]] = []
    for day in range(days):
        base = day * 86_400.0
        spans: list[tuple[float, float]] = []
        for i in range(count):
            if i in always:
                spans.append((base, base + 86_400.0 if day < days - 1 else math.inf))
            else:
                arrive = base + rng.uniform(*spec.arrive_s)
                spans.append((arrive, max(arrive, base + rng.uniform(*spec.leave_s))))
        for i in range(count):
            for j in range(i + 1, count):
                s = max(spans[i][0], spans[j][0])
                e = min(spans[i][1], spans[j][1])
                both_always = i in always and j in always
                if both_always and day > 0:
                    continue
                if both_always:
                    e = math.inf
                if s < e and s < duration_s:
                    events.append((s, 1, i, j))
                    if e < duration_s:
                        events.append((e, 0, i, j))
    events.sort()
    for time, up, i, j in events:
        yield ContactEvent(time=time, a=i, b=j, up=up == 1, interface=spec.interface)
