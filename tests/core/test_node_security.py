"""Node-level security: forward secrecy and healing of stolen devices, replays, bit flips, what
relays learn.

A *stolen device* is a node rebuilt from a copy of another node's committed records (and its
identity): everything an attacker who images the disk gets. Captured envelopes are fed to nodes
through an :class:`~tests.core.node_tools.Injector`, a hand-driven peer on a real link.
"""

from __future__ import annotations

import math

from meshmsg.config import MessageLimits
from meshmsg.core.envelope import HEADER_BYTES, envelope_id, parse_envelope
from meshmsg.core.events import (
    ContactHealed,
    EnvelopeAccepted,
    LinkClosed,
    MessageReceived,
    MessageStatus,
    MessageStatusChanged,
)
from meshmsg.core.keyschedule import receive_window
from meshmsg.core.wire import Record, encode_records
from tests.core.node_tools import (
    AttackMesh,
    events_of,
    opens_with_any_key,
    own_envelopes,
    prompt_returns,
)

LIMITS = MessageLimits()
DAY = LIMITS.period_s
TAG_BITS = range(2 * 8, 18 * 8)  # header bytes 2..17 hold the tag


def received(mesh: AttackMesh, name: str) -> list[MessageReceived]:
    return [e for e in events_of(mesh, name, MessageReceived) if isinstance(e, MessageReceived)]


def paired_mesh(names: list[str]) -> AttackMesh:
    """alice and bob paired at a real meeting (not offline), plus the other named nodes."""
    mesh = AttackMesh(names)
    mesh.befriend("alice", "bob")
    mesh.connect("alice", "bob")
    mesh.disconnect("alice", "bob")
    return mesh


def secrets_of(mesh: AttackMesh, name: str, stolen: dict[object, bytes]) -> list[bytes]:
    """What a thief holds: every committed record and the device's identity secrets."""
    return [*stolen.values(), mesh.identities[name].to_bytes()]


def seconds_to_next_period(now: float) -> float:
    return (math.floor(now / DAY) + 1) * DAY - now


# ------------------------------------------------------------------------- forward secrecy


def test_a_device_stolen_after_the_window_cannot_open_mail_captured_earlier() -> None:
    mesh = paired_mesh(["alice", "bob"])
    bob_id = mesh.peer_id("bob")
    mesh.stop("bob")
    mesh.nodes["alice"].send_message(bob_id, "delivered, then the keys go", now=mesh.now)
    mesh.run()
    (delivered,) = own_envelopes(mesh.nodes["alice"])
    mesh.start("bob")
    mesh.connect("alice", "bob")
    mesh.disconnect("alice", "bob")
    mesh.nodes["alice"].send_message(bob_id, "captured in transit, never delivered", now=mesh.now)
    mesh.run()
    (lost,) = own_envelopes(mesh.nodes["alice"])
    mesh.stop("alice")  # "lost" never reaches bob: alice is gone, the attacker kept a copy
    assert [r.body for r in received(mesh, "bob")] == ["delivered, then the keys go"]

    # Control: a copy taken inside the window opens the captured envelope, so the key search
    # below is able to find a key when one is there.
    early = dict(mesh.persisted["bob"])
    assert opens_with_any_key(secrets_of(mesh, "bob", early), lost, LIMITS)
    early_thief = mesh.clone("early thief", "bob", early)
    mesh.inject("early thief", mesh.stranger("early relay")).transfer([lost])
    assert [r.body for r in received(mesh, "early thief")] == [
        "captured in transit, never delivered"
    ]
    mesh.stop("early thief")
    assert early_thief is not None

    # Bob keeps running past the receive window: its timers ratchet and persist the keys.
    period_before = mesh.nodes["bob"].contacts.require(mesh.peer_id("alice")).channel
    assert period_before is not None
    start_period = period_before.period
    mesh.advance(receive_window(LIMITS) * DAY)
    channel = mesh.nodes["bob"].contacts.require(mesh.peer_id("alice")).channel
    assert channel is not None
    assert channel.period >= start_period + receive_window(LIMITS)

    late = dict(mesh.persisted["bob"])
    for envelope in (delivered, lost):
        assert not opens_with_any_key(secrets_of(mesh, "bob", late), envelope, LIMITS)
    assert not any(b"captured in transit" in value for value in late.values())
    mesh.clone("thief", "bob", late)
    injector = mesh.inject("thief", mesh.stranger("relay"))
    injector.transfer([delivered, lost])
    assert injector.up
    assert received(mesh, "thief") == []


def test_a_device_stolen_before_a_meeting_can_neither_read_nor_forge_after_it() -> None:
    mesh = paired_mesh(["alice", "bob"])
    alice_id, bob_id = mesh.peer_id("alice"), mesh.peer_id("bob")
    stolen = {name: dict(mesh.persisted[name]) for name in ("alice", "bob")}
    mesh.advance(60)
    mesh.connect("alice", "bob")  # the meeting heals both directions
    mesh.disconnect("alice", "bob")
    assert events_of(mesh, "alice", ContactHealed)
    assert events_of(mesh, "bob", ContactHealed)
    mesh.nodes["alice"].send_message(bob_id, "after the meeting", now=mesh.now)
    mesh.nodes["bob"].send_message(alice_id, "reply after the meeting", now=mesh.now)
    mesh.run()
    (to_bob,) = own_envelopes(mesh.nodes["alice"])
    (to_alice,) = own_envelopes(mesh.nodes["bob"])

    for victim, envelope in (("bob", to_bob), ("alice", to_alice)):
        assert not opens_with_any_key(secrets_of(mesh, victim, stolen[victim]), envelope, LIMITS)
        thief = mesh.clone(f"thief of {victim}", victim, stolen[victim])
        thief.handle_timer(now=mesh.now)  # a thief may let its copy's clock run on
        assert thief.tags.lookup(parse_envelope(envelope).tag) is None
        injector = mesh.inject(f"thief of {victim}", mesh.stranger(f"relay to {victim}"))
        injector.transfer([envelope])
        assert injector.up
        assert received(mesh, f"thief of {victim}") == []

    # The thief of bob's old state writes to alice as bob: alice does not take it as bob's.
    mesh.nodes["thief of bob"].send_message(alice_id, "forged", now=mesh.now)
    mesh.run()
    forged = [e for e in own_envelopes(mesh.nodes["thief of bob"]) if e != to_bob]
    assert len(forged) == 1
    assert mesh.nodes["alice"].tags.lookup(parse_envelope(forged[0]).tag) is None
    mesh.inject("alice", mesh.stranger("forger's relay")).transfer(forged)
    assert received(mesh, "alice") == []

    # The real devices still talk.
    mesh.connect("alice", "bob")
    assert [r.body for r in received(mesh, "bob")] == ["after the meeting"]
    assert [r.body for r in received(mesh, "alice")] == ["reply after the meeting"]


# ------------------------------------------------------------------------------- replays


def test_ten_thousand_replayed_envelopes_are_never_accepted_twice() -> None:
    mesh = AttackMesh(["alice", "relay", "bob"], config=prompt_returns())
    mesh.befriend("alice", "bob", pair=True)
    bob_id = mesh.peer_id("bob")
    mesh.stop("bob")
    sent = [mesh.nodes["alice"].send_message(bob_id, f"m{i}", now=mesh.now) for i in range(100)]
    mesh.run()
    captured = own_envelopes(mesh.nodes["alice"])
    assert len(captured) == 100
    # The ordinary route first: alice -> relay -> bob, receipts and purge tokens back.
    mesh.connect("alice", "relay")
    mesh.disconnect("alice", "relay")
    mesh.start("bob")
    mesh.connect("relay", "bob")
    mesh.advance(5)
    mesh.disconnect("relay", "bob")
    mesh.connect("alice", "relay")
    mesh.disconnect("alice", "relay")
    assert sorted(r.message_id for r in received(mesh, "bob")) == sorted(sent)
    final = {e.message_id: e.status for e in events_of(mesh, "alice", MessageStatusChanged)
             if isinstance(e, MessageStatusChanged)}  # fmt: skip
    assert final == dict.fromkeys(sent, MessageStatus.DELIVERED)

    attempts = 0
    ids = {envelope_id(e) for e in captured}

    def replay(target: str, label: str, rounds: int = 20) -> None:
        nonlocal attempts
        identity = mesh.identities[label] if label in mesh.identities else mesh.stranger(label)
        for _ in range(rounds):
            injector = mesh.inject(target, identity)
            injector.transfer(captured)
            attempts += len(captured)
            assert injector.up  # a replay is a bad message, not a broken link
            accepted, refused = injector.custody()
            assert accepted | refused == ids  # every replay reached the node and was answered
            injector.close()

    replay("bob", "relay")  # the same relay again
    replay("bob", "another relay")
    mesh.stop("bob")
    mesh.start("bob")
    replay("bob", "after a restart")
    period = mesh.nodes["bob"].contacts.require(mesh.peer_id("alice")).channel
    assert period is not None
    before = period.period
    mesh.advance(seconds_to_next_period(mesh.now) + 60)
    assert all(parse_envelope(e).expiry_at > mesh.now for e in captured)  # still alive
    channel = mesh.nodes["bob"].contacts.require(mesh.peer_id("alice")).channel
    assert channel is not None
    assert channel.period == before + 1
    replay("bob", "after the period rolled over")
    replay("alice", "reflector")  # reflected to the sender
    assert attempts == 10_000
    assert sorted(r.message_id for r in received(mesh, "bob")) == sorted(sent)
    assert received(mesh, "alice") == []
    # Nobody turned into a carrier of mail that was already delivered.
    for name in ("alice", "bob"):
        assert not ids & {item.envelope_id for item in mesh.nodes[name].store.items()}


# ------------------------------------------------------------------------------ tampering


def test_every_single_bit_flip_of_an_envelope_is_rejected() -> None:
    mesh = AttackMesh(["alice", "bob"])
    mesh.befriend("alice", "bob", pair=True)
    mesh.stop("bob")
    mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "flip me", now=mesh.now)
    mesh.run()
    (genuine,) = own_envelopes(mesh.nodes["alice"])
    mesh.start("bob")
    flips: list[bytes] = []
    for bit in range(len(genuine) * 8):
        bad = bytearray(genuine)
        bad[bit // 8] ^= 1 << (bit % 8)
        flips.append(bytes(bad))
    injector = mesh.inject("bob", mesh.stranger("flipper"))
    injector.transfer(flips, batch=256)
    assert injector.up
    assert received(mesh, "bob") == []
    accepted, refused = injector.custody()
    for bit, data in enumerate(flips):
        if bit in TAG_BITS:
            continue  # a foreign tag: bob may carry it for someone else, never open it
        assert envelope_id(data) not in accepted
        if bit >= HEADER_BYTES * 8:
            assert envelope_id(data) in refused  # ours by its tag, failed authentication
    assert not any(isinstance(e, EnvelopeAccepted) and e.for_us for e in mesh.events["bob"])
    # The flips burnt nothing: the genuine envelope opens, once.
    injector.transfer([genuine])
    injector.transfer([genuine])
    assert [r.body for r in received(mesh, "bob")] == ["flip me"]
    assert not [e for e in events_of(mesh, "bob", LinkClosed)
                if isinstance(e, LinkClosed) and e.link == injector.link_id]  # fmt: skip


# ------------------------------------------------------------------------ what relays see


def test_a_middle_relay_learns_neither_sender_nor_recipient_nor_body() -> None:
    mesh = AttackMesh(["alice", "r1", "r2", "r3", "bob"])
    mesh.befriend("alice", "bob", pair=True)
    seen: list[Record] = []
    middle = mesh.nodes["r2"]
    exchange = middle._exchange  # the one place every record of a live link goes through
    handle = exchange.handle

    def recording(session: object, record: Record, now: float) -> None:
        seen.append(record)
        handle(session, record, now)  # type: ignore[arg-type]

    exchange.handle = recording  # type: ignore[method-assign]
    body = "the key is under the third stone"
    mesh.stop("bob")
    mid = mesh.nodes["alice"].send_message(mesh.peer_id("bob"), body, now=mesh.now)
    for a, b in (("alice", "r1"), ("r1", "r2"), ("r2", "r3")):
        mesh.connect(a, b)
        mesh.disconnect(a, b)
    mesh.start("bob")
    # Spray-and-Wait: alice 6 -> r1 3 -> r2 1, and a last copy only goes to its recipient.
    assert not any(isinstance(e, EnvelopeAccepted) for e in mesh.events["r3"])
    mesh.connect("r2", "bob")
    assert [r.message_id for r in received(mesh, "bob")] == [mid]
    assert any(isinstance(e, EnvelopeAccepted) for e in mesh.events["r2"])
    hidden = [body.encode()]
    for name in ("alice", "bob"):
        public = mesh.identities[name].public
        hidden += [mesh.peer_id(name), public.identity_key, public.noise_key, public.e2e_key]
    exposure = [encode_records([r]) for r in seen] + list(mesh.persisted["r2"].values())
    exposure += [repr(e).encode() for e in mesh.events["r2"]]
    for blob in exposure:
        assert not any(secret in blob for secret in hidden)
