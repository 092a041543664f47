"""A peer whose handshake lies about who it is loses the link before anything is exchanged:
two identity proofs, a proof of another device's Noise key, our own identity, or a contact's
identity with a device key other than its contact code; a blocked contact is refused too."""

from __future__ import annotations

from meshmsg.core.events import LinkClosed
from meshmsg.core.identity import ContactCard, Identity
from meshmsg.core.link import Link
from meshmsg.core.records import SESSION_RECORDS, Hello, IdentityProof
from meshmsg.core.wire import Record
from meshmsg.sim.rng import SeededRng
from tests.core.node_tools import AttackMesh, Injector


def _peer(mesh: AttackMesh, noise: Identity, records: list[Record]) -> Injector:
    """A hand-driven peer with ``noise``'s Noise key that sends ``records`` in its handshake."""
    link_id = mesh._next_link
    mesh._next_link += 1
    peer = Injector(mesh, "carol", noise, link_id)
    peer.link = Link(
        initiator=True, static_private=noise.noise_private, config=mesh.configs["carol"],
        rng=SeededRng(link_id, "liar"), now=mesh.now, handshake_records=records,
        decide=peer._decide, registry=SESSION_RECORDS,
    )  # fmt: skip
    mesh.injectors[("carol", link_id)] = peer
    mesh.nodes["carol"].link_opened(link_id, initiator=False, now=mesh.now)
    peer.flush()
    mesh.run()
    return peer


def _hello() -> Hello:
    return Hello(version=1, capabilities=(1,), agent="liar")


def _proof(who: Identity) -> IdentityProof:
    return IdentityProof(public=who.public.to_bytes())


def _closed(mesh: AttackMesh) -> list[str]:
    return [e.detail for e in mesh.of_type("carol", LinkClosed)]


def test_handshakes_that_lie_about_the_identity_are_refused() -> None:
    mesh = AttackMesh(["carol"])
    eve, other = mesh.stranger("eve"), mesh.stranger("other")
    cases: list[tuple[list[Record], Identity, str]] = [
        ([_hello(), _proof(eve), _proof(eve)], eve, "exactly one IdentityProof"),
        ([_hello()], eve, "exactly one IdentityProof"),
        ([_hello(), _proof(other)], eve, "identity proof names another Noise key"),
        ([_hello(), _proof(mesh.identities["carol"])], mesh.identities["carol"], "our own"),
    ]
    for records, noise, reason in cases:
        peer = _peer(mesh, noise, records)
        assert not peer.up, reason
        assert any(reason in detail for detail in _closed(mesh)), (reason, _closed(mesh))
    assert len(mesh.nodes["carol"].sessions) == 0


def test_a_contact_with_another_device_key_or_blocked_is_refused() -> None:
    mesh = AttackMesh(["carol"])
    frank = mesh.stranger("frank")
    carol = mesh.nodes["carol"]
    carol.add_contact(ContactCard(public=frank.public, name="frank"), verified=True, now=mesh.now)
    reinstalled = Identity.generate(SeededRng(8, "reinstalled"))
    impostor = Identity(
        signing_seed=frank.signing_seed,
        noise_private=reinstalled.noise_private,
        e2e_private=reinstalled.e2e_private,
    )
    peer = _peer(mesh, impostor, [_hello(), _proof(impostor)])
    assert not peer.up
    assert any("different device key" in d for d in _closed(mesh))
    carol.set_blocked(frank.public.peer_id, True, now=mesh.now)
    mesh.run()
    peer = _peer(mesh, frank, [_hello(), _proof(frank)])
    assert not peer.up
    assert len(carol.sessions) == 0
