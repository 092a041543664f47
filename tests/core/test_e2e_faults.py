"""Faults around key exchanges at the Node level (issue 11): unparseable shares, wrong clocks."""

from __future__ import annotations

from typing import Any

import pytest

from meshmsg.config import MessageLimits, NodeConfig
from meshmsg.core.clockcheck import channels_ahead
from meshmsg.core.events import ClockSkewDetected, LinkClosed, MessageReceived
from meshmsg.core.exchange.keys import ContactKeys
from meshmsg.core.node import Node
from meshmsg.core.records import KeyExchange
from tests.core.node_tools import AttackMesh, events_of, own_envelopes
from tests.helpers import Mesh

LIMITS = MessageLimits()
DAY = 86_400.0
YEAR = 365 * DAY


def paired_mesh(names: list[str]) -> AttackMesh:
    """alice and bob paired at a real meeting (not offline), plus the other named nodes."""
    mesh = AttackMesh(names)
    mesh.befriend("alice", "bob")
    mesh.connect("alice", "bob")
    mesh.disconnect("alice", "bob")
    return mesh


# --------------------------------------------------------------- unparseable key exchange


def test_an_unparseable_key_share_does_not_stop_sealing_for_the_contact() -> None:
    """Issue 11, finding 5: a share of version 2 (a newer client) closed the link with
    ``contact.exchanging`` still set, so nothing was sealed to that contact until restart."""
    mesh = paired_mesh(["alice", "bob"])
    newer_bob = mesh.inject("alice", mesh.identities["bob"])  # alice starts an exchange
    contact = mesh.nodes["alice"].contacts.get(mesh.peer_id("bob"))
    assert contact is not None
    assert contact.exchanging
    newer_bob.send([KeyExchange(share=bytes([2]) + bytes(89))])
    assert not newer_bob.up  # a strict parser still closes the link ...
    assert events_of(mesh, "alice", LinkClosed)
    assert not contact.exchanging  # ... but the exchange ended with it
    mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "still sealed", now=mesh.now)
    mesh.run()
    assert len(own_envelopes(mesh.nodes["alice"])) == 1


# ------------------------------------------------------------------- lost confirmation


def test_a_state_stolen_before_a_heal_with_a_lost_confirm_cannot_forge_a_month_later() -> None:
    """Issue 11, finding 1, end to end: pair; a thief copies Bob's state; a meeting whose
    KeyConfirms are lost; a confirmed meeting two days later; Bob writes in the new epoch;
    thirty days later the stolen state seals a message to Alice: she must not take it."""
    mesh = AttackMesh(["alice", "bob"])
    mesh.befriend("alice", "bob")
    mesh.connect("alice", "bob")
    mesh.disconnect("alice", "bob")
    stolen = dict(mesh.persisted["bob"])
    with pytest.MonkeyPatch.context() as patch:  # both KeyConfirms are lost on the way
        patch.setattr(ContactKeys, "on_key_confirm", lambda *_: None)
        mesh.connect("alice", "bob")
        mesh.disconnect("alice", "bob")
    mesh.advance(2 * DAY)
    mesh.connect("alice", "bob")
    mesh.disconnect("alice", "bob")
    mesh.nodes["bob"].send_message(mesh.peer_id("alice"), "in the new epoch", now=mesh.now)
    mesh.connect("alice", "bob")
    mesh.disconnect("alice", "bob")
    assert bodies(mesh, "alice") == ["in the new epoch"]
    mesh.advance(30 * DAY)
    thief = mesh.clone("thief", "bob", stolen)
    thief.handle_timer(now=mesh.now)  # the thief lets its copy's clock run on
    thief.send_message(mesh.peer_id("alice"), "forged as bob", now=mesh.now)
    mesh.run()
    (forged,) = own_envelopes(thief)
    mesh.inject("alice", mesh.stranger("relay")).transfer([forged])
    assert bodies(mesh, "alice") == ["in the new epoch"]


# --------------------------------------------------------------------------- wrong clocks


class Shifted:
    """A Node whose wall clock reads ``mesh.offsets[name]`` seconds off the mesh's time."""

    def __init__(self, node: Node, mesh: SkewMesh, name: str) -> None:
        self.node = node
        self.mesh = mesh
        self.name = name

    @property
    def offset(self) -> float:
        return self.mesh.offsets.get(self.name, 0.0)

    def next_deadline(self) -> float | None:
        deadline = self.node.next_deadline()
        return None if deadline is None else deadline - self.offset

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self.node, attr)
        if not callable(value):
            return value

        def shifted(*args: Any, **kwargs: Any) -> Any:
            if "now" in kwargs:
                kwargs["now"] += self.offset
            return value(*args, **kwargs)

        return shifted


class SkewMesh(AttackMesh):
    """Each node's clock is off the mesh's by its entry in ``offsets`` (changeable)."""

    def __init__(
        self, names: list[str], offsets: dict[str, float], config: NodeConfig | None = None
    ) -> None:
        self.offsets = dict(offsets)
        super().__init__(names, config=config)

    def _build(self, name: str) -> Node:
        mesh_now = self.now
        self.now = mesh_now + self.offsets.get(name, 0.0)
        try:
            node = super()._build(name)
        finally:
            self.now = mesh_now
        return Shifted(node, self, name)  # type: ignore[return-value]


def bodies(mesh: Mesh, name: str) -> list[str]:
    return sorted(e.body for e in mesh.of_type(name, MessageReceived))


def relay_round(mesh: Mesh) -> None:
    """carol, a stranger, carries mail from alice to bob and back."""
    for a, b in (("alice", "carol"), ("bob", "carol"), ("alice", "carol")):
        mesh.connect(a, b)
        mesh.disconnect(a, b)


@pytest.mark.parametrize(
    ("profile", "skew", "ttl_s"),
    [
        ("office", DAY, None),
        ("office", -DAY, None),
        ("crisis", DAY, 3 * DAY),
        ("crisis", -DAY, 3 * DAY),
    ],
)
def test_a_day_of_clock_skew_loses_no_message(
    profile: str, skew: float, ttl_s: float | None
) -> None:
    """Issue 11, finding 2: ±24 h between two contacts (clock_skew_s) loses nothing, through
    a relay and across a meeting that heals under the skew. The office case with bob 24 h slow
    was a strict xfail until transfers carried a relative lifetime (``TimedTransfer``): carol,
    a stranger, refused bob's envelopes at once as expired by her clock."""
    config = NodeConfig.crisis() if profile == "crisis" else NodeConfig()
    mesh = SkewMesh(["alice", "bob", "carol"], offsets={"bob": skew}, config=config)
    mesh.befriend("alice", "bob")
    mesh.connect("alice", "bob")  # pairing with bob's clock a day off
    mesh.disconnect("alice", "bob")
    sent: dict[str, list[str]] = {"alice": [], "bob": []}
    for day in range(4):
        for hour in (0, 8, 16):
            for who, to in (("alice", "bob"), ("bob", "alice")):
                body = f"{who} day {day} hour {hour}"
                mesh.nodes[who].send_message(mesh.peer_id(to), body, now=mesh.now, ttl_s=ttl_s)
                sent[who].append(body)
            mesh.run()
            relay_round(mesh)
            mesh.advance(8 * 3_600)
        if day == 1:
            mesh.connect("alice", "bob")  # a meeting heals under the skew
            mesh.disconnect("alice", "bob")
    assert not mesh.of_type("alice", ClockSkewDetected)
    assert bodies(mesh, "bob") == sorted(sent["alice"])
    assert bodies(mesh, "alice") == sorted(sent["bob"])


def test_a_clock_jump_of_a_year_then_back_recovers_at_the_next_meeting() -> None:
    """Issue 11, finding 2: one reading a year ahead wedged the channel for good (heals raised
    HandshakeError and closed the link). The next meeting repairs it, and says so."""
    mesh = SkewMesh(["alice", "bob"], offsets={})
    mesh.befriend("alice", "bob")
    mesh.connect("alice", "bob")
    mesh.disconnect("alice", "bob")
    alice, bob = mesh.nodes["alice"], mesh.nodes["bob"]
    mesh.offsets["alice"] = YEAR  # a bad NTP answer ...
    alice.handle_timer(now=mesh.now)
    alice.send_message(mesh.peer_id("bob"), "sent while a year ahead", now=mesh.now)
    mesh.run()
    mesh.offsets["alice"] = 0.0  # ... corrected a minute later
    mesh.advance(60)
    alice.send_message(mesh.peer_id("bob"), "sent after the clock came back", now=mesh.now)
    bob.send_message(mesh.peer_id("alice"), "sent to alice meanwhile", now=mesh.now)
    mesh.run()
    assert [(p, s) for p, s in channels_ahead(alice.contacts, mesh.now, LIMITS)] == [
        (mesh.peer_id("bob"), pytest.approx(YEAR - 60, abs=1))
    ]
    mesh.connect("alice", "bob")  # the next meeting
    assert mesh.linked("alice", "bob")
    assert bodies(mesh, "bob") == ["sent after the clock came back", "sent while a year ahead"]
    assert bodies(mesh, "alice") == ["sent to alice meanwhile"]
    (seen_by_alice,) = mesh.of_type("alice", ClockSkewDetected)
    (seen_by_bob,) = mesh.of_type("bob", ClockSkewDetected)
    assert (seen_by_alice.skew_s, seen_by_alice.repaired) == (-YEAR, True)
    assert (seen_by_bob.skew_s, seen_by_bob.repaired) == (YEAR, False)
    assert channels_ahead(alice.contacts, mesh.now, LIMITS) == []
    alice.send_message(mesh.peer_id("bob"), "and later", now=mesh.now)
    mesh.run()
    assert "and later" in bodies(mesh, "bob")
