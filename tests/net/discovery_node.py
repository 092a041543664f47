"""A discovery node for the network-namespace tests, and the trial driver that runs several.

Child mode (run inside a test host)::

    python -m tests.net.discovery_node node --trusted 10.77.5.0/24 --port 7447

It serves a one-line TCP hello (its own IP) on ``--port``, runs ``open_discovery`` with the real
zeroconf backend, dials every peer discovery hands out, and prints JSON lines on stdout:
``open`` (wall-clock time the advert started), ``peer`` (host, port, hand-out time, the hello
read back) and ``stats`` (whenever the counters change). It stops when stdin closes, or after
``--max-runtime`` seconds as a safety net.

Measurement mode (root only)::

    python -m tests.net.discovery_node measure --trials 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty, Queue
from typing import Any

import trio

from meshmsg.config import NetConfig
from meshmsg.errors import TransportError
from meshmsg.net.discovery import Discovery, open_discovery
from meshmsg.net.peers import DiscoveredPeer, TrustedNetworks, system_adapters
from meshmsg.sysrng import SystemRng
from tests.net.netns import Host, netns_available, netns_hosts

ROOT = Path(__file__).resolve().parents[2]
PORT = 7447


# --- Child ---------------------------------------------------------------------------------------


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


async def serve_hello(my_ip: str, port: int) -> None:
    async def hello(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.send_all(my_ip.encode() + b"\n")

    await trio.serve_tcp(hello, port, host=my_ip)


async def dial(disc: Discovery, peer: DiscoveredPeer) -> None:
    try:
        with trio.fail_after(5):
            stream = await trio.open_tcp_stream(peer.host, peer.port)
            async with stream:
                hello = (await stream.receive_some(100)).decode().strip()
    except (OSError, trio.TooSlowError) as exc:
        disc.report_failure(peer)
        emit("dial_failed", host=peer.host, error=str(exc))
        return
    disc.report_success(peer)
    emit("peer", host=peer.host, port=peer.port, t=time.time(), hello=hello)


async def report_stats(disc: Discovery) -> None:
    last: dict[str, object] = {}
    while True:
        s = disc.statistics()
        now: dict[str, object] = {
            "tracked": s.peers.tracked,
            "ignored_untrusted": s.ignored_untrusted,
            "ignored_self": s.ignored_self,
            "registrations": s.registrations,
            "enabled": s.enabled,
        }
        if now != last:
            emit("stats", **now)
            last = now
        await trio.sleep(0.05)


async def wait_stdin_closed() -> None:
    stdin = trio.lowlevel.FdStream(sys.stdin.fileno())
    while await stdin.receive_some(1024):
        pass


async def run_node(trusted: str, port: int, max_runtime: float) -> None:
    nets = TrustedNetworks.parse([trusted])
    my_ip = nets.local_addresses(system_adapters())[0]
    with trio.move_on_after(max_runtime):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_hello, my_ip, port)
            emit("open", t=time.time(), ip=my_ip)
            async with open_discovery(NetConfig(), nets, port, SystemRng()) as disc:
                nursery.start_soon(report_stats, disc)

                async def dial_all() -> None:
                    async for peer in disc.peers():
                        nursery.start_soon(dial, disc, peer)

                nursery.start_soon(dial_all)
                await wait_stdin_closed()
            nursery.cancel_scope.cancel()
    emit("closed", t=time.time())


# --- Parent --------------------------------------------------------------------------------------


@dataclass
class NodeProc:
    """A running child and what it has said so far (read by a thread: pipes block)."""

    ip: str
    proc: subprocess.Popen[str]
    events: Queue[dict[str, Any]] = field(default_factory=Queue)
    output_tail: deque[str] = field(default_factory=lambda: deque(maxlen=30))
    opened_at: float | None = None
    peers: dict[str, float] = field(default_factory=dict)  # host -> hand-out wall time
    hellos: dict[str, str] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)

    def start_reader(self) -> None:
        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:  # stdout and stderr, merged
                if line.startswith("{"):
                    self.events.put(json.loads(line))
                else:
                    self.output_tail.append(line)

        threading.Thread(target=read, daemon=True).start()

    def drain(self) -> None:
        while True:
            try:
                event = self.events.get_nowait()
            except Empty:
                return
            if event["event"] == "open":
                self.opened_at = event["t"]
            elif event["event"] == "peer":
                self.peers[event["host"]] = event["t"]
                self.hellos[event["host"]] = event["hello"]
            elif event["event"] == "stats":
                self.stats = event


def start_node(host: Host, cidr: str, max_runtime: float = 30.0) -> NodeProc:
    """Start a child node in ``host`` trusting ``cidr``."""
    proc = host.popen(
        sys.executable, "-m", "tests.net.discovery_node", "node",
        "--trusted", cidr, "--port", str(PORT), "--max-runtime", str(max_runtime),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT,
    )  # fmt: skip
    node = NodeProc(ip=host.ip, proc=proc)
    node.start_reader()
    return node


def wait_for(nodes: list[NodeProc], done: Callable[[], bool], timeout_s: float) -> bool:
    """Poll the children's output until ``done()`` or the deadline (a bounded real wait)."""
    deadline = time.monotonic() + timeout_s
    while True:
        for node in nodes:
            node.drain()
            if node.proc.poll() is not None:
                tail = "".join(node.output_tail)
                raise AssertionError(f"node {node.ip} exited early:\n{tail}")
        if done():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def stop_all(nodes: list[NodeProc], timeout_s: float = 5.0) -> None:
    """Close stdin (orderly stop), wait bounded, then kill. Safe to call twice."""
    for node in nodes:
        if node.proc.stdin and not node.proc.stdin.closed:
            node.proc.stdin.close()
    deadline = time.monotonic() + timeout_s
    for node in nodes:
        try:
            node.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            node.proc.kill()
            node.proc.wait(timeout=5)
        if node.proc.stdout is not None:
            node.proc.stdout.close()


@dataclass
class Trial:
    latencies_s: list[float]  # per (node, peer): hand-out time minus the last node's open
    elapsed_s: float  # from starting the children until all pairs were found
    insiders: list[NodeProc]
    outsider: NodeProc | None


def run_trial(hosts: list[Host], outsider: Host | None, timeout_s: float = 10.0) -> Trial:
    """Start a node per host (and the outsider), wait until every insider found every other.

    With an outsider, also wait until each insider has ignored at least one untrusted service,
    so that "the outsider was not reported" is a tested outcome, not a race lost.
    """
    started = time.monotonic()
    everyone: list[NodeProc] = []  # every child started, so the finally can stop them all
    try:
        everyone.extend(start_node(host, hosts[0].cidr) for host in hosts)
        nodes = list(everyone)
        out = start_node(outsider, outsider.cidr) if outsider else None
        if out is not None:
            everyone.append(out)
        want = {n.ip for n in nodes}

        def done() -> bool:
            found = all(set(n.peers) >= want - {n.ip} for n in nodes)
            saw = all(n.stats.get("ignored_untrusted", 0) >= 1 for n in nodes)
            return found and (out is None or saw)

        ok = wait_for(everyone, done, timeout_s)
        elapsed = time.monotonic() - started
        missing = {n.ip: sorted(want - {n.ip} - set(n.peers)) for n in nodes}
        assert ok, f"discovery incomplete after {timeout_s} s: missing {missing}, {stats(nodes)}"
        last_open = max(n.opened_at or 0.0 for n in everyone)
        lat = [t - last_open for n in nodes for h, t in n.peers.items() if h in want]
        return Trial(latencies_s=lat, elapsed_s=elapsed, insiders=nodes, outsider=out)
    finally:
        stop_all(everyone)


def stats(nodes: list[NodeProc]) -> dict[str, Any]:
    return {n.ip: n.stats for n in nodes}


def measure(trials: int) -> None:
    ok, reason = netns_available()
    if not ok:
        sys.exit(f"cannot measure: {reason}")
    medians = []
    for i in range(trials):
        with netns_hosts(3) as hosts:
            trial = run_trial(hosts, None)
        med = statistics.median(trial.latencies_s)
        medians.append(med)
        print(
            f"trial {i + 1}: {len(trial.latencies_s)} pairs, median {med:.3f} s, "
            f"max {max(trial.latencies_s):.3f} s, all found {trial.elapsed_s:.2f} s after start"
        )
    print(f"median of {trials} trial medians: {statistics.median(medians):.3f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    node = sub.add_parser("node")
    node.add_argument("--trusted", required=True)
    node.add_argument("--port", type=int, default=PORT)
    node.add_argument("--max-runtime", type=float, default=30.0)
    bench = sub.add_parser("measure")
    bench.add_argument("--trials", type=int, default=5)
    args = parser.parse_args(argv)
    if args.mode == "node":
        try:
            trio.run(run_node, args.trusted, args.port, args.max_runtime)
        except TransportError as exc:
            emit("error", error=str(exc))
            sys.exit(1)
    else:
        measure(args.trials)


if __name__ == "__main__":
    main()
