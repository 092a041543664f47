"""Timers of the core survive a wall clock stepped back (#17 item 5; core/deadline.py).

A deadline set as "a delay from now" must stay within that delay of ``now`` whatever the clock
does: receipts, the retry of mail that found the outbox full, group queues, and a link's
keepalives, idle timeout and rekey. ``tests/soak/test_clock_step_receipts.py`` is the end to end
case the soak found.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from meshmsg.config import NodeConfig
from meshmsg.core.deadline import Deadline
from meshmsg.core.events import MessageStatus
from meshmsg.core.exchange.holdings import Holdings
from meshmsg.core.identity import Identity
from meshmsg.core.node import Node
from meshmsg.core.outbox import Outbox
from meshmsg.core.state import NodeState
from meshmsg.sim.rng import SeededRng
from tests.helpers import T0, LinkPair, Mesh

STEP_BACK_S = 12 * 3_600.0
readings = st.lists(st.floats(min_value=-2 * STEP_BACK_S, max_value=2 * STEP_BACK_S), max_size=20)


@given(delay=st.floats(min_value=0.0, max_value=600.0), clock=readings)
def test_a_deadline_stays_within_its_delay_of_any_clock_reading(
    delay: float, clock: list[float]
) -> None:
    deadline = Deadline()
    deadline.no_later_than(T0 + delay, T0)
    for offset in clock:
        now = T0 + offset
        deadline.due(now)
        assert deadline.at is not None
        assert deadline.at - now <= delay + 1e-6


def test_a_deadline_keeps_what_was_left_of_its_delay_after_a_step_back() -> None:
    deadline = Deadline()
    deadline.no_later_than(T0 + 10.0, T0)
    assert not deadline.due(T0 + 4.0)
    back = T0 + 4.0 - STEP_BACK_S
    assert not deadline.due(back)
    assert deadline.at == back + 6.0
    assert deadline.due(back + 6.0)
    deadline.clear()
    assert deadline.at is None
    assert not deadline.due(back + 7.0)


def test_receipts_owed_before_a_step_back_go_after_their_delay() -> None:
    mesh = Mesh(["alice", "bob"])
    mesh.befriend("alice", "bob", pair=True)
    mesh.connect("alice", "bob")
    mid = mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "hi", now=mesh.now)
    mesh.run()  # bob owes a receipt, due receipt_delay_s from now
    mesh.now -= STEP_BACK_S
    mesh.nodes["bob"].handle_timer(now=mesh.now)  # the driver wakes (timer_max_sleep_s)
    delay = mesh.configs["bob"].message.receipt_delay_s
    deadline = mesh.nodes["bob"].next_deadline()
    assert deadline is not None
    assert deadline <= mesh.now + delay
    mesh.advance(delay)
    (message,) = mesh.nodes["alice"].conversations.with_peer(mesh.peer_id("bob"))
    assert (message.message_id, message.status) == (mid, MessageStatus.DELIVERED)


def test_mail_waiting_for_room_is_retried_at_once_after_a_step_back() -> None:
    identity = Identity.generate(SeededRng(1, "identity"))
    state = NodeState.empty(identity=identity, config=NodeConfig(), rng=SeededRng(1, "node"))
    holdings = Holdings(state, Outbox(T0))
    holdings.want_room(b"p" * 16)
    holdings.room_freed(T0)
    assert holdings.take_room_wanted(T0 - STEP_BACK_S) == [b"p" * 16]


def test_a_group_queue_is_retried_after_its_delay_after_a_step_back() -> None:
    mesh = Mesh(["alice", "bob"])
    mesh.befriend("alice", "bob")  # not paired: the group's records for bob wait in a queue
    alice = mesh.nodes["alice"]
    alice.create_group("cell", [mesh.peer_id("bob")], now=mesh.now)
    mesh.run()
    retry = mesh.configs["alice"].groups.queue_retry_s
    assert _next(alice) <= mesh.now + retry
    mesh.now -= STEP_BACK_S
    alice.handle_timer(now=mesh.now)
    assert _next(alice) <= mesh.now + retry


def test_a_link_keeps_its_keepalives_after_a_step_back() -> None:
    """Stepped back on one side only: without keepalives for the size of the step, the peer's
    idle timeout would close the link."""
    pair = LinkPair.create().establish()
    link = NodeConfig().link
    back = pair.now - STEP_BACK_S
    pair.initiator.handle_timer(back)
    deadline = pair.initiator.next_deadline()
    assert deadline is not None
    assert deadline <= back + link.keepalive_interval_s
    pair.initiator.handle_timer(back + link.keepalive_interval_s)
    assert pair.initiator.data_to_send(back + link.keepalive_interval_s)  # a Ping goes


def _next(node: Node) -> float:
    deadline = node.next_deadline()
    assert deadline is not None
    return deadline
