"""The byte format of a B+ channel's state (version 1), strict and bounded.

:meth:`ContactChannel.to_bytes <meshmsg.core.e2e.ContactChannel.to_bytes>` and
:meth:`~meshmsg.core.e2e.ContactChannel.from_bytes` call :func:`encode_state` and
:func:`decode_state`. Decoding checks every count against the limits and every order the
state keeps, and raises only :class:`~meshmsg.errors.KeystoreError`; the restored channel then
re-derives its window tags (they are not stored).
"""

from __future__ import annotations

import math
import struct
from typing import Final, TypeVar

from meshmsg.config import MessageLimits
from meshmsg.core.cursor import ByteCursor
from meshmsg.core.e2estate import ChannelState, ExpiredTag, FinalReport, RecvEpoch, SendChain, Slot
from meshmsg.core.keyschedule import CONFIRM_BYTES
from meshmsg.errors import KeystoreError

S = TypeVar("S", bound=ChannelState)

# Channel state format, version 1 (all integers big-endian; docs/protocol/e2e.md lists it):
#   "MMch" u8 version u8 flags(bit0: we are A) f64 clock u32 epoch 16 confirmation
#   u8 n, n x (u32 epoch, 32 heal key)
#   send: u32 epoch u64 start u64 period 32 key 32 tag key u32 counter u8 n, n x (u64 p, u32 c)
#   u8 n epochs, each: u32 epoch u64 start u64 last(all ones: open)
#       u8 pending, if 1: u64 last u64 counts_from u8 n, n x (u64 p, u32 c)
#       u8 n slots, each: u64 period 32 key 32 tag key u32 base u32 limit
#           u16 n, n bytes seen bitmap (little-endian, bit i = counter base + i)
#           u16 n, n x u32 skipped counter
#   u16 n expired, each: 16 tag f64 until u32 epoch u64 period u32 counter u8 reported
# Window tags are not stored: they are recomputed from the slot keys on restore.
_MAGIC: Final = b"MMch"
_STATE_VERSION: Final = 1
_OPEN: Final = (1 << 64) - 1


class _Writer:
    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def put(self, fmt: str, *values: int | float | bytes) -> None:
        self.parts.append(struct.pack(">" + fmt, *values))

    def counts(self, counts: dict[int, int]) -> None:
        self.put("B", len(counts))
        for period, count in sorted(counts.items()):
            self.put("QI", period, count)


class _Reader(ByteCursor):
    """Strict cursor over state bytes: every short read or bound is a KeystoreError."""

    __slots__ = ()

    def __init__(self, data: bytes) -> None:
        super().__init__(data, error=KeystoreError, truncated="channel state is truncated")

    def real(self) -> float:
        value: float = struct.unpack(">d", self.take(8))[0]
        if not math.isfinite(value) or value < 0:
            raise KeystoreError("channel state holds a bad time")
        return value

    def count(self, size: int, bound: int, what: str) -> int:
        n = self.uint(size)
        if n > bound:
            raise KeystoreError(f"channel state holds {n} {what}, over the limit of {bound}")
        return n

    def counts(self, bound: int, cap: int) -> dict[int, int]:
        pairs = [(self.uint(8), self.uint(4)) for _ in range(self.count(1, bound, "periods"))]
        if [p for p, _ in pairs] != sorted({p for p, _ in pairs}):
            raise KeystoreError("channel state counts are out of order")
        if any(not 1 <= c <= cap for _, c in pairs):
            raise KeystoreError("channel state count out of range")
        return dict(pairs)


def encode_state(ch: ChannelState) -> bytes:
    w = _Writer()
    w.parts.append(_MAGIC)
    w.put("BBdI", _STATE_VERSION, int(ch._is_a), ch._clock, ch._epoch)
    w.parts.append(ch._confirmation)
    w.put("B", len(ch._heal_keys))
    for epoch_no, key in ch._heal_keys.items():
        w.put("I32s", epoch_no, key)
    s = ch._send
    w.put("IQQ32s32sI", s.epoch, s.start, s.period, s.key, s.tag_key, s.counter)
    w.counts(s.counts)
    w.put("B", len(ch._recv))
    for epoch in ch._recv.values():
        w.put("IQQB", epoch.epoch, epoch.start, _OPEN if epoch.last is None else epoch.last,
              epoch.pending is not None)  # fmt: skip
        if epoch.pending is not None:
            w.put("QQ", epoch.pending.last, epoch.pending.counts_from)
            w.counts(epoch.pending.counts)
        w.put("B", len(epoch.slots))
        for slot in epoch.slots.values():
            seen = slot.seen.to_bytes((slot.seen.bit_length() + 7) // 8, "little")
            w.put("Q32s32sIIH", slot.period, slot.key, slot.tag_key, slot.base, slot.limit,
                  len(seen))  # fmt: skip
            w.parts.append(seen)
            w.put("H" + "I" * len(slot.skipped), len(slot.skipped), *slot.skipped)
    w.put("H", len(ch._expired))
    for tag, e in ch._expired.items():
        w.put("16sdIQIB", tag, e.until, e.epoch, e.period, e.counter, e.reported)
    return b"".join(w.parts)


def decode_state(cls: type[S], data: bytes, limits: MessageLimits) -> S:
    r = _Reader(data)
    if r.take(4) != _MAGIC or r.uint(1) != _STATE_VERSION:
        raise KeystoreError("not a channel state of format version 1")
    flags = r.uint(1)
    if flags > 1:
        raise KeystoreError("channel state has unknown flags")
    ch = cls(limits, is_a=bool(flags), clock=r.real())
    ch._epoch = r.uint(4)
    ch._confirmation = r.take(CONFIRM_BYTES)
    n_heal = r.count(1, 2, "heal keys")
    ch._heal_keys = {r.uint(4): r.take(32) for _ in range(n_heal)}
    span = ch._span() + 1
    cap = limits.max_messages_per_period
    ch._send = SendChain(
        epoch=r.uint(4), start=r.uint(8), period=r.uint(8), key=r.take(32), tag_key=r.take(32),
        counter=r.uint(4), counts=r.counts(span, cap),
    )  # fmt: skip
    send = ch._send
    if len(ch._heal_keys) != n_heal or ch._epoch not in ch._heal_keys or send.epoch != ch._epoch:
        raise KeystoreError("channel state epochs are inconsistent")
    if not send.start <= send.period <= ch._period or send.counter > cap:
        raise KeystoreError("channel state send counter or period out of range")
    for _ in range(r.count(1, limits.max_epochs_retained, "epochs")):
        epoch = _decode_epoch(r, limits, span)
        if (ch._recv and epoch.epoch <= next(reversed(ch._recv))) or epoch.epoch > ch._epoch:
            raise KeystoreError("channel state epochs are out of order")
        ch._recv[epoch.epoch] = epoch
    if ch._epoch not in ch._recv:
        raise KeystoreError("channel state lacks its current receive epoch")
    n_expired = r.count(2, limits.max_expired_tags, "expired tags")
    for _ in range(n_expired):
        tag, until = r.take(16), r.real()
        epoch_no, period, counter, reported = r.uint(4), r.uint(8), r.uint(4), r.uint(1)
        if reported > 1:
            raise KeystoreError("channel state has a bad reported flag")
        ch._expired[tag] = ExpiredTag(
            until=until, epoch=epoch_no, period=period, counter=counter, reported=bool(reported)
        )
    if len(ch._expired) != n_expired or not r.at_end():
        raise KeystoreError("channel state has duplicate tags or trailing bytes")
    ch._reindex()
    return ch


def _decode_epoch(r: _Reader, limits: MessageLimits, span: int) -> RecvEpoch:
    cap = limits.max_messages_per_period
    epoch_no, start, last, has_pending = r.uint(4), r.uint(8), r.uint(8), r.uint(1)
    epoch = RecvEpoch(epoch=epoch_no, start=start, last=None if last == _OPEN else last, slots={})
    if has_pending > 1:
        raise KeystoreError("channel state has a bad pending flag")
    if has_pending:
        p_last, counts_from = r.uint(8), r.uint(8)
        epoch.pending = FinalReport(
            last=p_last, counts_from=counts_from, counts=r.counts(span, cap)
        )
    for _ in range(r.count(1, span, "periods")):
        period, key, tag_key = r.uint(8), r.take(32), r.take(32)
        slot = Slot(period, key, tag_key, limit=0)
        slot.base, slot.limit = r.uint(4), r.uint(4)
        slot.seen = int.from_bytes(r.take(r.uint(2)), "little")
        n_skipped = r.count(2, limits.max_skipped_per_period, "skipped counters")
        skipped = [r.uint(4) for _ in range(n_skipped)]
        window = min(limits.tag_window, slot.limit - slot.base)
        if not slot.base <= slot.limit <= cap or slot.seen >> max(window, 0):
            raise KeystoreError("channel state window out of range")
        if skipped != sorted(set(skipped)) or any(c >= slot.base for c in skipped):
            raise KeystoreError("channel state skipped counters out of range")
        if period < start or (epoch.slots and period <= next(reversed(epoch.slots))):
            raise KeystoreError("channel state periods out of order")
        slot.skipped = dict.fromkeys(skipped, b"")
        epoch.slots[period] = slot
    return epoch
