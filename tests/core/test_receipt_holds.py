"""Delivered receipts do not come straight back to the relay that delivered the mail
(issue #11, finding 4; core/receiptholds.py, core/exchange/receipts.py).

A relay that hands an envelope to a peer and sees a fresh envelope come back from it ~2 s later
learns that the peer was the recipient. Mail that a relay handed over is receipted after a
random delay, and the receipt is kept from that relay's link for ``receipt_hold_s`` while it can
leave by another peer; after the hold it may go to the relay too (it may be the only peer).
Mail from its sender's own link keeps the prompt receipt.
"""

from __future__ import annotations

from meshmsg.core.events import EnvelopeAccepted, MessageReceived, MessageStatus
from tests.helpers import Mesh

STEP_BACK_S = 12 * 3_600.0


def _status(mesh: Mesh, name: str, peer: str) -> MessageStatus:
    (message,) = mesh.nodes[name].conversations.with_peer(mesh.peer_id(peer))
    return message.status


def _taken_from(mesh: Mesh, name: str, link: int) -> list[EnvelopeAccepted]:
    """Envelopes ``name`` took custody of over its link ``link``."""
    return [e for e in mesh.of_type(name, EnvelopeAccepted) if e.link == link]


def _relayed_to_bob(names: list[str]) -> Mesh:
    """alice's mail to bob, carried by ``relay``, which alice then leaves."""
    mesh = Mesh(names)
    mesh.befriend("alice", "bob", pair=True)
    mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "via the relay", now=mesh.now)
    mesh.connect("alice", "relay")
    mesh.disconnect("alice", "relay")
    return mesh


def test_a_relayed_receipt_never_goes_back_to_the_relay_within_the_hold() -> None:
    mesh = _relayed_to_bob(["alice", "relay", "bob", "carol"])
    limits = mesh.configs["bob"].message
    mesh.connect("bob", "carol")  # another peer of the recipient, a stranger
    relay_link, _ = mesh.connect("relay", "bob")
    delivered_at = mesh.now
    assert [r.body for r in mesh.of_type("bob", MessageReceived)] == ["via the relay"]
    # Step through the random delay and the whole hold that may follow it: nothing fresh
    # comes back from bob to the relay, while carol (the other link) gets the receipt.
    horizon = delivered_at + limits.receipt_relayed_delay_min_s + limits.receipt_hold_s - 1
    while mesh.now < horizon:
        mesh.advance(min(10.0, horizon - mesh.now))
        assert _taken_from(mesh, "relay", relay_link) == []
    mesh.advance(limits.receipt_relayed_delay_max_s - limits.receipt_relayed_delay_min_s)
    assert mesh.of_type("carol", EnvelopeAccepted), "the receipt left by the other peer"
    # carol carries it to alice
    mesh.disconnect("bob", "carol")
    mesh.connect("alice", "carol")
    assert _status(mesh, "alice", "bob") is MessageStatus.DELIVERED


def test_a_relayed_receipt_is_not_sent_at_once_but_reaches_the_only_peer_after_the_hold() -> None:
    mesh = _relayed_to_bob(["alice", "relay", "bob"])
    limits = mesh.configs["bob"].message
    relay_link, _ = mesh.connect("relay", "bob")
    delivered_at = mesh.now
    mesh.advance(10)  # the old rule: sealed after 2 s and on the relay's link at once
    assert _taken_from(mesh, "relay", relay_link) == []
    earliest = delivered_at + limits.receipt_relayed_delay_min_s + limits.receipt_hold_s
    mesh.advance(earliest - 1 - mesh.now)
    assert _taken_from(mesh, "relay", relay_link) == []
    mesh.advance(limits.receipt_relayed_delay_max_s - limits.receipt_relayed_delay_min_s + 2)
    (taken,) = _taken_from(mesh, "relay", relay_link)  # the relay is bob's only peer: it goes
    assert not taken.for_us
    mesh.disconnect("relay", "bob")
    mesh.connect("alice", "relay")
    assert _status(mesh, "alice", "bob") is MessageStatus.DELIVERED


def test_a_hold_ends_with_the_relay_s_link() -> None:
    mesh = _relayed_to_bob(["alice", "relay", "bob"])
    limits = mesh.configs["bob"].message
    mesh.connect("relay", "bob")
    mesh.advance(limits.receipt_relayed_delay_max_s + 1)  # sealed, and held
    mesh.disconnect("relay", "bob")
    relay_link, _ = mesh.connect("relay", "bob")  # a new link: reconciled like any other
    assert len(_taken_from(mesh, "relay", relay_link)) == 1


def test_direct_mail_keeps_its_prompt_receipt_on_the_same_link() -> None:
    mesh = Mesh(["alice", "bob"])
    mesh.befriend("alice", "bob", pair=True)
    mesh.connect("alice", "bob")
    mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "hello", now=mesh.now)
    mesh.run()
    delay = mesh.configs["bob"].message.receipt_delay_s
    mesh.advance(delay - 0.5)
    assert _status(mesh, "alice", "bob") is not MessageStatus.DELIVERED
    mesh.advance(1.0)
    assert _status(mesh, "alice", "bob") is MessageStatus.DELIVERED


def test_a_clock_step_back_does_not_strand_a_delay_or_a_hold() -> None:
    mesh = _relayed_to_bob(["alice", "relay", "bob"])
    limits = mesh.configs["bob"].message
    relay_link, _ = mesh.connect("relay", "bob")
    mesh.advance(limits.receipt_relayed_delay_min_s / 2)  # owed, not sealed yet
    mesh.now -= STEP_BACK_S
    mesh.nodes["bob"].handle_timer(now=mesh.now)  # the driver wakes (timer_max_sleep_s)
    deadline = mesh.nodes["bob"].next_deadline()
    assert deadline is not None
    assert deadline <= mesh.now + limits.receipt_relayed_delay_max_s
    mesh.advance(limits.receipt_relayed_delay_max_s + 1)  # sealed now, and held
    assert _taken_from(mesh, "relay", relay_link) == []
    mesh.now -= STEP_BACK_S
    mesh.nodes["bob"].handle_timer(now=mesh.now)
    deadline = mesh.nodes["bob"].next_deadline()
    assert deadline is not None
    assert deadline <= mesh.now + limits.receipt_hold_s
    mesh.advance(limits.receipt_hold_s + 1)
    assert len(_taken_from(mesh, "relay", relay_link)) == 1
