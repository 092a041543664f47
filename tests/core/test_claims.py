"""Claims that do not name the recipient (issue #11, finding 4; core/exchange/claims.py).

Before: a claim (``Reply.for_me``) made the relay hand over its whole budget and drop its copy,
and only a recipient ever claimed, so a claim named the recipient, always right. Now a node
also claims, now and then, mail that is not its own (decoys); a claim of carried mail gets one
copy and the relay keeps its own; the recipient's purge token is kept from that relay for the
receipt hold.
"""

from __future__ import annotations

from dataclasses import replace

from meshmsg.config import MessageLimits, NodeConfig, RoutingConfig
from meshmsg.core.events import (
    EnvelopeHandedOver,
    GroupMessageReceived,
    MessageReceived,
    MessageStatus,
)
from tests.core.node_tools import OneMesh, backlog_delivered
from tests.helpers import Mesh

NO_DECOYS = NodeConfig(message=MessageLimits(decoy_claim_rate=0.0))
HOLD = MessageLimits().receipt_hold_s


def with_decoys(rate: float, base: NodeConfig | None = None) -> NodeConfig:
    config = base or NodeConfig()
    return config.replace(message=replace(config.message, decoy_claim_rate=rate))


def carried_by_relay(mesh: Mesh) -> bytes:
    """Alice's mail for (offline) bob, sprayed to the relay: the relay holds 3 of 6 copies."""
    mesh.befriend("alice", "bob", pair=True)
    mesh.stop("bob")
    mid = mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "north gate", now=mesh.now)
    mesh.connect("alice", "relay")
    mesh.disconnect("alice", "relay")
    mesh.stop("alice")
    (item,) = mesh.nodes["relay"].store.items()
    assert item.copies == 3
    return mid


def test_the_recipient_gets_one_copy_and_the_relay_keeps_its_own_until_the_token_comes() -> None:
    mesh = Mesh(["alice", "relay", "bob"], config=NO_DECOYS)
    carried_by_relay(mesh)
    mesh.start("bob")
    mesh.connect("relay", "bob")
    assert [r.body for r in mesh.of_type("bob", MessageReceived)] == ["north gate"]
    (handed,) = mesh.of_type("relay", EnvelopeHandedOver)
    assert handed.claimed
    assert handed.copies == 1
    (item,) = mesh.nodes["relay"].store.items()
    assert item.copies == 3  # its budget, as after a hand-over to any carrier it kept
    # The token would tell the relay that bob was the recipient: it waits out the hold.
    mesh.advance(HOLD - 5)
    assert len(mesh.nodes["relay"].store) == 1
    mesh.advance(10)
    assert len(mesh.nodes["relay"].store) == 0


def test_the_token_goes_to_the_relay_when_the_link_ends_and_they_meet_again() -> None:
    mesh = Mesh(["alice", "relay", "bob"], config=NO_DECOYS)
    carried_by_relay(mesh)
    mesh.start("bob")
    mesh.connect("relay", "bob")
    mesh.disconnect("relay", "bob")
    assert len(mesh.nodes["relay"].store) == 1
    mesh.connect("relay", "bob")  # a new link reconciles afresh: the token goes
    assert len(mesh.nodes["relay"].store) == 0


def test_a_decoy_takes_one_copy_and_the_mail_still_reaches_its_recipient() -> None:
    """x claims what it cannot open (rate 1): it gets one copy, the relay keeps its own, and
    bob later gets the mail from either."""
    mesh = Mesh(["alice", "relay", "bob", "x"], configs={"x": with_decoys(1.0)},
                config=NO_DECOYS)  # fmt: skip
    carried_by_relay(mesh)
    mesh.connect("relay", "x")
    claims = [e for e in mesh.of_type("relay", EnvelopeHandedOver) if e.claimed]
    assert len(claims) == 1
    assert claims[0].copies == 1
    (kept,) = mesh.nodes["relay"].store.items()
    assert kept.copies == 3
    (decoy,) = mesh.nodes["x"].store.items()
    assert decoy.copies == 1  # carried: x hands it only to its recipient
    mesh.disconnect("relay", "x")
    mesh.start("bob")
    mesh.connect("x", "bob")
    assert [r.body for r in mesh.of_type("bob", MessageReceived)] == ["north gate"]


def test_a_decoy_claim_of_our_own_mail_gets_one_copy_and_leaves_it_undelivered() -> None:
    """Alice knows her mail is for bob: x's claim of it is a decoy; she keeps her copy, and
    the message is RELAYED (x committed a copy), not DELIVERED. Before, a claim by anyone
    left it QUEUED: the demo's relay step failed whenever bob's 2 % decoy draw hit."""
    config = NodeConfig(routing=RoutingConfig(policy="direct"), message=NO_DECOYS.message)
    mesh = Mesh(["alice", "bob", "x"], config=config, configs={"x": with_decoys(1.0, config)})
    mesh.befriend("alice", "bob", pair=True)
    mid = mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "for bob", now=mesh.now)
    mesh.connect("alice", "x")
    (claim,) = mesh.of_type("alice", EnvelopeHandedOver)
    assert claim.claimed
    assert claim.copies == 1
    assert len(mesh.nodes["alice"].store) == 1
    message = mesh.nodes["alice"].conversations.get(mid)
    assert message is not None
    assert message.status is MessageStatus.RELAYED
    mesh.disconnect("alice", "x")
    mesh.connect("alice", "bob")
    assert [r.body for r in mesh.of_type("bob", MessageReceived)] == ["for bob"]
    assert len(mesh.nodes["alice"].store) == 0


def test_a_recipient_claiming_its_own_backlog_as_decoys_loses_nothing() -> None:
    """Bob recognises 64 counters ahead; as a decoy he also claims later ones, which reach him
    before the counters between. Opened at once they slid his window past the skipped bound:
    35 to 73 of 300 were lost ("its key period has expired") before they were kept as carried
    copies and opened in counter order."""
    config = with_decoys(0.05, NodeConfig(routing=RoutingConfig(policy="direct")))
    mesh, sent = backlog_delivered(config)
    assert sorted(r.message_id for r in mesh.of_type("bob", MessageReceived)) == sorted(sent)
    assert len(mesh.nodes["alice"].store) == 0
    assert len(mesh.nodes["bob"].store) == 0


def test_one_mode_makes_no_decoy_claims() -> None:
    """The ONE reference runs keep the ONE's semantics: a node claims only its own mail."""
    mesh = OneMesh(["alice", "relay", "bob", "x"], config=with_decoys(1.0))
    carried_by_relay(mesh)
    mesh.connect("relay", "x")
    handed = mesh.of_type("relay", EnvelopeHandedOver)
    assert handed
    assert not any(e.claimed for e in handed)


def test_a_group_message_claimed_as_a_decoy_before_its_chain_still_opens_in_that_meeting() -> None:
    """Bob claims (as a decoy, rate 1) alice's group envelope before the pairwise chain that
    opens it has arrived; the chain comes first in the same meeting. Kept as a carried copy,
    it waited for the next probe (a browser test saw the message missing for 30 s)."""
    mesh = Mesh(["alice", "bob"], configs={"bob": with_decoys(1.0)}, config=NO_DECOYS)
    mesh.befriend("alice", "bob", pair=True)
    alice = mesh.nodes["alice"]
    gid = alice.create_group("cell", [mesh.peer_id("bob")], now=mesh.now)
    alice.send_group_message(gid, "first", now=mesh.now)
    mesh.connect("alice", "bob")
    mesh.advance(5)
    assert [e.body for e in mesh.of_type("bob", GroupMessageReceived)] == ["first"]
