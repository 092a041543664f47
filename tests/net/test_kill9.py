"""kill -9 of a real node during traffic: no acknowledged message lost, none twice, no damage.

Two real nodes on loopback, each a process (``kill9_node.py``: ``open_mesh_node`` on its own data
directory, as ``meshmsg run`` has it, with the other as static peer). The sender sends a message
every 20 ms; the test SIGKILLs one node at a random moment after it came up (``victim``: the
receiver, or in the variant the sender), checks its database, restarts it, and repeats
``MESHMSG_KILL_ROUNDS`` times (default 20; the ``slow`` variant 100). Then the sender stops
sending, both nodes settle until every message the sender's database holds is delivered, and
stop cleanly. Afterwards:

* every message the receiver acknowledged is in its database exactly once: the ones it reported
  (``RECEIVED``, printed after the commit) and the ones the sender saw ``relayed`` (custody,
  acknowledged after the receiver's commit) or ``delivered``;
* no message was reported twice across restarts, and no body is stored twice;
* every message the sender's ``send_message`` returned for is delivered: in the sender's
  database as DELIVERED, in the receiver's as received (nothing is lost between ``SENT`` and the
  sender's own commit, which a killed sender could otherwise do silently);
* ``PRAGMA integrity_check`` is ok after every kill and at the end, for both databases.

SIGKILL keeps every write the process made (see test_storage_crash.py): this tests the node's
commit-before-acknowledge logic and recovery, not the disk's.
"""

from __future__ import annotations

import os
import random
import re
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

import pytest

from meshmsg.app.datadir import (
    Settings,
    Unlocked,
    init_data_dir,
    open_offline,
    own_contact_code,
    unlock,
)
from meshmsg.core.events import MessageStatus
from meshmsg.core.identity import ContactCard, decode_contact_code
from meshmsg.core.node import Node
from meshmsg.net.storage import DataDir, Storage

NODE = Path(__file__).with_name("kill9_node.py")
ROOT = Path(__file__).resolve().parent.parent.parent
PASSPHRASE = "kill -9 test passphrase"
ROUNDS = int(os.environ.get("MESHMSG_KILL_ROUNDS", "20"))
SLOW_ROUNDS = max(ROUNDS, 100)
SEND_EVERY_S = 0.02
KILL_AFTER_S = (0.02, 0.6)  # a kill lands this long after the victim said READY
START_TIMEOUT_S = 20.0  # interpreter start-up, unlock and restore on a loaded 2-core machine
LINK_TIMEOUT_S = 15.0
SETTLE_TIMEOUT_S = 40.0  # receipts are batched for 2 s; redials back off from 2 s
STOP_TIMEOUT_S = 15.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class NodeProc:
    """One node's data directory and its successive processes (one log file per process)."""

    name: str
    root: Path
    port: int
    peer_port: int
    unlocked: Unlocked
    to: bytes | None = None
    procs: list[tuple[subprocess.Popen[bytes], Path]] = field(default_factory=list)
    start_times: list[float] = field(default_factory=list)  # spawn to READY, seconds

    @property
    def data_dir(self) -> DataDir:
        return DataDir(self.root / self.name)

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        return self.procs[-1][0]

    def start(self) -> None:
        n = len(self.procs)
        log = self.root / f"{self.name}-{n}.log"
        args = [sys.executable, str(NODE), str(self.data_dir.root), "--port", str(self.port),
                "--peer", f"127.0.0.1:{self.peer_port}"]  # fmt: skip
        if self.to is not None:
            args += ["--to", self.to.hex(), "--prefix", f"{self.name}{n}", "--every",
                     str(SEND_EVERY_S)]  # fmt: skip
        env = dict(os.environ, PYTHONPATH=str(ROOT), MESHMSG_PASSPHRASE=PASSPHRASE)
        with log.open("wb") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
        self.procs.append((proc, log))
        spawned = time.monotonic()
        self.wait_for(lambda line: line.startswith("READY "), "READY", START_TIMEOUT_S)
        self.start_times.append(time.monotonic() - spawned)

    def lines(self, latest_only: bool = False) -> list[str]:
        """Complete lines (a line cut by a kill has no newline and does not count)."""
        logs = self.procs[-1:] if latest_only else self.procs
        found: list[str] = []
        for _, log in logs:
            found += log.read_text(errors="replace").split("\n")[:-1]
        return found

    def wait_for(
        self,
        test: Callable[[str], bool],
        what: str,
        timeout: float,
        explain: Callable[[], str] | None = None,
    ) -> None:
        deadline = time.monotonic() + timeout
        while not any(test(line) for line in self.lines(latest_only=True)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = "\n".join(self.lines(latest_only=True)[-20:])
                more = "" if explain is None else "\n" + explain()
                pytest.fail(
                    f"{self.name} never printed {what} (exit {self.proc.poll()}):\n{tail}{more}"
                )
            time.sleep(0.01)

    def tagged_lines(self) -> list[str]:
        """Every complete line of every process, prefixed with its log's name."""
        found: list[str] = []
        for _, log in self.procs:
            lines = log.read_text(errors="replace").split("\n")[:-1]
            found += [f"{log.name}: {line}" for line in lines]
        return found

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(timeout=STOP_TIMEOUT_S) == -signal.SIGKILL

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=STOP_TIMEOUT_S) == 0, "\n".join(self.lines(True)[-20:])
        assert self.lines(latest_only=True)[-1] == "STOPPED"

    def integrity_ok(self) -> bool:
        with Storage.open(self.data_dir.db_path, self.unlocked.db_key) as storage:
            return storage.integrity_check()

    def node_state(self, read: Callable[[Node], object]) -> object:
        settings = Settings(name=self.name)
        with open_offline(self.data_dir, settings, self.unlocked) as offline:
            return read(offline.node)

    def cleanup(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT_S)


def make_pair(root: Path) -> tuple[NodeProc, NodeProc]:
    """Two initialised data directories that hold each other as verified contacts."""
    unlocked: dict[str, Unlocked] = {}
    for name in ("sender", "receiver"):
        data_dir = DataDir(root / name)
        init_data_dir(data_dir, passphrase=PASSPHRASE, name=name, kdf_fast=True)
        unlocked[name] = unlock(data_dir, Settings(name=name), lambda: PASSPHRASE)
    codes = {n: own_contact_code(u.identity, Settings(name=n)) for n, u in unlocked.items()}
    for name, other in (("sender", "receiver"), ("receiver", "sender")):
        card = decode_contact_code(codes[other])

        def add(node: Node, now: float, card: ContactCard = card) -> None:
            node.add_contact(card, verified=True, now=now)

        with open_offline(DataDir(root / name), Settings(name=name), unlocked[name]) as offline:
            offline.run(add)
    sender_port, receiver_port = free_port(), free_port()
    sender = NodeProc("sender", root, sender_port, receiver_port, unlocked["sender"],
                      to=unlocked["receiver"].identity.peer_id)  # fmt: skip
    receiver = NodeProc("receiver", root, receiver_port, sender_port, unlocked["receiver"])
    return sender, receiver


def fields_of(lines: list[str], tag: str) -> list[list[str]]:
    return [line.split(" ")[1:] for line in lines if line.startswith(tag + " ")]


@dataclass
class Outcome:
    kills: int
    kills_while_linked: int
    sent: int
    received_reports: int
    acknowledged: int
    stored: int
    restart_s: float = 0.0  # median, spawn to READY
    settle_s: float = 0.0  # from the last restart until every message was delivered
    elapsed_s: float = 0.0


def kill_rounds(root: Path, victim_role: str, rounds: int, seed: int) -> Outcome:
    rng = random.Random(seed)
    started = time.monotonic()
    sender, receiver = make_pair(root)
    try:
        receiver.start()
        sender.start()
        for node in (sender, receiver):
            node.wait_for(lambda line: line == "PAIRED", "PAIRED", LINK_TIMEOUT_S)
        victim = receiver if victim_role == "receiver" else sender
        linked = 0
        for _ in range(rounds):
            time.sleep(rng.uniform(*KILL_AFTER_S))
            victim.kill9()
            linked += "LINKED" in victim.lines(latest_only=True)
            assert victim.integrity_ok(), f"{victim.name}'s database is damaged after a kill"
            victim.start()
        # Stop sending, let the nodes finish, stop them cleanly.
        settling = time.monotonic()
        sender.wait_for(lambda line: line == "LINKED", "LINKED", LINK_TIMEOUT_S)
        sender.proc.send_signal(signal.SIGUSR1)
        sender.wait_for(
            lambda line: line == "PENDING 0", "PENDING 0", SETTLE_TIMEOUT_S,
            explain=lambda: undelivered_report(sender, receiver),
        )  # fmt: skip
        settle_s = time.monotonic() - settling
        sender.stop()
        receiver.stop()
    finally:
        sender.cleanup()
        receiver.cleanup()
    assert sender.integrity_ok()
    assert receiver.integrity_ok()
    outcome = check(sender, receiver, rounds, linked)
    outcome.restart_s = statistics.median(victim.start_times[1:])
    outcome.settle_s = settle_s
    outcome.elapsed_s = time.monotonic() - started
    return outcome


def undelivered_report(sender: NodeProc, receiver: NodeProc, most: int = 5) -> str:
    """What both logs say about the sender's messages that never reached DELIVERED, and how
    each log ends (the logs stay in the test's tmp dir, named below)."""
    sender_lines = sender.lines()
    delivered = {mid for mid, status in fields_of(sender_lines, "STATUS") if status == "delivered"}
    sent = [mid for mid, _ in fields_of(sender_lines, "SENT")]
    stuck = [mid for mid in sent if mid not in delivered]
    every = sender.tagged_lines() + receiver.tagged_lines()
    out = [f"{len(stuck)} sent messages not delivered (logs in {sender.root}): {stuck[:most]}"]
    for mid in stuck[:most]:
        out.append(f"-- {mid}:")
        out += [f"   {line}" for line in every if mid in line]
    for node in (sender, receiver):
        tail = [line for line in node.tagged_lines() if ": PENDING " not in line][-15:]
        out.append(f"-- {node.name}, last lines but PENDING:")
        out += [f"   {line}" for line in tail]
    return "\n".join(out)


def check(sender: NodeProc, receiver: NodeProc, kills: int, linked: int) -> Outcome:
    sender_lines, receiver_lines = sender.lines(), receiver.lines()
    sent = dict(fields_of(sender_lines, "SENT"))
    statuses = fields_of(sender_lines, "STATUS")
    custody = {mid for mid, status in statuses if status in ("relayed", "delivered")}
    reported = [mid for mid, _ in fields_of(receiver_lines, "RECEIVED")]
    sender_id = sender.unlocked.identity.peer_id
    receiver_id = receiver.unlocked.identity.peer_id

    def incoming(node: Node) -> list[tuple[str, str]]:
        return [(m.message_id.hex(), m.body)
                for m in node.conversations.with_peer(sender_id) if not m.outgoing]  # fmt: skip

    def outgoing(node: Node) -> dict[str, MessageStatus]:
        return {m.message_id.hex(): m.status
                for m in node.conversations.with_peer(receiver_id) if m.outgoing}  # fmt: skip

    stored_pairs = receiver.node_state(incoming)
    own = sender.node_state(outgoing)
    assert isinstance(stored_pairs, list)
    assert isinstance(own, dict)
    stored = Counter(mid for mid, _ in stored_pairs)
    bodies = Counter(body for _, body in stored_pairs)
    assert max(stored.values()) == 1
    assert bodies.most_common(1)[0][1] == 1, f"a body stored twice: {bodies.most_common(3)}"
    twice = [mid for mid, n in Counter(reported).items() if n > 1]
    assert not twice, f"{len(twice)} messages reported to the receiver's application twice"
    acknowledged = set(reported) | custody
    lost = acknowledged - set(stored)
    assert not lost, f"{len(lost)} acknowledged messages missing at the receiver: {sorted(lost)}"
    # Every stored body is one the sender wrote (a SENT line may be missing: killed before it).
    assert all(re.fullmatch(r"sender\d+-\d{5}", body) for body in bodies)
    never_committed = set(sent) - set(own)
    assert not never_committed, (
        f"{len(never_committed)} messages send_message returned for are not in the sender's "
        f"database: {[sent[m] for m in sorted(never_committed)[:5]]}"
    )
    undelivered = {m: s.name for m, s in own.items() if s is not MessageStatus.DELIVERED}
    assert not undelivered, f"{len(undelivered)} sent messages not delivered after settling"
    assert set(own) == set(stored)  # every sent message arrived, exactly once
    return Outcome(
        kills=kills,
        kills_while_linked=linked,
        sent=len(sent),
        received_reports=len(reported),
        acknowledged=len(acknowledged),
        stored=len(stored),
    )


def report(outcome: Outcome, victim: str, record: Callable[[str, object], None]) -> None:
    for name, value in vars(outcome).items():
        record(f"{victim}_{name}", round(value, 1) if isinstance(value, float) else value)
    print(f"kill -9 of the {victim}: {outcome}")


@pytest.mark.parametrize("victim", ["receiver", "sender"])
def test_kill9_during_traffic_loses_and_duplicates_nothing(
    tmp_path: Path, victim: str, record_property: Callable[[str, object], None]
) -> None:
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    outcome = kill_rounds(tmp_path, victim, ROUNDS, seed)
    assert outcome.kills >= 20 or ROUNDS < 20
    # Most kills must land while traffic flows, or the test would prove little.
    assert outcome.kills_while_linked >= outcome.kills // 2
    assert outcome.stored >= outcome.kills
    report(outcome, victim, record_property)


@pytest.mark.slow
@pytest.mark.parametrize("victim", ["receiver", "sender"])
def test_kill9_long_run(
    tmp_path: Path, victim: str, record_property: Callable[[str, object], None]
) -> None:
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    outcome = kill_rounds(tmp_path, victim, SLOW_ROUNDS, seed)
    assert outcome.kills_while_linked >= outcome.kills // 2
    report(outcome, victim, record_property)
