"""What one peer can make reconciliation hold, per session and per node (issue #11, finding 7).

Before the fix a 40-byte first message claiming an empty set (a count-0 SUM of the root) made
the responder copy its whole store into a set per session: 8.4 MB held for 4 sessions at
50,000 ids, and 256 links are allowed.
"""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from meshmsg.config import SyncConfig
from meshmsg.core.itemset import ItemSet
from meshmsg.core.reconcile import Reconciler
from meshmsg.errors import CloseReason, DecodeError
from meshmsg.sim.rng import SeededRng


def store(n: int, label: str = "store") -> ItemSet:
    rng = SeededRng(5, label)
    items = ItemSet()
    for _ in range(n):
        items.add(rng.randbytes(16), 10)
    return items


def empty_claim(config: SyncConfig) -> bytes:
    """The attacker's 40 bytes: a first message claiming an empty set."""
    return Reconciler(ItemSet(), initiator=True, salt=bytes(16), config=config).start()


def test_count_zero_sums_do_not_copy_the_store_per_session() -> None:
    config = SyncConfig()
    items = store(50_000)
    probe = empty_claim(config)
    assert len(probe) <= 40
    Reconciler(items, initiator=False, config=config).receive(probe)  # warm shared caches
    gc.collect()
    tracemalloc.start()
    try:
        sessions = []
        for _ in range(4):
            responder = Reconciler(items, initiator=False, config=config)
            responder.receive(probe)
            sessions.append(responder)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < 200_000  # was 8.4 MB: the store's ids in a new set per session


def full_session(initiator: Reconciler, responder: Reconciler) -> None:
    message: bytes | None = initiator.start()
    sides = (responder, initiator)
    turn = 0
    while message is not None:
        message = sides[turn % 2].receive(message)
        turn += 1


def test_an_empty_peer_still_learns_every_id() -> None:
    config = SyncConfig()
    items = store(5_000)
    responder = Reconciler(items, initiator=False, config=config)
    initiator = Reconciler(ItemSet(), initiator=True, salt=bytes(16), config=config)
    full_session(initiator, responder)
    assert responder.done
    assert set(responder.have_ids) == set(items)
    assert set(initiator.need_ids) == set(items)
    assert responder.held_ids == 0


def test_the_sessions_of_one_node_share_a_bound() -> None:
    config = SyncConfig(max_node_session_ids=12_000)
    items = store(5_000)
    probe = empty_claim(config)
    from meshmsg.core.reconcile import SyncBudget

    budget = SyncBudget(config.max_node_session_ids)
    first = Reconciler(items, initiator=False, config=config, budget=budget)
    first.receive(probe)
    second = Reconciler(items, initiator=False, config=config, budget=budget)
    second.receive(probe)
    third = Reconciler(items, initiator=False, config=config, budget=budget)
    with pytest.raises(DecodeError) as info:
        third.receive(probe)
    assert info.value.reason is CloseReason.LIMIT_REACHED
    del first  # a session dropped with its link gives its share back
    gc.collect()
    fourth = Reconciler(items, initiator=False, config=config, budget=budget)
    fourth.receive(probe)
    assert budget.held == 10_000
