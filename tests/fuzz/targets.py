"""The fuzz targets: one per parser a peer reaches, and a Node fed arbitrary input sequences.

Each target's docstring says what it asserts. The documented error types are caught by name;
anything else that escapes is a crash. Seeds (``seeds_*``) come from the real encoders; ``python
-m tests.fuzz seeds`` writes them to ``tests/fuzz/corpus/<target>/``.

Everything is deterministic (seeded randomness, fixed clocks), so a crashing input replays.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final

from meshmsg.config import PROLOGUE, MessageLimits, NodeConfig, SyncConfig, WireLimits
from meshmsg.core.e2e import ContactChannel, Opened, TagIndex, new_key_share
from meshmsg.core.effects import CloseLink, Dial, Persist, Transmit
from meshmsg.core.envelope import HEADER_BYTES, parse_envelope
from meshmsg.core.events import Event
from meshmsg.core.framing import FrameReader, encode_frame
from meshmsg.core.identity import (
    ContactCard,
    Identity,
    PublicIdentity,
    _checksum,
    b32decode,
    b32encode,
    decode_contact_code,
    encode_contact_code,
    parse_hint,
)
from meshmsg.core.itemset import ItemSet
from meshmsg.core.keyschedule import MAX_EPOCH, KeyShare, can_heal, heal_base
from meshmsg.core.link import Link, LinkState, PeerHandshake, PeerVerdict
from meshmsg.core.node import Node
from meshmsg.core.noise import NoiseHandshake
from meshmsg.core.offlinepair import pair_offline
from meshmsg.core.reconcile import SALT_BYTES, Reconciler
from meshmsg.core.records import (
    HANDSHAKE_RECORDS,
    INNER_RECORDS,
    LINK_RECORDS,
    SESSION_RECORDS,
    Close,
    Custody,
    Hello,
    IdentityProof,
    KeyConfirm,
    KeyExchange,
    Offer,
    OfferEntry,
    Ping,
    Pong,
    Purge,
    Receipt,
    Rekey,
    Reply,
    RouteEntry,
    RouteTable,
    SyncMessage,
    TextMessage,
    Transfer,
)
from meshmsg.core.wire import (
    Record,
    RecordRegistry,
    _decode_strict,
    decode_records,
    encode_record,
    encode_records,
)
from meshmsg.core.wirefast import read_frame
from meshmsg.errors import (
    CloseReason,
    DecodeError,
    HandshakeError,
    InvalidContactCode,
    InvalidMessage,
    LocalProtocolError,
    RemoteProtocolError,
)
from meshmsg.sim.rng import SeededRng
from tests.fuzz.harness import Cursor, check, sized, target

T0: Final = 1_800_000_000.0  # a realistic wall clock: key periods are days since 1970
DEFAULT_WIRE: Final = WireLimits()
# Small limits reach every TOO_LARGE branch with short inputs.
SMALL_WIRE: Final = WireLimits(
    max_frame_bytes=64,
    max_plaintext_bytes=48,
    max_receive_buffer_bytes=2 + 64 + 40,
    max_records_per_frame=3,
    max_cbor_depth=4,
    max_container_items=4,
    max_string_bytes=8,
)
PROLOGUE_CONFIG: Final = NodeConfig()
# The node target's nodes derive 4 tags ahead instead of 64: pairing costs less, and a few
# messages already slide the window.
NODE_CONFIG: Final = NodeConfig(message=MessageLimits(tag_window=4))
MESSAGE_LIMITS: Final = MessageLimits()


def _identity(label: str) -> Identity:
    return Identity.generate(SeededRng(11, f"fuzz-identity:{label}"))


ALICE: Final = _identity("alice")
BOB: Final = _identity("bob")
MALLORY: Final = _identity("mallory")
CAROL: Final = _identity("carol")  # Bob's contact in the node target, never paired


# ============================================================================ frames


def seeds_frames() -> Iterator[bytes]:
    payloads = [b"\x01", b"hello", bytes(range(200)), b"\xff" * 64]
    stream = b"".join(encode_frame(p) for p in payloads)
    for chunk in (1, 2, 7, 255):
        yield bytes([chunk, 0]) + stream
        yield bytes([chunk, 1]) + stream[:70]
    yield b"\x00\x00" + encode_frame(b"x" * 300)[:100]  # an incomplete frame
    yield b"\x03\x00\x00\x00"  # a zero-length frame
    yield b"\x03\x01\x00\x41" + b"a" * 65  # over the small frame limit
    yield b"\x00\x00\xff\xff"  # announces the largest frame


@target("frames", seeds=seeds_frames)
def fuzz_frames(data: bytes) -> None:
    """FrameReader, fed the stream in chunks: returns frames of 1..max_frame_bytes whose
    re-encoding is exactly the bytes consumed, holds at most max_receive_buffer_bytes, or raises
    DecodeError (MALFORMED/TOO_LARGE), after which every feed raises LocalProtocolError.

    Input: chunk size byte, limits byte (default or small), then the stream.
    """
    c = Cursor(data)
    chunk = c.u8() + 1
    limits = SMALL_WIRE if c.u8() & 1 else DEFAULT_WIRE
    stream = c.rest()
    reader = FrameReader(limits)
    frames: list[bytes] = []
    fed = 0
    for start in range(0, len(stream), chunk):
        piece = stream[start : start + chunk]
        try:
            got = reader.feed(piece)
        except DecodeError as exc:
            check(exc.reason in (CloseReason.MALFORMED, CloseReason.TOO_LARGE), exc.reason)
            try:
                reader.feed(b"\x00\x01x")
            except LocalProtocolError:
                return
            raise AssertionError("a broken FrameReader accepted more input") from exc
        fed += len(piece)
        for frame in got:
            assert 0 < len(frame) <= limits.max_frame_bytes
        frames.extend(got)
        assert reader.buffered_bytes <= limits.max_receive_buffer_bytes
        consumed = b"".join(encode_frame(f, limits) for f in frames)
        assert consumed == stream[: fed - reader.buffered_bytes]


# =========================================================================== records

REGISTRIES: Final[tuple[tuple[str, RecordRegistry], ...]] = (
    ("link", LINK_RECORDS),
    ("handshake", HANDSHAKE_RECORDS),
    ("session", SESSION_RECORDS),
    ("inner", INNER_RECORDS),
)


def sample_session_records() -> list[Record]:
    """One valid instance of every record a peer can send, inner records included."""
    share = new_key_share(SeededRng(3, "share"), T0, MESSAGE_LIMITS)[1].to_bytes()
    ident = bytes(range(16))
    return [
        Hello(version=1, capabilities=(1, 2), agent="meshmsg"),
        Hello(version=1, capabilities=(), agent=None),
        Close(reason=1, detail="bye"),
        Ping(nonce=7),
        Pong(nonce=2**64 - 1),
        Rekey(),
        IdentityProof(public=ALICE.public.to_bytes()),
        KeyExchange(share=share),
        KeyConfirm(confirmation=b"c" * 16),
        RouteTable(entries=(RouteEntry(route=b"r" * 8, p=65_535),)),
        SyncMessage(payload=b"\x01\x00"),
        Offer(entries=(OfferEntry(envelope_id=ident, tag=b"t" * 16),)),
        Reply(for_me=(ident,), have=()),
        Transfer(envelope=foreign_envelope(), copies=4, hops=1, route_hint=None),
        Transfer(envelope=b"e" * 256, copies=4, hops=1, route_hint=None),
        Transfer(envelope=b"e" * 3, copies=0, hops=255, route_hint=b"h" * 8),
        Custody(accepted=(ident,), refused=(ident,)),
        Purge(token=b"p" * 16, expiry_at=2_000_000_000_000),
        TextMessage(message_id=ident, sent_at=1_800_000_000_000, body="héllo"),
        Receipt(status=1, message_ids=(ident, ident)),
    ]


def seeds_records() -> Iterator[bytes]:
    samples = sample_session_records()
    for index, (_, registry) in enumerate(REGISTRIES):
        mine = [r for r in samples if type(r) in registry]
        for rec in mine:
            yield bytes([index]) + encode_record(rec)
        yield bytes([index]) + encode_records(mine[:8])
        yield bytes([index]) + encode_record(mine[0]) + b"\x82\x18\x80\x80"  # + an ignorable
    yield b"\x02\x81\x18\x7f"  # an unknown critical record


def _check_decoded(data: bytes, records: list[Record], registry: RecordRegistry) -> None:
    for rec in records:
        assert encode_record(rec) in data, f"{rec!r} does not re-encode to its bytes"
    if records:
        again = encode_records(records, WireLimits(max_plaintext_bytes=len(data) or 1))
        assert len(again) <= len(data)  # equal unless ignorable records were skipped
        assert decode_records(again, registry, DEFAULT_WIRE) == records


@target("records", seeds=seeds_records)
def fuzz_records(data: bytes) -> None:
    """decode_records over each registry a peer reaches (link, handshake, session, inner):
    returns records or raises DecodeError with a MALFORMED/TOO_LARGE/UNSUPPORTED reason; the
    fast decoder (wirefast) never accepts what the strict one rejects and agrees with it when
    both accept; every decoded record re-encodes to bytes found in the input and the batch
    round-trips (the codec is canonical).

    Input: registry byte, then a frame's plaintext.
    """
    c = Cursor(data)
    _, registry = REGISTRIES[c.choice(len(REGISTRIES))]
    plaintext = c.rest()
    try:
        records = decode_records(plaintext, registry, DEFAULT_WIRE)
    except DecodeError as exc:
        reasons = (CloseReason.MALFORMED, CloseReason.TOO_LARGE, CloseReason.UNSUPPORTED)
        check(exc.reason in reasons, exc.reason)
        if plaintext and len(plaintext) <= DEFAULT_WIRE.max_plaintext_bytes:
            assert read_frame(plaintext, registry._fast, DEFAULT_WIRE) is None
        return
    strict = _decode_strict(plaintext, registry, DEFAULT_WIRE)
    assert strict == records, "fast and strict decoders disagree"
    _check_decoded(plaintext, records, registry)


# ========================================================================= key shares


def _our_share(epoch: int | None) -> tuple[bytes, KeyShare]:
    secret, share = new_key_share(SeededRng(5, "ours"), T0, MESSAGE_LIMITS)
    if epoch is None:
        return secret, share
    return secret, KeyShare(public=share.public, random=share.random, period=share.period,
                            epoch=epoch, previous=epoch - 1 if epoch else None)  # fmt: skip


def seeds_key_share() -> Iterator[bytes]:
    rng = SeededRng(6, "theirs")
    _, share = new_key_share(rng, T0, MESSAGE_LIMITS)
    period = share.period
    variants = [
        share,
        KeyShare(public=share.public, random=share.random, period=period, epoch=0),
        KeyShare(public=share.public, random=share.random, period=period, epoch=3, previous=2,
                 counts_from=period - 2, final_counts=((period - 2, 1), (period, 40))),
        KeyShare(public=share.public, random=share.random, period=period, epoch=0xFFFFFFFE,
                 previous=0xFFFFFFFD),
        KeyShare(public=bytes(32), random=share.random, period=period),  # a low-order point
        KeyShare(public=share.public, random=share.random, period=period + 30),  # clock skew
    ]  # fmt: skip
    for mode in range(3):
        for v in variants:
            yield bytes([mode]) + v.to_bytes()
    yield b"\x00\x02" + share.to_bytes()[1:]  # unknown version


@target("key_share", seeds=seeds_key_share)
def fuzz_key_share(data: bytes) -> None:
    """KeyShare.from_bytes (the share inside a peer's KeyExchange): returns a share whose
    to_bytes() is exactly the input (the fixed form is canonical) or raises DecodeError; a
    parsed share then goes through what a Node does with it: pairing a fresh channel, or healing
    a paired channel (epoch 0), which return or raise HandshakeError (never anything else); after
    a heal, the share we would send at the next meeting parses back to itself.

    Input: mode byte (0 parse only, 1 pair, 2 heal), then the share.
    """
    c = Cursor(data)
    mode = c.choice(3)
    raw = c.rest()
    try:
        theirs = KeyShare.from_bytes(raw)
    except DecodeError:
        return
    assert theirs.to_bytes() == raw
    if mode == 0:
        return
    our_ik, their_ik = ALICE.public.identity_key, BOB.public.identity_key
    secret, ours = _our_share(None)
    try:
        channel = ContactChannel.pair(
            our_ik=our_ik, their_ik=their_ik, our_secret=secret, ours=ours, theirs=theirs,
            handshake_hash=b"h" * 64, now=T0, limits=MESSAGE_LIMITS,
        )  # fmt: skip
    except HandshakeError:
        return
    if mode == 1:
        return
    ours = _healing_share(channel)
    assert heal_base(ours, theirs) == heal_base(theirs, ours)
    if not can_heal(ours, theirs):
        return
    try:
        channel.heal(our_secret=secret, ours=ours, theirs=theirs, handshake_hash=b"g" * 64,
                     now=T0)  # fmt: skip
    except HandshakeError:
        return
    assert channel.epoch > (theirs.epoch or 0)
    assert channel.epoch <= MAX_EPOCH, "healed past the last epoch a share can express"
    nxt = _healing_share(channel)
    assert KeyShare.from_bytes(nxt.to_bytes()) == nxt, "our own next share does not parse"


def _healing_share(channel: ContactChannel) -> KeyShare:
    _, share = new_key_share(SeededRng(5, "ours"), T0, MESSAGE_LIMITS, channel)
    return share


# ========================================================================== envelopes


@dataclass(slots=True)
class _Pair:
    alice: ContactChannel
    bob: ContactChannel
    bob_index: TagIndex = field(default_factory=TagIndex)


def foreign_envelope() -> bytes:
    """A well-formed envelope of a pair the target nodes do not know: mail to relay."""
    return _pair(10).alice.seal(b"relay me", T0, 3_600.0, SeededRng(3, "foreign")).envelope


def _pair(seed: int) -> _Pair:
    rng = SeededRng(seed, "envelope-pair")
    secret_a, share_a = new_key_share(rng, T0, MESSAGE_LIMITS)
    secret_b, share_b = new_key_share(rng, T0, MESSAGE_LIMITS)
    ik_a, ik_b = ALICE.public.identity_key, BOB.public.identity_key
    alice = ContactChannel.pair(
        our_ik=ik_a, their_ik=ik_b, our_secret=secret_a, ours=share_a, theirs=share_b,
        handshake_hash=b"h" * 64, now=T0, limits=MESSAGE_LIMITS,
    )  # fmt: skip
    bob = ContactChannel.pair(
        our_ik=ik_b, their_ik=ik_a, our_secret=secret_b, ours=share_b, theirs=share_a,
        handshake_hash=b"h" * 64, now=T0, limits=MESSAGE_LIMITS,
    )  # fmt: skip
    pair = _Pair(alice=alice, bob=bob)
    bob.register(pair.bob_index, ALICE.peer_id)
    return pair


_PAIR_STATE: Final = (lambda p: (p.alice.to_bytes(), p.bob.to_bytes()))(_pair(9))


def _fresh_pair() -> _Pair:
    """The same paired channels every time (restored from bytes: cheaper than pairing)."""
    alice = ContactChannel.from_bytes(_PAIR_STATE[0], limits=MESSAGE_LIMITS)
    bob = ContactChannel.from_bytes(_PAIR_STATE[1], limits=MESSAGE_LIMITS)
    pair = _Pair(alice=alice, bob=bob)
    bob.register(pair.bob_index, ALICE.peer_id)
    return pair


def seeds_envelope() -> Iterator[bytes]:
    # Sealed by another pair: the corpus never holds a genuine envelope of the target's pair,
    # so mode 1 (forgeries) never opens one.
    pair = _pair(10)
    sealed = pair.alice.seal(encode_record(sample_session_records()[-2]), T0, 3600.0,
                             SeededRng(1, "seal")).envelope  # fmt: skip
    yield b"\x00" + sealed
    yield b"\x00" + sealed[:100]
    yield b"\x00\x02" + sealed[1:]
    yield b"\x01\x00\x00" + sealed[HEADER_BYTES - 32 :]
    for inner in sample_session_records()[-2:]:
        yield b"\x02" + sized(encode_record(inner)) + b"\x00\x00"
        yield b"\x02" + sized(encode_record(inner)) + b"\x00\x05\x01"
    yield b"\x02" + sized(b"\x00" * 40)
    yield b"\x02" + sized(encode_records(sample_session_records()[-2:]))


@target("envelope", seeds=seeds_envelope)
def fuzz_envelope(data: bytes) -> None:
    """Envelopes: parse_envelope returns an Envelope whose fields are views of the exact input
    or raises InvalidMessage; an envelope forged under a live tag of a real paired channel never
    opens (InvalidMessage); an envelope sealed by the real peer around arbitrary inner bytes
    opens exactly once to those bytes, a tampered copy never opens, and the inner records decode
    or raise DecodeError.

    Input: mode byte; mode 0: envelope bytes; mode 1: tag index byte, bucket byte, then expiry,
    nonce and ciphertext bytes; mode 2: sized inner plaintext, a tamper offset (u16) and xor
    byte (0: no tamper).
    """
    c = Cursor(data)
    mode = c.choice(3)
    if mode == 0:
        raw = c.rest()
        try:
            env = parse_envelope(raw)
        except InvalidMessage:
            return
        assert env.data == raw
        assert env.header + env.ciphertext == raw
        assert env.tag == raw[2:18]
        assert env.nonce == raw[26:50]
        assert env.expiry_at == int.from_bytes(raw[18:26], "big")
        return
    pair = _fresh_pair()
    if mode == 1:
        tags = pair.bob.openable_tags()
        tag = tags[c.u8() % len(tags)]
        bucket = MESSAGE_LIMITS.envelope_size_buckets[c.choice(3)]
        body = c.take(bucket - 18)
        forged = (b"\x01\x01" + tag + body).ljust(bucket, b"\x00")
        try:
            pair.bob.open(parse_envelope(forged), T0)
        except InvalidMessage:
            return
        raise AssertionError("a forged envelope opened")
    inner = c.sized()
    offset, flip = c.u16(), c.u8()
    if len(inner) > MESSAGE_LIMITS.max_inner_bytes:
        return
    sealed = pair.alice.seal(inner, T0, 3600.0, SeededRng(2, "seal")).envelope
    if flip:
        tampered = bytearray(sealed)
        tampered[offset % len(sealed)] ^= flip
        try:
            pair.bob.open(parse_envelope(bytes(tampered)), T0)
        except InvalidMessage:
            pass
        else:
            raise AssertionError("a tampered envelope opened")
    opened = pair.bob.open(parse_envelope(sealed), T0 + 1)
    assert isinstance(opened, Opened)
    assert opened.inner == inner
    assert pair.bob.open(parse_envelope(sealed), T0 + 2) is None
    try:
        records = decode_records(inner, INNER_RECORDS, DEFAULT_WIRE)
    except DecodeError:
        return
    _check_decoded(inner, records, INNER_RECORDS)


# ====================================================================== sync messages

SYNC: Final = SyncConfig()
SYNC_WIDE_FP: Final = SyncConfig(fingerprint_bytes=12)  # honest sessions: no accidental misses


def _ids_from(c: Cursor, n: int) -> list[bytes]:
    """``n`` ids that share prefixes the fuzzer chooses: one byte picks a base, two vary it."""
    out = []
    for _ in range(n):
        base = hashlib.blake2b(bytes([c.u8() & 0x0F]), digest_size=16).digest()
        depth, value = c.u8() % 16, c.u8()
        out.append(base[:depth] + bytes([value]) + base[depth + 1 :])
    return out


def _items(ids: list[bytes]) -> ItemSet:
    items = ItemSet(fanout=SYNC.split_fanout)
    for item_id in ids:
        items.add(item_id, 2_000_000_000)
    return items


STORE_IDS: Final = [hashlib.blake2b(bytes([i]), digest_size=16).digest() for i in range(48)]


def seeds_sync() -> Iterator[bytes]:
    # Mode 2 (honest sessions): counts and ids.
    yield b"\x02\x00\x00"
    yield b"\x02\x03\x02" + bytes(range(15))
    yield b"\x02\x10\x10" + bytes(range(96))
    # Modes 0 and 1: a real session's messages, replayed against our store.
    peer_ids = STORE_IDS[8:] + [hashlib.blake2b(bytes([200 + i]), digest_size=16).digest()
                                for i in range(8)]  # fmt: skip
    peer = Reconciler(_items(peer_ids), initiator=True, salt=b"s" * SALT_BYTES, config=SYNC)
    ours = Reconciler(_items(STORE_IDS), initiator=False, config=SYNC)
    to_ours = [peer.start()]
    to_peer: list[bytes] = []
    while True:
        answer = ours.receive(to_ours[-1])
        if answer is None:
            break
        to_peer.append(answer)
        nxt = peer.receive(answer)
        if nxt is None:
            break
        to_ours.append(nxt)
    yield b"\x00" + b"".join(sized(m) for m in to_ours)
    yield b"\x00" + sized(to_ours[0])
    yield b"\x01" + b"".join(sized(m) for m in to_peer)
    zero_sum = bytearray(to_ours[0])
    zero_sum[3 + SALT_BYTES] = 0  # a SUM with count 0 (issue 11, finding 7)
    yield b"\x00" + sized(bytes(zero_sum))


@target("sync", seeds=seeds_sync)
def fuzz_sync(data: bytes) -> None:
    """Reconciler fed a peer's messages, as responder (mode 0) or initiator (mode 1) over a
    48-id store: each receive returns a message of at most max_message_bytes, None when done,
    or raises DecodeError (then the session is over: LocalProtocolError after); queues stay
    within max_pending_tasks; results never claim the peer lacks an id we do not hold, or that
    we lack one we hold. Mode 2 runs two honest sessions over fuzzer-chosen sets and asserts
    both sides learn exactly the set differences.

    Input: mode byte; modes 0/1: sized messages; mode 2: two counts, then id choices.
    """
    c = Cursor(data)
    mode = c.choice(3)
    if mode == 2:
        _honest_sync(c)
        return
    items = _items(STORE_IDS)
    initiator = mode == 1
    rec = Reconciler(items, initiator=initiator, salt=b"s" * SALT_BYTES if initiator else b"",
                     config=SYNC)  # fmt: skip
    if initiator:
        rec.start()
    while c.remaining and not rec.done:
        try:
            out = rec.receive(c.sized())
        except DecodeError:
            try:
                rec.receive(b"\x01\x00")
            except LocalProtocolError:
                return
            raise AssertionError("a failed sync session accepted another message") from None
        assert rec.statistics().peak_queued <= SYNC.max_pending_tasks
        if out is None:
            assert rec.done
            break
        assert len(out) <= SYNC.max_message_bytes
    held = set(STORE_IDS)
    assert set(rec.have_ids) <= held
    assert not set(rec.need_ids) & held


def _honest_sync(c: Cursor) -> None:
    ids_a = _ids_from(c, c.u8() % 40)
    ids_b = _ids_from(c, c.u8() % 40)
    a = Reconciler(_items(ids_a), initiator=True, salt=c.take(SALT_BYTES).ljust(SALT_BYTES, b"\0"),
                   config=SYNC_WIDE_FP)  # fmt: skip
    b = Reconciler(_items(ids_b), initiator=False, config=SYNC_WIDE_FP)
    message: bytes | None = a.start()
    side, other = b, a
    while message is not None:
        message = side.receive(message)
        side, other = other, side
    set_a, set_b = set(ids_a), set(ids_b)
    assert set(a.have_ids) == set_a - set_b
    assert set(a.need_ids) == set_b - set_a
    assert set(b.have_ids) == set_b - set_a
    assert set(b.need_ids) == set_a - set_b


# ============================================================ contact codes and proofs


def seeds_identity() -> Iterator[bytes]:
    public = ALICE.public.to_bytes()
    yield b"\x00" + public
    yield b"\x00" + public[:-1] + bytes([public[-1] ^ 1])
    code = encode_contact_code(ALICE.public, "Alice", ["alice.local:4000", "[fe80::1]:1"])
    yield b"\x01" + code.encode()
    yield b"\x01" + code.lower().encode()[:80]
    yield b"\x01" + encode_contact_code(BOB.public).encode()
    yield b"\x01MM2:ABC"
    extras = b"\x05Alice\x02\x10alice.local:4000\x0d10.0.0.1:4000"
    yield b"\x02" + extras
    yield b"\x02\x00\x00"
    yield b"\x02\x02\xc3\x28\x00"  # a name that is not UTF-8
    yield b"\x03" + public + b"\x00\x00"
    yield b"\x04alice.local:4000"
    yield b"\x04[::1%eth0]:1"
    yield b"\x05" + b32encode(public).encode()


@target("identity", seeds=seeds_identity)
def fuzz_identity(data: bytes) -> None:
    """Identity proofs and contact codes: PublicIdentity.from_bytes (the proof in a peer's
    handshake) and decode_contact_code (text from a QR code or a paste) return verified values
    that re-encode to the exact input, or raise InvalidContactCode; so do parse_hint and
    b32decode (ValueError-compatible, never another exception).

    Input: mode byte; 0: proof bytes; 1: code text (Latin-1); 2: name and hints after Alice's
    real public identity, checksummed; 3: a whole payload, checksummed; 4: a hint; 5: base32.
    """
    c = Cursor(data)
    mode = c.choice(6)
    raw = c.rest()
    text = raw.decode("latin-1")
    try:
        if mode == 0:
            public = PublicIdentity.from_bytes(raw)
            assert public.to_bytes() == raw
        elif mode in (1, 2, 3):
            if mode != 1:
                body = ALICE.public.to_bytes() + raw if mode == 2 else raw
                text = "MM1:" + b32encode(body + _checksum(body))
            card = decode_contact_code(text)
            again = encode_contact_code(card.public, card.name, card.hints)
            assert decode_contact_code(again) == card
            if mode != 1:
                assert again == text
        elif mode == 4:
            host, port = parse_hint(text)
            assert 1 <= port <= 65_535
            assert host
        else:
            decoded = b32decode(text)
            assert b32decode(b32encode(decoded)) == decoded
    except InvalidContactCode:
        return


# ======================================================================== link states


def _static(label: str) -> bytes:
    return SeededRng(13, f"static:{label}").randbytes(32)


def _decide_from(verdict: PeerVerdict) -> Callable[[PeerHandshake], PeerVerdict]:
    def decide(_: PeerHandshake) -> PeerVerdict:
        return verdict

    return decide


def _link(initiator: bool, verdict: PeerVerdict, label: str) -> Link:
    return Link(
        initiator=initiator, static_private=_static(label), config=PROLOGUE_CONFIG,
        rng=SeededRng(14, f"link:{label}"), now=T0,
        handshake_records=[Hello(version=1, capabilities=(1,), agent="fuzz")],
        decide=_decide_from(verdict), registry=SESSION_RECORDS,
    )  # fmt: skip


def _noise(initiator: bool, label: str) -> NoiseHandshake:
    # A hostile peer's writer: payloads up to 8,000 bytes, over our 1,024-byte limit.
    return NoiseHandshake(
        initiator=initiator, static_private=_static(label),
        ephemeral_private=SeededRng(15, f"eph:{label}").randbytes(32),
        prologue=PROLOGUE, max_payload_bytes=8_000,
    )  # fmt: skip


_VERDICTS: Final = (PeerVerdict.CONTACT, PeerVerdict.STRANGER, PeerVerdict.BLOCKED)
_HELLO: Final = encode_records([Hello(version=1, capabilities=(1,), agent="fuzz")])


def seeds_link() -> Iterator[bytes]:
    yield b"\x00\x00" + encode_frame(bytes(32))
    yield b"\x01\x00" + encode_frame(bytes(48)) + encode_frame(b"\x01")
    for verdict in range(3):
        yield bytes([2, verdict]) + _HELLO
        yield bytes([3, verdict]) + _HELLO
        yield bytes([2, verdict]) + encode_records(
            [
                Hello(version=1, capabilities=(), agent=None),
                IdentityProof(public=ALICE.public.to_bytes()),
            ]
        )
    records = sample_session_records()
    yield b"\x04\x00" + b"".join(sized(encode_record(r)) for r in records)
    yield (
        b"\x04\x01"
        + sized(encode_records([Ping(nonce=1), Rekey()]))
        + sized(encode_record(Ping(nonce=2)))
    )
    yield b"\x04\x00" + sized(encode_record(Close(reason=200, detail="x")))


@target("link", seeds=seeds_link, max_len=8192)
def fuzz_link(data: bytes) -> None:
    """A Link in every state a peer can reach: raw bytes into a responder (0) or an initiator
    (1); a real Noise peer whose handshake payload (message 3 to a responder: 2; message 2 to
    an initiator: 3) is the fuzzer's bytes, up to 8,000 (our limit is 1,024); an established
    link fed frames the real peer encrypted around arbitrary plaintexts (4). Every input
    returns application records or raises RemoteProtocolError, and then the link is CLOSED with
    that reason; a link never returns Ping/Pong/Rekey/Close records to its caller.

    Input: mode byte, verdict byte (contact/stranger/blocked), then per mode: a stream; a
    payload; sized plaintexts.
    """
    c = Cursor(data)
    mode = c.choice(5)
    verdict = _VERDICTS[c.choice(3 if mode < 4 else 2)]  # an established link is not blocked
    link = _link(mode in (1, 3), verdict, "target")
    try:
        if mode in (0, 1):
            link.data_to_send(T0)
            records = link.receive_data(c.rest(), T0)
        elif mode == 2:
            peer = _noise(True, "peer")
            link.receive_data(encode_frame(peer.write_message(b"")), T0)
            frames = FrameReader(DEFAULT_WIRE).feed(link.data_to_send(T0))
            peer.read_message(frames[0])
            records = link.receive_data(encode_frame(peer.write_message(c.take(8_000))), T0)
        elif mode == 3:
            peer = _noise(False, "peer")
            frames = FrameReader(DEFAULT_WIRE).feed(link.data_to_send(T0))
            peer.read_message(frames[0])
            records = link.receive_data(encode_frame(peer.write_message(c.take(8_000))), T0)
        else:
            link, peer_link = _established(verdict)
            transport = peer_link._transport
            assert transport is not None
            records = []
            while c.remaining and link.state is LinkState.ESTABLISHED:
                plaintext = c.sized() or b"\x00"
                records += link.receive_data(encode_frame(transport.encrypt(plaintext)), T0)
                if _ends_with_rekey(plaintext):
                    transport.rekey_outbound()
    except RemoteProtocolError as exc:
        check(link.state is LinkState.CLOSED, link.state)
        check(link.close_reason is exc.reason, (link.close_reason, exc.reason))
        return
    for rec in records:
        assert not isinstance(rec, Ping | Pong | Rekey | Close)
    if link.state is LinkState.ESTABLISHED:
        link.send([Ping(nonce=1)])
        assert link.data_to_send(T0)


def _ends_with_rekey(plaintext: bytes) -> bool:
    try:
        records = decode_records(plaintext, SESSION_RECORDS, DEFAULT_WIRE)
    except DecodeError:
        return False
    return bool(records) and isinstance(records[-1], Rekey)


def _established(verdict: PeerVerdict) -> tuple[Link, Link]:
    link = _link(False, verdict, "target")
    peer = _link(True, PeerVerdict.CONTACT, "peer")
    for _ in range(4):
        out = peer.data_to_send(T0)
        if out:
            link.receive_data(out, T0)
        back = link.data_to_send(T0)
        if back:
            peer.receive_data(back, T0)
    if verdict is not PeerVerdict.BLOCKED:
        assert link.state is LinkState.ESTABLISHED
        assert peer.state is LinkState.ESTABLISHED
    return link, peer


# ============================================================================== nodes


@dataclass(slots=True)
class _Conn:
    """One transport connection of the target node: to the real peer node or a hand link."""

    link_id: int
    peer_link_id: int | None = None  # the real peer node's id for the same connection
    hand: Link | None = None  # a hand-driven peer (a stranger, or a clone of the contact)


@dataclass(slots=True)
class _World:
    node: Node  # the target: Bob
    peer: Node  # Alice, Bob's paired contact, a real node
    now: float = T0
    conns: dict[int, _Conn] = field(default_factory=dict)
    next_link: int = 1
    events: list[tuple[str, Event]] = field(default_factory=list)  # ("bob" | "alice", event)

    def conn(self, c: Cursor) -> _Conn | None:
        if not self.conns:
            return None
        return list(self.conns.values())[c.u8() % len(self.conns)]

    def drop(self, conn: _Conn) -> None:
        if self.conns.pop(conn.link_id, None) is None:
            return
        self.node.link_lost(conn.link_id, now=self.now)
        if conn.peer_link_id is not None:
            self.peer.link_lost(conn.peer_link_id, now=self.now)

    def by_peer_link(self, peer_link: int) -> _Conn | None:
        return next((x for x in self.conns.values() if x.peer_link_id == peer_link), None)

    def pump(self) -> None:
        """Carry out both nodes' effects until quiet, as a driver would (commits at once)."""
        for _ in range(2_000):
            progress = False
            for is_target, node in ((True, self.node), (False, self.peer)):
                while (event := node.next_event()) is not None:
                    self.events.append(("bob" if is_target else "alice", event))
                while (effect := node.next_effect()) is not None:
                    progress = True
                    self._carry_out(is_target, node, effect)
            if not progress:
                return
        raise AssertionError("the nodes did not go quiet after 2,000 rounds of effects")

    def _carry_out(self, is_target: bool, node: Node, effect: object) -> None:
        match effect:
            case Persist(token=token):
                node.storage_committed(token, now=self.now)
            case Transmit(link=link, data=data) if is_target:
                conn = self.conns.get(link)
                if conn is None:
                    return
                if conn.peer_link_id is not None:
                    self.peer.receive_data(conn.peer_link_id, data, now=self.now)
                elif conn.hand is not None and conn.hand.state is not LinkState.CLOSED:
                    try:
                        conn.hand.receive_data(data, self.now)
                    except RemoteProtocolError:
                        self.drop(conn)
                        return
                    self.hand_flush(conn)
            case Transmit(link=link, data=data):
                conn = self.by_peer_link(link)
                if conn is not None:
                    self.to_node(conn, data)
            case CloseLink(link=link) if is_target:
                conn = self.conns.get(link)
                if conn is not None:
                    self.drop(conn)
            case CloseLink(link=link):
                conn = self.by_peer_link(link)
                if conn is not None:
                    self.drop(conn)
            case Dial():
                pass
            case _:
                raise AssertionError(f"unknown effect {effect!r}")

    def hand_flush(self, conn: _Conn) -> None:
        assert conn.hand is not None
        out = conn.hand.data_to_send(self.now)
        if out and conn.link_id in self.conns:
            self.to_node(conn, out)

    def to_node(self, conn: _Conn, data: bytes) -> None:
        """Bytes from the other end of ``conn`` reach the target node, as a driver delivers them.

        A driver stops reading a link once the node asked to close it; the CloseLink may still
        be queued (the node closed the link while we were carrying out the peer's effects).
        A link the node forgot *without* a CloseLink is a bug: receive_data then raises.
        """
        link = conn.link_id
        if link not in self.node.sessions and any(
            isinstance(e, CloseLink) and e.link == link for e in self.node._out._effects
        ):
            return
        self.node.receive_data(link, data, now=self.now)


def _nodes() -> _World:
    bob = Node(identity=BOB, config=NODE_CONFIG, rng=SeededRng(21, "node:bob"), now=T0)
    alice = Node(identity=ALICE, config=NODE_CONFIG, rng=SeededRng(21, "node:alice"), now=T0)
    bob.add_contact(ContactCard(public=ALICE.public, name="alice"), verified=True, now=T0)
    bob.add_contact(ContactCard(public=CAROL.public, name="carol"), verified=False, now=T0)
    alice.add_contact(ContactCard(public=BOB.public, name="bob"), verified=True, now=T0)
    pair_offline(alice, bob, now=T0)
    world = _World(node=bob, peer=alice)
    world.pump()
    return world


_STEPS: Final = (1.0, 60.0, 3_600.0, 86_400.0 / 16)
# A stranger, a second device holding Alice's identity, and Carol (a contact not yet paired).
_HANDS: Final = (MALLORY, ALICE, CAROL)
OP_CONNECT, OP_HAND, OP_INJECT, OP_RAW, OP_ADVANCE, OP_LOST, OP_SEND, OP_DISCOVER = range(8)


def _op_connect(w: _World, c: Cursor) -> None:
    initiator = bool(c.u8() & 1)
    conn = _Conn(link_id=w.next_link, peer_link_id=w.next_link + 1)
    w.next_link += 2
    w.conns[conn.link_id] = conn
    assert conn.peer_link_id is not None
    w.peer.link_opened(conn.peer_link_id, initiator=not initiator, now=w.now)
    w.node.link_opened(conn.link_id, initiator=initiator, now=w.now)


def _op_hand(w: _World, c: Cursor) -> None:
    identity = _HANDS[c.u8() % len(_HANDS)]
    hand = Link(
        initiator=True, static_private=identity.noise_private, config=NODE_CONFIG,
        rng=SeededRng(22, f"hand:{w.next_link}"), now=w.now,
        handshake_records=[Hello(version=1, capabilities=(1,), agent="fuzz"),
                           IdentityProof(public=identity.public.to_bytes())],
        decide=_decide_from(PeerVerdict.STRANGER), registry=SESSION_RECORDS,
    )  # fmt: skip
    conn = _Conn(link_id=w.next_link, hand=hand)
    w.next_link += 1
    w.conns[conn.link_id] = conn
    w.node.link_opened(conn.link_id, initiator=False, now=w.now)
    w.hand_flush(conn)


def _sending_link(w: _World, conn: _Conn) -> Link | None:
    if conn.hand is not None:
        return conn.hand
    assert conn.peer_link_id is not None
    session = w.peer.sessions.get(conn.peer_link_id)
    return None if session is None else session.link


def _op_inject(w: _World, c: Cursor) -> None:
    conn = w.conn(c)
    plaintext = c.sized() or b"\x00"
    if conn is None:
        return
    link = _sending_link(w, conn)
    transport = None if link is None else link._transport
    if transport is None:  # not established (yet)
        return
    frame = encode_frame(transport.encrypt(plaintext))
    if _ends_with_rekey(plaintext):
        transport.rekey_outbound()
    w.to_node(conn, frame)


def _op_raw(w: _World, c: Cursor) -> None:
    conn = w.conn(c)
    raw = c.sized()
    if conn is not None and raw:
        w.to_node(conn, raw)


def _op_advance(w: _World, c: Cursor) -> None:
    step = _STEPS[c.u8() % len(_STEPS)]
    w.now += step * (1 + c.u8())
    w.node.handle_timer(now=w.now)
    w.peer.handle_timer(now=w.now)
    w.pump()  # links the nodes closed on a timeout are gone before the hand links' timers run
    for conn in list(w.conns.values()):
        if conn.hand is None or conn.link_id not in w.conns:
            continue
        try:
            conn.hand.handle_timer(w.now)
        except RemoteProtocolError:
            w.drop(conn)
            continue
        w.hand_flush(conn)


def _op_lost(w: _World, c: Cursor) -> None:
    conn = w.conn(c)
    if conn is not None:
        w.drop(conn)


def _op_send(w: _World, c: Cursor) -> None:
    who = c.u8() % 3  # 0: Alice to Bob; 1: Bob to Alice; 2: Bob to Carol (not paired yet)
    body = c.take(c.u8()).decode("utf-8", "replace")
    try:
        if who == 0:
            w.peer.send_message(BOB.peer_id, body, now=w.now)
        else:
            w.node.send_message((ALICE, CAROL)[who - 1].peer_id, body, now=w.now)
    except LocalProtocolError as exc:  # the app's error: the outbox is full
        check("outbox full" in str(exc), exc)


def _op_discover(w: _World, c: Cursor) -> None:
    w.node.peer_discovered(f"10.0.0.{c.u8()}:4000", now=w.now)


_OPS: Final = (_op_connect, _op_hand, _op_inject, _op_raw, _op_advance, _op_lost, _op_send,
               _op_discover)  # fmt: skip


def node_program(*ops: tuple[int, bytes]) -> bytes:
    """Encode a list of (opcode, argument bytes) as a node target input (for seeds and tests)."""
    return b"".join(bytes([op]) + arg for op, arg in ops)


def seeds_node() -> Iterator[bytes]:
    session = sample_session_records()
    meet = [(OP_CONNECT, b"\x01"), (OP_ADVANCE, b"\x00\x00")]
    yield node_program(*meet)
    yield node_program((OP_SEND, b"\x01\x05hello"), *meet, (OP_SEND, b"\x00\x02hi"),
                       (OP_ADVANCE, b"\x01\x05"), (OP_LOST, b"\x00"))  # fmt: skip
    yield node_program(*meet, *[(OP_INJECT, b"\x00" + sized(encode_record(r))) for r in session])
    yield node_program((OP_HAND, b"\x00"), *[(OP_INJECT, b"\x00" + sized(encode_record(r)))
                                             for r in session[6:]])  # fmt: skip
    yield node_program((OP_HAND, b"\x01"), (OP_CONNECT, b"\x00"), (OP_ADVANCE, b"\x02\x00"))
    transfer = encode_record(Transfer(envelope=foreign_envelope(), copies=2, hops=1,
                                      route_hint=None))  # fmt: skip
    yield node_program((OP_HAND, b"\x00"), (OP_INJECT, b"\x00" + sized(transfer)),
                       (OP_CONNECT, b"\x01"), (OP_ADVANCE, b"\x00\x01"))  # fmt: skip
    yield node_program(*meet, (OP_INJECT, b"\x00" + sized(transfer)), (OP_ADVANCE, b"\x01\x01"))
    share = new_key_share(SeededRng(4, "carol"), T0, MESSAGE_LIMITS)[1].to_bytes()
    yield node_program(
        (OP_HAND, b"\x02"),
        (OP_INJECT, b"\x00" + sized(encode_record(KeyExchange(share=share)))),
        (OP_SEND, b"\x01\x02hi"),
        (OP_ADVANCE, b"\x00\x03"),
    )
    yield node_program(*meet, (OP_RAW, b"\x00" + sized(b"\x00\x05hello")))
    yield node_program((OP_SEND, b"\x00\x03abc"), (OP_ADVANCE, b"\x03\x20"), *meet,
                       (OP_ADVANCE, b"\x03\xff"), (OP_DISCOVER, b"\x01"))  # fmt: skip
    rekey = encode_records([Ping(nonce=1), Rekey()])
    yield node_program(*meet, (OP_INJECT, b"\x00" + sized(rekey)),
                       (OP_INJECT, b"\x00" + sized(encode_record(Ping(nonce=2)))))  # fmt: skip


@target("node", seeds=seeds_node, max_len=8192)
def fuzz_node(data: bytes) -> None:
    """A Node (Bob, paired with a real contact node Alice) driven by an arbitrary sequence of
    driver inputs: links to Alice opened either way, links from hand-driven peers (a stranger,
    a second device with Alice's keys), records encrypted by the real peer's session around
    arbitrary plaintexts, raw bytes, time advancing (seconds to days), links lost, messages
    sent, peers discovered. No input makes a Node method raise (``receive_data`` promises never
    to raise for anything the peer sent), the effects always go quiet, and the next deadline is
    a number.

    Input: a sequence of (opcode byte, arguments); see ``_OPS``.
    """
    run_node_program(data)


def run_node_program(data: bytes) -> _World:
    """Run a node target input; return the world (tests look at its events)."""
    w = _nodes()
    c = Cursor(data)
    steps = 0
    while c.remaining and steps < 64:
        steps += 1
        _OPS[c.choice(len(_OPS))](w, c)
        w.pump()
        deadline = w.node.next_deadline()
        assert deadline is None or deadline == deadline  # not NaN
    return w


# Groups (issue #14) and the local API live in their own modules; importing one registers
# its target.
from tests.fuzz import api_target, group_targets  # noqa: E402, F401
