"""The limit of the discovery figure: plain python-zeroconf on the same test hosts.

``meshmsg bench`` compares ``tests/net/discovery_node.py measure`` (mDNS through
``meshmsg.net.discovery``, then a TCP connection) with this: the same three network-namespace
hosts, the same service type, the same zeroconf calls the discovery backend makes (bind to our
own address, browse, register, resolve), and nothing else: no trio bridge, no trusted-network
filter, no dial budget, no TCP. Both report, per (node, peer) pair, the wall-clock time at which
the node knew the peer's address, minus the time the last node started.

Child mode (inside a test host)::

    python -m tests.bench.zeroconf_alone node --ip 10.77.5.2

prints the same JSON lines as the discovery node (``open``, ``peer``), so the parent reuses
that harness. Measurement mode (root only)::

    python -m tests.bench.zeroconf_alone measure --trials 3
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import subprocess
import sys
import threading
import time
from queue import Queue

from zeroconf import IPVersion, ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

from meshmsg.net.discovery import SERVICE_TYPE
from tests.net.discovery_node import ROOT, NodeProc, stop_all, wait_for
from tests.net.netns import Host, netns_available, netns_hosts

PORT = 7447
RESOLVE_TIMEOUT_MS = 3_000  # discovery's default resolve timeout is of the same order


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def run_node(ip: str, max_runtime: float) -> None:
    emit("open", t=time.time(), ip=ip)
    zc = Zeroconf(interfaces=[ip], ip_version=IPVersion.V4Only)
    label = secrets.token_hex(8)
    own = f"{label}.{SERVICE_TYPE}"
    names: Queue[str | None] = Queue()

    def on_change(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is ServiceStateChange.Added and name != own:
            names.put(name)

    def resolve_all() -> None:
        while (name := names.get()) is not None:
            info = zc.get_service_info(SERVICE_TYPE, name, RESOLVE_TIMEOUT_MS)
            if info is not None:
                for host in info.parsed_addresses():
                    emit("peer", host=host, port=info.port, t=time.time(), hello="")

    resolver = threading.Thread(target=resolve_all, daemon=True)
    resolver.start()
    browser = ServiceBrowser(zc, SERVICE_TYPE, handlers=[on_change])
    info = ServiceInfo(
        SERVICE_TYPE, own, port=PORT, properties={"v": "1"}, server=f"{label}.local.",
        parsed_addresses=[ip],
    )  # fmt: skip
    zc.register_service(info, allow_name_change=True)
    # Stop when stdin closes (the parent's orderly stop) or after the safety deadline.
    stopper = threading.Thread(target=sys.stdin.read, daemon=True)
    stopper.start()
    stopper.join(max_runtime)
    names.put(None)
    browser.cancel()
    zc.close()
    emit("closed", t=time.time())


def start_node(host: Host, max_runtime: float = 30.0) -> NodeProc:
    proc = host.popen(
        sys.executable, "-m", "tests.bench.zeroconf_alone", "node", "--ip", host.ip,
        "--max-runtime", str(max_runtime),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT,
    )  # fmt: skip
    node = NodeProc(ip=host.ip, proc=proc)
    node.start_reader()
    return node


def run_trial(hosts: list[Host], timeout_s: float = 10.0) -> list[float]:
    """Per (node, peer) pair: when the node knew the peer's address, after the last start."""
    nodes: list[NodeProc] = []
    try:
        nodes.extend(start_node(host) for host in hosts)
        want = {n.ip for n in nodes}
        ok = wait_for(nodes, lambda: all(set(n.peers) >= want - {n.ip} for n in nodes), timeout_s)
        if not ok:
            missing = {n.ip: sorted(want - {n.ip} - set(n.peers)) for n in nodes}
            raise AssertionError(f"zeroconf discovery incomplete after {timeout_s} s: {missing}")
        last_open = max(n.opened_at or 0.0 for n in nodes)
        return [t - last_open for n in nodes for h, t in n.peers.items() if h in want]
    finally:
        stop_all(nodes)


def measure(trials: int) -> None:
    ok, reason = netns_available()
    if not ok:
        sys.exit(f"cannot measure: {reason}")
    medians = []
    for i in range(trials):
        with netns_hosts(3) as hosts:
            latencies = run_trial(hosts)
        medians.append(statistics.median(latencies))
        print(f"trial {i + 1}: {len(latencies)} pairs, median {medians[-1]:.3f} s")
    print(f"median of {trials} trial medians: {statistics.median(medians):.3f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    node = sub.add_parser("node")
    node.add_argument("--ip", required=True)
    node.add_argument("--max-runtime", type=float, default=30.0)
    bench = sub.add_parser("measure")
    bench.add_argument("--trials", type=int, default=3)
    args = parser.parse_args(argv)
    if args.mode == "node":
        run_node(args.ip, args.max_runtime)
    else:
        measure(args.trials)


if __name__ == "__main__":
    main()
