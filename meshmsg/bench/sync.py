"""Set reconciliation benchmark: bytes, round trips and time of one session, in memory.

Two :class:`~meshmsg.core.itemset.ItemSet` stores are built from a seed, a session runs between
two :class:`~meshmsg.core.reconcile.Reconciler` objects by handing each message to the other side,
and the result is checked against the true set difference. Numbers and their reading are in
docs/protocol/sync.md.

Run::

    .venv/bin/python -m meshmsg.bench.sync                  # n=100,000, diff=100, seed 1
    .venv/bin/python -m meshmsg.bench.sync --sweep 20       # parameter table over 20 seeds
    .venv/bin/python -m meshmsg.bench.sync --spread 1000    # cost spread over 1,000 sessions
    .venv/bin/python -m meshmsg.bench.sync --scaling        # growing differences
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import time
from dataclasses import dataclass
from typing import Any

from meshmsg.config import SyncConfig
from meshmsg.core.itemset import ID_BYTES, ItemSet
from meshmsg.core.reconcile import SALT_BYTES, Reconciler


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionResult:
    """One finished session: both sides and the size of every message, initiator's first."""

    initiator: Reconciler
    responder: Reconciler
    sizes: tuple[int, ...]
    wall_s: float

    @property
    def messages(self) -> int:
        return len(self.sizes)

    @property
    def round_trips(self) -> int:
        return (len(self.sizes) + 1) // 2

    @property
    def bytes_forward(self) -> int:
        """Bytes the initiator sent."""
        return sum(self.sizes[0::2])

    @property
    def bytes_back(self) -> int:
        """Bytes the responder sent."""
        return sum(self.sizes[1::2])


def run_session(
    initiator_items: ItemSet, responder_items: ItemSet, *, config: SyncConfig, salt: bytes
) -> SessionResult:
    """Run one session to its end in memory; errors propagate."""
    started = time.perf_counter()
    initiator = Reconciler(initiator_items, initiator=True, salt=salt, config=config)
    responder = Reconciler(responder_items, initiator=False, config=config)
    message: bytes | None = initiator.start()
    sizes: list[int] = []
    receiver = responder
    while message is not None:
        sizes.append(len(message))
        message = receiver.receive(message)
        receiver = initiator if receiver is responder else responder
    return SessionResult(
        initiator=initiator,
        responder=responder,
        sizes=tuple(sizes),
        wall_s=time.perf_counter() - started,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class StorePair:
    a: ItemSet
    b: ItemSet
    only_a: frozenset[bytes]
    only_b: frozenset[bytes]
    build_s: float


def build_pair(
    n: int, diff: int, *, one_side: bool, seed: int, config: SyncConfig | None = None
) -> StorePair:
    """Two stores differing by ``diff`` ids: ``a`` holds ``n``; ``b`` holds ``n`` (half the
    difference on each side) or ``n - diff`` (all of it on ``a``'s side)."""
    config = config or SyncConfig()
    rnd = random.Random(seed)
    only_a_count = diff if one_side else diff // 2
    common = [rnd.randbytes(ID_BYTES) for _ in range(n - only_a_count)]
    only_a = [rnd.randbytes(ID_BYTES) for _ in range(only_a_count)]
    only_b = [rnd.randbytes(ID_BYTES) for _ in range(diff - only_a_count)]
    started = time.perf_counter()
    a = ItemSet(fanout=config.split_fanout, leaf_capacity=config.leaf_capacity)
    b = ItemSet(fanout=config.split_fanout, leaf_capacity=config.leaf_capacity)
    for store, ids in ((a, common + only_a), (b, common + only_b)):
        for item_id in ids:
            store.add(item_id, rnd.randrange(1 << 32))
    return StorePair(
        a=a,
        b=b,
        only_a=frozenset(only_a),
        only_b=frozenset(only_b),
        build_s=(time.perf_counter() - started) / 2,
    )


def _report(pair: StorePair, result: SessionResult, n: int) -> dict[str, Any]:
    ini, res = result.initiator, result.responder
    exact = (
        set(ini.have_ids) == pair.only_a
        and set(ini.need_ids) == pair.only_b
        and set(res.have_ids) == pair.only_b
        and set(res.need_ids) == pair.only_a
    )
    return {
        "bytes_initiator_to_responder": result.bytes_forward,
        "bytes_responder_to_initiator": result.bytes_back,
        "bytes_total": result.bytes_forward + result.bytes_back,
        "round_trips": result.round_trips,
        "messages": result.messages,
        "wall_s": round(result.wall_s, 4),
        "exact": exact and ini.done and res.done,
        "naive_id_list_bytes": ID_BYTES * n,
    }


def measure_sync(
    n: int = 100_000, diff: int = 100, seed: int = 1, *, config: SyncConfig | None = None
) -> dict[str, Any]:
    """Reconcile two ``n``-item stores differing by ``diff``: half on each side and all on one.

    Returns a dict with the inputs, the naive id-list size, the time to add ``n`` ids, and one
    report per split (bytes each way, round trips, messages, session wall time, exactness).
    """
    config = config or SyncConfig()
    salt = random.Random(seed ^ 0x5A17).randbytes(SALT_BYTES)
    out: dict[str, Any] = {"n": n, "diff": diff, "seed": seed, "naive_id_list_bytes": 16 * n}
    for name, one_side in (("half_each_side", False), ("all_on_one_side", True)):
        pair = build_pair(n, diff, one_side=one_side, seed=seed, config=config)
        out["add_s_per_store"] = round(pair.build_s, 3)
        out[name] = _report(pair, run_session(pair.a, pair.b, config=config, salt=salt), n)
    return out


def measure_edges(n: int = 100_000, seed: int = 1) -> dict[str, Any]:
    """Identical stores, and a full store against an empty one (both directions)."""
    config = SyncConfig()
    salt = random.Random(seed ^ 0xED6E).randbytes(SALT_BYTES)
    same = build_pair(n, 0, one_side=True, seed=seed)
    empty = build_pair(0, 0, one_side=True, seed=seed)
    full_only = StorePair(
        a=same.a, b=empty.a, only_a=frozenset(same.a), only_b=frozenset(), build_s=0.0
    )
    empty_first = StorePair(
        a=empty.a, b=same.a, only_a=frozenset(), only_b=frozenset(same.a), build_s=0.0
    )
    return {
        name: _report(pair, run_session(pair.a, pair.b, config=config, salt=salt), n)
        for name, pair in (
            ("identical", same),
            ("full_initiator_vs_empty", full_only),
            ("empty_initiator_vs_full", empty_first),
        )
    }


SWEEP: tuple[dict[str, Any], ...] = (
    {},
    {"split_fanout": 2},
    {"split_fanout": 4},
    {"split_fanout": 256},
    {"fingerprint_bytes": 3},
    {"fingerprint_bytes": 8},
    {"min_pure_probability": 0.25},
    {"min_pure_probability": 0.75},
    {"min_pure_probability": 1.01},  # never SUM: a plain trie descent
    {"tail_nodes": 0},  # never list a node just to save a round trip
)


def sweep(
    seeds: int, n: int = 100_000, diff: int = 100, *, one_side: bool = False
) -> list[dict[str, Any]]:
    """Median/max bytes and the round-trip spread of each SWEEP variant over ``seeds`` pairs."""
    rows = []
    pairs = [build_pair(n, diff, one_side=one_side, seed=s) for s in range(seeds)]
    for change in SWEEP:
        config = dataclasses.replace(SyncConfig(), **change)
        totals, trips = [], []
        for s, pair in enumerate(pairs):
            if config.split_fanout != pair.a.fanout:
                pair = build_pair(n, diff, one_side=one_side, seed=s, config=config)
            result = run_session(pair.a, pair.b, config=config, salt=s.to_bytes(SALT_BYTES, "big"))
            assert _report(pair, result, n)["exact"]
            totals.append(result.bytes_forward + result.bytes_back)
            trips.append(result.round_trips)
        rows.append(
            {
                "change": change or "defaults",
                "bytes_median": int(statistics.median(totals)),
                "bytes_max": max(totals),
                "round_trips": {t: trips.count(t) for t in sorted(set(trips))},
            }
        )
    return rows


def spread(
    sessions: int, n: int = 100_000, diff: int = 100, *, one_side: bool = False, seed: int = 1
) -> dict[str, Any]:
    """Bytes and round trips over many sessions: two stores share ``n`` ids once; each session
    adds a fresh difference of ``diff`` ids (half each side, or all on one), runs, removes it."""
    config = SyncConfig()
    rnd = random.Random(seed ^ 0x5BEAD)  # not the stream build_pair draws the common ids from
    pair = build_pair(n, 0, one_side=True, seed=seed)
    totals, trips = [], []
    for _ in range(sessions):
        on_a = diff if one_side else diff // 2
        only_a = [rnd.randbytes(ID_BYTES) for _ in range(on_a)]
        only_b = [rnd.randbytes(ID_BYTES) for _ in range(diff - on_a)]
        for store, extra in ((pair.a, only_a), (pair.b, only_b)):
            for item_id in extra:
                store.add(item_id, 0)
        result = run_session(pair.a, pair.b, config=config, salt=rnd.randbytes(SALT_BYTES))
        assert set(result.initiator.have_ids) == set(only_a)
        assert set(result.initiator.need_ids) == set(only_b)
        totals.append(result.bytes_forward + result.bytes_back)
        trips.append(result.round_trips)
        for store, extra in ((pair.a, only_a), (pair.b, only_b)):
            for item_id in extra:
                store.remove(item_id)
    totals.sort()
    return {
        "sessions": sessions,
        "bytes_median": totals[len(totals) // 2],
        "bytes_p99": totals[(99 * len(totals)) // 100],
        "bytes_max": totals[-1],
        "round_trips": {t: trips.count(t) for t in sorted(set(trips))},
    }


def scaling(
    diffs: tuple[int, ...] = (1, 10, 100, 1_000, 10_000), n: int = 100_000, seed: int = 1
) -> list[dict[str, Any]]:
    """Bytes per difference, messages and peak queue length as the difference grows."""
    config = SyncConfig()
    rows = []
    for diff in diffs:
        pair = build_pair(n, diff, one_side=False, seed=seed)
        result = run_session(pair.a, pair.b, config=config, salt=bytes(SALT_BYTES))
        report = _report(pair, result, n)
        assert report["exact"]
        peak = max(s.statistics().peak_queued for s in (result.initiator, result.responder))
        rows.append(
            {
                "n": n,
                "diff": diff,
                "bytes_total": report["bytes_total"],
                "bytes_per_diff": round(report["bytes_total"] / diff, 1),
                "round_trips": result.round_trips,
                "peak_queued": peak,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--diff", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sweep", type=int, default=0, help="seeds for the parameter table")
    parser.add_argument("--edges", action="store_true", help="identical and empty-store cases")
    parser.add_argument("--spread", type=int, default=0, help="sessions for the spread of costs")
    parser.add_argument("--one-side", action="store_true", help="--spread: all diff on one side")
    parser.add_argument("--scaling", action="store_true", help="growing differences")
    args = parser.parse_args()
    if args.scaling:
        result: Any = scaling(n=args.n, seed=args.seed)
    elif args.spread:
        result = spread(args.spread, args.n, args.diff, one_side=args.one_side)
    elif args.sweep:
        result = sweep(args.sweep, args.n, args.diff)
    elif args.edges:
        result = measure_edges(args.n, args.seed)
    else:
        result = measure_sync(args.n, args.diff, args.seed)
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
