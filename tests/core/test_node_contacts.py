"""Contact commands at the node: adding a contact again merges (verified stays verified), our
own code is refused, verification and removal are durable, a removed contact's mail is not
ours any more, and commands about requests or attachments that do not exist are refused."""

from __future__ import annotations

import pytest

from meshmsg.core.effects import RecordKind
from meshmsg.core.events import MessageReceived
from meshmsg.core.identity import ContactCard
from meshmsg.errors import LocalProtocolError
from tests.helpers import Mesh


def _card(mesh: Mesh, whom: str, name: str | None = None) -> ContactCard:
    return ContactCard(public=mesh.identities[whom].public, name=name)


def test_adding_a_contact_again_merges_and_our_own_code_is_refused() -> None:
    mesh = Mesh(["alice", "bob"])
    alice = mesh.nodes["alice"]
    first = alice.add_contact(_card(mesh, "bob", "Bob"), verified=True, now=mesh.now)
    again = alice.add_contact(_card(mesh, "bob", "Robert"), verified=False, now=mesh.now)
    assert again is first
    assert again.verified  # verified in person once: a later unverified add does not undo it
    assert again.name == "Robert"
    assert len(alice.contacts) == 1
    unnamed = alice.add_contact(_card(mesh, "bob"), verified=False, now=mesh.now)
    assert unnamed.name == mesh.peer_id("bob").hex()[:8]
    with pytest.raises(LocalProtocolError, match="our own"):
        alice.add_contact(_card(mesh, "alice"), verified=True, now=mesh.now)


def test_verification_and_removal_survive_a_restart() -> None:
    mesh = Mesh(["alice", "bob", "carol"])
    mesh.befriend("alice", "bob", pair=True)
    mesh.befriend("alice", "carol", pair=True)
    alice = mesh.nodes["alice"]
    alice.set_verified(mesh.peer_id("bob"), False, now=mesh.now)
    alice.remove_contact(mesh.peer_id("carol"), now=mesh.now)
    mesh.run()
    kinds = {(k, key) for k, key in mesh.persisted["alice"]}
    assert (RecordKind.CONTACT, mesh.peer_id("carol")) not in kinds
    assert (RecordKind.CHANNEL, mesh.peer_id("carol")) not in kinds
    mesh.stop("alice")
    alice = mesh.start("alice")
    bob = alice.contacts.get(mesh.peer_id("bob"))
    assert bob is not None
    assert not bob.verified
    assert alice.contacts.get(mesh.peer_id("carol")) is None
    with pytest.raises(LocalProtocolError):
        alice.remove_contact(mesh.peer_id("carol"), now=mesh.now)


def test_a_removed_contact_s_pairwise_mail_is_no_longer_ours() -> None:
    mesh = Mesh(["alice", "carol"])
    mesh.befriend("alice", "carol", pair=True)
    mesh.nodes["alice"].remove_contact(mesh.peer_id("carol"), now=mesh.now)
    mesh.run()
    mesh.nodes["carol"].send_message(mesh.peer_id("alice"), "still there?", now=mesh.now)
    mesh.connect("alice", "carol")
    mesh.advance(10)
    assert mesh.of_type("alice", MessageReceived) == []


def test_commands_about_requests_and_attachments_that_do_not_exist_are_refused() -> None:
    mesh = Mesh(["alice"])
    alice = mesh.nodes["alice"]
    with pytest.raises(LocalProtocolError, match="no request from"):
        alice.accept_request(b"\x01" * 16, now=mesh.now)
    with pytest.raises(LocalProtocolError, match="no attachment addressed to us"):
        alice.fetch_attachment(b"\x02" * 32, now=mesh.now)
    alice.discard_attachment(b"\x02" * 32, now=mesh.now)  # nothing to forget: no effect
    mesh.run()
    assert len(alice.attachments) == 0
