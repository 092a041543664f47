"""A wall clock stepped back must not hold back receipts: found by the soak (#17 item 5).

The soak steps daemons' wall clocks within ±12 h. A recipient whose clock was stepped back while
it owed receipts kept them for the size of the step (hours): its senders stayed ``relayed`` for
the rest of the run although every link was up. Reproduced here in virtual time on two real
Nodes (``tests/helpers.Mesh``), both clocks stepped back together as NTP would step a machine.
Fixed by ``core/deadline.py``: the batch's due time moves back with the clock.
"""

from __future__ import annotations

from meshmsg.core.events import MessageStatus
from tests.helpers import Mesh

STEP_BACK_S = 12 * 3_600.0


def delivered_after_step(step_s: float) -> tuple[MessageStatus, MessageStatus]:
    mesh = Mesh(["alice", "bob"])
    mesh.befriend("alice", "bob", pair=True)
    mesh.connect("alice", "bob")
    first = mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "before", now=mesh.now)
    mesh.run()  # bob receives at once; his delivered receipt is due receipt_delay_s (2 s) later
    mesh.now -= step_s  # both wall clocks are stepped back before the batch goes
    mesh.advance(30.0)  # far more than receipt_delay_s + timer_max_sleep_s
    second = mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "after", now=mesh.now)
    mesh.run()
    mesh.advance(30.0)
    status = {m.message_id: m.status for m in
              mesh.nodes["alice"].conversations.with_peer(mesh.peer_id("bob"))}  # fmt: skip
    return status[first], status[second]


def test_receipts_flow_without_a_clock_step() -> None:
    assert delivered_after_step(0.0) == (MessageStatus.DELIVERED, MessageStatus.DELIVERED)


def test_receipts_flow_after_the_clock_steps_back() -> None:
    assert delivered_after_step(STEP_BACK_S) == (MessageStatus.DELIVERED,
                                                 MessageStatus.DELIVERED)  # fmt: skip
