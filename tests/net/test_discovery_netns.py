"""Real zeroconf across network namespaces: nodes find each other; an outsider is ignored.

Needs root and ``ip netns`` (CI has both); skipped with the reason otherwise. Each node is a
child process (``tests/net/discovery_node.py``) in its own namespace on a private bridge.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from collections.abc import Callable

import pytest

from tests.net.discovery_node import run_trial
from tests.net.netns import _ip, netns_available, netns_hosts, netns_hosts_with_outsider

AVAILABLE, REASON = netns_available()
pytestmark = [pytest.mark.netns, pytest.mark.skipif(not AVAILABLE, reason=REASON)]
DISCOVERY_BOUND_S = 10.0


def namespaces() -> set[str]:
    return {line.split(" ", 1)[0] for line in _ip("netns", "list").stdout.splitlines()}


def test_nodes_discover_each_other_and_ignore_the_outsider(
    record_property: Callable[[str, object], None],
) -> None:
    with netns_hosts_with_outsider(3) as (hosts, outsider):
        trial = run_trial(hosts, outsider, timeout_s=DISCOVERY_BOUND_S)
        lab = {h.name for h in [*hosts, outsider]}
        assert lab <= namespaces()
    assert not lab & namespaces()  # torn down

    ips = {h.ip for h in hosts}
    for node in trial.insiders:
        assert set(node.peers) == ips - {node.ip}
        assert node.hellos == {ip: ip for ip in node.peers}  # the hint reached the right node
        assert outsider.ip not in node.peers
        assert node.stats["ignored_untrusted"] >= 1  # it was heard, and refused
        assert node.proc.returncode == 0  # orderly shutdown once stdin closed
    assert trial.outsider is not None
    assert trial.outsider.peers == {}
    assert max(trial.latencies_s) < DISCOVERY_BOUND_S
    median = statistics.median(trial.latencies_s)
    record_property("discovery_median_s", round(median, 3))
    print(f"discovery latency after the last node started: median {median:.3f} s")


def test_lab_is_torn_down_when_the_body_fails() -> None:
    seen: dict[str, object] = {}

    def failing_body() -> None:
        with netns_hosts(2) as hosts:
            seen["names"] = names = {h.name for h in hosts}
            assert names <= namespaces()
            seen["proc"] = hosts[0].popen("sleep", "60")  # left running: teardown kills it
            raise KeyError("boom")

    with pytest.raises(KeyError):
        failing_body()
    names, proc = seen["names"], seen["proc"]
    assert isinstance(names, set)
    assert isinstance(proc, subprocess.Popen)
    assert not names & namespaces()
    assert proc.wait(timeout=5) != 0


def test_labs_do_not_collide_and_hosts_reach_each_other() -> None:
    with netns_hosts(2) as first, netns_hosts(2, subnet=first[0].cidr) as second:
        assert {h.name for h in first}.isdisjoint(h.name for h in second)
        assert first[0].ip == second[0].ip  # same addresses, separate links
        script = "import socket,sys; s=socket.create_connection((sys.argv[1], 9), timeout=2)"
        # Nothing listens on port 9: "connection refused" proves the peer host answered.
        result = first[0].run(sys.executable, "-c", script, first[1].ip, timeout=10)
        assert "ConnectionRefusedError" in result.stderr
        addresses = first[0].run("ip", "-o", "addr", "show", "dev", "eth0", timeout=10)
        assert f"{first[0].ip}/24" in addresses.stdout


def test_leftovers_of_a_dead_process_are_swept() -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True, timeout=10)  # fmt: skip
    stale = f"mmt-{dead.stdout.strip()}-1-abcd-h1"
    _ip("netns", "add", stale)
    try:
        with netns_hosts(1):  # building a lab sweeps first
            assert stale not in namespaces()
    finally:
        _ip("netns", "del", stale, check=False)
