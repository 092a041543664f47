"""The one driver interface and the one order in which a ``Persist`` is applied."""

from __future__ import annotations

import inspect

import pytest

from meshmsg.core.driver import DriverInterface, apply_persist
from meshmsg.core.effects import Persist, RecordKind, StoredRecord
from meshmsg.core.node import Node
from meshmsg.sim.host import RecordStore
from tests.helpers import Mesh

C, E = RecordKind.CONTACT, RecordKind.ENVELOPE


class DictSink:
    """A record sink that also logs the calls it received, in order."""

    def __init__(self) -> None:
        self.records: dict[tuple[RecordKind, bytes], bytes] = {}
        self.calls: list[str] = []

    def put(self, kind: RecordKind, key: bytes, value: bytes) -> None:
        self.calls.append(f"put {kind.name} {key!r}")
        self.records[(kind, key)] = value

    def delete(self, kind: RecordKind, key: bytes) -> None:
        self.calls.append(f"delete {kind.name} {key!r}")
        self.records.pop((kind, key), None)


def put(kind: RecordKind, key: bytes, value: bytes) -> StoredRecord:
    return StoredRecord(kind=kind, key=key, value=value)


def test_node_is_a_driver_interface() -> None:
    node = Mesh(["a"]).nodes["a"]
    interface: DriverInterface = node  # mypy checks the same in core/node.py
    assert isinstance(interface, DriverInterface)
    assert not isinstance(object(), DriverInterface)


def test_the_interface_names_exactly_the_driver_inputs_and_outputs() -> None:
    names = {n for n, _ in inspect.getmembers(DriverInterface) if not n.startswith("_")}
    assert names == {
        "link_opened", "receive_data", "link_lost", "peer_discovered", "handle_timer",
        "storage_committed", "next_effect", "next_event", "next_deadline",
    }  # fmt: skip
    for name in names:
        ours = inspect.signature(getattr(DriverInterface, name))
        assert inspect.signature(getattr(Node, name)).parameters.keys() == ours.parameters.keys()


def test_puts_are_applied_before_deletes_whatever_the_listing() -> None:
    sink = DictSink()
    persist = Persist(token=1, puts=(put(C, b"k", b"v"),), deletes=((C, b"k"),))
    apply_persist(persist, sink)
    assert sink.records == {}  # put then deleted: a key both put and deleted ends up deleted
    assert sink.calls == ["put CONTACT b'k'", "delete CONTACT b'k'"]


def test_a_later_put_of_the_same_key_wins() -> None:
    sink = DictSink()
    apply_persist(Persist(token=1, puts=(put(C, b"k", b"old"), put(C, b"k", b"new"))), sink)
    assert sink.records == {(C, b"k"): b"new"}


def test_deleting_an_absent_key_does_nothing_and_other_keys_stay() -> None:
    sink = DictSink()
    apply_persist(Persist(token=1, puts=(put(C, b"a", b"1"), put(E, b"a", b"2"))), sink)
    apply_persist(Persist(token=2, deletes=((C, b"a"), (C, b"missing"))), sink)
    assert sink.records == {(E, b"a"): b"2"}  # same key, other kind: untouched


def test_applying_the_same_persist_twice_gives_the_same_state() -> None:
    persist = Persist(token=1, puts=(put(C, b"a", b"1"), put(C, b"b", b"2")), deletes=((C, b"b"),))
    once, twice = DictSink(), DictSink()
    apply_persist(persist, once)
    apply_persist(persist, twice)
    apply_persist(persist, twice)
    assert once.records == twice.records == {(C, b"a"): b"1"}


@pytest.mark.parametrize(
    ("persist", "left"),
    [
        (Persist(token=1, puts=(put(C, b"k", b"v"),), deletes=((C, b"k"),)), {}),
        (Persist(token=1, puts=(put(C, b"k", b"1"), put(C, b"k", b"2"))), {(C, b"k"): b"2"}),
    ],
)
def test_the_simulator_applies_persists_in_the_same_order(
    persist: Persist, left: dict[tuple[RecordKind, bytes], bytes]
) -> None:
    store, sink = RecordStore(), DictSink()
    store.apply(persist)
    apply_persist(persist, sink)
    assert store.snapshot() == sink.records == left
