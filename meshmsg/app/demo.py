"""``meshmsg demo``: three real nodes on this machine, a relay carrying mail between two people
who are never online at the same time.

Theory of operation
-------------------
Each node (alice, bob as the relay, carol) is the same thing ``meshmsg run`` starts: its own
data directory in a temporary folder (keystore, encrypted SQLite database), real TCP on
127.0.0.1 with an ephemeral port, real Noise links, and real mDNS discovery with 127.0.0.1 as the
only trusted network. If mDNS finds nothing on loopback (some systems route no multicast there),
the demo says so and falls back to static peers, which is what an administrator configures
where multicast is blocked.

The script: import each other's contact codes; start the nodes and wait until every pair met
and created its pairwise keys; alice sends carol a direct message and gets the delivered
receipt; carol goes offline; alice sends again, and bob takes custody (RELAYED); alice goes
offline; carol comes back and bob hands her the message; carol's delivered receipt goes to bob
and carol leaves; alice comes back and bob hands her the receipt (DELIVERED). Then each
message's timeline is printed. Every wait is bounded; a step that does not happen in time
fails the demo with a message naming it and a non-zero exit. Nodes go offline by stopping
cleanly and come back from their database, exactly like a restarted daemon.

The demo's identities are throwaway: their keystores use Argon2id at minimum cost.
"""

from __future__ import annotations

import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final, TypeVar

import trio
from rich.console import Console
from rich.table import Table

from meshmsg.app.datadir import (
    Settings,
    Unlocked,
    init_data_dir,
    open_offline,
    own_contact_code,
    relayed_receipts_after,
    unlock,
)
from meshmsg.app.mesh import NodeHandle, open_mesh_node
from meshmsg.config import NodeConfig
from meshmsg.core.events import (
    ContactPaired,
    EnvelopeAccepted,
    LinkClosed,
    MessageReceived,
    MessageStatus,
    MessageStatusChanged,
    PeerConnected,
)
from meshmsg.core.identity import ContactCard, decode_contact_code, fingerprint
from meshmsg.core.node import Node
from meshmsg.errors import MeshError
from meshmsg.net.runnerevents import RunnerEvent
from meshmsg.net.storage import DataDir

BUDGET_S: Final = 30.0  # the promise: done, or failed, within this
MDNS_WAIT_S: Final = 8.0  # discovery on loopback takes ~1.3 s; past this assume no multicast
# A receipt for mail a relay handed over waits a random 30-300 s and is kept from that relay
# for 10 min (privacy, docs/threat-model.md); carol's only peer here is that relay, so the demo
# shortens both to show the receipt's trip in seconds, and says so.
DEMO_RELAYED_RECEIPT_S: Final = 0.5
STEP_S: Final = 10.0  # any one step; the slowest waits for a 2 s receipt batch and discovery
LOOPBACK: Final = "127.0.0.1"
NAMES: Final = ("alice", "bob", "carol")

E = TypeVar("E")


@dataclass(eq=False)
class DemoNode:
    """One node of the demo: its data directory, and its daemon while it is online."""

    name: str
    data_dir: DataDir
    settings: Settings
    unlocked: Unlocked
    clock: Callable[[], float]
    handle: NodeHandle | None = None
    events: list[tuple[float, RunnerEvent]] = field(default_factory=list)
    _changed: trio.Event = field(default_factory=trio.Event)
    _stop: trio.Event = field(default_factory=trio.Event)
    _stopped: trio.Event = field(default_factory=trio.Event)

    @property
    def peer_id(self) -> bytes:
        return self.unlocked.identity.peer_id

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.settings.listen_port}"

    @property
    def runner_handle(self) -> NodeHandle:
        if self.handle is None:
            raise MeshError(f"{self.name} is offline")
        return self.handle

    async def start(self, nursery: trio.Nursery, *, mdns: bool, static: tuple[str, ...]) -> None:
        self._stop, self._stopped = trio.Event(), trio.Event()
        settings = replace(self.settings, static_peers=static)
        await nursery.start(self._serve, settings, mdns)
        # Come back on the same port: static peers (the fallback) keep pointing at us.
        self.settings = replace(self.settings, listen_port=self.runner_handle.runner.port)

    async def _serve(
        self, settings: Settings, mdns: bool, task_status: trio.TaskStatus[None]
    ) -> None:
        try:
            async with (
                open_mesh_node(
                    self.data_dir, settings, self.unlocked, mdns=mdns, config=demo_config(settings)
                ) as handle,
                trio.open_nursery() as nursery,
            ):
                self.handle = handle
                with handle.runner.subscribe(capacity=100_000) as events:
                    nursery.start_soon(self._collect, events)
                    task_status.started()
                    await self._stop.wait()
                    nursery.cancel_scope.cancel()
        finally:
            self.handle = None
            self._stopped.set()

    async def _collect(self, events: trio.MemoryReceiveChannel[RunnerEvent]) -> None:
        async for event in events:
            self.events.append((self.clock(), event))
            self._changed.set()
            self._changed = trio.Event()

    async def stop(self) -> None:
        self._stop.set()
        await self._stopped.wait()

    async def wait_for(
        self, kind: type[E], what: str, test: Callable[[E], bool] = bool, since: float = 0.0
    ) -> E:
        """The first event of ``kind`` recorded from ``since`` on that passes ``test``.

        Raises:
            MeshError: none within STEP_S (the message names the step).
        """
        seen = 0
        with trio.move_on_after(STEP_S):
            while True:
                for at, event in self.events[seen:]:
                    if at >= since and isinstance(event, kind) and test(event):
                        return event
                seen = len(self.events)
                await self._changed.wait()
        raise MeshError(f"{what}: did not happen within {STEP_S:.0f} s")

    async def linked_to(self, other: DemoNode) -> bool:
        def linked(node: Node, _now: float) -> bool:
            return any(s.peer_id == other.peer_id for s in node.sessions.values())

        return await self.runner_handle.runner.call(linked)

    async def wait_unlinked(self, other: DemoNode) -> None:
        """Until this node has no link to ``other`` (it noticed ``other`` left)."""
        with trio.move_on_after(STEP_S):
            while await self.linked_to(other):
                await self.wait_for(LinkClosed, f"{self.name} notices {other.name} left")
            return
        raise MeshError(f"{self.name} still linked to {other.name} after {STEP_S:.0f} s")


class Demo:
    """The script. Output goes to ``console``; timings are measured from ``t0``."""

    def __init__(self, console: Console, root: Path, *, mdns: bool) -> None:
        self.console = console
        self.t0 = time.monotonic()
        self.wall0 = time.time()
        self.mdns = mdns
        self.discovery = "mDNS on 127.0.0.1" if mdns else "static peers (--no-mdns)"
        self.nodes = {name: self._create(root, name) for name in NAMES}

    # --- output ----------------------------------------------------------------------------

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def say(self, text: str) -> None:
        self.console.print(f"[dim]{self.elapsed():5.1f} s[/dim]  {text}")

    def since_start(self, at: float) -> str:
        return f"+{at - self.wall0:.2f} s"

    # --- set-up ----------------------------------------------------------------------------

    def _create(self, root: Path, name: str) -> DemoNode:
        data_dir = DataDir(root / name)
        passphrase = secrets.token_urlsafe(16)
        init_data_dir(data_dir, passphrase=passphrase, name=name, kdf_fast=True)
        settings = Settings(
            name=name,
            listen_host=LOOPBACK,
            listen_port=0,
            trusted_networks=(f"{LOOPBACK}/32",),
            api_port=0,
        )
        unlocked = unlock(data_dir, settings, lambda: passphrase)
        return DemoNode(name, data_dir, settings, unlocked, clock=time.time)

    def exchange_codes(self) -> None:
        """Everyone imports everyone's contact code (as after scanning QR codes in person)."""
        codes = {n: own_contact_code(node.unlocked.identity, node.settings) for n, node in
                 self.nodes.items()}  # fmt: skip
        for name, node in self.nodes.items():
            with open_offline(node.data_dir, node.settings, node.unlocked) as offline:
                for other, code in codes.items():
                    if other != name:
                        card = decode_contact_code(code)

                        def add(n: Node, now: float, card: ContactCard = card) -> None:
                            n.add_contact(card, verified=True, now=now)

                        offline.run(add)
        table = Table(title="three nodes, each in its own data directory", title_justify="left")
        for column in ("node", "fingerprint", "contact code (imported by the other two)"):
            table.add_column(column)
        for name, node in self.nodes.items():
            table.add_row(name, fingerprint(node.unlocked.identity.public), codes[name][:40] + "…")
        self.console.print(table)

    async def start(self, nursery: trio.Nursery, name: str) -> DemoNode:
        node = self.nodes[name]
        static: tuple[str, ...] = ()
        if not self.mdns:  # dial whoever is online, as configured static peers would
            static = tuple(n.address for n in self.nodes.values() if n.handle is not None)
        await node.start(nursery, mdns=self.mdns, static=static)
        handle = node.runner_handle
        if self.mdns and handle.discovery is None:
            self.fall_back(f"mDNS could not start ({handle.discovery_error})")
        self.say(f"[bold]{name}[/bold] online: TCP {handle.address}, discovery: {self.discovery}")
        return node

    def fall_back(self, why: str) -> None:
        if self.mdns:
            self.mdns = False
            self.discovery = "static peers (mDNS fallback)"
            self.console.print(f"[yellow]{why}: falling back to static peers[/yellow]")

    async def pair_everyone(self) -> None:
        """Wait until every pair has met and made its pairwise keys."""
        try:
            with trio.fail_after(MDNS_WAIT_S if self.mdns else STEP_S):
                await self._paired()
            return
        except trio.TooSlowError:
            if not self.mdns:
                raise MeshError("pairing over static peers did not finish") from None
        self.fall_back(f"mDNS on loopback found no peers within {MDNS_WAIT_S:.0f} s")
        for node in self.nodes.values():
            for other in self.nodes.values():
                if other is not node:
                    await node.runner_handle.runner.peer_discovered(other.address)
        with trio.move_on_after(STEP_S):
            await self._paired()
            return
        raise MeshError("pairing over static peers did not finish")

    async def _paired(self) -> None:
        for node in self.nodes.values():
            for other in self.nodes.values():
                if other is not node:

                    def with_other(e: ContactPaired, o: DemoNode = other) -> bool:
                        return e.peer_id == o.peer_id

                    await node.wait_for(
                        ContactPaired, f"{node.name} pairs with {other.name}", with_other
                    )
        for a, b in (("alice", "bob"), ("alice", "carol"), ("bob", "carol")):
            self.say(f"{a} ↔ {b}: Noise XX link, identities checked, pairwise keys made "
                     f"({self.found_by(a, b)})")  # fmt: skip

    def found_by(self, a: str, b: str) -> str:
        x, y = self.nodes[a], self.nodes[b]
        for node, other in ((x, y), (y, x)):
            how = node.runner_handle.bridge.found_by.get(other.address)
            if how is not None:
                return f"found by {how}"
        return "dialled directly"

    # --- the script --------------------------------------------------------------------------

    async def send(self, sender: DemoNode, to: DemoNode, body: str) -> bytes:
        def send(node: Node, now: float) -> bytes:
            return node.send_message(to.peer_id, body, now=now)

        message_id = await sender.runner_handle.runner.call(send)
        self.say(f"{sender.name} → {to.name}: [italic]{body!r}[/italic]")
        return message_id

    async def status(self, node: DemoNode, message_id: bytes, status: MessageStatus) -> None:
        await node.wait_for(
            MessageStatusChanged,
            f"{node.name} sees {status.name}",
            lambda e: e.message_id == message_id and e.status is status,
        )

    async def received(self, node: DemoNode, message_id: bytes) -> MessageReceived:
        return await node.wait_for(
            MessageReceived, f"{node.name} receives it", lambda e: e.message_id == message_id
        )

    async def run(self, nursery: trio.Nursery) -> None:
        alice, bob, carol = (self.nodes[n] for n in NAMES)
        self.exchange_codes()
        for name in NAMES:
            await self.start(nursery, name)
        await self.pair_everyone()

        self.console.rule("1. a direct message")
        direct = await self.send(alice, carol, "hello carol, this goes straight to you")
        got = await self.received(carol, direct)
        self.say(f"carol received it ({_hops(got.hops)})")
        await self.status(alice, direct, MessageStatus.DELIVERED)
        self.say("alice: [green]DELIVERED[/green] (carol's encrypted receipt came back)")

        self.console.rule("2. the recipient is offline: a relay takes custody")
        await carol.stop()
        await alice.wait_unlinked(carol)
        await bob.wait_unlinked(carol)
        self.say("carol went offline")
        relayed = await self.send(alice, carol, "carol, bob will carry this one to you")
        await self.status(alice, relayed, MessageStatus.RELAYED)
        self.say("alice: [cyan]RELAYED[/cyan] (bob committed a copy to disk and took custody)")
        await alice.stop()
        await bob.wait_unlinked(alice)
        self.say("alice went offline: only bob holds the message, and cannot read it")

        self.console.rule("3. the recipient comes back; the receipt travels back via the relay")
        self.say(
            "(real nodes seal a relayed message's receipt 30-300 s later and keep it from "
            f"that relay for 10 min; the demo waits {DEMO_RELAYED_RECEIPT_S} s)"
        )
        await self.start(nursery, "carol")
        got = await self.received(carol, relayed)
        received_at = time.time()
        self.say(f"carol received it from bob ({_hops(got.hops)})")
        await self.receipt_reaches(bob, carol, received_at)
        self.say("bob took custody of carol's delivered receipt for alice")
        await carol.stop()
        await bob.wait_unlinked(carol)
        self.say("carol went offline: alice and carol were never online at the same time")
        await self.start(nursery, "alice")
        await self.status(alice, relayed, MessageStatus.DELIVERED)
        self.say("alice: [green]DELIVERED[/green] (the receipt was carried back by bob)")
        await self.timelines(alice, [direct, relayed])
        await alice.stop()
        await bob.stop()

    async def receipt_reaches(self, relay: DemoNode, sender: DemoNode, after: float) -> None:
        """The relay took custody of an envelope from ``sender`` since ``after``: the receipt."""

        def from_sender(event: EnvelopeAccepted) -> bool:
            links = {e.link for _, e in relay.events
                     if isinstance(e, PeerConnected) and e.peer_id == sender.peer_id}  # fmt: skip
            return event.link in links and not event.for_us

        await relay.wait_for(EnvelopeAccepted, "bob takes the receipt", from_sender, since=after)

    async def timelines(self, sender: DemoNode, message_ids: list[bytes]) -> None:
        def read(node: Node, _now: float) -> list[tuple[str, list[tuple[MessageStatus, float]]]]:
            found = [node.conversations.get(m) for m in message_ids]
            return [(m.body, list(m.timeline)) for m in found if m is not None]

        rows = await sender.runner_handle.runner.call(read)
        carol = self.nodes["carol"]
        arrivals = {e.message_id: (at, e.hops) for at, e in carol.events
                    if isinstance(e, MessageReceived)}  # fmt: skip
        table = Table(title="timeline of each message (times since the demo started)")
        for column in ("message", "step", "time", "what happened"):
            table.add_column(column)
        for message_id, (body, timeline) in zip(message_ids, rows, strict=True):
            steps = [(at, status.name, _meaning(status)) for status, at in timeline]
            if message_id in arrivals:
                at, hops = arrivals[message_id]
                steps.append((at, "RECEIVED", f"carol decrypted it ({_hops(hops)})"))
            for i, (at, step, meaning) in enumerate(sorted(steps)):
                table.add_row(body if i == 0 else "", step, self.since_start(at), meaning)
            table.add_section()
        self.console.print(table)


def _reason(exc: BaseException) -> str:
    """One line for a failure, looking inside the exception groups trio's nurseries raise."""
    if isinstance(exc, BaseExceptionGroup):
        leaves = exc.subgroup(lambda e: not isinstance(e, BaseExceptionGroup))
        if leaves is not None and not isinstance(leaves.exceptions[0], BaseExceptionGroup):
            return _reason(leaves.exceptions[0])
        raise exc
    if isinstance(exc, trio.TooSlowError):
        return f"not finished within {BUDGET_S:.0f} s"
    if not isinstance(exc, MeshError | OSError):
        raise exc
    return str(exc) or type(exc).__name__


def demo_config(settings: Settings) -> NodeConfig:
    """The profile's config, with the relayed receipt's delay and hold cut to seconds."""
    return relayed_receipts_after(settings.node_config(), DEMO_RELAYED_RECEIPT_S)


def _hops(hops: int) -> str:
    # Not the count: a sender's copy starts at a random 0..3 hops (privacy, docs/protocol.md),
    # so beyond "direct" (1, from the sender's own link) it only says "relayed".
    return "direct" if hops <= 1 else "relayed"


def _meaning(status: MessageStatus) -> str:
    return {
        MessageStatus.QUEUED: "alice sealed it (end-to-end encrypted) into her outbox",
        MessageStatus.RELAYED: "a relay took custody (bob, after a durable commit)",
        MessageStatus.DELIVERED: "carol's delivered receipt reached alice",
        MessageStatus.READ: "carol's read receipt reached alice",
        MessageStatus.EXPIRED: "the message expired undelivered",
    }[status]


async def _run(console: Console, mdns: bool) -> Demo:
    with tempfile.TemporaryDirectory(prefix="meshmsg-demo-") as tmp:
        demo = Demo(console, Path(tmp), mdns=mdns)
        with trio.fail_after(BUDGET_S - 1.0):
            async with trio.open_nursery() as nursery:
                await demo.run(nursery)
                nursery.cancel_scope.cancel()
        return demo


def run_demo(console: Console, *, mdns: bool = True) -> int:
    """Run the demo; return the process exit code (0: every step happened in time)."""
    started = time.monotonic()
    console.print(
        "[bold]meshmsg demo[/bold]: three nodes on this machine with real TCP, Noise, "
        "encrypted storage and mDNS; bob relays for alice and carol."
    )
    try:
        demo = trio.run(_run, console, mdns)
    except (MeshError, OSError, trio.TooSlowError, BaseExceptionGroup) as exc:
        console.print(f"[red]demo failed[/red]: {_reason(exc)}")
        return 1
    total = time.monotonic() - started
    console.print(
        f"[bold green]demo passed[/bold green] in {total:.1f} s: 3 nodes, discovery by "
        f"{demo.discovery}; 2 messages delivered, 1 of them through the relay while sender "
        "and recipient were never online together; delivered receipts shown for both."
    )
    return 0 if total < BUDGET_S else 1


__all__ = ["BUDGET_S", "run_demo"]
