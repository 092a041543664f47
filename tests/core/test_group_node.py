"""Groups on real Nodes over in-memory links: pairwise key and operation delivery, one group
envelope per message carried by relays, removal, an offline member, restart, receipts."""

from __future__ import annotations

import pytest

from meshmsg.config import MessageLimits, NodeConfig, SyncConfig
from meshmsg.core.effects import RecordKind
from meshmsg.core.events import GroupChanged, GroupMessageReceived, GroupMessageStatus
from meshmsg.core.node import Node
from meshmsg.core.store import Tier
from meshmsg.errors import GroupError
from tests.helpers import Mesh

NAMES = ("alice", "bob", "carol", "dave")


def group_mesh(*names: str, relay: bool = False) -> Mesh:
    mesh = Mesh([*names, *(("relay",) if relay else ())])
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            mesh.befriend(a, b, pair=True)
    return mesh


def bodies(mesh: Mesh, name: str) -> list[str]:
    return [e.body for e in mesh.of_type(name, GroupMessageReceived)]


def members(node: Node, group: bytes) -> set[bytes]:
    return set(node.groups.find(group).group.state.members)


def meet(mesh: Mesh, a: str, b: str) -> None:
    mesh.connect(a, b)
    mesh.advance(30)
    mesh.disconnect(a, b)


def test_a_group_message_reaches_every_member_through_one_relay() -> None:
    mesh = group_mesh("alice", "bob", "carol", relay=True)
    alice = mesh.nodes["alice"]
    gid = alice.create_group("cell", [mesh.peer_id("bob"), mesh.peer_id("carol")], now=mesh.now)
    alice.send_group_message(gid, "first", now=mesh.now)  # starts alice's chain
    for other in ("bob", "carol"):  # operations and the chain travel pairwise: meet once
        meet(mesh, "alice", other)
    assert bodies(mesh, "bob") == bodies(mesh, "carol") == ["first"]
    mid = alice.send_group_message(gid, "hello cell", now=mesh.now)
    meet(mesh, "alice", "relay")
    carried = {item.envelope_id for item in mesh.nodes["relay"].store.items()}
    group_envelopes = {m.envelope_id for m in alice.groups.find(gid).messages.values()}
    assert alice.groups.find(gid).messages[mid].envelope_id in carried
    assert carried <= group_envelopes  # one ciphertext per message for the whole group
    meet(mesh, "relay", "bob")
    meet(mesh, "bob", "carol")  # bob carries it on to carol
    assert bodies(mesh, "bob") == ["first", "hello cell"]
    assert bodies(mesh, "carol") == ["first", "hello cell"]
    assert mesh.of_type("bob", GroupChanged)


def test_a_group_of_four_with_one_member_offline_during_a_removal() -> None:
    mesh = group_mesh(*NAMES)
    alice = mesh.nodes["alice"]
    gid = alice.create_group("cell", [mesh.peer_id(n) for n in NAMES[1:]], now=mesh.now)
    for other in NAMES[1:]:
        meet(mesh, "alice", other)
    mesh.stop("dave")  # dave is offline during the removal and two messages
    alice.change_group(gid, "remove", member=mesh.peer_id("carol"), now=mesh.now)
    alice.send_group_message(gid, "one", now=mesh.now)
    meet(mesh, "alice", "bob")
    mesh.nodes["bob"].send_group_message(gid, "two", now=mesh.now)
    meet(mesh, "alice", "bob")
    meet(mesh, "alice", "carol")  # carol learns she is out, and carries what alice has
    meet(mesh, "bob", "carol")
    assert bodies(mesh, "carol") == []
    mesh.start("dave")
    meet(mesh, "carol", "dave")  # the removed member may still carry the envelopes
    meet(mesh, "alice", "dave")
    meet(mesh, "bob", "dave")
    assert sorted(bodies(mesh, "dave")) == ["one", "two"]
    assert sorted(bodies(mesh, "bob")) == ["one"]
    assert bodies(mesh, "carol") == []
    views = {frozenset(members(mesh.nodes[n], gid)) for n in ("alice", "bob", "dave")}
    assert len(views) == 1
    assert mesh.identities["carol"].public.identity_key not in next(iter(views))


def test_group_state_survives_a_restart() -> None:
    mesh = group_mesh("alice", "bob")
    gid = mesh.nodes["alice"].create_group("x", [mesh.peer_id("bob")], now=mesh.now)
    meet(mesh, "alice", "bob")
    mesh.stop("alice")
    mesh.start("alice")
    mesh.stop("bob")
    mesh.start("bob")
    mesh.nodes["alice"].send_group_message(gid, "after restart", now=mesh.now)
    meet(mesh, "alice", "bob")
    assert bodies(mesh, "bob") == ["after restart"]
    assert members(mesh.nodes["bob"], gid) == members(mesh.nodes["alice"], gid)


def test_receipts_aggregate_for_the_sender() -> None:
    mesh = group_mesh("alice", "bob", "carol")
    alice = mesh.nodes["alice"]
    gid = alice.create_group("x", [mesh.peer_id("bob"), mesh.peer_id("carol")], now=mesh.now)
    for other in ("bob", "carol"):
        meet(mesh, "alice", other)
    mid = alice.send_group_message(gid, "m", now=mesh.now)
    for other in ("bob", "carol"):
        meet(mesh, "alice", other)
    mesh.nodes["bob"].mark_group_read(gid, [mid], now=mesh.now)
    for other in ("bob", "carol"):
        meet(mesh, "alice", other)
    status = mesh.of_type("alice", GroupMessageStatus)[-1]
    assert (status.delivered, status.read, status.recipients) == (2, 1, 2)


def test_clear_errors() -> None:
    mesh = group_mesh("alice", "bob")
    with pytest.raises(GroupError, match="no group"):
        mesh.nodes["alice"].send_group_message(b"\x00" * 32, "m", now=mesh.now)
    gid = mesh.nodes["alice"].create_group("x", [mesh.peer_id("bob")], now=mesh.now)
    meet(mesh, "alice", "bob")
    with pytest.raises(GroupError, match="only an admin"):
        mesh.nodes["bob"].change_group(gid, "remove", member=mesh.peer_id("alice"), now=mesh.now)


def test_one_envelope_per_group_message_against_pairwise_fan_out() -> None:
    names = [f"m{i}" for i in range(8)]
    mesh = group_mesh(*names)
    first = mesh.nodes[names[0]]
    gid = first.create_group("big", [mesh.peer_id(n) for n in names[1:]], now=mesh.now)
    # setting up costs two pairwise envelopes per member: the operations and our chain
    first.send_group_message(gid, "hello", now=mesh.now)
    assert len(first.store) == 2 * (len(names) - 1) + 1
    for other in names[1:]:
        meet(mesh, names[0], other)
    before = len(first.store)
    first.send_group_message(gid, "to all", now=mesh.now)
    assert len(first.store) - before == 1
    for other in names[1:]:
        first.send_message(mesh.peer_id(other), "to one", now=mesh.now)
    assert len(first.store) - before == 1 + len(names) - 1
    assert RecordKind.GROUP in {k for k, _ in mesh.persisted[names[0]]}


def test_a_hundred_member_group_costs_a_relay_one_envelope_per_message() -> None:
    """Relay cost beside pairwise fan-out, with 100 members (issue #14's size)."""
    names = [f"m{i:02}" for i in range(100)]
    # One envelope per Transmit: the in-memory links hand over a Transmit whole, and 64 of the
    # 40 KiB envelopes that carry a 100-member history would overflow a receive buffer.
    config = NodeConfig(sync=SyncConfig(envelopes_per_transmit=1))
    mesh = Mesh([*names, "relay"], config=config)
    first = mesh.nodes[names[0]]
    for other in names[1:]:  # the sender is paired with every member; members need not be
        mesh.befriend(names[0], other, pair=True)
    gid = first.create_group("crisis", [mesh.peer_id(n) for n in names[1:]], now=mesh.now)
    first.send_group_message(gid, "first: hands out the chain", now=mesh.now)
    for other in names[1:]:
        meet(mesh, names[0], other)
    assert all(bodies(mesh, n) == ["first: hands out the chain"] for n in names[1:])
    relay = mesh.nodes["relay"]
    meet(mesh, names[0], "relay")
    carried_before = sum(len(i.envelope) for i in relay.store.items())
    first.send_group_message(gid, "situation report", now=mesh.now)
    meet(mesh, names[0], "relay")
    group_bytes = sum(len(i.envelope) for i in relay.store.items()) - carried_before
    for other in names[1:]:
        first.send_message(mesh.peer_id(other), "situation report", now=mesh.now)
    meet(mesh, names[0], "relay")
    fan_out_bytes = sum(len(i.envelope) for i in relay.store.items()) - carried_before - group_bytes
    assert group_bytes == 256  # one envelope in the smallest bucket
    assert fan_out_bytes == 99 * 256  # the same text to each member: 99 envelopes


def test_two_admins_who_remove_each_other_while_apart_then_meet() -> None:
    mesh = group_mesh(*NAMES)
    alice, bob = mesh.nodes["alice"], mesh.nodes["bob"]
    gid = alice.create_group("cell", [mesh.peer_id(n) for n in NAMES[1:]], now=mesh.now)
    alice.change_group(gid, "promote", member=mesh.peer_id("bob"), now=mesh.now)
    for other in NAMES[1:]:
        meet(mesh, "alice", other)
    assert bob.groups.find(gid).group.state.admins == alice.groups.find(gid).group.state.admins
    # apart: {alice, carol} and {bob, dave}
    alice.change_group(gid, "remove", member=mesh.peer_id("bob"), now=mesh.now)
    bob.change_group(gid, "remove", member=mesh.peer_id("alice"), now=mesh.now)
    meet(mesh, "alice", "carol")
    meet(mesh, "bob", "dave")
    assert mesh.identities["alice"].public.identity_key not in members(mesh.nodes["dave"], gid)
    for a, b in (("carol", "dave"), ("alice", "bob"), ("alice", "dave"), ("bob", "carol")):
        meet(mesh, a, b)
    views = {frozenset(members(mesh.nodes[n], gid)) for n in NAMES}
    keys = {n: mesh.identities[n].public.identity_key for n in NAMES}
    assert views == {frozenset({keys["alice"], keys["carol"], keys["dave"]})}  # the creator stays


def _opens_as_group_mail(state: list[bytes], envelope: bytes, *, counters: int = 4) -> bool:
    """True if any 32-byte window of ``state`` opens ``envelope`` as a group message key, as a
    per-message chain C[p, c], or as a period key K[p] for counters 0 .. counters - 1."""
    from meshmsg.core.envelope import open_envelope, parse_envelope
    from meshmsg.core.groups.senderkeys import PERSON_MSG, chain_at
    from meshmsg.core.keyschedule import kdf, u32
    from meshmsg.errors import InvalidMessage

    limits = NodeConfig().message
    parsed = parse_envelope(envelope, buckets=limits.envelope_size_buckets)
    for blob in state:
        for offset in range(len(blob) - 31):
            key = blob[offset : offset + 32]
            keys = [key, *(kdf(PERSON_MSG, chain_at(key, 0, c), u32(c)) for c in range(counters))]
            keys += [kdf(PERSON_MSG, key, u32(c)) for c in range(counters)]
            for candidate in keys:
                try:
                    open_envelope(parsed, candidate, limits)
                except InvalidMessage:
                    continue
                return True
    return False


def test_a_removed_member_with_its_whole_stored_state_opens_nothing_later() -> None:
    mesh = group_mesh("alice", "bob", "carol")
    alice = mesh.nodes["alice"]
    gid = alice.create_group("cell", [mesh.peer_id("bob"), mesh.peer_id("carol")], now=mesh.now)
    alice.send_group_message(gid, "before", now=mesh.now)
    for a, b in (("alice", "bob"), ("alice", "carol")):
        meet(mesh, a, b)
    mesh.nodes["bob"].send_group_message(gid, "bob before", now=mesh.now)
    meet(mesh, "bob", "carol")
    assert sorted(bodies(mesh, "carol")) == ["before", "bob before"]
    stolen = list(mesh.persisted["carol"].values())  # everything carol ever committed
    earlier = [i.envelope for i in alice.store.items()]
    assert any(_opens_as_group_mail(stolen, e) for e in earlier)  # the search does find keys
    alice.change_group(gid, "remove", member=mesh.peer_id("carol"), now=mesh.now)
    alice.send_group_message(gid, "after", now=mesh.now)
    meet(mesh, "alice", "bob")
    mesh.nodes["bob"].send_group_message(gid, "bob after", now=mesh.now)
    later = [m.envelope_id for n in ("alice", "bob")
             for m in mesh.nodes[n].groups.find(gid).messages.values()
             if m.outgoing and m.body.endswith("after")]  # fmt: skip
    envelopes = sorted({i.envelope for n in ("alice", "bob") for i in mesh.nodes[n].store.items()
                        if i.envelope_id in later})  # fmt: skip
    assert len(envelopes) == 2
    assert not any(_opens_as_group_mail(stolen, e) for e in envelopes)
    for a, b in (("alice", "carol"), ("bob", "carol")):
        meet(mesh, a, b)  # carol may even carry them: still nothing
    assert sorted(bodies(mesh, "carol")) == ["before", "bob before"]


def test_writes_that_drop_group_keys_ask_the_driver_to_erase() -> None:
    from meshmsg.core.effects import Persist

    mesh = group_mesh("alice", "bob")
    alice = mesh.nodes["alice"]
    gid = alice.create_group("x", [mesh.peer_id("bob")], now=mesh.now)
    mesh.run()
    alice.send_group_message(gid, "m", now=mesh.now)
    effects = []
    while (effect := alice.next_effect()) is not None:
        effects.append(effect)
    own_chain = [e for e in effects if isinstance(e, Persist)
                 and any(p.kind is RecordKind.GROUP_KEY for p in e.puts)]  # fmt: skip
    assert own_chain
    assert all(e.erases_keys for e in own_chain)  # the sent message's key must leave the WAL


def test_a_group_receipt_for_relayed_mail_waits_and_is_kept_from_the_relay() -> None:
    """Issue #11 finding 4, groups: the receipt for group mail a relay handed over is sealed
    after the relayed delay and kept from that relay, as pairwise receipts are (before, it was
    sealed at once and offered to the relay on the same link)."""
    limits = MessageLimits()
    mesh = group_mesh("alice", "bob", relay=True)
    alice, bob = mesh.nodes["alice"], mesh.nodes["bob"]
    gid = alice.create_group("cell", [mesh.peer_id("bob")], now=mesh.now)
    alice.send_group_message(gid, "first", now=mesh.now)
    meet(mesh, "alice", "bob")
    alice.send_group_message(gid, "via the relay", now=mesh.now)
    meet(mesh, "alice", "relay")
    mesh.connect("relay", "bob")
    assert bodies(mesh, "bob") == ["first", "via the relay"]

    def own() -> list[bytes]:
        return [i.envelope_id for i in bob.store.items() if i.tier is Tier.OWN]

    def carried_by_relay() -> set[bytes]:
        return {i.envelope_id for i in mesh.nodes["relay"].store.items()}

    mesh.advance(limits.receipt_relayed_delay_min_s - 5)
    assert own() == []  # not sealed yet
    mesh.advance(limits.receipt_relayed_delay_max_s)
    receipts = set(own())
    assert receipts
    assert not receipts & carried_by_relay()  # kept from the relay that delivered it
    mesh.advance(limits.receipt_hold_s + 1)
    assert receipts <= carried_by_relay()  # after the hold it may go (our only peer)
