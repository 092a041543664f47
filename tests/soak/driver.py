"""The soak driver: 5 real nodes, mixed traffic, and random faults; then nothing may be missing.

:func:`run_soak` initialises ``nodes`` data directories whose owners are all verified contacts
of each other, starts one ``tests/soak/node.py`` process per node (what ``meshmsg run`` runs,
with mixed traffic to random contacts) and a :class:`~tests.soak.faultproxy.FaultProxy` in this
process. Every node's static peers are the proxy's ports of the others, so every link goes
through the proxy. For ``minutes`` it injects, at random moments (0.5-3 s apart):

* **kill -9** of a running node (at most two down at once), ``PRAGMA integrity_check`` of its
  database, restart after 0.2-5 s;
* **cuts**: a random share of the proxied connections (or all of one node's) closed at once,
  with RST or FIN;
* **blocks**: new connections to one node closed on arrival for 1-10 s;
* **clock steps**: one node's wall clock set to ``true time + offset``, offset drawn uniformly
  in ``±max_offset_h`` (12 h by default: a step moves a clock by up to 24 h, and two nodes
  differ by at most 24 h, the protocol's tolerated skew ``clock_skew_s``). Offsets are kept
  after the faults stop.

Then it stops the faults, makes sure every node is up, stops the traffic (SIGUSR1) and waits
until every node has delivered everything it sent (``PENDING 0``), at most ``settle_s``; stops
the nodes cleanly and checks their databases offline (:func:`check`):

* every acknowledged message (``SENT``: ``send_message`` returned after its commit, as the
  API's 201) is stored at its recipient exactly once, and ``DELIVERED`` (or ``READ``) at its
  sender; every message a recipient reported, or a sender saw ``relayed``/``delivered``, too;
* no message is reported twice to a recipient's application, no body is stored twice, and
  nothing is stored that no node sent;
* ``PRAGMA integrity_check`` is ok after every kill and at the end.

Long run: ``python -m tests.soak --minutes 60``; the CI variant is ``tests/soak/test_soak.py``.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from meshmsg.app.datadir import Settings, Unlocked, init_data_dir, open_offline, own_contact_code
from meshmsg.app.datadir import unlock as unlock_dir
from meshmsg.core.events import MessageStatus
from meshmsg.core.identity import ContactCard, decode_contact_code
from meshmsg.core.node import Node
from meshmsg.net.storage import DataDir, Storage
from tests.soak.faultproxy import FaultProxy

ROOT = Path(__file__).resolve().parent.parent.parent
PASSPHRASE = "soak test passphrase"
START_TIMEOUT_S = 30.0  # interpreter start-up, unlock and restore on a loaded 2-core machine
PAIR_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0
HOUR = 3_600.0


class SoakFailure(AssertionError):
    """The property did not hold (or the harness could not run the nodes)."""


class SoakStalled(SoakFailure):
    """Nothing lost, duplicated or misplaced, but not everything was delivered within the
    settle bound: raised by ``run_soak`` only after the safety checks passed (``check``)."""

    def __init__(self, message: str, result: SoakResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass
class SoakConfig:
    minutes: float = 1.0
    nodes: int = 5
    seed: int = 0
    send_every_s: float = 0.25  # per node, mean
    max_offset_h: float = 12.0
    settle_s: float = 330.0  # a static peer's redial backoff ends at 300 s
    max_down: int = 2
    # "live": a clock is stepped back under a running node. "restart": a step back is made
    # while the node is down (killed and restarted with it, as a machine rebooting with a
    # corrected clock); forward steps stay live. "live" finds the bug in
    # tests/soak/test_clock_step_receipts.py (receipts held for the size of the step).
    clock_back: str = "restart"
    # Redial backoff ceiling of the nodes' static peers (None: the default, 300 s). A short
    # settle needs it short: after many failed dials a pair may wait that long to meet again.
    retry_max_s: float | None = None
    # Relayed mail's delivered receipts sealed this long after the opening and never held
    # from their relay (None: the privacy defaults, 30-300 s and a 600 s hold). A short settle
    # needs it short: a message sealed again after a heal, whose earlier copy the recipient
    # opened, is marked delivered by that copy's token only while its sender has not restarted
    # since, else by the receipt alone (docs/operations.md).
    receipt_delay_s: float | None = None


@dataclass
class SoakResult:
    seed: int = 0
    faults_s: float = 0.0
    kills: int = 0
    cuts: int = 0
    connections_cut: int = 0
    blocks: int = 0
    clock_steps: int = 0
    clock_steps_back: int = 0
    sent: int = 0
    acknowledged: int = 0
    stored: int = 0
    read_receipts: int = 0
    restart_s: float = 0.0  # median, spawn to READY
    settle_s: float = 0.0  # traffic stopped to every message delivered
    settled: bool = True  # every node reported nothing pending within the settle bound
    undelivered: int = 0  # messages not delivered at their sender after settling
    late: list[str] = field(default_factory=list)  # the first 20 of them
    proxied_connections: int = 0
    proxied_mib: float = 0.0
    integrity_checks: int = 0
    elapsed_s: float = 0.0


def leaves(group: BaseException) -> list[BaseException]:
    if isinstance(group, BaseExceptionGroup):
        return [leaf for e in group.exceptions for leaf in leaves(e)]
    return [group]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SoakNode:
    name: str
    root: Path
    port: int
    unlocked: Unlocked
    procs: list[tuple[subprocess.Popen[bytes], Path]] = field(default_factory=list)
    start_times: list[float] = field(default_factory=list)
    peers: str = ""
    to: str = ""
    every: float = 0.25
    retry_max_s: float = 0.0
    receipt_delay_s: float = 0.0

    @property
    def data_dir(self) -> DataDir:
        return DataDir(self.root / self.name)

    @property
    def clock_file(self) -> Path:
        return self.root / f"{self.name}.clock"

    @property
    def peer_id(self) -> bytes:
        return self.unlocked.identity.peer_id

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        return self.procs[-1][0]

    @property
    def up(self) -> bool:
        return bool(self.procs) and self.proc.poll() is None

    async def start(self, seed: int) -> None:
        n = len(self.procs)
        log = self.root / f"{self.name}-{n}.log"
        args = [sys.executable, "-m", "tests.soak.node", str(self.data_dir.root),
                "--name", f"{self.name}.{n}", "--port", str(self.port), "--peers", self.peers,
                "--to", self.to, "--every", str(self.every), "--clock-file",
                str(self.clock_file), "--seed", str(seed),
                "--retry-max-s", str(self.retry_max_s),
                "--receipt-delay-s", str(self.receipt_delay_s)]  # fmt: skip
        env = dict(os.environ, PYTHONPATH=str(ROOT), MESHMSG_PASSPHRASE=PASSPHRASE)
        with log.open("wb") as out:
            proc = subprocess.Popen(  # noqa: ASYNC220 (spawning does not wait)
                args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT
            )
        self.procs.append((proc, log))
        spawned = time.monotonic()
        await self.wait_for(lambda line: line.startswith("READY "), "READY", START_TIMEOUT_S)
        self.start_times.append(time.monotonic() - spawned)

    def lines(self, latest_only: bool = False) -> list[str]:
        """Complete lines (a line cut by a kill has no newline and does not count)."""
        found: list[str] = []
        for _, log in self.procs[-1:] if latest_only else self.procs:
            found += log.read_text(errors="replace").split("\n")[:-1]
        return found

    def tail(self) -> str:
        """The running process's last 20 lines, for a failure's message."""
        return "\n".join(self.lines(latest_only=True)[-20:])

    async def wait_for(self, test: Callable[[str], bool], what: str, limit_s: float) -> None:
        if not await self.printed_within(test, what, limit_s):
            raise SoakFailure(f"{self.name} never printed {what} within {limit_s:.0f} s:\n"
                              f"{self.tail()}")  # fmt: skip

    async def printed_within(self, test: Callable[[str], bool], what: str, limit_s: float) -> bool:
        """Whether a line passing ``test`` comes within ``limit_s``; a node that exits fails."""
        deadline = time.monotonic() + limit_s
        while not any(test(line) for line in self.lines(latest_only=True)):
            if self.proc.poll() is not None:
                raise SoakFailure(f"{self.name} exited ({self.proc.poll()}) before {what}:\n"
                                  f"{self.tail()}")  # fmt: skip
            if time.monotonic() > deadline:
                return False
            await trio.sleep(0.05)
        return True

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        if self.proc.wait(timeout=STOP_TIMEOUT_S) != -signal.SIGKILL:
            raise SoakFailure(f"{self.name} exited before the kill: {self.lines(True)[-5:]}")

    async def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        code = await trio.to_thread.run_sync(lambda: self.proc.wait(timeout=STOP_TIMEOUT_S))
        last = self.lines(latest_only=True)[-1:]
        if code != 0 or last != ["STOPPED"]:
            raise SoakFailure(f"{self.name} did not stop cleanly ({code}): "
                              f"{self.lines(True)[-20:]}")  # fmt: skip

    def integrity_ok(self) -> bool:
        with Storage.open(self.data_dir.db_path, self.unlocked.db_key) as storage:
            return storage.integrity_check()

    def node_state(self, read: Callable[[Node], Any]) -> Any:
        with open_offline(self.data_dir, Settings(name=self.name, profile="crisis"),
                          self.unlocked) as offline:  # fmt: skip
            return read(offline.node)

    def cleanup(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT_S)


def make_nodes(root: Path, count: int) -> list[SoakNode]:
    """``count`` initialised data directories, every pair verified contacts (not yet paired)."""
    names = [f"n{i}" for i in range(count)]
    unlocked: dict[str, Unlocked] = {}
    for name in names:
        data_dir = DataDir(root / name)
        init_data_dir(data_dir, passphrase=PASSPHRASE, name=name, kdf_fast=True)
        unlocked[name] = unlock_dir(data_dir, Settings(name=name), lambda: PASSPHRASE)
    codes = {n: own_contact_code(u.identity, Settings(name=n)) for n, u in unlocked.items()}
    for name in names:
        cards = [decode_contact_code(codes[o]) for o in names if o != name]

        def add(node: Node, now: float, cards: list[ContactCard] = cards) -> None:
            for card in cards:
                node.add_contact(card, verified=True, now=now)

        with open_offline(DataDir(root / name), Settings(name=name), unlocked[name]) as off:
            off.run(add)
    return [SoakNode(n, root, free_port(), unlocked[n]) for n in names]


async def run_soak(root: Path, cfg: SoakConfig, log: Callable[[str], None] = print) -> SoakResult:
    rng = random.Random(cfg.seed)
    result = SoakResult(seed=cfg.seed)
    started = time.monotonic()
    nodes = make_nodes(root, cfg.nodes)
    proxy = FaultProxy()
    try:
        async with trio.open_nursery() as nursery:
            fronts = {n.name: await proxy.add_route(nursery, n.name, n.port) for n in nodes}
            for node in nodes:
                node.peers = ",".join(f"127.0.0.1:{fronts[o.name]}" for o in nodes if o is not node)
                node.to = ",".join(o.peer_id.hex() for o in nodes if o is not node)
                node.every = cfg.send_every_s
                node.retry_max_s = cfg.retry_max_s or 0.0
                node.receipt_delay_s = cfg.receipt_delay_s or 0.0
                node.clock_file.write_text("0")
            for node in nodes:
                await node.start(rng.randrange(2**32))
            for node in nodes:
                for other in nodes:
                    if other is not node:
                        want = f"PAIRED {other.peer_id.hex()}"
                        await node.wait_for(lambda line, w=want: line == w, want, PAIR_TIMEOUT_S)
            log(f"soak seed {cfg.seed}: {cfg.nodes} nodes paired after "
                f"{time.monotonic() - started:.1f} s; faults for {cfg.minutes} min")  # fmt: skip
            await inject_faults(nodes, proxy, cfg, rng, result, log)
            # Faults over: everyone up, traffic stops, everything must arrive.
            for node in nodes:
                if not node.up:
                    await node.start(rng.randrange(2**32))
            quiet_at = time.monotonic()
            for node in nodes:
                node.proc.send_signal(signal.SIGUSR1)
            for node in nodes:
                remaining = cfg.settle_s - (time.monotonic() - quiet_at)
                # A miss is judged after the safety checks (check: SoakStalled), not here.
                result.settled = result.settled and await node.printed_within(
                    lambda line: line == "PENDING 0", "PENDING 0", max(remaining, 1.0)
                )
            result.settle_s = time.monotonic() - quiet_at
            for node in nodes:
                await node.stop()
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        failures = leaves(group)
        if all(isinstance(f, SoakFailure) for f in failures):
            raise failures[0] from None
        raise
    finally:
        for node in nodes:
            node.cleanup()
    for node in nodes:
        result.integrity_checks += 1
        if not node.integrity_ok():
            raise SoakFailure(f"{node.name}'s database is damaged at the end")
    check(nodes, result)
    result.restart_s = statistics.median([t for n in nodes for t in n.start_times[1:]] or [0.0])
    result.proxied_connections = proxy.stats.accepted
    result.proxied_mib = proxy.stats.bytes_forwarded / 2**20
    result.elapsed_s = time.monotonic() - started
    if result.undelivered or not result.settled:
        raise SoakStalled(f"not settled within {cfg.settle_s:.0f} s (seed {result.seed}): "
                          f"nothing lost or duplicated, {result.undelivered} not delivered:\n  "
                          + "\n  ".join(result.late), result)  # fmt: skip
    return result


async def inject_faults(nodes: list[SoakNode], proxy: FaultProxy, cfg: SoakConfig,
                        rng: random.Random, result: SoakResult,
                        log: Callable[[str], None]) -> None:  # fmt: skip
    begin = time.monotonic()
    end = begin + cfg.minutes * 60.0
    restarting: set[str] = set()
    last_report = begin

    async def restart_later(node: SoakNode, delay: float) -> None:
        await trio.sleep(delay)
        await node.start(rng.randrange(2**32))
        restarting.discard(node.name)

    async with trio.open_nursery() as nursery:
        while time.monotonic() < end:
            await trio.sleep(rng.uniform(0.5, 3.0))
            action = rng.choices(["kill", "cut", "block", "clock"], [3, 4, 1, 2])[0]
            if action == "kill" and len(restarting) < cfg.max_down:
                node = rng.choice([n for n in nodes if n.name not in restarting])
                node.kill9()
                result.kills += 1
                ok = await trio.to_thread.run_sync(node.integrity_ok)
                result.integrity_checks += 1
                if not ok:
                    raise SoakFailure(f"{node.name}'s database is damaged after a kill")
                restarting.add(node.name)
                nursery.start_soon(restart_later, node, rng.uniform(0.2, 5.0))
            elif action == "cut":
                target = rng.choice([None, rng.choice(nodes).name])
                share = 1.0 if target is not None else rng.uniform(0.2, 1.0)
                cut = proxy.cut(target=target, share=share, rng=rng, reset=rng.random() < 0.5)
                result.cuts += 1
                result.connections_cut += cut
            elif action == "block":
                proxy.block(rng.choice(nodes).name, rng.uniform(1.0, 10.0))
                result.blocks += 1
            elif action == "clock":
                node = rng.choice(nodes)
                offset = rng.uniform(-cfg.max_offset_h, cfg.max_offset_h) * HOUR
                back = offset < float(node.clock_file.read_text())
                if back and cfg.clock_back == "restart" and node.name not in restarting:
                    if len(restarting) >= cfg.max_down:
                        continue
                    node.kill9()  # the machine reboots with its clock set back
                    result.kills += 1
                    ok = await trio.to_thread.run_sync(node.integrity_ok)
                    result.integrity_checks += 1
                    if not ok:
                        raise SoakFailure(f"{node.name}'s database is damaged after a kill")
                    restarting.add(node.name)
                    nursery.start_soon(restart_later, node, rng.uniform(0.2, 5.0))
                node.clock_file.write_text(f"{offset:.3f}")
                result.clock_steps += 1
                result.clock_steps_back += back
            if time.monotonic() - last_report > 60:
                last_report = time.monotonic()
                log(f"  {(last_report - begin) / 60:.0f} min: {result.kills} kills, "
                    f"{result.cuts} cuts ({result.connections_cut} connections), "
                    f"{result.blocks} blocks, {result.clock_steps} clock steps")  # fmt: skip
    result.faults_s = time.monotonic() - begin


def fields_of(lines: list[str], tag: str) -> list[list[str]]:
    return [line.split(" ")[1:] for line in lines if line.startswith(tag + " ")]


def check(nodes: list[SoakNode], result: SoakResult) -> None:
    """The property (module doc), from the nodes' output and their databases offline."""
    by_id = {n.peer_id.hex(): n for n in nodes}
    sent: dict[str, tuple[str, str, str]] = {}  # id -> sender, recipient, body head
    custody: set[str] = set()
    reported: dict[str, list[str]] = {}
    for node in nodes:
        lines = node.lines()
        for mid, to, head in fields_of(lines, "SENT"):
            sent[mid] = (node.name, by_id[to].name, head)
        custody |= {mid for mid, s in fields_of(lines, "STATUS") if s in ("relayed", "delivered")}
        reported[node.name] = [mid for mid, _, _ in fields_of(lines, "RECEIVED")]

    def incoming(node: Node) -> list[tuple[str, str, str]]:
        return [(m.message_id.hex(), m.peer_id.hex(), m.body.split(" ", 1)[0])
                for p in node.conversations.peers() for m in node.conversations.with_peer(p)
                if not m.outgoing]  # fmt: skip

    def outgoing(node: Node) -> dict[str, MessageStatus]:
        return {m.message_id.hex(): m.status for p in node.conversations.peers()
                for m in node.conversations.with_peer(p) if m.outgoing}  # fmt: skip

    stored: dict[str, str] = {}  # id -> recipient
    own: dict[str, MessageStatus] = {}
    problems: list[str] = []
    for node in nodes:
        rows = node.node_state(incoming)
        counts = Counter(mid for mid, _, _ in rows)
        heads = Counter(head for _, _, head in rows)
        problems += [f"{node.name} stores {mid} {n} times" for mid, n in counts.items() if n > 1]
        problems += [f"{node.name} stores body {h} {n} times" for h, n in heads.items() if n > 1]
        twice = [mid for mid, n in Counter(reported[node.name]).items() if n > 1]
        problems += [f"{node.name} reported {mid} to its application twice" for mid in twice]
        for mid, _, _ in rows:
            stored[mid] = node.name
        own.update(node.node_state(outgoing))
        result.read_receipts += sum(1 for s in node.node_state(outgoing).values()
                                    if s is MessageStatus.READ)  # fmt: skip
    acknowledged = set(sent) | custody | {m for r in reported.values() for m in r}
    done = (MessageStatus.DELIVERED, MessageStatus.READ)
    # Missing at its recipient while its sender still holds it undelivered: late (a settle
    # bound missed, reported below), not lost; lost is what no node will ever deliver.
    lost = sorted(m for m in acknowledged - set(stored) if own.get(m) in done or m not in own)
    problems += [f"acknowledged {mid} ({sent.get(mid)}) missing at its recipient" for mid in lost]
    misplaced = [mid for mid, (_, to, _) in sent.items() if mid in stored and stored[mid] != to]
    problems += [f"{mid} stored at the wrong node" for mid in misplaced]
    never_committed = sorted(set(sent) - set(own))
    problems += [f"{mid} ({sent[mid]}) acknowledged but not in its sender's database"
                 for mid in never_committed]  # fmt: skip
    phantom = sorted(set(stored) - set(own))
    problems += [f"{mid} stored at {stored[mid]} but sent by no node" for mid in phantom]
    if problems:
        raise SoakFailure(f"{len(problems)} problems (seed {result.seed}), e.g.:\n  "
                          + "\n  ".join(problems[:20]))  # fmt: skip
    result.sent = len(own)
    result.acknowledged = len(acknowledged)
    result.stored = len(stored)
    undelivered = sorted((m, s.name) for m, s in own.items() if s not in done)
    result.undelivered = len(undelivered)
    result.late = [f"{mid} {status} at its sender" for mid, status in undelivered[:20]]
