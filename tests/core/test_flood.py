"""A Sybil flood: 1,000 fresh identities push mail into a relay with a small store.

The relay (``relay``) is a contact of alice and bob, who write to each other only through it.
Between its meetings with them, waves of strangers — each a new identity with a real Noise
handshake — push well-formed envelopes (real format, random keys: a relay cannot tell) as
unsolicited ``Transfer`` records. The store's tier quotas must hold after every single link,
and the contacts' mail must still get through.
"""

from __future__ import annotations

from collections import defaultdict

from meshmsg.config import MessageLimits, NodeConfig, StoreConfig
from meshmsg.core.effects import RecordKind
from meshmsg.core.envelope import seal_envelope
from meshmsg.core.events import EnvelopeDropped, MessageReceived
from meshmsg.core.store import Tier
from meshmsg.sim.rng import SeededRng
from tests.core.node_tools import AttackMesh

STORE = StoreConfig(max_store_bytes=256 * 1024, max_store_envelopes=200)
STRANGERS = 1_000
PER_STRANGER = 4  # envelopes each stranger pushes
WAVES = 10
MAIL_PER_WAVE = 30  # alice -> bob through the relay, per wave


def check_caps(mesh: AttackMesh, name: str) -> None:
    """The store is within every bound of its configuration, and the reconciliation set and
    the committed records name exactly what it holds."""
    node = mesh.nodes[name]
    store, cfg = node.store, node.config.store
    ids = {item.envelope_id for item in store.items()}
    assert set(node.items) == ids | {s.item_id for s in node.tombstones if s.believed}
    assert {key for kind, key in mesh.persisted[name] if kind is RecordKind.ENVELOPE} == ids
    assert store.total_bytes <= cfg.max_store_bytes
    assert len(store) <= cfg.max_store_envelopes
    assert store.bytes_in(Tier.STRANGER) <= cfg.max_store_bytes * cfg.strangers_total_fraction
    share = 1.0 - cfg.contact_reserved_fraction
    assert store.bytes_in(Tier.CONTACT) <= cfg.max_store_bytes * share
    by_source: dict[bytes, int] = defaultdict(int)
    for item in store.items():
        if item.tier is Tier.STRANGER:
            by_source[item.source or b""] += item.size
    assert all(v <= cfg.max_store_bytes * cfg.stranger_quota_fraction for v in by_source.values())
    assert sum(by_source.values()) == store.bytes_in(Tier.STRANGER)


def junk(rng: SeededRng, expiry_at: int, limits: MessageLimits) -> bytes:
    """A well-formed envelope under a random key: to a relay, just mail for someone."""
    return seal_envelope(
        key=rng.randbytes(32), tag=rng.randbytes(16), expiry_at=expiry_at,
        inner=rng.randbytes(64), rng=rng, limits=limits,
    )  # fmt: skip


def test_a_flood_from_a_thousand_identities_stays_in_its_slice_and_mail_gets_through() -> None:
    config = NodeConfig(store=STORE)
    mesh = AttackMesh(["alice", "relay", "bob"], config=config)
    mesh.befriend("alice", "bob", pair=True)
    mesh.befriend("alice", "relay", verified=False)  # an unverified contact: the capped tier
    mesh.befriend("bob", "relay", verified=False)
    bob_id = mesh.peer_id("bob")
    rng = SeededRng(7, "flood")
    limits = config.message
    sent: list[bytes] = []
    pushed = refused = 0
    mesh.stop("bob")
    for wave in range(WAVES):
        for i in range(STRANGERS // WAVES):
            stranger = mesh.stranger(f"{wave}:{i}")
            injector = mesh.inject("relay", stranger)
            expiry = int(mesh.now + limits.default_ttl_s)
            injector.transfer([junk(rng, expiry, limits) for _ in range(PER_STRANGER)])
            accepted, rejected = injector.custody()
            pushed += PER_STRANGER
            refused += len(rejected)
            assert len(accepted) + len(rejected) == PER_STRANGER
            injector.close()
            check_caps(mesh, "relay")
        alice = mesh.nodes["alice"]
        sent += [alice.send_message(bob_id, f"w{wave}", now=mesh.now) for _ in range(MAIL_PER_WAVE)]
        mesh.connect("alice", "relay")
        check_caps(mesh, "relay")
        mesh.disconnect("alice", "relay")
        if wave % 2 == 1:
            mesh.start("bob")
            mesh.connect("relay", "bob")
            check_caps(mesh, "relay")
            mesh.advance(5)  # receipts travel back to the relay
            mesh.stop("bob")
        mesh.advance(60)
        check_caps(mesh, "relay")
        if wave == WAVES // 2:
            mesh.stop("relay")  # a crash: the relay comes back from what it committed
            mesh.start("relay")
            check_caps(mesh, "relay")
    got = {e.message_id for e in mesh.events["bob"] if isinstance(e, MessageReceived)}
    delivered = len(got & set(sent)) / len(sent)
    assert delivered >= 0.99
    # The flood was real: it filled its slice, was refused beyond it, and was evicted for
    # the contacts' mail once the item cap was reached.
    assert refused > pushed // 2
    evicted = [e for e in mesh.events["relay"]
               if isinstance(e, EnvelopeDropped) and e.reason.name == "EVICTED"]  # fmt: skip
    assert evicted
    print(f"flood: {pushed} pushed, {refused} refused, {len(evicted)} evicted; "
          f"contact mail delivered {delivered:.1%} of {len(sent)}")  # fmt: skip
