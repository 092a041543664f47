"""The Noise adapter's contract: roles, failures, tampering, sizes, rekey, errors only of ours."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl.public import PrivateKey

from meshmsg.config import PROLOGUE, NodeConfig, WireLimits
from meshmsg.core.noise import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    MAX_MESSAGE_BYTES,
    MAX_PLAINTEXT_BYTES,
    NoiseHandshake,
    NoiseTransport,
    StaticKey,
)
from meshmsg.errors import CloseReason, DecryptError, HandshakeError, LocalProtocolError
from tests.core import noise_reference as ref

PSK = hashlib.blake2b(b"site key", digest_size=32).digest()
PATTERNS = ["XX", "XXpsk0"]


def key(label: str) -> bytes:
    return hashlib.blake2b(label.encode(), digest_size=32).digest()


def public(private: bytes) -> bytes:
    """The X25519 public key, computed by libsodium (not by the library under test)."""
    return bytes(PrivateKey(private).public_key)


def side(
    initiator: bool, pattern: str = "XX", *, prologue: bytes = PROLOGUE, psk: bytes = PSK
) -> NoiseHandshake:
    name = "i" if initiator else "r"
    return NoiseHandshake(
        initiator=initiator,
        static_private=key(f"{name} static"),
        ephemeral_private=key(f"{name} ephemeral"),
        prologue=prologue,
        psk=psk if pattern == "XXpsk0" else None,
    )


def pair(pattern: str = "XX") -> tuple[NoiseHandshake, NoiseHandshake]:
    return side(True, pattern), side(False, pattern)


PAYLOADS = [b"one", b"two", b"three"]


def run(
    init: NoiseHandshake,
    resp: NoiseHandshake,
    tamper: Callable[[int, bytes], bytes] = lambda _n, m: m,
) -> list[bytes]:
    """Drive both sides to the end; ``tamper`` may change message ``n`` in flight."""
    sent = []
    n = 0
    while not (init.finished and resp.finished):
        writer, reader = (init, resp) if init.is_our_turn_to_write else (resp, init)
        message = writer.write_message(PAYLOADS[n])
        sent.append(message)
        assert reader.read_message(tamper(n, message)) == PAYLOADS[n]
        n += 1
    return sent


def transports(pattern: str = "XX") -> tuple[NoiseTransport, NoiseTransport]:
    init, resp = pair(pattern)
    run(init, resp)
    return init.into_transport(), resp.into_transport()


RECORDED = {pattern: run(*pair(pattern)) for pattern in PATTERNS}


def flips(message: bytes) -> list[bytes]:
    out = []
    for i in range(len(message) * 8):
        flipped = bytearray(message)
        flipped[i // 8] ^= 1 << (i % 8)
        out.append(bytes(flipped))
    return out


def sides_at(pattern: str, index: int) -> tuple[NoiseHandshake, NoiseHandshake]:
    """(writer, reader) of handshake message ``index``, the messages before it exchanged."""
    init, resp = pair(pattern)
    for n in range(index):
        writer, reader = (init, resp) if n % 2 == 0 else (resp, init)
        reader.read_message(writer.write_message(PAYLOADS[n]))
    return (init, resp) if index % 2 == 0 else (resp, init)


# -- completing a handshake ----------------------------------------------------------------------


@pytest.mark.parametrize("pattern", PATTERNS)
def test_both_roles_complete_and_agree(pattern: str) -> None:
    init, resp = pair(pattern)
    assert init.protocol_name == f"Noise_{pattern}_25519_ChaChaPoly_BLAKE2b"
    assert init.is_our_turn_to_write
    assert not resp.is_our_turn_to_write
    messages = run(init, resp)
    assert len(messages) == 3
    assert init.finished
    assert resp.finished
    assert not init.is_our_turn_to_write
    assert not resp.is_our_turn_to_write
    assert init.handshake_hash == resp.handshake_hash
    assert len(init.handshake_hash) == 64
    a, b = init.into_transport(), resp.into_transport()
    assert b.decrypt(a.encrypt(b"ping")) == b"ping"
    assert a.decrypt(b.encrypt(b"pong")) == b"pong"
    assert (a.frames_sent, a.frames_received, b.frames_sent, b.frames_received) == (1, 1, 1, 1)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_remote_static_is_the_peers_public_key_for_both_roles(pattern: str) -> None:
    init, resp = pair(pattern)
    assert init.remote_static is None
    assert resp.remote_static is None
    resp.read_message(init.write_message())
    init.read_message(resp.write_message())
    # The initiator knows whom it reached before message 3 reveals its own identity.
    assert init.remote_static == public(key("r static"))
    assert resp.remote_static is None
    resp.read_message(init.write_message())
    assert resp.remote_static == public(key("i static"))
    assert init.remote_static == public(key("r static"))


@pytest.mark.parametrize("pattern", PATTERNS)
def test_messages_have_the_documented_sizes(pattern: str) -> None:
    """docs/protocol/noise.md: 32/48 + payload, 96 + payload, 64 + payload."""
    first = 48 if pattern == "XXpsk0" else 32
    sizes = [len(m) - len(p) for m, p in zip(RECORDED[pattern], PAYLOADS, strict=True)]
    assert sizes == [first, 96, 64]


def test_same_keys_give_the_same_bytes() -> None:
    """Injected ephemerals make a handshake reproducible (the simulator relies on it)."""
    assert run(*pair("XXpsk0")) == RECORDED["XXpsk0"]
    other = NoiseHandshake(
        initiator=True,
        static_private=key("i static"),
        ephemeral_private=key("another ephemeral"),
        prologue=PROLOGUE,
    )
    assert other.write_message(PAYLOADS[0]) != RECORDED["XX"][0]


def test_bytes_like_input_is_accepted() -> None:
    init = NoiseHandshake(
        initiator=True,
        static_private=bytearray(key("i static")),
        ephemeral_private=memoryview(key("i ephemeral")),
        prologue=bytearray(PROLOGUE),
        psk=memoryview(PSK),
    )
    resp = side(False, "XXpsk0")
    resp.read_message(bytearray(init.write_message(memoryview(b"one"))))
    init.read_message(memoryview(resp.write_message(bytearray(b"two"))))
    resp.read_message(bytearray(init.write_message(b"three")))
    a, b = init.into_transport(), resp.into_transport()
    assert b.decrypt(bytearray(a.encrypt(memoryview(b"x")))) == b"x"
    assert a.decrypt(memoryview(b.encrypt(bytearray(b"y")))) == b"y"


# -- mismatches ---------------------------------------------------------------------------------


def test_mismatched_prologue_fails_at_the_initiator_reading_message_2() -> None:
    init, resp = side(True), side(False, prologue=b"meshmsg/2")
    resp.read_message(init.write_message())  # message 1 is not authenticated in XX
    with pytest.raises(HandshakeError) as info:
        init.read_message(resp.write_message())
    assert info.value.reason is CloseReason.HANDSHAKE_FAILED
    assert init.remote_static is None


def test_mismatched_prologue_with_psk_fails_at_message_1() -> None:
    init, resp = side(True, "XXpsk0"), side(False, "XXpsk0", prologue=b"meshmsg/2")
    with pytest.raises(HandshakeError):
        resp.read_message(init.write_message())


def test_wrong_psk_responder_learns_nothing_and_reveals_nothing() -> None:
    init, resp = side(True, "XXpsk0"), side(False, "XXpsk0", psk=key("another site"))
    message_1 = init.write_message(b"hello")
    assert len(message_1) == 32 + 16 + 5  # e and the encrypted payload: no static key
    with pytest.raises(HandshakeError) as info:
        resp.read_message(message_1)
    assert info.value.reason is CloseReason.HANDSHAKE_FAILED
    # No payload came out, and the responder has nothing it may send: its static key, which
    # message 2 would carry, stays private.
    assert resp.remote_static is None
    assert not resp.is_our_turn_to_write
    assert not resp.finished
    with pytest.raises(LocalProtocolError, match="already failed"):
        resp.write_message()
    with pytest.raises(LocalProtocolError):
        resp.into_transport()


def test_a_failed_handshake_refuses_further_use() -> None:
    init, resp = side(True), side(False, prologue=b"other")
    resp.read_message(init.write_message())
    message_2 = resp.write_message()
    with pytest.raises(HandshakeError):
        init.read_message(message_2)
    with pytest.raises(LocalProtocolError, match="already failed"):
        init.read_message(message_2)
    with pytest.raises(LocalProtocolError, match="already failed"):
        init.write_message()


# -- tampering ----------------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("index", [0, 1, 2])
def test_every_bit_flip_of_a_handshake_message_is_rejected(pattern: str, index: int) -> None:
    """A message read with a key in use is rejected on arrival. XX's message 1 is cleartext:
    its reader accepts a flipped copy, which entered the responder's handshake hash, so the
    initiator rejects message 2. Either way the side that fails learned no static key."""
    caught_on_arrival = index > 0 or pattern == "XXpsk0"
    for flipped in flips(RECORDED[pattern][index]):
        writer, reader = sides_at(pattern, index)
        assert writer.write_message(PAYLOADS[index]) == RECORDED[pattern][index]
        if caught_on_arrival:
            with pytest.raises(HandshakeError):
                reader.read_message(flipped)
            failed = reader
        else:
            reader.read_message(flipped)
            with pytest.raises(HandshakeError):
                writer.read_message(reader.write_message(PAYLOADS[1]))
            failed = writer
        assert failed.remote_static is None
        assert not failed.finished
        assert not failed.is_our_turn_to_write


def test_truncated_or_extended_handshake_messages_are_rejected() -> None:
    for index in (1, 2):
        message = RECORDED["XX"][index]
        for bad in (message[:-1], message[:40], message + b"\x00"):
            init, resp = pair()
            with pytest.raises(HandshakeError):
                run(init, resp, tamper=lambda n, m, b=bad, i=index: b if n == i else m)


@pytest.fixture
def recorded_frame() -> bytes:
    sender, _ = transports()
    return sender.encrypt(b"a recorded transport frame")


def test_every_bit_flip_of_a_transport_message_is_rejected(recorded_frame: bytes) -> None:
    for flipped in flips(recorded_frame):
        _, receiver = transports()
        with pytest.raises(DecryptError) as info:
            receiver.decrypt(flipped)
        assert info.value.reason is CloseReason.DECRYPT_FAILED
    _, receiver = transports()
    assert receiver.decrypt(recorded_frame) == b"a recorded transport frame"


@pytest.mark.parametrize("cut", [0, 1, 15, 16, -1])
def test_truncated_or_extended_transport_messages_are_rejected(
    recorded_frame: bytes, cut: int
) -> None:
    _, receiver = transports()
    with pytest.raises(DecryptError):
        receiver.decrypt(recorded_frame[:cut] if cut >= 0 else recorded_frame + b"\x00")


def test_a_replayed_frame_is_rejected() -> None:
    a, b = transports()
    frame = a.encrypt(b"once")
    assert b.decrypt(frame) == b"once"
    with pytest.raises(DecryptError):
        b.decrypt(frame)


def test_reordered_frames_are_rejected() -> None:
    a, b = transports()
    a.encrypt(b"first")
    second = a.encrypt(b"second")
    with pytest.raises(DecryptError):
        b.decrypt(second)


def test_a_decrypt_failure_keeps_the_nonce_and_closes_only_the_inbound_side() -> None:
    """The library does not advance the inbound nonce on failure (frames_received is that
    nonce); we refuse further decryption anyway, and can still send a Close record."""
    a, b = transports()
    good = a.encrypt(b"good")
    with pytest.raises(DecryptError):
        b.decrypt(flips(good)[0])
    assert b.frames_received == 0
    with pytest.raises(LocalProtocolError, match="earlier frame failed"):
        b.decrypt(good)
    with pytest.raises(LocalProtocolError, match="earlier frame failed"):
        b.rekey_inbound()
    assert a.decrypt(b.encrypt(b"close")) == b"close"


# -- sizes --------------------------------------------------------------------------------------


def test_the_largest_plaintext_works_and_one_more_byte_breaks_nothing() -> None:
    a, b = transports()
    largest = bytes(range(256)) * (MAX_PLAINTEXT_BYTES // 256) + b"x" * (MAX_PLAINTEXT_BYTES % 256)
    assert len(largest) == 65_519
    frame = a.encrypt(largest)
    assert len(frame) == MAX_MESSAGE_BYTES == 65_535
    assert b.decrypt(frame) == largest
    with pytest.raises(LocalProtocolError) as info:
        a.encrypt(largest + b"!")
    assert info.value.reason is CloseReason.TOO_LARGE
    assert a.frames_sent == 1  # the nonce did not move
    assert b.decrypt(a.encrypt(b"next")) == b"next"


def test_an_oversized_transport_message_is_refused_before_any_crypto() -> None:
    _, b = transports()
    with pytest.raises(DecryptError) as info:
        b.decrypt(bytes(MAX_MESSAGE_BYTES + 1))
    assert info.value.reason is CloseReason.TOO_LARGE


def test_config_limits_match_the_adapter() -> None:
    limits = WireLimits()
    assert limits.max_frame_bytes == MAX_MESSAGE_BYTES
    assert limits.max_plaintext_bytes == MAX_PLAINTEXT_BYTES
    assert limits.max_handshake_payload_bytes == DEFAULT_MAX_PAYLOAD_BYTES
    assert NodeConfig().link.max_batch_bytes <= MAX_PLAINTEXT_BYTES


def test_an_oversized_handshake_payload_is_refused_and_the_handshake_goes_on() -> None:
    init, resp = pair()
    with pytest.raises(LocalProtocolError) as info:
        init.write_message(bytes(1025))
    assert info.value.reason is CloseReason.TOO_LARGE
    assert init.is_our_turn_to_write
    resp.read_message(init.write_message(bytes(1024)))
    run(init, resp)
    assert init.finished
    assert resp.finished


@pytest.mark.parametrize(
    ("size", "ok"), [(32 + 1024, True), (32 + 1025, False), (MAX_MESSAGE_BYTES + 1, False)]
)
def test_incoming_handshake_messages_are_capped(size: int, ok: bool) -> None:
    resp = side(False)
    message = key("e")[:32] + bytes(size - 32)
    if ok:
        assert resp.read_message(message) == bytes(1024)
    else:
        with pytest.raises(HandshakeError) as info:
            resp.read_message(message)
        assert info.value.reason is CloseReason.TOO_LARGE


def test_a_short_handshake_message_is_rejected() -> None:
    with pytest.raises(HandshakeError) as info:
        side(False).read_message(bytes(31))
    assert info.value.reason is CloseReason.HANDSHAKE_FAILED


def test_a_low_order_ephemeral_fails_at_the_first_dh() -> None:
    """XX message 1 is cleartext: an all-zero key reads fine and fails at the DH of message 2,
    so write_message can raise HandshakeError too."""
    resp = side(False)
    assert resp.read_message(bytes(32)) == b""
    with pytest.raises(HandshakeError):
        resp.write_message()


# -- rekey --------------------------------------------------------------------------------------


def test_rekey_on_both_sides_keeps_the_session_working() -> None:
    a, b = transports()
    assert b.decrypt(a.encrypt(b"before")) == b"before"
    a.rekey_outbound()
    b.rekey_inbound()
    b.rekey_outbound()
    a.rekey_inbound()
    assert b.decrypt(a.encrypt(b"after")) == b"after"
    assert a.decrypt(b.encrypt(b"back")) == b"back"
    assert (a.frames_sent, b.frames_received) == (2, 2)  # Rekey() does not reset the nonce


def test_rekey_on_one_side_only_breaks_the_next_frame() -> None:
    a, b = transports()
    a.rekey_outbound()
    with pytest.raises(DecryptError):
        b.decrypt(a.encrypt(b"lost"))


def test_rekey_matches_the_reference_implementation() -> None:
    """noiseprotocol's Rekey() is the spec's REKEY(k) (checked on libsodium, not OpenSSL)."""
    a, _ = transports()
    ri = ref.Handshake("XX", True, PROLOGUE, s=key("i static"), e=key("i ephemeral"))
    rr = ref.Handshake("XX", False, PROLOGUE, s=key("r static"), e=key("r ephemeral"))
    for n, payload in enumerate(PAYLOADS):
        writer, reader = (ri, rr) if n % 2 == 0 else (rr, ri)
        reader.read_message(writer.write_message(payload))
    send, _ = ri.split()
    assert a.encrypt(b"x") == send.encrypt(b"", b"x")
    a.rekey_outbound()
    send.rekey()
    assert a.encrypt(b"y") == send.encrypt(b"", b"y")


# -- wrong use ----------------------------------------------------------------------------------


def test_wrong_turns_are_local_errors() -> None:
    init, resp = pair()
    with pytest.raises(LocalProtocolError, match="our turn"):
        init.read_message(b"x" * 32)
    with pytest.raises(LocalProtocolError, match="peer's turn"):
        resp.write_message()
    with pytest.raises(LocalProtocolError, match="not finished"):
        init.into_transport()
    with pytest.raises(LocalProtocolError, match="finished"):
        _ = init.handshake_hash
    run(init, resp)
    with pytest.raises(LocalProtocolError, match="finished"):
        init.write_message()
    with pytest.raises(LocalProtocolError, match="finished"):
        resp.read_message(b"x" * 64)
    init.into_transport()
    with pytest.raises(LocalProtocolError, match="already called"):
        init.into_transport()


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"static_private": bytes(31)}, "static_private must be 32 bytes"),
        ({"ephemeral_private": bytes(33)}, "ephemeral_private must be 32 bytes"),
        ({"psk": bytes(16)}, "psk must be 32 bytes"),
        ({"psk": PSK, "psks": [PSK]}, "either psk or psks"),
        ({"psks": [PSK, PSK]}, "names no psk modifiers"),
        ({"pattern": "XX_25519_AESGCM_SHA256"}, "not a Noise handshake pattern"),
        ({"pattern": "XXfallback"}, "not a Noise handshake pattern"),
        ({"pattern": "ZZ"}, "unsupported protocol"),
        ({"pattern": "XXpsk0+psk2", "psk": PSK}, "needs 2 psks, got 1"),
        ({"pattern": "XXpsk3"}, "needs 1 psks, got 0"),
        ({"remote_static": bytes(32)}, "remote_static must be given exactly when"),
        ({"pattern": "IK"}, "remote_static must be given exactly when"),
        ({"max_payload_bytes": -1}, "max_payload_bytes out of range"),
        ({"max_payload_bytes": MAX_MESSAGE_BYTES - 32 - 48 - 16 + 1}, "out of range"),
    ],
)
def test_bad_arguments_are_local_errors(changes: dict[str, object], match: str) -> None:
    arguments: dict[str, object] = {
        "initiator": True,
        "static_private": key("s"),
        "ephemeral_private": key("e"),
        "prologue": PROLOGUE,
    }
    with pytest.raises(LocalProtocolError, match=match):
        NoiseHandshake(**{**arguments, **changes})  # type: ignore[arg-type]


def test_the_silent_side_of_a_one_way_pattern_cannot_send() -> None:
    responder_static = key("r static")
    init = NoiseHandshake(
        initiator=True, static_private=key("s"), ephemeral_private=key("e"), prologue=b"",
        pattern="N", remote_static=public(responder_static),
    )  # fmt: skip
    resp = NoiseHandshake(
        initiator=False, static_private=responder_static, ephemeral_private=key("f"),
        prologue=b"", pattern="N",
    )  # fmt: skip
    assert resp.read_message(init.write_message(b"hi")) == b"hi"
    a, b = init.into_transport(), resp.into_transport()
    assert b.decrypt(a.encrypt(b"one way")) == b"one way"
    assert (b.frames_sent, a.frames_received) == (0, 0)
    for call in (
        lambda: b.encrypt(b"x"),
        b.rekey_outbound,
        lambda: a.decrypt(b"x"),
        a.rekey_inbound,
    ):
        with pytest.raises(LocalProtocolError, match="one-way"):
            call()


def test_nonce_exhaustion_is_a_local_error() -> None:
    a, _ = transports()
    a._outbound.n = 2**64 - 1  # private: no test can send 2**64 frames to get there
    with pytest.raises(LocalProtocolError) as info:
        a.encrypt(b"x")
    assert info.value.reason is CloseReason.LIMIT_REACHED


# -- arbitrary input ----------------------------------------------------------------------------

READ_STATES = [(pattern, index) for pattern in PATTERNS for index in range(3)]


def mutated(message: bytes) -> st.SearchStrategy[bytes]:
    """The genuine message with a slice replaced by arbitrary bytes."""
    return st.tuples(
        st.integers(0, len(message)), st.integers(0, len(message)), st.binary(max_size=64)
    ).map(lambda t: message[: min(t[0], t[1])] + t[2] + message[max(t[0], t[1]) :])


@pytest.mark.parametrize(("pattern", "index"), READ_STATES)
@given(data=st.data())
def test_arbitrary_bytes_raise_only_handshake_error(
    pattern: str, index: int, data: st.DataObject
) -> None:
    genuine = RECORDED[pattern][index]
    message = data.draw(st.one_of(st.binary(max_size=2_000), mutated(genuine)))
    _, reader = sides_at(pattern, index)
    try:
        payload = reader.read_message(message)
    except HandshakeError:
        with pytest.raises(LocalProtocolError):
            reader.read_message(genuine)
    else:
        # Only XX's cleartext message 1 accepts what it is given; anything else that reads
        # is the genuine message itself.
        assert (pattern, index) == ("XX", 0) or message == genuine
        assert len(payload) <= 1024


# --- a static key prepared once ---------------------------------------------------------------


def test_a_prepared_static_key_gives_the_same_handshake_as_its_bytes() -> None:
    """Node prepares its key once (StaticKey); every byte on the wire must stay the same."""
    prepared = StaticKey(key("i static"))
    assert prepared.public == public(key("i static"))
    by_bytes = run(*pair())
    init = NoiseHandshake(
        initiator=True, static_private=prepared, ephemeral_private=key("i ephemeral"),
        prologue=PROLOGUE,
    )  # fmt: skip
    assert run(init, side(False)) == by_bytes
    # One prepared key serves many handshakes: nothing of one handshake stays in it.
    again = NoiseHandshake(
        initiator=True, static_private=prepared, ephemeral_private=key("i ephemeral"),
        prologue=PROLOGUE,
    )  # fmt: skip
    assert run(again, side(False)) == by_bytes


def test_a_prepared_static_key_never_shows_its_private_half() -> None:
    private = key("i static")
    shown = repr(StaticKey(private))
    assert private.hex()[:16] not in shown
    assert public(private).hex()[:16] in shown
    with pytest.raises(LocalProtocolError, match="32 bytes"):
        StaticKey(b"short")
