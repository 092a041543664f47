"""One link per pair (#17.6): two nodes that dial each other at once keep the same single link.

The test drives two real Nodes over two in-memory links, a->b (link 1) and b->a (link 2), and
delivers the chunks of the four directions in every order for the first ``_DEPTH`` deliveries
(which covers every interleaving of the two Noise handshakes), then runs to quiet. A closed
link behaves like a TCP connection: what its closer sent before closing still arrives, then
the other end sees the loss; what was in flight towards the closer is dropped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from meshmsg.core.effects import CloseLink, Dial, Persist, Transmit
from meshmsg.core.events import LinkClosed, MessageReceived
from meshmsg.core.link import LinkState
from meshmsg.core.node import Node
from meshmsg.core.tiebreak import keeps_new, link_rank
from meshmsg.errors import CloseReason
from tests.helpers import Mesh

_LOST = b""  # queued after a closer's last bytes: the other end then sees the link go
_DEPTH = 8  # deliveries chosen in every order; then round-robin until quiet
Queue = tuple[str, int]  # (sender, link id); link ids are the same on both nodes


class TwoLinks:
    """Nodes a and b, contacts, each dialling the other; chunks delivered on demand."""

    def __init__(self) -> None:
        self.mesh = Mesh(["a", "b"])
        self.mesh.befriend("a", "b")
        self.nodes = self.mesh.nodes
        self.sent = self.nodes["a"].send_message(self.mesh.peer_id("b"), "hi", now=self.mesh.now)
        self.queues: dict[Queue, deque[bytes]] = {
            (s, k): deque() for s in ("a", "b") for k in (1, 2)
        }
        self.gone: set[Queue] = set()  # (node, link) that node closed: nothing reaches it
        self.received: dict[str, list[object]] = {"a": [], "b": []}
        self.nodes["a"].link_opened(1, initiator=True, now=self.mesh.now)
        self.nodes["b"].link_opened(1, initiator=False, now=self.mesh.now)
        self.nodes["b"].link_opened(2, initiator=True, now=self.mesh.now)
        self.nodes["a"].link_opened(2, initiator=False, now=self.mesh.now)
        for name in ("a", "b"):
            self.drain(name)

    def ready(self) -> list[Queue]:
        return [q for q, chunks in self.queues.items() if chunks]

    def deliver(self, queue: Queue) -> None:
        sender, link = queue
        receiver = "b" if sender == "a" else "a"
        chunk = self.queues[queue].popleft()
        node = self.nodes[receiver]
        if (receiver, link) in self.gone:
            return
        if chunk == _LOST:
            node.link_lost(link, now=self.mesh.now)
        elif link in node.sessions:
            node.receive_data(link, chunk, now=self.mesh.now)
        self.drain(receiver)

    def drain(self, name: str) -> None:
        node = self.nodes[name]
        while (effect := node.next_effect()) is not None:
            self._carry_out(name, node, effect)
        while (event := node.next_event()) is not None:
            self.received[name].append(event)

    def _carry_out(self, name: str, node: Node, effect: object) -> None:
        match effect:
            case Transmit(link=link, data=data):
                if (name, link) not in self.gone:
                    self.queues[(name, link)].append(data)
            case CloseLink(link=link):
                self.gone.add((name, link))
                self.queues[(name, link)].append(_LOST)
                self.queues[("b" if name == "a" else "a", link)].clear()
            case Persist(token=token):
                node.storage_committed(token, now=self.mesh.now)
            case Dial():
                pass
            case _:
                raise AssertionError(f"unexpected effect {effect!r}")

    def run_to_quiet(self) -> None:
        for _ in range(10_000):
            ready = self.ready()
            if not ready:
                return
            self.deliver(ready[0])
        raise AssertionError("the two nodes did not go quiet")


def _schedules(prefix: tuple[int, ...] = ()) -> Iterator[tuple[int, ...]]:
    """Every sequence of choices (an index into the ready queues) of length up to _DEPTH."""
    pair = _replay(prefix)
    options = len(pair.ready())
    if len(prefix) == _DEPTH or options == 0:
        yield prefix
        return
    for choice in range(options):
        yield from _schedules((*prefix, choice))


def _replay(schedule: tuple[int, ...]) -> TwoLinks:
    pair = TwoLinks()
    for choice in schedule:
        pair.deliver(pair.ready()[choice])
    return pair


def test_simultaneous_dials_settle_on_the_same_single_link_in_every_interleaving() -> None:
    kept: set[int] = set()
    schedules = list(_schedules())
    assert len(schedules) > 20  # the two handshakes really interleave
    for schedule in schedules:
        pair = _replay(schedule)
        pair.run_to_quiet()
        a, b = pair.nodes["a"].sessions, pair.nodes["b"].sessions
        assert len(a) == len(b) == 1, schedule
        assert a.keys() == b.keys(), schedule  # the same link on both sides
        (link,) = a
        assert a[link].link.state is b[link].link.state is LinkState.ESTABLISHED
        kept.add(link)
        received = [e for e in pair.received["b"] if isinstance(e, MessageReceived)]
        assert [e.message_id for e in received] == [pair.sent], schedule
        closes = [e for n in ("a", "b") for e in pair.received[n] if isinstance(e, LinkClosed)]
        assert {e.reason for e in closes} <= {CloseReason.DUPLICATE_LINK}, schedule
    # The rule, not the order, picks the link: always the one the lower peer id dialled.
    lower_dialled = 1 if TwoLinks().mesh.peer_id("a") < TwoLinks().mesh.peer_id("b") else 2
    assert kept == {lower_dialled}


def test_the_rank_orders_by_initiator_then_handshake_hash() -> None:
    low, high = b"\x01" * 16, b"\x02" * 16
    assert keeps_new(link_rank(initiator_id=low, handshake_hash=high),
                     link_rank(initiator_id=high, handshake_hash=low))  # fmt: skip
    assert not keeps_new(link_rank(initiator_id=low, handshake_hash=high),
                         link_rank(initiator_id=low, handshake_hash=low))  # fmt: skip
