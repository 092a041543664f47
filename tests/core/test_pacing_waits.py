"""Why an unsealed message waits, and until when: each reason of ``seal_wait`` from the state
of the contact, and the time ``wait_until`` gives only for the channel budget."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

from meshmsg.config import MessageLimits, NodeConfig
from meshmsg.core.contacts import Contact
from meshmsg.core.pacing import SealWait, heals_live, seal_wait, wait_until
from tests.helpers import Mesh

LIMITS = dataclasses.replace(MessageLimits(), max_messages_per_period=1)


def _paired() -> tuple[Mesh, Contact]:
    mesh = Mesh(["alice", "bob"], config=NodeConfig(message=LIMITS))
    mesh.befriend("alice", "bob", pair=True)
    contact = mesh.nodes["alice"].contacts.get(mesh.peer_id("bob"))
    assert contact is not None
    assert contact.channel is not None
    return mesh, contact


def test_each_wait_reason_follows_the_contact_s_state() -> None:
    mesh, contact = _paired()
    now = mesh.now
    assert seal_wait(None, LIMITS, now) is SealWait.PAIRING
    unpaired = Contact(public=contact.public, name="bob", verified=True, added_at=now)
    assert seal_wait(unpaired, LIMITS, now) is SealWait.OUTBOX_ROOM  # first contact seals
    assert seal_wait(contact, LIMITS, now) is SealWait.OUTBOX_ROOM  # counters left
    contact.exchanging = True
    assert seal_wait(contact, LIMITS, now) is SealWait.KEY_EXCHANGE
    contact.exchanging = False
    mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "the only one", now=now)
    mesh.run()
    assert seal_wait(contact, LIMITS, now) is SealWait.CHANNEL_BUDGET


def test_only_the_channel_budget_has_a_known_end_the_next_period() -> None:
    mesh, contact = _paired()
    assert contact.channel is not None
    end = wait_until(contact, SealWait.CHANNEL_BUDGET, LIMITS)
    assert end == (contact.channel.period + 1) * LIMITS.period_s
    assert end > mesh.now
    for reason in (SealWait.PAIRING, SealWait.KEY_EXCHANGE, SealWait.OUTBOX_ROOM):
        assert wait_until(contact, reason, LIMITS) is None
    assert wait_until(None, SealWait.CHANNEL_BUDGET, LIMITS) is None


def test_a_link_whose_peer_has_not_introduced_itself_heals_nothing_live() -> None:
    before_handshake = SimpleNamespace(link=SimpleNamespace(peer=None))
    assert heals_live(before_handshake) is False  # type: ignore[arg-type]
