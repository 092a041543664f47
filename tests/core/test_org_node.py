"""Issue #12, organisation directory in the node: a 200-member directory reaches a fresh node
through one relay, search finds a member, first contact to it is delivered, a revocation
reaches every linked node in one exchange, and forged or replayed directories are refused."""

from __future__ import annotations

import pytest

from meshmsg.config import OrgLimits
from meshmsg.core.events import DirectoryUpdated, LinkClosed, MessageReceived
from meshmsg.core.identity import ContactCard, Identity
from meshmsg.core.org.directory import Directory, OrgStatus, build_directory
from meshmsg.core.org.keys import OrgSecret, SignedEntry
from meshmsg.core.records import DirectoryChunk
from meshmsg.errors import DirectoryError
from meshmsg.sim.rng import SeededRng
from tests.core.node_tools import AttackMesh
from tests.helpers import Mesh

YEAR = 365 * 86_400


def _setup() -> tuple[Mesh, OrgSecret, list[SignedEntry]]:
    mesh = Mesh(["admin", "bob", "alice", "carol"])
    org = OrgSecret.generate(SeededRng(3, "org"), "Crisis Staff")
    expires = int(mesh.now) + YEAR
    people = [mesh.identities["carol"], mesh.identities["alice"]]
    people += [Identity.generate(SeededRng(i, "staff")) for i in range(198)]
    names = ["Carol Duty", "Alice Field", *[f"Staff {i}" for i in range(198)]]
    entries = [
        org.sign_entry(p.public, name=n, unit="Logistics", role="officer", expires_at=expires)
        for p, n in zip(people, names, strict=True)
    ]
    for name in ("bob", "alice", "carol"):
        mesh.nodes[name].join_org(org.public, now=mesh.now)
    return mesh, org, entries


def directory(org: OrgSecret, entries: list[SignedEntry], serial: int, now: float,
              revoke: tuple[Identity, ...] = ()) -> Directory:  # fmt: skip
    revocations = [org.revoke(i.public.identity_key, revoked_at=int(now)) for i in revoke]
    return build_directory(org, serial=serial, issued_at=int(now), entries=entries,
                           revocations=revocations, limits=OrgLimits())  # fmt: skip


def test_a_directory_reaches_a_fresh_node_through_a_relay_and_first_contact_works() -> None:
    mesh, org, entries = _setup()
    first = directory(org, entries, 1, mesh.now)
    mesh.nodes["bob"].import_directory(org.public.org_id, first.data, now=mesh.now)
    mesh.run()
    mesh.connect("alice", "bob")  # one relay; alice never saw the directory
    [update] = mesh.of_type("alice", DirectoryUpdated)
    assert (update.serial, update.members) == (1, 200)
    alice = mesh.nodes["alice"]
    [(found_org, entry)] = alice.orgs.search("carol duty", mesh.now)
    assert found_org.name == "Crisis Staff"
    card = ContactCard(public=entry.member, name=entry.name)
    alice.add_contact(card, verified=False, now=mesh.now)  # "verified by the organisation"
    [membership] = alice.orgs.status(entry.peer_id, mesh.now)
    assert membership.status is OrgStatus.MEMBER
    mid = alice.send_message(entry.peer_id, "report at 10", now=mesh.now)
    mesh.run()
    mesh.disconnect("alice", "bob")
    mesh.connect("bob", "carol")  # carol has not added alice: it arrives as a request
    carol = mesh.nodes["carol"]
    assert carol.requests.get(mesh.peer_id("alice")) is not None
    carol.accept_request(mesh.peer_id("alice"), now=mesh.now)
    mesh.run()
    assert carol.conversations.get(mid) is not None


def test_a_revocation_reaches_every_linked_node_in_one_exchange_and_flags_mail() -> None:
    mesh, org, entries = _setup()
    mesh.nodes["bob"].import_directory(org.public.org_id, directory(org, entries, 1, mesh.now).data,
                                       now=mesh.now)  # fmt: skip
    mesh.connect("alice", "bob")
    mesh.connect("carol", "bob")
    alice_id = mesh.peer_id("alice")
    for name in ("carol", "bob"):
        assert mesh.nodes[name].orgs.status(alice_id, mesh.now)[0].status is OrgStatus.MEMBER
    revoked = directory(org, entries, 2, mesh.now, revoke=(mesh.identities["alice"],))
    mesh.nodes["bob"].import_directory(org.public.org_id, revoked.data, now=mesh.now)
    mesh.run()
    for name in ("carol", "bob"):
        [membership] = mesh.nodes[name].orgs.status(alice_id, mesh.now)
        assert membership.status is OrgStatus.REVOKED
    mesh.nodes["carol"].add_contact(ContactCard(public=mesh.identities["alice"].public),
                                    verified=False, now=mesh.now)  # fmt: skip
    mesh.nodes["alice"].add_contact(ContactCard(public=mesh.identities["carol"].public),
                                    verified=False, now=mesh.now)  # fmt: skip
    mesh.nodes["alice"].send_message(mesh.peer_id("carol"), "still me", now=mesh.now)
    mesh.run()
    [received] = mesh.of_type("carol", MessageReceived)
    assert received.flag == "revoked by Crisis Staff"


def test_replayed_older_and_foreign_directories_are_refused_locally() -> None:
    mesh, org, entries = _setup()
    bob = mesh.nodes["bob"]
    bob.import_directory(org.public.org_id, directory(org, entries, 2, mesh.now).data, now=mesh.now)
    with pytest.raises(DirectoryError, match="not newer"):
        bob.import_directory(org.public.org_id, directory(org, entries, 1, mesh.now).data,
                             now=mesh.now)  # fmt: skip
    other = OrgSecret.generate(SeededRng(4, "other"), "Impostors")
    with pytest.raises(DirectoryError, match="did not join"):
        bob.import_directory(other.public.org_id, directory(other, [], 9, mesh.now).data,
                             now=mesh.now)  # fmt: skip


def test_a_peer_sending_a_forged_directory_loses_its_link_only() -> None:
    mesh = AttackMesh(["carol"])
    org = OrgSecret.generate(SeededRng(3, "org"), "Crisis Staff")
    carol = mesh.nodes["carol"]
    carol.join_org(org.public, now=mesh.now)
    mesh.run()
    good = build_directory(org, serial=1, issued_at=int(mesh.now), entries=[], revocations=[],
                           limits=carol.config.org)  # fmt: skip
    forged = bytearray(good.data)
    forged[45] ^= 1  # the serial, under the signature
    attacker = mesh.inject("carol", mesh.stranger("forger"))
    attacker.send([DirectoryChunk(org_id=org.public.org_id, serial=2, index=0, total=1,
                                  data=bytes(forged))])  # fmt: skip
    assert attacker.closed or not attacker.up
    assert mesh.of_type("carol", LinkClosed)
    assert carol.orgs.get(org.public.org_id).directory is None  # type: ignore[union-attr]
