"""The group book end to end, with pairwise channels and relays replaced by direct delivery.

Members who are offline get their pairwise records and group envelopes later, in the order a
mesh would hand them over (any order); the node-level tests do the same over real links.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import pytest

from meshmsg.config import NodeConfig
from meshmsg.core.envelope import parse_envelope
from meshmsg.core.groups.book import GroupBook, Outgoing
from meshmsg.core.groups.ops import OpKind
from meshmsg.core.groups.records import GroupKey, GroupOps, GroupReceipt
from meshmsg.core.identity import peer_id_of
from meshmsg.errors import GroupError, InvalidMessage
from meshmsg.sim.rng import SeededRng
from tests.core.group_fixtures import people

T0 = 1_000 * 86_400.0
TTL = 86_400.0


@dataclass
class Mesh:
    books: dict[str, GroupBook]
    online: set[str]
    mail: dict[str, list[tuple[str, object]]] = field(default_factory=lambda: defaultdict(list))
    envelopes: list[bytes] = field(default_factory=list)  # every group envelope ever sent
    seen: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    inbox: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    @classmethod
    def of(cls, *names: str) -> Mesh:
        p = people(*names, seed=5)
        config = NodeConfig()
        books = {n: GroupBook(p[n], config, SeededRng(i, n)) for i, n in enumerate(names)}
        return cls(books, set(names))

    def name_of(self, peer_id: bytes) -> str:
        return next(n for n, b in self.books.items() if peer_id_of(b.me) == peer_id)

    def post(self, sender: str, outgoing: list[Outgoing]) -> None:
        for out in outgoing:
            to = self.name_of(out.peer_id)
            self.mail[to].extend((sender, r) for r in out.records)
        self.pump()

    def pump(self) -> None:
        busy = True
        while busy:
            busy = False
            for name in sorted(self.online):
                queue, self.mail[name] = self.mail[name], []
                for sender, record in queue:
                    busy = True
                    self.post(sender=name, outgoing=self.handle(name, sender, record))
                busy = self.open_envelopes(name) or busy

    def handle(self, name: str, sender: str, record: object) -> list[Outgoing]:
        book, key = self.books[name], self.books[sender].me
        if isinstance(record, GroupOps):
            return book.on_ops(key, record, T0)[1]
        if isinstance(record, GroupKey):
            book.on_key(key, record, T0)
        elif isinstance(record, GroupReceipt):
            book.on_receipt(key, record)
        return []

    def open_envelopes(self, name: str) -> bool:
        book, opened = self.books[name], False
        for n, data in enumerate(self.envelopes):
            if n in self.seen[name]:
                continue
            envelope = parse_envelope(data)
            found = book.lookup(envelope.tag)
            if found is None:
                continue
            self.seen[name].add(n)
            message, out = book.open(found[0], envelope, found[1], T0)
            if message is not None:
                self.inbox[name].append(message.body)
            self.post(name, out)
            opened = True
        return opened

    def send(self, name: str, group: str, body: str) -> None:
        book = self.books[name]
        sealed = book.seal_text(book.find(group), body, T0, TTL)
        self.post(name, sealed.shares)  # keys travel before the envelope leaves
        self.envelopes.append(sealed.envelope)
        self.pump()

    def members(self, name: str, group: str) -> set[str]:
        book = self.books[name]
        keys = set(book.find(group).group.state.members)
        return {n for n, b in self.books.items() if b.me in keys}


def test_a_group_of_four_with_one_member_offline_during_a_removal() -> None:
    mesh = Mesh.of("alice", "bob", "carol", "dave")
    alice = mesh.books["alice"]
    entry, out = alice.create(
        "cell", [mesh.books[n].identity.public for n in ("bob", "carol", "dave")], T0
    )
    mesh.post("alice", out)
    mesh.send("alice", "cell", "welcome")
    assert all(mesh.inbox[n] == ["welcome"] for n in ("bob", "carol", "dave"))
    mesh.online.discard("dave")  # dave is away
    mesh.post("alice", alice.change(entry, OpKind.REMOVE, T0,
                                    target=mesh.books["carol"].me))  # fmt: skip
    mesh.send("alice", "cell", "one")
    mesh.send("bob", "cell", "two")
    assert mesh.inbox["bob"] == ["welcome", "one"]
    assert mesh.inbox["carol"] == ["welcome"]  # removed: reads neither
    assert mesh.members("carol", "cell") == {"alice", "bob", "dave"}  # it knows it is out
    mesh.online.add("dave")
    mesh.pump()
    assert mesh.inbox["dave"] == ["welcome", "one", "two"]
    assert mesh.inbox["carol"] == ["welcome"]
    views = {frozenset(mesh.members(n, "cell")) for n in ("alice", "bob", "dave")}
    assert views == {frozenset({"alice", "bob", "dave"})}


def test_a_member_added_later_reads_from_then_on() -> None:
    mesh = Mesh.of("alice", "bob", "erin")
    alice = mesh.books["alice"]
    entry, out = alice.create("ops", [mesh.books["bob"].identity.public], T0)
    mesh.post("alice", out)
    mesh.send("alice", "ops", "before erin")
    mesh.send("bob", "ops", "bob before erin")
    mesh.post("alice", alice.change(entry, OpKind.ADD, T0,
                                    target=mesh.books["erin"].identity.public))  # fmt: skip
    mesh.send("alice", "ops", "hello erin")
    mesh.send("bob", "ops", "hi erin")
    assert mesh.inbox["erin"] == ["hello erin", "hi erin"]
    assert mesh.members("erin", "ops") == {"alice", "bob", "erin"}


def test_receipts_are_counted_per_member() -> None:
    mesh = Mesh.of("alice", "bob", "carol")
    alice = mesh.books["alice"]
    _, out = alice.create("x", [mesh.books[n].identity.public for n in ("bob", "carol")], T0)
    mesh.post("alice", out)
    mesh.send("alice", "x", "m")
    (message,) = alice.find("x").messages.values()
    assert len(message.delivered) == 2
    assert not message.read
    bob = mesh.books["bob"]
    mesh.post("bob", bob.mark_read(bob.find("x"), [message.message_id]))
    assert message.read == {bob.me}


def test_a_forged_envelope_is_refused() -> None:
    mesh = Mesh.of("alice", "bob")
    alice, bob = mesh.books["alice"], mesh.books["bob"]
    _, out = alice.create("x", [bob.identity.public], T0)
    mesh.post("alice", out)
    sealed = alice.seal_text(alice.find("x"), "m", T0, TTL)
    mesh.post("alice", sealed.shares)
    data = bytearray(sealed.envelope)
    data[-1] ^= 1
    envelope = parse_envelope(bytes(data))
    found = bob.lookup(envelope.tag)
    assert found is not None
    with pytest.raises(InvalidMessage):
        bob.open(found[0], envelope, found[1], T0)


def test_errors_are_clear() -> None:
    mesh = Mesh.of("alice", "bob")
    alice = mesh.books["alice"]
    with pytest.raises(GroupError, match="no group"):
        alice.find("nope")
    entry, _ = alice.create("x", [], T0)
    with pytest.raises(GroupError, match="already a member"):
        alice.change(entry, OpKind.ADD, T0, target=alice.identity.public)
    alice.change(entry, OpKind.LEAVE, T0)
    with pytest.raises(GroupError, match="no longer a member"):
        alice.seal_text(entry, "m", T0, TTL)


def test_a_hundred_member_group_reaches_a_member_whose_history_comes_in_reverse() -> None:
    names = [f"m{i}" for i in range(101)]
    mesh = Mesh.of(*names)
    first = mesh.books["m0"]
    entry, out = first.create("big", [mesh.books[n].identity.public for n in names[1:]], T0)
    assert len(entry.group.state.members) == 101
    to_last = next(o for o in out if o.peer_id == peer_id_of(mesh.books["m100"].me))
    assert len(to_last.records) == 2  # 101 operations: more than one record
    last = mesh.books["m100"]
    sealed = first.seal_text(entry, "all hands", T0, TTL)
    key = next(o for o in sealed.shares if o.peer_id == peer_id_of(last.me))
    for record in key.records:  # the chain outruns the operations
        last.on_key(first.me, record, T0)  # type: ignore[arg-type]
    for record in reversed(to_last.records):  # and the history arrives backwards
        last.on_ops(first.me, record, T0)  # type: ignore[arg-type]
    assert len(last.find("big").group.state.members) == 101
    envelope = parse_envelope(sealed.envelope)
    found = last.lookup(envelope.tag)
    assert found is not None
    message, _ = last.open(found[0], envelope, found[1], T0)
    assert message is not None
    assert message.body == "all hands"


def test_a_group_we_are_not_in_is_never_listed() -> None:
    mesh = Mesh.of("alice", "bob", "mallory")
    mallory, alice = mesh.books["mallory"], mesh.books["alice"]
    for n in range(mallory.limits.max_groups):  # a contact floods us with groups
        _, out = mallory.create(f"junk{n}", [mesh.books["bob"].identity.public], T0)
        for record in out[0].records:
            alice.on_ops(mallory.me, record, T0)  # type: ignore[arg-type]
    assert alice.entries == {}
    bob = mesh.books["bob"]
    _, out = bob.create("real", [alice.identity.public], T0)
    to_alice = next(o for o in out if o.peer_id == peer_id_of(alice.me))
    for record in to_alice.records:
        alice.on_ops(bob.me, record, T0)  # type: ignore[arg-type]
    assert [e.group.state.name for e in alice.entries.values()] == ["real"]
