"""The rows of ``meshmsg bench``: each figure's measuring function and its place in the table.

Each function returns one sample (named figures) per call, the figure and the limit it is
compared with taken in the same call; ``MEASURES`` lists the rows in table order.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import importlib
import importlib.util
import os
import re
import subprocess
import sys
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from meshmsg.bench.daemons import measures as daemon_measures
from meshmsg.bench.runner import (
    Blocked,
    Condition,
    Context,
    Figures,
    Measure,
    Status,
)
from meshmsg.bench.simrows import (
    SIM_DETAILS,
    SIM_LIMIT_TITLE,
    sim_blocked,
    sim_epidemic,
    sim_spray_and_wait,
)
from meshmsg.bench.simscale import rwp10000, scale_blocked
from meshmsg.bench.units import KIB, MIB, per_s, plain, seconds, size, speedup
from meshmsg.errors import MeshError


def _optional(module: str, attr: str) -> Callable[..., Any] | None:
    """``module.attr`` if that module exists (import errors inside it propagate)."""
    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        found = False
    if not found:
        return None
    fn = getattr(importlib.import_module(module), attr, None)
    return fn if callable(fn) else None


def _pending_unless(module: str, attrs: Sequence[str], path: str) -> Blocked | None:
    """PENDING until ``module`` exists and defines every one of ``attrs``."""
    if importlib.util.find_spec(module) is None:
        return Blocked(Status.PENDING, f"{path} has not landed yet")
    missing = [a for a in attrs if _optional(module, a) is None]
    if missing:
        return Blocked(Status.PENDING, f"{path} does not define {', '.join(missing)} yet")
    return None


# ---------------------------------------------------------------------- one link, two processes


def net_blocked(ctx: Context) -> Blocked | None:
    return _pending_unless(
        "meshmsg.bench.measure", ["measure_messages", "measure_links"], "meshmsg/bench/measure.py"
    )


def link_messages(ctx: Context) -> Figures:
    """1 KiB payloads/s over one Noise link through the trio runner, this process to a child
    process on loopback, next to in-process encrypt + frame + decrypt of 32-frame batches;
    both from :func:`meshmsg.bench.measure.measure_messages` (one repeat per sample)."""
    from meshmsg.bench.measure import measure_messages

    result = measure_messages(count=ctx.size(20_000, 4_096, 1_024), repeats=1, layer="link")
    return {"msgs_per_s": result["median_per_s"], "limit_msgs_per_s": result["limit_per_s"]}


def link_setup(ctx: Context) -> Figures:
    """New authenticated links/s (TCP connect, Noise XX, one record, close) to a child process
    from 4 dialers at once (clients arriving together), and from one dialing one link after
    another, next to in-process XX handshakes/s; from
    :func:`meshmsg.bench.measure.measure_links` (one repeat per sample)."""
    from meshmsg.bench.measure import measure_links

    result = measure_links(count=ctx.size(600, 100, 20), repeats=1, parallel=4)
    one = measure_links(count=ctx.size(300, 50, 20), repeats=1)
    return {"links_per_s": result["median_per_s"], "limit_handshakes_per_s": result["limit_per_s"],
            "one_at_a_time_per_s": one["median_per_s"]}  # fmt: skip


def attachment_throughput(ctx: Context) -> Figures:
    """One attachment over one link between two Nodes in two processes, chunks durable on disk
    (meshmsg/bench/attach.py), in bytes/s, next to the in-process Noise limit of the
    link-messages row in bytes/s. ``meshmsg bench --only link-messages,link-attachment``,
    2026-12-07 17:16–17:26 UTC, load 6.8–8.6 on 2 cores, seven runs each, alternated: 26.7 MiB/s,
    ratio 0.521 (0.376–0.620, met in 4 of 7), against 18.1 MiB/s, 0.369 before batched
    requests, sender pacing, a window of 16/48 and one sync per batch; docs/performance.md."""
    from meshmsg.bench.attach import measure_attachment_throughput

    return measure_attachment_throughput(ctx.size(16 << 20, 4 << 20, 1 << 20))


# ------------------------------------------------------------------------ durable submits


def durable_submits(ctx: Context) -> Figures:
    from meshmsg.bench.storage import measure_durable_submits

    return measure_durable_submits(ctx.workdir, ctx.size(500, 100, 50))


# ------------------------------------------------------------------------------------ sync

SYNC_ITEMS: Final = 100_000
SYNC_DIFFERENCES: Final = 100
ID_BYTES: Final = 16


def sync_blocked(ctx: Context) -> Blocked | None:
    return _pending_unless("meshmsg.bench.sync", ["measure_sync"], "meshmsg/bench/sync.py")


def sync_overhead(ctx: Context) -> Figures:
    """One reconciliation of two stores of ``n`` ids that differ by 100 (50 on each side, and
    all 100 on one side as a detail), from :func:`meshmsg.bench.sync.measure_sync`; a fresh
    random seed per sample, so min–max shows the spread over store contents."""
    items = ctx.size(SYNC_ITEMS, 10_000, 1_000)
    # The naive protocol sends one side's whole id list: 16 bytes per id. A byte count, not a
    # timing: it does not vary between runs.
    figures = {"naive_bytes": float(items * ID_BYTES)}
    fn = _optional("meshmsg.bench.sync", "measure_sync")
    if fn is None:
        return figures
    result = fn(items, SYNC_DIFFERENCES, int.from_bytes(os.urandom(4), "big"))
    half, one_side = result["half_each_side"], result["all_on_one_side"]
    if not (half["exact"] and one_side["exact"]):
        raise MeshError(f"reconciliation found the wrong difference: {result}")
    figures.update(
        bytes=float(half["bytes_total"]),
        round_trips=float(half["round_trips"]),
        one_side_bytes=float(one_side["bytes_total"]),
        one_side_round_trips=float(one_side["round_trips"]),
        session_s=float(half["wall_s"]),
        naive_bytes=float(result["naive_id_list_bytes"]),
    )
    return figures


# ------------------------------------------------------------------------------- discovery

DISCOVERY_TRIAL_TIMEOUT_S: Final = 60.0
_DISCOVERY_LINE: Final = re.compile(r"median of \d+ trial medians: ([0-9.]+) s")


def discovery_blocked(ctx: Context) -> Blocked | None:
    if not (ctx.root / "tests" / "net" / "discovery_node.py").is_file():
        return Blocked(Status.SKIPPED, "needs a source checkout (tests/net/discovery_node.py)")
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return Blocked(
            Status.SKIPPED, "multicast test hosts need Linux network namespaces and root"
        )
    probe = subprocess.run(
        [sys.executable, "-c", "from tests.net.netns import netns_available as a; "
         "ok, why = a(); print('' if ok else why)"],
        cwd=ctx.root, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    reason = probe.stdout.strip() or probe.stderr.strip()[-200:]
    if probe.returncode != 0 or reason:
        return Blocked(Status.SKIPPED, f"multicast unavailable: {reason}")
    return None


def _median_of_trials(ctx: Context, module: str) -> float:
    proc = subprocess.run(
        [sys.executable, "-m", module, "measure", "--trials", "1"],
        cwd=ctx.root, capture_output=True, text=True, timeout=DISCOVERY_TRIAL_TIMEOUT_S,
        check=False,
    )  # fmt: skip
    found = _DISCOVERY_LINE.search(proc.stdout)
    if proc.returncode != 0 or found is None:
        tail = (proc.stdout + proc.stderr).strip()[-300:]
        raise MeshError(f"{module} measure failed (exit {proc.returncode}): {tail}")
    return float(found.group(1))


def discovery(ctx: Context) -> Figures:
    """One trial each of plain zeroconf and of meshmsg discovery, on three fresh hosts in
    network namespaces (tests/bench/zeroconf_alone.py, tests/net/discovery_node.py)."""
    figures: Figures = {}
    if (ctx.root / "tests" / "bench" / "zeroconf_alone.py").is_file():
        figures["zeroconf_s"] = _median_of_trials(ctx, "tests.bench.zeroconf_alone")
    figures["discovery_s"] = _median_of_trials(ctx, "tests.net.discovery_node")
    return figures


# ---------------------------------------------------------------------------------- memory


def _rss_bytes() -> int:
    """Resident set size now (Linux ``/proc/self/statm``; elsewhere the peak, a weaker proxy)."""
    statm = Path("/proc/self/statm")
    if statm.is_file():
        return int(statm.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@contextlib.contextmanager
def _traced() -> Iterator[list[int]]:
    """Python heap growth inside the block (tracemalloc), as ``[bytes]`` once it ends."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    grown: list[int] = []
    try:
        yield grown
        gc.collect()
        grown.append(tracemalloc.get_traced_memory()[0] - before)
    finally:
        tracemalloc.stop()


def _link_pairs(count: int) -> list[tuple[Any, Any]]:
    """``count`` established, idle :class:`~meshmsg.core.link.Link` pairs built like a node
    builds them (identity proof in the handshake, the session record registry)."""
    from meshmsg.config import NodeConfig
    from meshmsg.core.identity import Identity
    from meshmsg.core.link import Link, LinkState, PeerHandshake, PeerVerdict
    from meshmsg.core.records import SESSION_RECORDS, Hello, IdentityProof
    from meshmsg.core.wire import Record
    from meshmsg.sysrng import SystemRng

    config, rng = NodeConfig(), SystemRng()

    def accept(peer: PeerHandshake) -> PeerVerdict:
        return PeerVerdict.CONTACT

    def side(initiator: bool) -> Link:
        identity = Identity.generate(rng)
        records: list[Record] = [
            Hello(version=1, capabilities=(1,), agent="meshmsg"),
            IdentityProof(public=identity.public.to_bytes()),
        ]
        return Link(
            initiator=initiator, static_private=identity.noise_private, config=config,
            rng=rng, now=0.0, handshake_records=records, decide=accept,
            registry=SESSION_RECORDS,
        )  # fmt: skip

    pairs = []
    for _ in range(count):
        a, b = side(True), side(False)
        for _ in range(3):  # three handshake messages
            for src, dst in ((a, b), (b, a)):
                data = src.data_to_send(0.0)
                if data:
                    dst.receive_data(data, 0.0)
        if a.state is not LinkState.ESTABLISHED or b.state is not LinkState.ESTABLISHED:
            raise MeshError("a benchmark link pair did not establish")
        pairs.append((a, b))
    return pairs


def idle_link_memory(ctx: Context) -> Figures:
    """Bytes per idle established link (one side), from the Python heap and from RSS."""
    count = ctx.size(600, 200, 20)
    _link_pairs(2)  # imports and first-use caches are not per-link costs
    # RSS first, in this fresh process: memory freed later stays in the allocator's pools.
    gc.collect()
    rss_before = _rss_bytes()
    pairs = _link_pairs(count)
    gc.collect()
    rss = (_rss_bytes() - rss_before) / (2 * count)
    del pairs
    with _traced() as grown:
        pairs = _link_pairs(count)
    del pairs
    return {"traced_bytes_per_link": grown[0] / (2 * count), "rss_bytes_per_link": rss}


STORE_ITEMS: Final = 100_000
ENVELOPE_BYTES: Final = 1024  # the 1 KiB padding bucket: a short text with its headers


def _filled_relay_store(count: int) -> tuple[object, object]:
    """A ``RelayStore`` + ``ItemSet`` holding ``count`` carried 1 KiB envelopes as a daemon
    holds them: each body leaves memory once its record is committed
    (``StoreConfig.bodies_on_disk``, ``RelayStore.body_durable``, as the commit does) and each
    item's Offer entry is built (a relay offers what it carries). Carried mail only: our own
    outgoing mail keeps its body in memory (docs/storage.md)."""
    from meshmsg.config import StoreConfig
    from meshmsg.core.itemset import ItemSet
    from meshmsg.core.records import OfferEntry
    from meshmsg.core.store import RelayStore, StoreItem, Tier

    now = 1_800_000_000.0
    neighbours = [os.urandom(16) for _ in range(50)]
    tiers = (Tier.VERIFIED, Tier.CONTACT, Tier.STRANGER)
    config = StoreConfig(
        max_store_bytes=4 * count * ENVELOPE_BYTES, max_store_envelopes=2 * count,
        bodies_on_disk=True,
    )  # fmt: skip
    store, index = RelayStore(config), ItemSet()
    for k in range(count):
        envelope = os.urandom(ENVELOPE_BYTES)
        envelope_id = hashlib.blake2b(envelope, digest_size=16).digest()
        item = StoreItem(
            envelope_id=envelope_id, envelope=envelope, tag=os.urandom(16),
            expiry_at=now + 86_400.0 + k, copies=6, hops=k % 4, tier=tiers[k % 3],
            source=neighbours[k % len(neighbours)], received_at=now + k,
        )  # fmt: skip
        if store.admit(item, now).evicted or envelope_id not in store:
            raise MeshError("the benchmark store refused or evicted an item")
        index.add(envelope_id, int(item.expiry_at))
        store.body_durable(envelope_id)  # its Persist committed: the body is on disk only
        item.offer_entry = OfferEntry(envelope_id=envelope_id, tag=item.tag)
        if item.envelope is not None:
            raise MeshError("a committed carried body stayed in memory")
    return store, index


def relay_store_memory(ctx: Context) -> Figures:
    """Memory of a relay store and its sync index holding 100,000 carried envelopes as a
    daemon holds them (bodies on disk: :func:`_filled_relay_store`): the Python heap, and RSS
    measured first in this fresh process; the quick run measures 10,000 and scales."""
    count = ctx.size(STORE_ITEMS, 10_000, 1_000)
    _filled_relay_store(10)  # imports and first-use caches are not per-item costs
    gc.collect()
    rss_before = _rss_bytes()
    held = _filled_relay_store(count)
    gc.collect()
    rss = _rss_bytes() - rss_before
    del held
    with _traced() as grown:
        held = _filled_relay_store(count)
    del held
    scale = STORE_ITEMS / count
    return {
        "store_bytes_100k": grown[0] * scale,
        "rss_bytes_100k": rss * scale,
        "envelope_bytes_100k": count * ENVELOPE_BYTES * scale,
        "overhead_bytes_per_item": grown[0] / count,
    }


# --------------------------------------------------------------------------- e2e envelopes


E2E_INNER_BYTES: Final = 900  # a short text with its headers: the 1 KiB envelope bucket


def e2e_blocked(ctx: Context) -> Blocked | None:
    return _pending_unless("meshmsg.bench.e2e", ["measure_seal_open"], "meshmsg/bench/e2e.py")


def e2e_envelopes(ctx: Context) -> Figures:
    fn = _optional("meshmsg.bench.e2e", "measure_seal_open")
    if fn is None:
        return {}
    # One repeat per call: this runner repeats, and wants every call to be one sample.
    result = fn(ctx.size(2_000, 500, 100), E2E_INNER_BYTES, repeats=1)
    return {k: float(v) for k, v in dict(result).items()}


# ================================================================================== table


# fmt: off
MEASURES: Final[tuple[Measure, ...]] = (
    Measure(
        name="link-messages",
        title="1 KiB messages/s over one Noise link, two processes on loopback",
        figure="msgs_per_s", unit="messages/s", fmt=per_s,
        run=link_messages, limit="limit_msgs_per_s",
        limit_title="in-process Noise encrypt+frame+decrypt, 32 frames batched",
        goal=(Condition("ratio", ">=", 0.5),), goal_text="ratio ≥ 0.5",
        repeats=5, quick_repeats=1, blocked=net_blocked,
    ),
    Measure(
        name="link-setup",
        title="new authenticated links/s between two processes, 4 dialers at once",
        figure="links_per_s", unit="links/s", fmt=per_s,
        run=link_setup, limit="limit_handshakes_per_s",
        limit_title="in-process Noise XX handshakes/s",
        goal=(Condition("ratio", ">=", 0.5),), goal_text="ratio ≥ 0.5",
        details=(("one_at_a_time_per_s", "one dialer, one link at a time:", per_s),),
        repeats=3, quick_repeats=1, blocked=net_blocked,
    ),
    Measure(
        name="link-attachment",
        title="attachment bytes/s over one link, two Nodes in two processes, chunks on disk",
        figure="attach_bytes_per_s", unit="bytes/s", fmt=size,
        run=attachment_throughput, limit="limit_bytes_per_s",
        limit_title="link-messages limit in bytes/s (in-process Noise, 1 KiB payloads)",
        goal=(Condition("ratio", ">=", 0.5),), goal_text="ratio ≥ 0.5",
        repeats=3, quick_repeats=1, blocked=net_blocked,
    ),
    Measure(
        name="durable-submits",
        title="durable submits/s, one commit each (accepted and committed, synchronous=FULL)",
        figure="durable_submits_per_s", unit="submits/s", fmt=per_s,
        run=durable_submits, limit="plain_wal_commits_per_s",
        limit_title="SQLite WAL insert+commit loop, same disk",
        goal=(Condition("durable_submits_per_s", ">=", 20_000),), goal_text="≥ 20,000/s",
        details=(("batched_records_per_s", "group commit of 64:", per_s),
                 ("nondurable_submits_per_s", "synchronous=NORMAL (no fsync):", per_s)),
        repeats=3, quick_repeats=1,
    ),
    *daemon_measures(),
    Measure(
        name="sync",
        title="sync overhead, 100k vs 100k stores differing by 100 (bytes both ways)",
        figure="bytes", unit="bytes", fmt=size,
        run=sync_overhead, limit="naive_bytes", limit_title="naive id list (16 B per id)",
        goal=(Condition("bytes", "<=", 16 * KIB), Condition("round_trips", "<=", 4)),
        goal_text="≤ 16 KiB, ≤ 4 round trips",
        details=(("round_trips", "round trips:", plain),
                 ("one_side_bytes", "all 100 on one side:", size),
                 ("one_side_round_trips", "round trips:", plain)),
        repeats=3, quick_repeats=1,
        blocked=sync_blocked, limit_when_blocked=True,
    ),
    Measure(
        name="discovery",
        title="mDNS discovery to a TCP connection, 3 hosts in network namespaces",
        figure="discovery_s", unit="s", fmt=seconds,
        run=discovery, limit="zeroconf_s",
        limit_title="python-zeroconf alone (browse, register, resolve), same hosts",
        goal=(Condition("discovery_s", "<=", 1.5),), goal_text="≤ 1.5 s median",
        repeats=3, quick_repeats=1, warmup=False, timeout_s=240.0, quick_timeout_s=90.0,
        blocked=discovery_blocked,
    ),
    Measure(
        name="sim-snw",
        title="simulator, reference trace, Spray-and-Wait: simulated s per wall s",
        figure="sim_s_per_wall_s", unit="sim s/wall s", fmt=speedup,
        run=sim_spray_and_wait, limit="limit_sim_s_per_wall_s",
        limit_title=SIM_LIMIT_TITLE,
        goal=(Condition("vs_the_one", ">=", 1.0, optional=True),),
        goal_text="as fast as the ONE (ratio ≥ 1, when MESHMSG_THE_ONE is set)",
        details=SIM_DETAILS,
        repeats=1, quick_repeats=1, warmup=False, timeout_s=3_600.0,
        blocked=sim_blocked, limit_when_blocked=True,
    ),
    Measure(
        name="sim-epidemic",
        title="simulator, reference trace, Epidemic: simulated s per wall s",
        figure="sim_s_per_wall_s", unit="sim s/wall s", fmt=speedup,
        run=sim_epidemic, limit="limit_sim_s_per_wall_s",
        limit_title=SIM_LIMIT_TITLE,
        goal=(Condition("vs_the_one", ">=", 1 / 0.3, optional=True),),
        goal_text="≤ 0.3× the ONE's wall time (ratio ≥ 3.33, when MESHMSG_THE_ONE is set)",
        details=SIM_DETAILS,
        repeats=1, quick_repeats=1, warmup=False, timeout_s=7_200.0,
        blocked=sim_blocked, limit_when_blocked=True,
    ),
    Measure(
        name="sim-rwp10000",
        title="simulator at scale: 10,000 real Nodes, 1 h random waypoint: peak RSS",
        figure="peak_rss_bytes", unit="bytes", fmt=size,
        run=rwp10000,
        goal=(Condition("peak_rss_bytes", "<=", 8 * 1024 * MIB),), goal_text="≤ 8 GiB",
        details=(("nodes", "nodes:", plain), ("contacts", "contacts:", plain),
                 ("wall_s", "wall:", seconds), ("cpu_s", "CPU:", seconds)),
        repeats=1, quick_repeats=1, warmup=False, fresh_process=True,
        timeout_s=4 * 3_600.0, quick_timeout_s=60.0, blocked=scale_blocked,
    ),
    Measure(
        name="mem-link",
        title="memory per idle established link (one side; Python heap, RSS cross-check)",
        figure="traced_bytes_per_link", unit="bytes", fmt=size,
        run=idle_link_memory,
        goal=(Condition("traced_bytes_per_link", "<=", 64 * KIB),
              Condition("rss_bytes_per_link", "<=", 64 * KIB)),
        goal_text="≤ 64 KiB", details=(("rss_bytes_per_link", "RSS:", size),),
        repeats=2, quick_repeats=1, warmup=False, fresh_process=True,
    ),
    Measure(
        name="mem-store",
        title="memory of 100,000 carried 1 KiB envelopes in a relay store + sync index "
              "(bodies on disk)",
        figure="store_bytes_100k", unit="bytes", fmt=size,
        run=relay_store_memory,
        goal=(Condition("store_bytes_100k", "<=", 100 * MIB),
              Condition("rss_bytes_100k", "<=", 100 * MIB)), goal_text="≤ 100 MiB",
        details=(("rss_bytes_100k", "RSS:", size),
                 ("envelope_bytes_100k", "bodies on disk:", size),
                 ("overhead_bytes_per_item", "per item:", size)),
        repeats=1, quick_repeats=1, warmup=False, fresh_process=True,
    ),
    Measure(
        name="e2e-envelopes",
        title="end-to-end messages sealed+opened/s (900 B inner, 1 KiB envelope)",
        figure="seal_open_per_s", unit="messages/s", fmt=per_s,
        run=e2e_envelopes, limit="raw_aead_per_s",
        limit_title="raw XChaCha20-Poly1305 encrypt+decrypt, 900 B",
        details=(("raw_aead_padded_per_s", "raw AEAD at the padded size:", per_s),),
        blocked=e2e_blocked,
    ),
)
# fmt: on
