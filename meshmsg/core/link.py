"""One Noise link to one neighbour: framing + handshake + transport + keepalive + rekey.

Theory of operation
-------------------
States::

    HANDSHAKE --(Noise XX done, peer accepted)--> ESTABLISHED --(close / error / timeout)--> CLOSED
        \\--------------------(error / timeout / peer refused)------------------------------/

* ``HANDSHAKE``: the initiator writes Noise message 1 (``e``, empty payload: nothing is said in
  clear). The responder answers with message 2 carrying its handshake records (a ``Hello`` and
  whatever the node adds) encrypted under the handshake keys; the initiator checks the responder
  through the ``decide`` hook and only then writes message 3 with its own records. The responder
  checks the initiator the same way after message 3. A refused peer never learns the refuser's
  handshake records beyond what Noise XX itself reveals. Deadline: ``handshake_timeout_s``.
* ``ESTABLISHED``: each frame is ``u16 length ‖ Noise ciphertext``; the plaintext is a CBOR
  sequence of records (several per frame: batching is the main speed lever). ``Ping`` is answered
  with ``Pong``; a silent peer is dropped after ``idle_timeout_s``; we send a ``Ping`` when we
  have sent nothing for ``keepalive_interval_s``. Each direction rekeys on its own: a sender puts a
  ``Rekey`` record last in a frame and switches its outbound key after that frame; the receiver
  switches its inbound key after processing that frame. A peer that goes past twice the rekey
  limits is cut off (``LIMIT_REACHED``).
* ``CLOSED``: terminal. Any further input raises :class:`LocalProtocolError` (a driver bug).

What this class does not know: who the peer is beyond its Noise static key and handshake records
(the ``decide`` hook answers that), and what the application records mean (they are returned to
the caller in order). Errors caused by the peer raise :class:`RemoteProtocolError`; the link is
then ``CLOSED`` with that reason, and the caller closes the transport.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from meshmsg.config import PROLOGUE, NodeConfig
from meshmsg.core.framing import FrameReader, encode_frame
from meshmsg.core.noise import NoiseHandshake, NoiseTransport, StaticKey
from meshmsg.core.records import HANDSHAKE_RECORDS, Close, Ping, Pong, Rekey
from meshmsg.core.rng import Rng
from meshmsg.core.wire import Record, RecordRegistry, decode_records, encode_records
from meshmsg.errors import (
    CloseReason,
    HandshakeError,
    LocalProtocolError,
    RemoteProtocolError,
)


class LinkState(enum.Enum):
    HANDSHAKE = "handshake"
    ESTABLISHED = "established"
    CLOSED = "closed"


class PeerVerdict(enum.Enum):
    """The node's answer about an authenticated peer."""

    CONTACT = "contact"
    STRANGER = "stranger"
    BLOCKED = "blocked"


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerHandshake:
    """What the handshake proved about the peer."""

    remote_static: bytes
    handshake_hash: bytes
    records: tuple[Record, ...]


Decide = Callable[[PeerHandshake], PeerVerdict]


class Link:
    """The sans-IO state machine of one link. See the module docstring."""

    def __init__(
        self,
        *,
        initiator: bool,
        static_private: bytes | StaticKey,
        config: NodeConfig,
        rng: Rng,
        now: float,
        handshake_records: Sequence[Record],
        decide: Decide,
        registry: RecordRegistry,
    ) -> None:
        self.initiator = initiator
        self.state = LinkState.HANDSHAKE
        self.peer: PeerHandshake | None = None
        self.verdict: PeerVerdict | None = None
        self.close_reason: CloseReason | None = None
        self.closed_by_peer = False
        self._config = config
        self._registry = registry
        self._decide = decide
        self._own_records = encode_records(list(handshake_records))
        self._reader = FrameReader(config.wire)
        self._handshake: NoiseHandshake | None = NoiseHandshake(
            initiator=initiator,
            static_private=static_private,
            ephemeral_private=rng.randbytes(32),
            prologue=PROLOGUE,
            psk=config.site_key,
            max_payload_bytes=config.wire.max_handshake_payload_bytes,
        )
        self._transport: NoiseTransport | None = None
        self._out = bytearray()
        self._pending: list[bytes] = []  # encoded records waiting for the next frame
        self._handshake_deadline = now + config.link.handshake_timeout_s
        self._last_received_at = now
        self._last_sent_at = now
        self._rekeyed_out_at = now
        self._rekeyed_in_at = now
        self._seen_now = now  # the last ``now`` given: a later, smaller one is a step back
        self._frames_out_since_rekey = 0
        self._frames_in_since_rekey = 0
        self._rekey_requested = False
        if initiator:
            self._send_handshake_message(b"")

    # ------------------------------------------------------------------ inputs

    def receive_data(self, data: bytes, now: float) -> list[Record]:
        """Feed bytes from the transport; return the application records they completed.

        Raises:
            RemoteProtocolError: the peer broke the protocol; the link is now CLOSED.
            LocalProtocolError: the link was already closed.
        """
        self._require_open()
        self._follow_clock(now)
        try:
            frames = self._reader.feed(data)
            received: list[Record] = []
            for frame in frames:
                self._last_received_at = now
                if self.state is LinkState.HANDSHAKE:
                    self._receive_handshake_frame(frame, now)
                else:
                    received.extend(self._receive_transport_frame(frame))
                if self.state is LinkState.CLOSED:
                    break
            return received
        except RemoteProtocolError as exc:
            self._enter_closed(exc.reason)
            raise

    def send(self, records: Sequence[Record]) -> None:
        """Queue application records; they leave with the next :meth:`data_to_send`."""
        if self.state is not LinkState.ESTABLISHED:
            raise LocalProtocolError(f"cannot send records in state {self.state.value}")
        limit = self._config.link.max_batch_bytes
        for record in records:
            encoded = encode_records([record])
            if len(encoded) > limit:
                raise LocalProtocolError(f"record of {len(encoded)} bytes exceeds one frame")
            self._pending.append(encoded)

    def handle_timer(self, now: float) -> None:
        """Check deadlines: handshake timeout, idle timeout, keepalive, time-based rekey.

        Raises:
            RemoteProtocolError: a deadline passed (reason TIMEOUT); the link is now CLOSED.
        """
        if self.state is LinkState.CLOSED:
            return
        self._follow_clock(now)
        link = self._config.link
        if self.state is LinkState.HANDSHAKE and now >= self._handshake_deadline:
            self._enter_closed(CloseReason.TIMEOUT)
            raise HandshakeError("handshake not finished in time", reason=CloseReason.TIMEOUT)
        if self.state is not LinkState.ESTABLISHED:
            return
        if now >= self._last_received_at + link.idle_timeout_s:
            self._enter_closed(CloseReason.TIMEOUT)
            raise RemoteProtocolError("peer silent for too long", reason=CloseReason.TIMEOUT)
        if now >= self._last_sent_at + link.keepalive_interval_s and not self._pending:
            self._pending.append(encode_records([Ping(nonce=0)]))
        if now >= self._rekeyed_out_at + link.rekey_interval_s:
            self._rekey_requested = True

    def _follow_clock(self, now: float) -> None:
        """A wall clock stepped back moves every timer back with it (core/deadline.py): else
        no keepalive leaves for the size of the step and the peer's idle timeout closes us."""
        step = self._seen_now - now
        if step > 0:
            self._handshake_deadline -= step
            self._last_received_at -= step
            self._last_sent_at -= step
            self._rekeyed_out_at -= step
            self._rekeyed_in_at -= step
        self._seen_now = now

    def close(self, reason: CloseReason = CloseReason.NORMAL, detail: str = "") -> None:
        """Close the link; an established link first queues a ``Close`` record for the peer."""
        if self.state is LinkState.CLOSED:
            return
        if self.state is LinkState.ESTABLISHED:
            self._pending.append(encode_records([Close(reason=int(reason), detail=detail[:256])]))
            self._flush_pending(now=self._last_sent_at)
        self._enter_closed(reason)

    # ----------------------------------------------------------------- outputs

    def data_to_send(self, now: float) -> bytes:
        """Return (and forget) the bytes to write to the transport, queued records included."""
        self._follow_clock(now)
        if self.state is LinkState.ESTABLISHED and (self._pending or self._rekey_requested):
            self._flush_pending(now)
        data = bytes(self._out)
        self._out.clear()
        return data

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`handle_timer` has something to do, or None when closed."""
        link = self._config.link
        if self.state is LinkState.HANDSHAKE:
            return self._handshake_deadline
        if self.state is LinkState.ESTABLISHED:
            return min(
                self._last_received_at + link.idle_timeout_s,
                self._last_sent_at + link.keepalive_interval_s,
                self._rekeyed_out_at + link.rekey_interval_s,
            )
        return None

    @property
    def has_pending(self) -> bool:
        return bool(self._pending) or bool(self._out)

    # ------------------------------------------------------------- handshake

    def _send_handshake_message(self, payload: bytes) -> None:
        assert self._handshake is not None
        self._out += encode_frame(self._handshake.write_message(payload))

    def _receive_handshake_frame(self, frame: bytes, now: float) -> None:
        hs = self._handshake
        assert hs is not None
        payload = hs.read_message(frame)
        if not hs.finished and not self.initiator:
            # Message 1 carries only the initiator's ephemeral key: nothing may be said in clear.
            if payload:
                raise HandshakeError("payload in handshake message 1")
            self._send_handshake_message(self._own_records)
            return
        self._accept_peer(hs, payload)
        if self.initiator:
            self._send_handshake_message(self._own_records)
        self._established(hs, now)

    def _accept_peer(self, hs: NoiseHandshake, payload: bytes) -> None:
        remote = hs.remote_static
        if remote is None:
            raise HandshakeError("peer static key missing after handshake")
        records = decode_records(payload, HANDSHAKE_RECORDS, self._config.wire)
        # The initiator decides before writing message 3, when the final hash does not exist
        # yet; the hash is filled in when the handshake finishes.
        peer = PeerHandshake(remote_static=remote, handshake_hash=b"", records=tuple(records))
        verdict = self._decide(peer)
        if verdict is PeerVerdict.BLOCKED:
            raise HandshakeError("peer refused", reason=CloseReason.PEER_BLOCKED)
        self.peer, self.verdict = peer, verdict

    def _established(self, hs: NoiseHandshake, now: float) -> None:
        if not hs.finished:
            raise HandshakeError("handshake did not finish")
        assert self.peer is not None
        self.peer = PeerHandshake(
            remote_static=self.peer.remote_static,
            handshake_hash=hs.handshake_hash,
            records=self.peer.records,
        )
        self._transport = hs.into_transport()
        self._handshake = None
        self.state = LinkState.ESTABLISHED
        self._rekeyed_out_at = self._rekeyed_in_at = now
        self._last_sent_at = now

    # ------------------------------------------------------------- transport

    def _receive_transport_frame(self, frame: bytes) -> list[Record]:
        transport = self._transport
        assert transport is not None
        self._check_inbound_limits()
        plaintext = transport.decrypt(frame)
        self._frames_in_since_rekey += 1
        records = decode_records(plaintext, self._registry, self._config.wire)
        out: list[Record] = []
        rekey = False
        for record in records:
            if rekey:
                raise RemoteProtocolError("Rekey must be the last record of its frame")
            match record:
                case Ping(nonce=nonce):
                    self._pending.append(encode_records([Pong(nonce=nonce)]))
                case Pong():
                    pass
                case Rekey():
                    rekey = True
                case Close(reason=code):
                    self.closed_by_peer = True
                    self._enter_closed(_close_reason(code))
                    return out
                case _:
                    out.append(record)
        if rekey:
            transport.rekey_inbound()
            self._frames_in_since_rekey = 0
            self._rekeyed_in_at = self._last_received_at
        return out

    def _check_inbound_limits(self) -> None:
        link = self._config.link
        hard_frames = link.rekey_after_frames * link.hard_limit_factor
        hard_age = link.rekey_interval_s * link.hard_limit_factor
        too_old = self._last_received_at - self._rekeyed_in_at > hard_age
        if self._frames_in_since_rekey >= hard_frames or too_old:
            raise RemoteProtocolError("peer did not rekey", reason=CloseReason.LIMIT_REACHED)

    def _flush_pending(self, now: float) -> None:
        """Pack queued records into as few frames as fit, encrypt, and append to the output."""
        transport = self._transport
        assert transport is not None
        limit = self._config.link.max_batch_bytes
        rekey_frames = self._config.link.rekey_after_frames
        if self._frames_out_since_rekey + len(self._pending) + 1 >= rekey_frames:
            self._rekey_requested = True
        batch: list[bytes] = []
        size = 0
        rekey_record = encode_records([Rekey()])
        # The receiver refuses a frame of max_records_per_frame records or more (its count is
        # checked before each record): small records (a Reply per Offer) must split by count
        # too, one place kept for the Rekey record.
        most = self._config.wire.max_records_per_frame - 2
        for encoded in self._pending:
            if size + len(encoded) > limit - len(rekey_record) or len(batch) >= most:
                self._emit_frame(transport, batch, rekey=False)
                batch, size = [], 0
            batch.append(encoded)
            size += len(encoded)
        self._pending.clear()
        if self._rekey_requested:
            batch.append(rekey_record)
        self._emit_frame(transport, batch, rekey=self._rekey_requested)
        if self._rekey_requested:
            self._rekey_requested = False
            self._rekeyed_out_at = now
        self._last_sent_at = now

    def _emit_frame(self, transport: NoiseTransport, batch: list[bytes], *, rekey: bool) -> None:
        if not batch:
            return
        self._out += encode_frame(transport.encrypt(b"".join(batch)))
        self._frames_out_since_rekey += 1
        if rekey:
            transport.rekey_outbound()
            self._frames_out_since_rekey = 0

    # ---------------------------------------------------------------- helpers

    def _require_open(self) -> None:
        if self.state is LinkState.CLOSED:
            raise LocalProtocolError("link is closed")

    def _enter_closed(self, reason: CloseReason) -> None:
        self.state = LinkState.CLOSED
        self.close_reason = reason
        self._handshake = None
        self._transport = None
        self._pending.clear()


def _close_reason(code: int) -> CloseReason:
    try:
        return CloseReason(code)
    except ValueError:
        return CloseReason.LOCAL_ERROR
