"""One link per pair on a LAN (#17.6): daemons started together end with n·(n−1) link ends.

Needs root and ``ip netns``; skipped with the reason otherwise. ``n`` daemons (``meshmsg run``,
strangers to each other, one site key) each in its own namespace on one bridge find each other
by mDNS and dial each other at about the same time, so most pairs open two links at once. The
test waits until every daemon has exactly one authenticated link to each of the others, checks
that this holds for a while, and reports the time to that full mesh and each daemon's idle CPU
and RSS. The 20-daemon run is ``slow``; the default run has 6 daemons::

    sudo .venv/bin/pytest -m 'netns and slow' -s tests/net/test_mesh_links_netns.py
"""

from __future__ import annotations

import os
import secrets
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.net.netns import netns_available, netns_hosts
from tests.net.test_multihost_netns import Node, wait_until

AVAILABLE, REASON = netns_available()
pytestmark = [pytest.mark.netns, pytest.mark.skipif(not AVAILABLE, reason=REASON)]
STABLE_S = 10.0  # the full mesh must hold this long: no late duplicate, no lost link
IDLE_S = 10.0  # CPU is sampled over this window once the mesh is quiet
_TICKS = os.sysconf("SC_CLK_TCK")


def link_ends(node: Node) -> Counter[str]:
    """The daemon's authenticated links, counted per peer id."""
    return Counter(p["peer_id"] for p in node.get("/status")["peers"] if p["peer_id"])


def full_mesh(nodes: list[Node]) -> bool:
    for node in nodes:
        others = {n.peer_id for n in nodes if n is not node}
        ends = link_ends(node)
        if set(ends) != others or max(ends.values()) != 1:
            return False
    return True


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


@pytest.fixture
def daemons(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[Node]]:
    n: int = request.param
    site_key = secrets.token_hex(32)
    with netns_hosts(n) as hosts:
        nodes = [
            Node(f"n{i}", h, tmp_path / f"n{i}", site_key, h.cidr) for i, h in enumerate(hosts)
        ]
        try:
            for node in nodes:
                node.cli("init", "--name", node.name)
                node.write_config()
                out = node.cli("id", "--no-qr")
                node.peer_id = next(
                    line.split()[-1] for line in out.splitlines() if line.startswith("Peer id")
                )
            yield nodes
        finally:
            for node in nodes:
                node.close()


def _one_link_per_pair(nodes: list[Node], record: Callable[[str, object], None]) -> None:
    n = len(nodes)
    started = time.monotonic()
    for node in nodes:
        node.launch()
    for node in nodes:
        node.wait_up()
    up_s = time.monotonic() - started
    wait_until("one link per pair", lambda: full_mesh(nodes), timeout=30.0 + 3.0 * n)
    mesh_s = time.monotonic() - started
    deadline = time.monotonic() + STABLE_S
    while time.monotonic() < deadline:  # no late duplicate and no link lost to the tie-break
        assert full_mesh(nodes)
        time.sleep(1.0)
    assert sum(sum(link_ends(node).values()) for node in nodes) == n * (n - 1)
    pids = [node.procs[-1].pid for node in nodes]
    before = [cpu_seconds(p) for p in pids]
    time.sleep(IDLE_S)
    cpu = [100 * (cpu_seconds(p) - b) / IDLE_S for p, b in zip(pids, before, strict=True)]
    rss = [rss_mib(p) for p in pids]
    figures = {
        "daemons": n,
        "all_up_s": round(up_s, 1),
        "full_mesh_s": round(mesh_s, 1),
        "link_ends": n * (n - 1),
        "idle_cpu_pct_median": round(statistics.median(cpu), 2),
        "idle_cpu_pct_max": round(max(cpu), 2),
        "rss_mib_median": round(statistics.median(rss), 1),
        "rss_mib_max": round(max(rss), 1),
    }
    print(f"\nmesh of {n} daemons: {figures}")
    for key, value in figures.items():
        record(key, value)


@pytest.mark.parametrize("daemons", [6], indirect=True)
def test_six_daemons_keep_one_link_per_pair(
    daemons: list[Node], record_property: Callable[[str, object], None]
) -> None:
    _one_link_per_pair(daemons, record_property)


@pytest.mark.slow
@pytest.mark.parametrize("daemons", [20], indirect=True)
def test_twenty_daemons_keep_one_link_per_pair(
    daemons: list[Node], record_property: Callable[[str, object], None]
) -> None:
    _one_link_per_pair(daemons, record_property)
