"""End-to-end load through real daemons on loopback: messages/s, and what the load tests check.

A *cluster* is several running nodes in this process, each exactly what ``meshmsg run`` runs
(:func:`~meshmsg.app.mesh.open_mesh_node` on its own data directory: encrypted SQLite committed
with ``synchronous=FULL``, the trio driver on real loopback TCP) and, for the nodes that need it,
the local HTTP API (:func:`~meshmsg.app.api.serve_api`) that messages are posted to. Nodes are
made verified contacts of each other, linked by dialling (as a static peer or mDNS would), and
paired before any load starts.

:func:`run_load` sends ``count`` messages on each conversation of a traffic plan, one task per
conversation posting one message after the other (so a conversation's sequence is well defined),
waits until every sender shows each message ``delivered``, and reads every conversation back
through the API. :class:`LoadResult` holds what the tests assert (``tests/load/``; the
throughput itself is ``meshmsg bench``'s row ``e2e-daemons``, :mod:`meshmsg.bench.daemons`):

* ``lost``, ``duplicated``, ``out_of_order``, ``not_delivered``: must be empty;
* ``max_queued_s``: the longest a message waited at its sender, from its ``queued`` step until
  the recipient held it (its ``received_at``; or the next timeline step, a relay's custody, if
  that came first), while a link to its recipient existed the whole time. Not until
  ``delivered``: that step also waits for the recipient's receipt batch (``receipt_delay_s``);
  ``max_to_delivered_s`` reports the whole round;
* ``msgs_per_s``: messages posted and delivered, divided by the time from the first post to the
  last message seen ``received`` by its recipient.

Run alone: ``python tests/load/cluster.py --senders 1 --recipients 1 -n 1000 [--dir D]``
(prints the findings as JSON).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
import trio

from meshmsg.app.api import serve_api
from meshmsg.app.datadir import Settings, own_contact_code, unlock
from meshmsg.app.datadir import init_data_dir as init
from meshmsg.app.mesh import NodeHandle, open_mesh_node
from meshmsg.config import NodeConfig
from meshmsg.core.events import MessageStatus
from meshmsg.core.identity import decode_contact_code
from meshmsg.core.node import Node
from meshmsg.net.storage import DataDir

TOKEN: Final = "load-test-token-0123456789"
PASSPHRASE: Final = "load test passphrase"
PAGE: Final = 1_000  # the API's api_max_messages
LINK_TIMEOUT_S: Final = 60.0


@dataclass
class Daemon:
    """One running node; ``client`` talks to its API (None for a node without one)."""

    name: str
    handle: NodeHandle
    peer_id: bytes
    code: str
    client: httpx.AsyncClient | None = None

    async def call(self, fn: Any) -> Any:
        return await self.handle.runner.call(fn)


@contextlib.asynccontextmanager
async def open_daemon(
    root: Path, name: str, *, api: bool = True, config: NodeConfig | None = None
) -> AsyncIterator[Daemon]:
    """A node on loopback from a fresh data directory, with its API if ``api``."""
    data_dir = DataDir(root / name)
    init(data_dir, passphrase=PASSPHRASE, name=name, kdf_fast=True)
    settings = Settings(name=name, listen_host="127.0.0.1", listen_port=0, api_port=0)
    unlocked = unlock(data_dir, settings, lambda: PASSPHRASE)
    code = own_contact_code(unlocked.identity, settings)
    async with (
        open_mesh_node(data_dir, settings, unlocked, config=config, mdns=False) as handle,
        trio.open_nursery() as nursery,
    ):
        daemon = Daemon(name, handle, unlocked.identity.peer_id, code)
        if api:
            url = await nursery.start(serve_api, handle, TOKEN, "127.0.0.1", 0)
            headers = {"authorization": f"Bearer {TOKEN}"}
            limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
            async with httpx.AsyncClient(
                base_url=url, headers=headers, timeout=60, limits=limits
            ) as client:
                daemon.client = client
                yield daemon
        else:
            yield daemon
        nursery.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def open_cluster(
    root: Path,
    names: Sequence[str],
    *,
    api: Sequence[str] | None = None,
    config: NodeConfig | None = None,
) -> AsyncIterator[dict[str, Daemon]]:
    """Nodes ``names`` (with an API: those in ``api``, default all), started in order."""
    async with contextlib.AsyncExitStack() as stack:
        daemons: dict[str, Daemon] = {}
        for name in names:
            with_api = api is None or name in api
            daemons[name] = await stack.enter_async_context(
                open_daemon(root, name, api=with_api, config=config)
            )
        yield daemons


async def befriend_and_link(daemons: dict[str, Daemon], pairs: Sequence[tuple[str, str]]) -> None:
    """Make each pair verified contacts, dial (the first dials the second), wait until paired."""
    for a, b in pairs:
        for x, y in ((a, b), (b, a)):
            card = decode_contact_code(daemons[y].code)

            def add(node: Node, now: float, card: Any = card) -> None:
                if node.contacts.get(card.public.peer_id) is None:
                    node.add_contact(card, verified=True, now=now)

            await daemons[x].handle.call_durably(add)
    # Every dial comes from 127.0.0.1, and a node keeps at most max_half_open_per_address (4)
    # half-open connections per source address, evicting the oldest: dial in batches of that
    # size, as peers on a LAN with their own addresses would not need to.
    batch = next(iter(daemons.values())).handle.config.net.max_half_open_per_address
    for start in range(0, len(pairs), batch):
        chunk = pairs[start : start + batch]
        for a, b in chunk:
            await daemons[a].handle.runner.peer_discovered(daemons[b].handle.address)
        await _wait_linked(daemons, chunk)


async def _wait_linked(daemons: dict[str, Daemon], pairs: Sequence[tuple[str, str]]) -> None:
    deadline = trio.current_time() + LINK_TIMEOUT_S
    waiting = [(x, y) for a, b in pairs for x, y in ((a, b), (b, a))]
    while waiting:
        still = []
        for x, y in waiting:
            peer = daemons[y].peer_id
            if not await daemons[x].call(lambda node, _now, p=peer: _linked_paired(node, p)):
                still.append((x, y))
        waiting = still
        if waiting and trio.current_time() > deadline:
            raise AssertionError(f"not linked and paired after {LINK_TIMEOUT_S} s: {waiting[:10]}")
        await trio.sleep(0.1)


def _linked_paired(node: Node, peer: bytes) -> bool:
    contact = node.contacts.get(peer)
    linked = any(s.peer_id == peer and s.synced for s in node.sessions.values())
    return contact is not None and contact.paired and linked


@dataclass
class LoadResult:
    """What a load run found; the lists name (sender, recipient, seq) or message ids."""

    messages: int = 0
    received: int = 0  # distinct posted messages that arrived
    elapsed_s: float = 0.0  # first post to the last message received
    post_s: float = 0.0  # first post to the last 201
    settle_s: float = 0.0  # last 201 to every message delivered at its sender
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    out_of_order: list[str] = field(default_factory=list)
    not_delivered: list[str] = field(default_factory=list)
    arrival_inversions: int = 0  # received_at order against the sequence (not a requirement)
    max_queued_s: float = 0.0
    p99_queued_s: float = 0.0
    max_to_delivered_s: float = 0.0
    slowest: str = ""
    # Longest time a recipient received nothing while messages to it were posted and not yet
    # received (from the first post to the last arrival): a stall, as opposed to a backlog.
    max_arrival_gap_s: float = 0.0

    @property
    def msgs_per_s(self) -> float:
        return self.received / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "messages": self.messages, "received": self.received,
            "msgs_per_s": round(self.msgs_per_s, 1), "elapsed_s": round(self.elapsed_s, 2),
            "post_s": round(self.post_s, 2),
            "settle_s": round(self.settle_s, 2), "lost": len(self.lost),
            "duplicated": len(self.duplicated), "out_of_order": len(self.out_of_order),
            "not_delivered": len(self.not_delivered),
            "arrival_inversions": self.arrival_inversions,
            "max_queued_s": round(self.max_queued_s, 3),
            "p99_queued_s": round(self.p99_queued_s, 3),
            "max_to_delivered_s": round(self.max_to_delivered_s, 3), "slowest": self.slowest,
            "max_arrival_gap_s": round(self.max_arrival_gap_s, 3),
        }  # fmt: skip


async def _post(daemon: Daemon, to: bytes, body: str) -> str:
    if daemon.client is not None:
        response = await daemon.client.post("/messages", json={"to": to.hex(), "body": body})
        if response.status_code != 201:
            raise AssertionError(f"{daemon.name}: POST /messages {response.status_code}: "
                                 f"{response.text}")  # fmt: skip
        return str(response.json()["message_id"])

    def send(node: Node, now: float) -> bytes:  # what the API's POST /messages runs
        return node.send_message(to, body, now=now)

    return (await daemon.handle.call_durably(send)).hex()


async def read_conversation(daemon: Daemon, peer: bytes) -> list[dict[str, Any]]:
    """Every message of one conversation, oldest first: through the API, page by page."""
    if daemon.client is None:
        from meshmsg.app.views import message_view

        return await daemon.call(  # type: ignore[no-any-return]
            lambda node, _now: [message_view(m) for m in node.conversations.with_peer(peer)]
        )
    rows: list[dict[str, Any]] = []
    before: float | None = None
    while True:
        params: dict[str, Any] = {"limit": PAGE}
        if before is not None:
            params["before"] = repr(before)
        response = await daemon.client.get(f"/conversations/{peer.hex()}/messages", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        rows[:0] = page
        if len(page) < PAGE:
            return rows
        before = page[0]["sent_at"]


async def _undelivered(daemon: Daemon) -> int:
    def count(node: Node, _now: float) -> int:
        return sum(
            1
            for peer in node.conversations.peers()
            for m in node.conversations.with_peer(peer)
            if m.outgoing and m.status < MessageStatus.DELIVERED
        )

    return int(await daemon.call(count))


async def run_load(
    daemons: dict[str, Daemon],
    plan: Sequence[tuple[str, str]],
    count: int,
    *,
    settle_timeout_s: float,
    streams: int = 1,
) -> LoadResult:
    """Send ``count`` messages on each (sender, recipient) of ``plan``, all conversations at
    once, in ``streams`` sequential tasks per conversation; wait for delivery; check it all."""
    result = LoadResult(messages=len(plan) * count * 1)
    posted: dict[str, tuple[str, str, int, int]] = {}  # message id -> sender, to, stream, seq
    start = time.time()

    async def conversation(sender: str, to: str, stream: int) -> None:
        peer = daemons[to].peer_id
        for seq in range(stream, count, streams):
            body = f"{sender}>{to}#{stream}:{seq:06d}"
            posted[await _post(daemons[sender], peer, body)] = (sender, to, stream, seq)

    async with trio.open_nursery() as nursery:
        for sender, to in plan:
            for stream in range(streams):
                nursery.start_soon(conversation, sender, to, stream)
    posted_at = time.time()
    result.post_s = posted_at - start
    senders = sorted({s for s, _ in plan})
    with trio.move_on_after(settle_timeout_s):
        for name in senders:
            while await _undelivered(daemons[name]):  # noqa: ASYNC110 (a count in the pump)
                await trio.sleep(0.2)
    result.settle_s = time.time() - posted_at
    await check(daemons, plan, posted, result, start)
    return result


async def check(
    daemons: dict[str, Daemon],
    plan: Sequence[tuple[str, str]],
    posted: dict[str, tuple[str, str, int, int]],
    result: LoadResult,
    start: float,
    remote: dict[str, tuple[bytes, list[dict[str, Any]]]] | None = None,
) -> None:
    """Read every conversation back and fill ``result``'s findings. ``remote``: senders in
    child processes, by name: their peer id and the rows of their one conversation."""
    remote = remote or {}
    last_received = start
    queued: list[tuple[float, str]] = []

    def peer_of(name: str) -> bytes:
        return remote[name][0] if name in remote else daemons[name].peer_id

    arrivals: dict[str, list[float]] = {}
    for sender, to in plan:
        ours = {mid for mid, (s, t, _, _) in posted.items() if (s, t) == (sender, to)}
        rows = (remote[sender][1] if sender in remote
                else await read_conversation(daemons[sender], peer_of(to)))  # fmt: skip
        out = [m for m in rows if m["direction"] == "out" and m["message_id"] in ours]
        got = [m for m in await read_conversation(daemons[to], peer_of(sender))
               if m["direction"] == "in"]  # fmt: skip
        counts = Counter(m["message_id"] for m in got)
        held_at = {m["message_id"]: m["received_at"] for m in got}
        result.duplicated += [mid for mid, n in counts.items() if n > 1]
        result.duplicated += [m["message_id"] for m in got if m["message_id"] not in posted]
        result.lost += sorted(ours - set(counts))
        for m in out:
            steps = m["timeline"]
            if m["status"] not in ("delivered", "read"):
                result.not_delivered.append(f"{m['message_id']} {m['status']}")
            left = [
                at
                for at in (
                    held_at.get(m["message_id"]),
                    steps[1]["at"] if len(steps) >= 2 else None,
                )
                if at is not None
            ]
            queued.append((min(left) - steps[0]["at"] if left else math.inf, m["message_id"]))
            done = [s["at"] for s in steps if s["status"] in ("delivered", "read")]
            if done:
                result.max_to_delivered_s = max(result.max_to_delivered_s, done[0] - steps[0]["at"])
        # Order: in the API's order (by sent_at), each stream's sequence must increase; the
        # same at the sender and at the recipient.
        for side, rows in (("sender", out), ("recipient", got)):
            last: dict[int, int] = {}
            for m in rows:
                mid = m["message_id"]
                if mid not in posted:
                    continue
                _, _, stream, seq = posted[mid]
                if seq <= last.get(stream, -1):
                    result.out_of_order.append(f"{side} {sender}>{to} {stream}:{seq}")
                last[stream] = seq
        by_arrival = sorted((m for m in got if m["message_id"] in posted),
                            key=lambda m: m["received_at"])  # fmt: skip
        last_arrival: dict[int, int] = {}
        for m in by_arrival:
            _, _, stream, seq = posted[m["message_id"]]
            result.arrival_inversions += seq < last_arrival.get(stream, -1)
            last_arrival[stream] = max(seq, last_arrival.get(stream, -1))
        if got:
            last_received = max(last_received, max(m["received_at"] for m in got))
        arrivals.setdefault(to, []).extend(m["received_at"] for m in got)
        result.received += len(set(counts) & ours)
    result.elapsed_s = last_received - start
    for times in arrivals.values():
        gaps = (b - a for a, b in itertools.pairwise([start, *sorted(times)]))
        result.max_arrival_gap_s = max(result.max_arrival_gap_s, max(gaps, default=0.0))
    if queued:
        queued.sort()
        result.max_queued_s, result.slowest = queued[-1]
        result.p99_queued_s = queued[min(len(queued) - 1, int(len(queued) * 0.99))][0]


def mesh_plan(names: Sequence[str]) -> list[tuple[str, str]]:
    """Every node to every other."""
    return [(a, b) for a in names for b in names if a != b]


async def load_between(
    root: Path, senders: int, recipients: int, count: int, *, streams: int = 1,
    settle_timeout_s: float = 120.0, config: NodeConfig | None = None,
) -> LoadResult:  # fmt: skip
    """``senders`` nodes each sending ``count`` to each of ``recipients`` nodes (the same nodes
    when ``senders == 0``: a full mesh of ``recipients``)."""
    if senders == 0:
        names = [f"n{i}" for i in range(recipients)]
        plan = mesh_plan(names)
        pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
        api = names
    else:
        hubs = [f"r{i}" for i in range(recipients)]
        leaves = [f"s{i}" for i in range(senders)]
        names = hubs + leaves
        plan = [(s, r) for s in leaves for r in hubs]
        pairs = [(s, r) for s, r in plan]
        api = hubs if senders > 2 else names  # many senders: posted in-process, as the API does
    async with open_cluster(root, names, api=api, config=config) as daemons:
        await befriend_and_link(daemons, pairs)
        return await run_load(daemons, plan, count, settle_timeout_s=settle_timeout_s,
                              streams=streams)  # fmt: skip


# --- senders in child processes --------------------------------------------------------------


async def _line(stream: trio.abc.ReceiveStream, buffer: bytearray) -> str:
    while b"\n" not in buffer:
        chunk = await stream.receive_some(65_536)
        if not chunk:
            raise AssertionError(f"the other side closed the pipe: {bytes(buffer[-500:])!r}")
        buffer += chunk
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return line.decode()


async def child_senders(
    root: Path, prefix: str, senders: int, count: int, hub_code: str, hub_address: str,
    dial_batch: int, settle_timeout_s: float,
) -> None:  # fmt: skip
    """A child process: ``senders`` nodes that each send ``count`` to the hub. Talks to the
    parent in lines: prints its codes, waits ``go`` (the hub added them), links, prints
    ``linked``, waits ``send``, sends, waits for delivery, prints its posts and rows (JSON)."""
    stdin = trio.lowlevel.FdStream(os.dup(0))
    buffer = bytearray()
    names = [f"{prefix}{i}" for i in range(senders)]
    card = decode_contact_code(hub_code)
    async with stdin, open_cluster(root, names, api=[]) as daemons:
        for d in daemons.values():
            await d.handle.call_durably(
                lambda node, now: node.add_contact(card, verified=True, now=now)
            )
        print(json.dumps({n: [d.code, d.peer_id.hex()] for n, d in daemons.items()}), flush=True)
        assert await _line(stdin, buffer) == "go"
        hub = card.public.peer_id
        for start in range(0, senders, dial_batch):
            chunk = names[start : start + dial_batch]
            for name in chunk:
                await daemons[name].handle.runner.peer_discovered(hub_address)
            with trio.fail_after(LINK_TIMEOUT_S):
                for name in chunk:
                    while not await daemons[name].call(  # noqa: ASYNC110 (pump state)
                        lambda node, _now: _linked_paired(node, hub)
                    ):
                        await trio.sleep(0.05)
        print("linked", flush=True)
        assert await _line(stdin, buffer) == "send"
        posted: dict[str, tuple[str, str, int, int]] = {}

        async def conversation(name: str) -> None:
            for seq in range(count):
                body = f"{name}>hub#0:{seq:06d}"
                posted[await _post(daemons[name], hub, body)] = (name, "r0", 0, seq)

        async with trio.open_nursery() as nursery:
            for name in names:
                nursery.start_soon(conversation, name)
        with trio.move_on_after(settle_timeout_s):
            for name in names:
                while await _undelivered(daemons[name]):  # noqa: ASYNC110 (a count in the pump)
                    await trio.sleep(0.2)
        rows = {n: await read_conversation(daemons[n], hub) for n in names}
        print(json.dumps({"posted": posted, "rows": rows}), flush=True)
        await _line(stdin, buffer)  # "stop": the parent has read the hub's side


async def load_from_children(root: Path, senders: int, count: int, *, processes: int,
                             settle_timeout_s: float) -> LoadResult:  # fmt: skip
    """Like :func:`load_between` with one recipient, the senders in ``processes`` children."""
    result = LoadResult(messages=senders * count)
    async with open_cluster(root, ["r0"]) as daemons, trio.open_nursery() as nursery:
        hub = daemons["r0"]
        batch = max(1, hub.handle.config.net.max_half_open_per_address // processes)
        children: list[Any] = []
        per = -(-senders // processes)
        for k in range(processes):
            n = min(per, senders - k * per)
            args = [sys.executable, __file__, "--child", f"c{k}s", "--senders", str(n),
                    "-n", str(count), "--hub-code", hub.code, "--hub-address",
                    hub.handle.address, "--dial-batch", str(batch), "--settle",
                    str(settle_timeout_s), "--dir", str(root)]  # fmt: skip
            proc = await nursery.start(functools.partial(
                trio.run_process, args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                check=False))  # fmt: skip
            children.append((proc, bytearray()))
        remote: dict[str, tuple[bytes, list[dict[str, Any]]]] = {}
        codes: dict[str, str] = {}
        for proc, buffer in children:
            for name, (code, peer) in json.loads(await _line(proc.stdout, buffer)).items():
                codes[name] = code
                remote[name] = (bytes.fromhex(peer), [])
        for code in codes.values():
            card = decode_contact_code(code)
            await hub.handle.call_durably(
                lambda node, now, card=card: node.add_contact(card, verified=True, now=now)
            )
        for proc, _ in children:
            await proc.stdin.send_all(b"go\n")
        for proc, buffer in children:
            assert await _line(proc.stdout, buffer) == "linked"
        start = time.time()
        for proc, _ in children:
            await proc.stdin.send_all(b"send\n")
        posted: dict[str, tuple[str, str, int, int]] = {}
        for proc, buffer in children:
            found = json.loads(await _line(proc.stdout, buffer))
            posted.update({m: tuple(v) for m, v in found["posted"].items()})
            for name, rows in found["rows"].items():
                remote[name] = (remote[name][0], rows)
        result.settle_s = time.time() - start
        plan = [(name, "r0") for name in remote]
        await check(daemons, plan, posted, result, start, remote=remote)
        for proc, _ in children:
            await proc.stdin.send_all(b"stop\n")
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--senders", type=int, default=1, help="0: a full mesh of --recipients")
    parser.add_argument("--recipients", type=int, default=1)
    parser.add_argument("-n", "--count", type=int, default=1_000, help="per conversation")
    parser.add_argument("--streams", type=int, default=1, help="posters per conversation")
    parser.add_argument("--settle", type=float, default=120.0)
    parser.add_argument("--dir", default=None, help="where the data directories go")
    parser.add_argument("--processes", type=int, default=0, help="senders in N children")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)  # a sender child
    parser.add_argument("--hub-code", default="", help=argparse.SUPPRESS)
    parser.add_argument("--hub-address", default="", help=argparse.SUPPRESS)
    parser.add_argument("--dial-batch", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        root = Path(args.dir)
        trio.run(lambda: child_senders(root, args.child, args.senders, args.count,
                                       args.hub_code, args.hub_address, args.dial_batch,
                                       args.settle))  # fmt: skip
        return
    if args.processes:
        with tempfile.TemporaryDirectory(prefix="meshmsg-e2e-", dir=args.dir) as tmp:
            result = trio.run(lambda: load_from_children(
                Path(tmp), args.senders, args.count, processes=args.processes,
                settle_timeout_s=args.settle))  # fmt: skip
        print(json.dumps(result.summary(), indent=1))
        return
    with tempfile.TemporaryDirectory(prefix="meshmsg-e2e-", dir=args.dir) as tmp:
        result = trio.run(lambda: load_between(
            Path(tmp), args.senders, args.recipients, args.count, streams=args.streams,
            settle_timeout_s=args.settle))  # fmt: skip
    print(json.dumps({**result.summary(), "lost_ids": result.lost[:5],
                      "not_delivered_ids": result.not_delivered[:5]}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
