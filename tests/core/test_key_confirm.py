"""A KeyConfirm out of turn (from a stranger, or from a contact before its key share) is a
protocol violation: that link closes and the channel is untouched."""

from __future__ import annotations

from meshmsg.core.events import LinkClosed
from meshmsg.core.identity import ContactCard
from meshmsg.core.records import KeyConfirm
from tests.core.node_tools import AttackMesh


def _closed_for(mesh: AttackMesh, detail: str) -> bool:
    return any(detail in e.detail for e in mesh.of_type("carol", LinkClosed))


def test_a_key_confirm_out_of_turn_closes_the_link() -> None:
    mesh = AttackMesh(["carol"])
    stranger = mesh.inject("carol", mesh.stranger("eve"))
    stranger.send([KeyConfirm(confirmation=b"c" * 16)])
    assert not stranger.up
    assert _closed_for(mesh, "unexpected KeyConfirm")

    frank = mesh.stranger("frank")
    carol = mesh.nodes["carol"]
    carol.add_contact(ContactCard(public=frank.public, name="frank"), verified=True, now=mesh.now)
    mesh.run()
    contact = mesh.inject("carol", frank)
    contact.send([KeyConfirm(confirmation=b"c" * 16)])  # before any KeyExchange of its own
    assert not contact.up
    known = carol.contacts.get(frank.public.peer_id)
    assert known is not None
    assert known.channel is None  # nothing was paired by it
