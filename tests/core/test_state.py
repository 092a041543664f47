"""NodeState, Outbox and codec.restore_state: the core's state without a Node around it."""

from __future__ import annotations

from meshmsg.core import codec
from meshmsg.core.effects import Persist, RecordKind, StoredRecord
from meshmsg.core.events import LinkClosed
from meshmsg.core.exchange.receipts import RECEIPT_DELIVERED
from meshmsg.core.outbox import Outbox
from meshmsg.errors import CloseReason
from meshmsg.sim.rng import SeededRng
from tests.helpers import Mesh


def records_of(mesh: Mesh, name: str) -> list[StoredRecord]:
    return [StoredRecord(kind=k, key=key, value=v) for (k, key), v in mesh.persisted[name].items()]


def restore(mesh: Mesh, name: str) -> codec.Restored:
    return codec.restore_state(
        records_of(mesh, name),
        identity=mesh.identities[name],
        config=mesh.configs[name],
        rng=SeededRng(1, "restore"),
    )


def test_restore_state_rebuilds_contacts_mail_and_the_reconciliation_set() -> None:
    mesh = Mesh(["alice", "bob"])
    mesh.befriend("alice", "bob", pair=True)
    mid = mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "hi", now=mesh.now)
    mesh.run()
    restored = restore(mesh, "alice")
    state = restored.state
    assert not restored.empty
    assert state.contacts.get(mesh.peer_id("bob")) is not None
    message = state.conversations.get(mid)
    assert message is not None
    assert message.envelope_id is not None
    assert message.envelope_id in state.store
    assert message.envelope_id in state.items
    assert state.sessions == {}  # links never survive a restart
    assert restored.owed_receipts == []


def test_restore_state_hands_back_the_receipts_still_owed() -> None:
    mesh = Mesh(["alice", "bob"])
    mesh.befriend("alice", "bob", pair=True)
    mid = mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "hi", now=mesh.now)
    mesh.connect("alice", "bob")  # bob receives; its receipt waits receipt_delay_s to batch
    owed = restore(mesh, "bob").owed_receipts
    assert [(o.peer_id, o.kind, o.message_id) for o in owed] == [
        (mesh.peer_id("alice"), RECEIPT_DELIVERED, mid)
    ]


def test_a_first_start_restores_an_empty_state() -> None:
    restored = restore(Mesh(["alice"]), "alice")
    assert restored.empty
    assert len(restored.state.contacts) == 0
    assert len(restored.state.store) == 0


def test_outbox_runs_commit_actions_once_in_order() -> None:
    out = Outbox(now=5.0)
    ran: list[tuple[str, float]] = []
    first = out.persist([], then=lambda at: ran.append(("first", at)))
    second = out.persist([], deletes=[(RecordKind.META, b"k")])
    assert second == first + 1
    effect = out.next_effect()
    assert isinstance(effect, Persist)
    assert effect.token == first
    assert out.next_effect() == Persist(token=second, deletes=((RecordKind.META, b"k"),))
    assert out.next_effect() is None
    out.committed(second, 6.0)  # nothing waited for it
    out.committed(first, 7.0)
    out.committed(first, 8.0)  # a second answer runs nothing again
    assert ran == [("first", 7.0)]


def test_outbox_queues_events_and_link_effects_in_order() -> None:
    out = Outbox(now=0.0)
    closed = LinkClosed(link=3, reason=CloseReason.NORMAL, peer_id=None)
    out.emit(closed)
    out.dial("n7")
    out.close_link(3, CloseReason.NORMAL)
    assert out.next_event() == closed
    assert out.next_event() is None
    assert [type(e).__name__ for e in iter(out.next_effect, None)] == ["Dial", "CloseLink"]
