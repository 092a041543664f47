"""A state machine over a mesh of real nodes: meetings, sends, time, crashes and restarts.

Four nodes in virtual time (:class:`tests.helpers.Mesh`): ``a``, ``b`` and ``c`` are contacts
of one another (a-b and b-c paired beforehand, a-c unverified and paired at their first direct
meeting); ``d`` is b's contact only, a stranger to a and c. Store and tombstone bounds are
small, so stores fill, refuse and evict, and a node's own mail can fill its outbox.
Rules connect and disconnect pairs (a second link to a linked pair too), send, read, let time
pass (seconds, hours, past the next key period, past TTLs), and stop (crash) or start nodes
(restart from committed records). After the steps everybody is started and meets everybody.

Checked after every step: no message received twice or received that was never sent, stores
within their byte, item and tier bounds, tag index and tombstones within theirs, the
reconciliation set and the committed records naming exactly what the store holds, statuses
moving forward only. Checked at the end: every message whose envelope could still be alive is
delivered.

Capped at 150 examples x 30 steps (plus the final meetings): about 15 s under the CI profile,
whose 1,000 examples would take minutes (each example builds four identities and a few dozen
Noise sessions). Runs of 3,000 examples x 50 steps passed while the core was hardened.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from meshmsg.config import MessageLimits, NodeConfig, RoutingConfig, StoreConfig
from meshmsg.core.e2e import tag_budget
from meshmsg.core.effects import RecordKind
from meshmsg.core.events import MessageReceived, MessageStatus, MessageStatusChanged
from meshmsg.core.store import Tier
from meshmsg.errors import LocalProtocolError
from tests.helpers import Mesh

NAMES = ("a", "b", "c", "d")
CONTACTS = {("a", "b"), ("b", "a"), ("a", "c"), ("c", "a"), ("b", "c"), ("c", "b"), ("b", "d"),
            ("d", "b")}  # fmt: skip
PAIRS = list(itertools.permutations(NAMES, 2))  # (initiator, responder)
LIMITS = MessageLimits(dedup_entries=12)
# Small: relays evict, and a node's own mail (never evicted) can fill it ("outbox full").
STORE = StoreConfig(max_store_bytes=8 * 1024, max_store_envelopes=12)
MAX_SENDS = 40
DAY = LIMITS.period_s
_RANK = {
    MessageStatus.QUEUED: 0,
    MessageStatus.RELAYED: 1,
    MessageStatus.DELIVERED: 2,
    MessageStatus.READ: 3,
}


@dataclass(frozen=True, slots=True)
class Sent:
    sender: str
    recipient: str
    body: str
    sent_at: float
    ttl: float


def forward(previous: MessageStatus | None, status: MessageStatus) -> bool:
    """A sent message's timeline moves forward only (a late receipt may follow EXPIRED)."""
    if previous is None:
        return True
    if status is MessageStatus.EXPIRED:
        return previous in (MessageStatus.QUEUED, MessageStatus.RELAYED)
    if previous is MessageStatus.EXPIRED:
        return status is MessageStatus.DELIVERED
    return _RANK[status] > _RANK[previous]


class NodeMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.mesh: Mesh | None = None
        self.sent: dict[bytes, Sent] = {}
        self.seen_events = dict.fromkeys(NAMES, 0)
        self.received: dict[str, set[bytes]] = {n: set() for n in NAMES}
        self.status: dict[bytes, MessageStatus] = {}
        self.counter = 0

    @initialize(
        policy=st.sampled_from(["spray-and-wait", "epidemic", "direct", "prophet"]),
        seed=st.integers(0, 2**16),
    )
    def build(self, policy: str, seed: int) -> None:
        config = NodeConfig(message=LIMITS, store=STORE, routing=RoutingConfig(policy=policy))
        mesh = Mesh(list(NAMES), seed=seed, config=config)
        mesh.befriend("a", "b", pair=True)
        mesh.befriend("b", "c", pair=True)
        mesh.befriend("a", "c", verified=False)  # pairs at their first direct meeting
        mesh.befriend("b", "d", pair=True)  # d's mail is a stranger's to a and c
        self.mesh = mesh
        self.collect()

    # ------------------------------------------------------------------ helpers

    @property
    def m(self) -> Mesh:
        assert self.mesh is not None
        return self.mesh

    def up(self, name: str) -> bool:
        return name in self.m.nodes

    def collect(self) -> None:
        """Check every new event against the rules of delivery and timelines."""
        for name in NAMES:
            events = self.m.events[name]
            for event in events[self.seen_events[name] :]:
                if isinstance(event, MessageReceived):
                    sent = self.sent.get(event.message_id)
                    assert sent is not None, "received a message nobody sent"
                    assert (sent.recipient, sent.body) == (name, event.body)
                    assert event.peer_id == self.m.peer_id(sent.sender)
                    assert event.message_id not in self.received[name], "delivered twice"
                    self.received[name].add(event.message_id)
                elif isinstance(event, MessageStatusChanged):
                    previous = self.status.get(event.message_id)
                    assert forward(previous, event.status), (previous, event.status)
                    self.status[event.message_id] = event.status
            self.seen_events[name] = len(events)

    def advance(self, seconds: float) -> None:
        if seconds > 60:
            # Meetings are short: people walk apart before hours pass (and a link kept up
            # for hours would cost a keepalive round every 15 virtual seconds).
            for x, y in itertools.combinations(NAMES, 2):
                self.m.disconnect(x, y)
        self.m.advance(seconds)
        self.collect()

    # -------------------------------------------------------------------- rules

    @precondition(lambda self: self.mesh is not None)
    @rule(pair=st.sampled_from(PAIRS), again=st.booleans())
    def connect(self, pair: tuple[str, str], again: bool) -> None:
        x, y = pair
        if not self.up(x) or not self.up(y):
            return
        if self.m.linked(x, y) and not again:
            return
        self.m.connect(x, y)  # ``again`` on a linked pair: a duplicate link
        self.collect()

    @precondition(lambda self: self.mesh is not None)
    @rule(pair=st.sampled_from(PAIRS))
    def disconnect(self, pair: tuple[str, str]) -> None:
        self.m.disconnect(*pair)
        self.collect()

    @precondition(lambda self: self.mesh is not None)
    @rule(
        pair=st.sampled_from(sorted(CONTACTS)),
        ttl=st.sampled_from([120.0, 3_600.0, DAY, 3 * DAY]),
        count=st.integers(1, 5),
    )
    def send(self, pair: tuple[str, str], ttl: float, count: int) -> None:
        x, y = pair
        if not self.up(x):
            return
        for _ in range(min(count, MAX_SENDS - self.counter)):
            self.counter += 1
            body = f"{x}->{y} #{self.counter}"
            node = self.m.nodes[x]
            try:
                mid = node.send_message(self.m.peer_id(y), body, now=self.m.now, ttl_s=ttl)
            except LocalProtocolError as exc:
                refusal = str(exc)
            else:
                refusal = ""
            if refusal:
                assert "outbox full" in refusal
                assert len(node.store) > 0
                break  # refused before anything changed: never delivered (collect checks)
            self.sent[mid] = Sent(sender=x, recipient=y, body=body, sent_at=self.m.now, ttl=ttl)
        self.m.run()
        self.collect()

    @precondition(lambda self: self.mesh is not None)
    @rule(x=st.sampled_from(NAMES))
    def read(self, x: str) -> None:
        if not self.up(x):
            return
        for sender in NAMES:
            mids = [m for m in self.received[x] if self.sent[m].sender == sender]
            if mids:
                self.m.nodes[x].mark_read(self.m.peer_id(sender), mids, now=self.m.now)
        self.m.run()
        self.collect()

    @precondition(lambda self: self.mesh is not None)
    @rule(seconds=st.sampled_from([1.0, 3.0, 30.0, 600.0, 3_600.0, 6 * 3_600.0]))
    def wait(self, seconds: float) -> None:
        self.advance(seconds)

    @precondition(lambda self: self.mesh is not None)
    @rule()
    def next_period(self) -> None:
        """Past the next key period boundary (keys ratchet, old slots go)."""
        self.advance((math.floor(self.m.now / DAY) + 1) * DAY - self.m.now + 1)

    @precondition(lambda self: self.mesh is not None)
    @rule(x=st.sampled_from(NAMES))
    def stop(self, x: str) -> None:
        if self.up(x):
            self.m.stop(x)
            self.collect()

    @precondition(lambda self: self.mesh is not None)
    @rule(x=st.sampled_from(NAMES))
    def start(self, x: str) -> None:
        if not self.up(x):
            self.m.start(x)
            self.collect()

    # --------------------------------------------------------------- invariants

    @invariant()
    def within_bounds(self) -> None:
        if self.mesh is None:
            return
        for name, node in self.m.nodes.items():
            store, cfg = node.store, node.config.store
            assert store.total_bytes <= cfg.max_store_bytes
            assert len(store) <= cfg.max_store_envelopes
            cap = cfg.max_store_bytes
            assert store.bytes_in(Tier.STRANGER) <= cap * cfg.strangers_total_fraction
            assert store.bytes_in(Tier.CONTACT) <= cap * (1 - cfg.contact_reserved_fraction)
            assert len(node.tombstones) <= LIMITS.dedup_entries
            assert len(node.tags) <= len(list(node.contacts)) * tag_budget(LIMITS)
            ids = {item.envelope_id for item in store.items()}
            stones = {stone.item_id for stone in node.tombstones if stone.believed}
            assert set(node.items) == ids | stones
            stored = {k for kind, k in self.m.persisted[name] if kind is RecordKind.ENVELOPE}
            assert stored == ids

    # -------------------------------------------------------------------- the end

    def teardown(self) -> None:
        if self.mesh is None:
            return
        for name in NAMES:
            if not self.up(name):
                self.m.start(name)
        for x, y in itertools.combinations(NAMES, 2):
            self.m.disconnect(x, y)
        self.collect()
        for _ in range(2):
            for x, y in itertools.combinations(NAMES, 2):
                self.m.connect(x, y)
                self.advance(3)  # receipts are batched for 2 s
                self.m.disconnect(x, y)
                self.collect()
        self.within_bounds()
        end = self.m.now
        for mid, sent in self.sent.items():
            alive_until = sent.sent_at + min(sent.ttl, LIMITS.latency_budget_s)
            if alive_until > end:
                assert mid in self.received[sent.recipient], f"not delivered: {sent}"


NodeMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestNodeMachine = NodeMachine.TestCase
