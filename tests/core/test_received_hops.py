"""The recipient's hop count tells direct from relayed although own copies start at a random
hop count (issue #11, finding 4): 1 from the sender's link, at least 2 from anyone else."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshmsg.core.events import MessageReceived
from meshmsg.core.exchange.origin import received_hops
from tests.helpers import Mesh


@given(st.integers(min_value=0, max_value=20))
def test_from_the_sender_is_one_hop_whatever_it_carried(carried: int) -> None:
    assert received_hops(carried, from_sender=True) == 1


@given(st.integers(min_value=0, max_value=20))
def test_from_a_relay_is_at_least_two_hops(carried: int) -> None:
    hops = received_hops(carried, from_sender=False)
    assert hops == max(2, carried)
    assert hops >= 2


@pytest.mark.parametrize("seed", range(1, 9))
def test_a_direct_message_reads_direct_for_any_starting_hop_count(seed: int) -> None:
    """Eight seeds draw several starting hop counts; the recipient always records 1 (the demo's
    "carol received it (direct)" depends on it, and CI caught it showing "2 hops")."""
    mesh = Mesh(["alice", "bob"], seed=seed)
    mesh.befriend("alice", "bob", pair=True)
    mesh.connect("alice", "bob")
    mid = mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "straight to you", now=mesh.now)
    mesh.run()
    received = mesh.of_type("bob", MessageReceived)
    assert [(r.message_id, r.hops) for r in received] == [(mid, 1)]


@pytest.mark.parametrize("seed", range(1, 5))
def test_a_relayed_message_reads_at_least_two_hops(seed: int) -> None:
    mesh = Mesh(["alice", "bob", "carol"], seed=seed)
    mesh.befriend("alice", "carol", pair=True)
    mesh.connect("alice", "bob")
    mid = mesh.nodes["alice"].send_message(mesh.peer_id("carol"), "via bob", now=mesh.now)
    mesh.run()
    mesh.disconnect("alice", "bob")
    mesh.connect("bob", "carol")
    mesh.run()
    received = mesh.of_type("carol", MessageReceived)
    assert [r.message_id for r in received] == [mid]
    assert received[0].hops >= 2
