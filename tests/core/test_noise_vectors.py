"""Every Noise test vector for our suite, replayed through the adapter and the reference.

Sources (``tests/vectors/noise/``): the 49 published vectors for ``25519_ChaChaPoly_BLAKE2b``
from cacophony and snow's multi-PSK set, and meshmsg's own two (``Noise_XX`` and
``Noise_XXpsk0`` with the meshmsg prologue, which no public set covers). The own vectors come
from ``noise_reference.py``, an independent implementation on libsodium that must first pass
every published vector itself. Each vector is one test id; a vector the adapter cannot run is
skipped with the reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from meshmsg.config import PROLOGUE
from meshmsg.core.noise import SUITE, NoiseHandshake, NoiseTransport
from meshmsg.errors import LocalProtocolError
from tests.core import noise_reference as ref

VECTOR_DIR = Path(__file__).resolve().parent.parent / "vectors" / "noise"
PUBLISHED = VECTOR_DIR / "noise_25519_chachapoly_blake2b.json"
OWN = VECTOR_DIR / "meshmsg_vectors.json"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "vectors" / "noise" / PUBLISHED.name

# A static key for the side of a pattern that has none (NN, NK initiator...): the pattern never
# sends or mixes it, so it cannot change a byte of the transcript.
UNUSED_STATIC = b"\x01" * 32

Vector = dict[str, Any]


def load(path: Path) -> list[Vector]:
    vectors: list[Vector] = json.loads(path.read_text())["vectors"]
    return vectors


ALL = load(PUBLISHED) + load(OWN)


def vector_id(v: Vector) -> str:
    return f"{v['source']}:{v['protocol_name'].split('_')[1]}"


def pattern_of(v: Vector) -> str:
    return str(v["protocol_name"].split("_")[1])


def field(v: Vector, side: str, name: str) -> bytes | None:
    value = v.get(f"{side}_{name}")
    return None if value is None else bytes.fromhex(value)


def psks_of(v: Vector, side: str) -> list[bytes]:
    return [bytes.fromhex(p) for p in v.get(f"{side}_psks", [])]


def transport_sender_is_initiator(v: Vector, index: int) -> bool:
    """Messages alternate from the initiator on; one-way patterns only ever send that way."""
    one_way = len(ref.messages_of(pattern_of(v))) == 1
    return one_way or index % 2 == 0


def peer_static_is_preset(pattern: str, side: str) -> bool:
    peer = "->" if side == "resp" else "<-"
    return any(who == peer for who, _ in ref.PATTERNS[ref.split_pattern(pattern)[0]][0])


def peer_static_is_known(pattern: str, side: str) -> bool:
    """The pattern gives ``side`` the peer's static key: as a pre-message or in a message."""
    peer_messages = ref.messages_of(pattern)[(side == "init") :: 2]
    return peer_static_is_preset(pattern, side) or any("s" in m for m in peer_messages)


def make_side(v: Vector, side: str) -> NoiseHandshake:
    pattern = pattern_of(v)
    # The remote static is an input only where the pattern has it as a pre-message; some
    # vectors list it anyway (snow's), and then it is what the handshake must learn, if any.
    preset = peer_static_is_preset(pattern, side)
    return NoiseHandshake(
        initiator=side == "init",
        static_private=field(v, side, "static") or UNUSED_STATIC,
        ephemeral_private=field(v, side, "ephemeral") or UNUSED_STATIC,
        prologue=field(v, side, "prologue") or b"",
        pattern=pattern,
        psks=psks_of(v, side),
        remote_static=field(v, side, "remote_static") if preset else None,
        max_payload_bytes=1024,
    )


@pytest.mark.parametrize("v", ALL, ids=vector_id)
def test_adapter_reproduces_vector(v: Vector) -> None:
    if not v["protocol_name"].endswith("_" + SUITE):
        pytest.skip(f"suite is not {SUITE}")
    try:
        init, resp = make_side(v, "init"), make_side(v, "resp")
    except LocalProtocolError as exc:
        pytest.skip(f"the adapter cannot run {v['protocol_name']}: {exc}")
    transports: tuple[NoiseTransport, NoiseTransport] | None = None
    for index, message in enumerate(v["messages"]):
        payload, expected = bytes.fromhex(message["payload"]), bytes.fromhex(message["ciphertext"])
        if transports is None:
            writer, reader = (init, resp) if init.is_our_turn_to_write else (resp, init)
            assert writer.write_message(payload) == expected, f"handshake message {index}"
            assert reader.read_message(expected) == payload
            if init.finished:
                assert resp.finished
                transports = (init.into_transport(), resp.into_transport())
        else:
            if transport_sender_is_initiator(v, index):
                sender, receiver = transports
            else:
                receiver, sender = transports
            assert sender.encrypt(payload) == expected, f"transport message {index}"
            assert receiver.decrypt(expected) == payload
    assert init.finished
    assert resp.finished
    if "handshake_hash" in v:
        assert init.handshake_hash.hex() == v["handshake_hash"]
        assert resp.handshake_hash.hex() == v["handshake_hash"]
    for side, peer, hs in (("init", "resp", init), ("resp", "init", resp)):
        if peer_static_is_known(pattern_of(v), side):
            peer_static = field(v, peer, "static")
            assert peer_static is not None
            assert hs.remote_static == ref.public_key(peer_static)
        else:
            assert hs.remote_static is None


@pytest.mark.parametrize("v", ALL, ids=vector_id)
def test_reference_reproduces_vector(v: Vector) -> None:
    """The reference implementation is right on every published vector, so its own are too."""
    pattern = pattern_of(v)
    init = ref.Handshake(
        pattern, True, field(v, "init", "prologue") or b"", s=field(v, "init", "static"),
        e=field(v, "init", "ephemeral"), rs=field(v, "init", "remote_static"),
        psks=psks_of(v, "init"),
    )  # fmt: skip
    resp = ref.Handshake(
        pattern, False, field(v, "resp", "prologue") or b"", s=field(v, "resp", "static"),
        e=field(v, "resp", "ephemeral"), rs=field(v, "resp", "remote_static"),
        psks=psks_of(v, "resp"),
    )  # fmt: skip
    payloads = [bytes.fromhex(m["payload"]) for m in v["messages"]]
    assert [m.hex() for m in ref.transcript(init, resp, payloads)] == [
        m["ciphertext"] for m in v["messages"]
    ]
    if "handshake_hash" in v:
        assert init.h.hex() == resp.h.hex() == v["handshake_hash"]


def test_the_vector_set_is_complete() -> None:
    """The file still holds what the adapter must pass: all 49 published vectors, every XX
    family member of both sources, and meshmsg's own two protocols."""
    names = {(v["source"], v["protocol_name"]) for v in ALL}
    assert len(load(PUBLISHED)) == 49
    xx = {(source, name.split("_")[1]) for source, name in names if name.startswith("Noise_XX")}
    assert xx == {
        ("cacophony", "XX"),
        ("cacophony", "XXpsk3"),
        ("snow-multipsk", "XXpsk0+psk1"),
        ("snow-multipsk", "XXpsk0+psk2"),
        ("snow-multipsk", "XXpsk0+psk3"),
        ("snow-multipsk", "XXpsk0+psk1+psk2+psk3"),
        ("meshmsg-reference", "XX"),
        ("meshmsg-reference", "XXpsk0"),
    }


def test_own_vectors_are_reproducible_and_use_our_prologue() -> None:
    """``meshmsg_vectors.json`` is exactly what the reference generates: nobody edited it."""
    assert OWN.read_text() == ref.meshmsg_vectors(PROLOGUE)
    assert {bytes.fromhex(v["init_prologue"]) for v in load(OWN)} == {PROLOGUE}


def test_project_copy_matches_shared_vectors() -> None:
    if not SHARED.exists():
        pytest.skip(f"{SHARED} is absent (the shared folder is not checked out beside the project)")
    assert PUBLISHED.read_bytes() == SHARED.read_bytes()
