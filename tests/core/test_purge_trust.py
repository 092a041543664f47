"""Purge tokens from strangers (issue #11, finding 3): tiers, quotas, and no spreading without a
reason to believe a token.

On the main branch before the fix, 60 random tokens from one stranger evicted every real
tombstone of a node with a 50-entry table, and a node that never met the stranger then held
the bogus tokens too.
"""

from __future__ import annotations

from meshmsg.config import MessageLimits, NodeConfig
from meshmsg.core.envelope import tag_of_token
from meshmsg.core.events import MessageStatus
from meshmsg.core.records import Purge
from meshmsg.sim.rng import SeededRng
from tests.core.node_tools import AttackMesh, prompt_returns
from tests.helpers import T0

FAR = int((T0 + 10 * 86_400) * 1000)  # a far expiry (capped at max_ttl_s by the node)


def bogus_purges(label: str, n: int) -> list[Purge]:
    rng = SeededRng(7, label)
    return [Purge(token=rng.randbytes(16), expiry_at=FAR) for _ in range(n)]


def delivered_mesh() -> tuple[AttackMesh, set[bytes]]:
    """alice sent bob five messages at a meeting: bob holds five real tokens."""
    config = NodeConfig(message=MessageLimits(dedup_entries=50))
    mesh = AttackMesh(["alice", "bob", "carol"], config=config)
    mesh.befriend("alice", "bob", pair=True)
    mesh.befriend("bob", "carol", pair=True)
    for i in range(5):
        mesh.nodes["alice"].send_message(mesh.peer_id("bob"), f"m{i}", now=mesh.now)
    mesh.connect("alice", "bob")
    mesh.disconnect("alice", "bob")
    real = {stone.tag for stone in mesh.nodes["bob"].tombstones}
    assert len(real) == 5
    return mesh, real


def test_a_strangers_tokens_do_not_evict_real_tombstones() -> None:
    mesh, real = delivered_mesh()
    mesh.inject("bob", mesh.stranger("purger")).send(bogus_purges("purger", 60))
    bob = mesh.nodes["bob"]
    assert real <= {stone.tag for stone in bob.tombstones}
    assert len(bob.tombstones) <= 5 + 2  # one stranger: 5 % of 50 entries


def test_a_strangers_tokens_are_not_spread_to_nodes_that_never_met_it() -> None:
    mesh, real = delivered_mesh()
    bogus = bogus_purges("purger", 60)
    mesh.inject("bob", mesh.stranger("purger")).send(bogus)
    mesh.connect("bob", "carol")  # a contact of bob who never met the stranger
    carol = mesh.nodes["carol"]
    bogus_tags = {tag_of_token(p.token) for p in bogus}
    assert not bogus_tags & {stone.tag for stone in carol.tombstones}
    assert real <= {stone.tag for stone in carol.tombstones}  # real ones still travel
    on_disk = {key for kind, key in mesh.persisted["bob"] if kind.name == "TOMBSTONE"}
    assert not bogus_tags & on_disk  # not worth a write either


def test_a_token_matching_a_held_envelope_is_believed_and_spread() -> None:
    """The relay, a stranger to all, drops its copy and passes the token back to the sender."""
    mesh = AttackMesh(["alice", "bob", "relay"], config=prompt_returns())
    mesh.befriend("alice", "bob", pair=True)
    mid = mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "hi", now=mesh.now)
    mesh.connect("alice", "relay")
    mesh.connect("relay", "bob")
    assert len(mesh.nodes["relay"].store) == 0
    assert len(mesh.nodes["alice"].store) == 0
    message = mesh.nodes["alice"].conversations.get(mid)
    assert message is not None
    assert message.status is MessageStatus.DELIVERED


def test_a_token_not_believed_still_reaches_a_carrier_that_offers_its_envelope() -> None:
    """x heard bob's token but holds no copy, so it keeps the token without passing it on; a
    relay that offers x the envelope gets the token back and (holding the copy) believes it."""
    mesh = AttackMesh(["alice", "bob", "relay", "x"])
    mesh.befriend("alice", "bob", pair=True)
    mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "hi", now=mesh.now)
    mesh.connect("alice", "relay")
    mesh.disconnect("alice", "relay")
    assert len(mesh.nodes["relay"].store) == 1
    mesh.connect("alice", "bob")
    mesh.disconnect("alice", "bob")
    mesh.connect("bob", "x")
    mesh.disconnect("bob", "x")
    (stone,) = mesh.nodes["x"].tombstones
    assert not stone.believed
    mesh.connect("relay", "x")
    assert len(mesh.nodes["relay"].store) == 0
    held = mesh.nodes["relay"].tombstones.by_tag(stone.tag)
    assert held is not None
    assert held.believed
