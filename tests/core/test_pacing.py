"""Issue #17.1: no per-contact daily wall on a live link; offline, the wait is named and timed.

Core only (Nodes in virtual time, tests/helpers.Mesh), through the Node's public methods and the
local API's outbox view. A cap of 20 messages per period stands in for the default 1,000.
"""

from __future__ import annotations

import pytest

from meshmsg.app.views import outbox_view
from meshmsg.config import MessageLimits, NodeConfig
from meshmsg.core import node as node_module
from meshmsg.core.e2e import new_key_share
from meshmsg.core.events import (
    ContactHealed,
    LinkClosed,
    MessageReceived,
    MessageStatus,
    MessageStatusChanged,
)
from meshmsg.core.pacing import outbox_waits, renewal_threshold
from meshmsg.core.records import KeyExchange
from meshmsg.sim.rng import SeededRng
from tests.helpers import Mesh

CAP = 20
CONFIG = NodeConfig(message=MessageLimits(max_messages_per_period=CAP))
DAY = CONFIG.message.period_s


def delivered(mesh: Mesh, name: str) -> set[bytes]:
    return {e.message_id for e in mesh.of_type(name, MessageStatusChanged)
            if e.status >= MessageStatus.DELIVERED}  # fmt: skip


def received(mesh: Mesh, name: str) -> list[str]:
    return [e.body for e in mesh.of_type(name, MessageReceived)]


def linked_pair() -> Mesh:
    mesh = Mesh(["alice", "bob"], config=CONFIG)
    mesh.befriend("alice", "bob")
    mesh.connect("alice", "bob")  # pairs at this meeting
    return mesh


def test_the_renewal_threshold_leaves_headroom_below_the_cap() -> None:
    assert renewal_threshold(CONFIG.message) == 5  # a quarter of 20
    assert renewal_threshold(MessageLimits()) == 250  # a quarter of the default 1,000
    assert renewal_threshold(MessageLimits(max_messages_per_period=1)) == 0  # renew at the cap


def test_a_live_link_renews_the_budget_before_it_runs_out() -> None:
    """One message at a time: every send is sealed at once, five budgets in a row."""
    mesh = linked_pair()
    alice, bob = mesh.nodes["alice"], mesh.peer_id("bob")
    sent = []
    for i in range(5 * CAP):
        sent.append(alice.send_message(bob, f"m{i}", now=mesh.now))
        mesh.run()
        assert outbox_waits(alice) == {}, f"message {i} waits"  # sealing never stalled
    mesh.advance(5)  # receipts are batched for 2 s
    assert received(mesh, "bob") == [f"m{i}" for i in range(5 * CAP)]
    assert delivered(mesh, "alice") == set(sent)
    assert len(mesh.of_type("alice", ContactHealed)) >= 4  # renewed by live heals
    assert mesh.linked("alice", "bob")  # on the same link all along


def test_a_burst_past_several_caps_all_goes_on_one_link() -> None:
    mesh = linked_pair()
    alice, bob = mesh.nodes["alice"], mesh.peer_id("bob")
    sent = [alice.send_message(bob, f"m{i}", now=mesh.now) for i in range(7 * CAP)]
    mesh.run()
    mesh.advance(5)
    assert received(mesh, "bob") == [f"m{i}" for i in range(7 * CAP)]  # and in order
    assert delivered(mesh, "alice") == set(sent)
    assert outbox_view(alice) == {}


def test_both_sides_renewing_at_once_still_agree() -> None:
    """Crossed live heals: each side's KeyExchange answers the other's."""
    mesh = linked_pair()
    a, b = mesh.nodes["alice"], mesh.nodes["bob"]
    to_bob = [a.send_message(mesh.peer_id("bob"), f"a{i}", now=mesh.now) for i in range(3 * CAP)]
    to_alice = [b.send_message(mesh.peer_id("alice"), f"b{i}", now=mesh.now)
                for i in range(3 * CAP)]  # fmt: skip
    mesh.run()
    mesh.advance(5)
    assert received(mesh, "bob") == [f"a{i}" for i in range(3 * CAP)]
    assert received(mesh, "alice") == [f"b{i}" for i in range(3 * CAP)]
    assert delivered(mesh, "alice") == set(to_bob)
    assert delivered(mesh, "bob") == set(to_alice)


def test_offline_the_cap_waits_for_the_next_period_and_says_so() -> None:
    mesh = Mesh(["alice", "bob"], config=CONFIG)
    mesh.befriend("alice", "bob", pair=True)  # paired, never linked
    alice = mesh.nodes["alice"]
    for i in range(CAP + 3):
        alice.send_message(mesh.peer_id("bob"), f"m{i}", now=mesh.now)
    mesh.run()
    next_period = (mesh.now // DAY + 1) * DAY
    assert outbox_view(alice) == {"queued": CAP, "waiting_for_channel_budget": 3}
    assert outbox_waits(alice) == {"waiting_for_channel_budget": (3, next_period)}
    mesh.advance(next_period - mesh.now + 1)
    assert outbox_waits(alice) == {}  # sealed in the new period's budget
    assert outbox_view(alice) == {"queued": CAP + 3}


def test_an_unpaired_contacts_mail_does_not_wait_for_pairing() -> None:
    """Issue #12: mail to a contact never met goes at once by first contact (it used to wait,
    ``waiting_for_pairing``, for the first meeting)."""
    mesh = Mesh(["alice", "bob"], config=CONFIG)
    mesh.befriend("alice", "bob")  # contacts, not paired
    alice = mesh.nodes["alice"]
    alice.send_message(mesh.peer_id("bob"), "hello", now=mesh.now)
    mesh.run()
    assert outbox_view(alice) == {"queued": 1}  # sealed and offered, not waiting
    assert outbox_waits(alice) == {}
    mesh.connect("alice", "bob")
    assert received(mesh, "bob") == ["hello"]


def test_a_meeting_renews_the_budget_offline_mail_waited_for() -> None:
    mesh = Mesh(["alice", "bob"], config=CONFIG)
    mesh.befriend("alice", "bob", pair=True)
    alice = mesh.nodes["alice"]
    for i in range(CAP + 3):
        alice.send_message(mesh.peer_id("bob"), f"m{i}", now=mesh.now)
    mesh.run()
    assert outbox_waits(alice) == {"waiting_for_channel_budget": (3, (mesh.now // DAY + 1) * DAY)}
    mesh.connect("alice", "bob")  # the meeting heals: a fresh epoch, a fresh budget
    mesh.advance(5)
    assert received(mesh, "bob") == [f"m{i}" for i in range(CAP + 3)]
    assert outbox_view(alice) == {}


def test_a_peer_without_live_heal_keeps_its_link_and_the_offline_rule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An older peer (Hello without capability 2) is never sent a second KeyExchange, which
    it would take for a protocol error: mail over the budget waits for the next meeting."""
    mesh = Mesh(["alice", "bob"], config=CONFIG)
    mesh.befriend("alice", "bob")
    monkeypatch.setattr(node_module, "CAPABILITIES", (1,))
    mesh.stop("bob")
    mesh.start("bob")  # bob restarts as an older version
    mesh.connect("alice", "bob")
    alice = mesh.nodes["alice"]
    for i in range(CAP + 3):
        alice.send_message(mesh.peer_id("bob"), f"m{i}", now=mesh.now)
        mesh.run()
    mesh.advance(5)
    assert mesh.linked("alice", "bob")
    assert outbox_view(alice) == {"waiting_for_channel_budget": 3}
    mesh.disconnect("alice", "bob")
    mesh.connect("alice", "bob")  # the next meeting heals: a fresh budget
    mesh.advance(5)
    assert received(mesh, "bob") == [f"m{i}" for i in range(CAP + 3)]
    assert outbox_view(alice) == {}


def test_an_unprompted_key_exchange_closes_its_link_instead_of_healing_in_a_loop() -> None:
    """A contact's share that answers nothing (a buggy or hostile client; found by the node
    fuzz target) used to start a loop: each side took the other's answer for a new live heal
    and both healed, and wrote their channel, forever. A share is a request only once the
    previous exchange is confirmed both ways; anything else closes the link (only that one)."""
    mesh = linked_pair()
    alice = mesh.nodes["alice"]
    session = next(iter(alice.sessions.values()))
    _, stray = new_key_share(SeededRng(5, "stray"), mesh.now, CONFIG.message)
    session.link.send([KeyExchange(share=stray.to_bytes())])
    alice.handle_timer(now=mesh.now)  # flushes the link
    mesh.run(max_rounds=500)  # before the fix: "mesh did not go quiet"
    assert not mesh.linked("alice", "bob")
    mesh.connect("alice", "bob")  # the next meeting sets the channel right
    sent = mesh.nodes["bob"].send_message(mesh.peer_id("alice"), "still friends", now=mesh.now)
    mesh.run()
    mesh.advance(5)
    assert received(mesh, "alice") == ["still friends"]
    assert sent in delivered(mesh, "bob")


def test_a_second_live_heal_before_the_first_is_confirmed_closes_its_link() -> None:
    """A peer starts a live heal only once the previous exchange is confirmed both ways (its
    KeyConfirm comes first on the same ordered link); two shares in a row break that rule."""
    mesh = linked_pair()
    alice = mesh.nodes["alice"]
    channel = alice.contacts.get(mesh.peer_id("bob")).channel
    session = next(iter(alice.sessions.values()))
    shares = [new_key_share(SeededRng(6, f"s{i}"), mesh.now, CONFIG.message, channel)[1]
              for i in range(2)]  # fmt: skip
    session.link.send([KeyExchange(share=s.to_bytes()) for s in shares])
    alice.handle_timer(now=mesh.now)
    mesh.run(max_rounds=500)
    closed = [e for e in mesh.of_type("bob", LinkClosed) if "confirmed" in e.detail]
    assert len(closed) == 1
    assert not mesh.linked("alice", "bob")
