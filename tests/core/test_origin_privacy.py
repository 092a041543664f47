"""An originator's copy shows a relay nothing a relay's copy would not (issue #11, finding 4).

Before the fix every own envelope started at hops 0 (so its first transfers said hops = 1) with
the full TTL; now the hop count starts at random in 0..``origin_hops_max`` and the envelope
expires a random little earlier; ONE mode keeps both exact for the reference runs.
"""

from __future__ import annotations

import math

from meshmsg.config import NodeConfig
from meshmsg.core.envelope import parse_envelope
from meshmsg.core.node import Node
from tests.core.node_tools import OneMesh
from tests.helpers import Mesh

CONFIG = NodeConfig()
LIMITS = CONFIG.message
MESSAGES = 40


def sent(mesh: Mesh, ttl_s: float | None = None) -> Node:
    mesh.befriend("alice", "bob", pair=True)
    alice = mesh.nodes["alice"]
    for i in range(MESSAGES):
        alice.send_message(mesh.peer_id("bob"), f"message {i}", now=mesh.now, ttl_s=ttl_s)
    mesh.run()
    return alice


def expiries(node: Node) -> list[int]:
    buckets = LIMITS.envelope_size_buckets
    return [parse_envelope(i.envelope, buckets=buckets).expiry_at for i in node.store.items()]


def test_own_copies_start_at_a_random_hop_count_within_the_bound() -> None:
    alice = sent(Mesh(["alice", "bob"]))
    hops = [item.hops for item in alice.store.items()]
    assert len(hops) == MESSAGES
    assert set(hops) <= set(range(LIMITS.origin_hops_max + 1))
    assert len(set(hops)) > 1  # 40 draws of 4 values: a constant would mean no randomness


def test_own_envelopes_expire_a_random_little_before_their_ttl() -> None:
    mesh = Mesh(["alice", "bob"])
    alice = sent(mesh)
    ttl = LIMITS.default_ttl_s
    latest = math.ceil(mesh.now + ttl)
    earliest = mesh.now + ttl - min(LIMITS.origin_ttl_jitter_s, ttl / 10)
    got = expiries(alice)
    assert all(earliest <= e <= latest for e in got)
    assert len(set(got)) > 1


def test_a_short_ttl_loses_at_most_a_tenth() -> None:
    mesh = Mesh(["alice", "bob"])
    alice = sent(mesh, ttl_s=600.0)
    assert all(mesh.now + 540.0 <= e <= math.ceil(mesh.now + 600.0) for e in expiries(alice))


def test_one_mode_keeps_hops_and_ttl_exact() -> None:
    mesh = OneMesh(["alice", "bob"])
    alice = sent(mesh)
    assert {item.hops for item in alice.store.items()} == {0}
    assert set(expiries(alice)) == {math.ceil(mesh.now + LIMITS.default_ttl_s)}
