"""The sync message format: constants, entry kinds, the strict reader, the mirrored queues' records.

How a reconciliation session (``core/reconcile.py``, whose docstring is the theory of operation)
puts things on the wire. A message is ``version, entry count, entries``; the initiator's first
message is ``version, fanout bits, fingerprint size, salt, count, idsum, fingerprint`` instead.
Entries carry no address: each side keeps the queue of entries it owes (:data:`Owed`) and the
queue of entries it awaits (:data:`Awaited`), mirror images of each other, and the head of the
queue says which trie node the next entry is about. :class:`NodeCodec` writes and reads what an
entry says about one node: fingerprints under the session's salt, ids without the prefix bytes
the node's address implies, bitmaps of children or of listed ids.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import operator
from dataclasses import dataclass
from typing import Final

from meshmsg.core.cursor import ByteCursor
from meshmsg.core.itemset import HV_BYTES, ID_BITS, ID_BYTES, Addr, Aggregate
from meshmsg.errors import CloseReason, DecodeError

VERSION: Final = 1
SALT_BYTES: Final = 16
ID_MASK: Final = (1 << ID_BITS) - 1
HV_MASK: Final = (1 << (8 * HV_BYTES)) - 1
_FP_PERSON: Final = b"meshmsg-sync-v1"
MAX_COUNT: Final = (1 << 40) - 1  # a count on the wire; far above any store
ROOT: Final[Addr] = (0, 0)


class EntryKind:
    """Entry kind bytes, where the reader cannot know the kind from its queue.

    Plain ints, not an IntEnum: kinds are compared several times per entry, and on
    Python 3.11 an enum member lookup costs about five plain class attribute lookups.
    """

    SUM: Final = 1  # count, idsum suffix, fingerprint
    SPLIT: Final = 2  # F child fingerprints
    IDS: Final = 3  # the sender's ids in the node
    EQUAL: Final = 4  # answer to SUM: same fingerprint
    YOU_HAVE: Final = 5  # answer to SUM: the node was pure; this id is yours alone
    YOU_LACK: Final = 6  # answer to SUM: the node was pure; this id is mine alone
    PUSH_ALL: Final = 7  # answer to SUM with count 0: all my ids of the node (you have none)
    SPLIT_IMPURE: Final = 8  # SPLIT of a node known to hold two differences or more


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def message_reader(message: bytes) -> ByteCursor:
    """Strict cursor over one message: every read checks bounds and canonical form."""
    return ByteCursor(
        message,
        error=DecodeError,
        truncated="sync message truncated in {what}",
        too_large=functools.partial(DecodeError, reason=CloseReason.TOO_LARGE),
    )


def bitmap(indices: list[int], size: int) -> bytes:
    """Big-endian bitmap of ``size`` bytes with bit ``i`` (from the top) set for each index."""
    value = 0
    for i in indices:
        value |= 1 << (8 * size - 1 - i)
    return value.to_bytes(size, "big")


# ============================================================================== the queues' records


@dataclass(slots=True)
class AnswerSum:  # owed: the peer sent SUM(addr)
    addr: Addr
    count: int
    sum_low: int
    fp: bytes


@dataclass(slots=True)
class AnswerSplit:  # owed: the peer sent SPLIT(addr)
    addr: Addr
    fps: bytes
    impure: bool  # known to hold two differences or more


@dataclass(slots=True)
class Describe:  # owed: a child we found differing; say SUM, SPLIT or IDS about it
    addr: Addr
    pure: float | None  # estimated odds that it holds exactly one difference; None: it does not


@dataclass(slots=True)
class AnswerIds:  # owed: the peer listed its ids
    addr: Addr
    ids: list[int]


@dataclass(slots=True)
class Push:  # owed: our extra ids of a node that did not fit yet
    addr: Addr
    ids: list[int]
    pos: int


@dataclass(slots=True)
class WantSumAnswer:  # awaited: answer to our SUM
    addr: Addr
    sent_count: int


@dataclass(slots=True)
class WantBitmap:  # awaited: answer to our SPLIT
    addr: Addr


@dataclass(slots=True)
class WantDescription:  # awaited: the peer describes a child it found differing
    addr: Addr


@dataclass(slots=True)
class WantIdsReply:  # awaited: answer to our IDS
    addr: Addr
    sent: list[int]


@dataclass(slots=True)
class WantPush:  # awaited: more of the peer's extra ids
    addr: Addr
    remaining: int
    last: int


Owed = AnswerSum | AnswerSplit | Describe | AnswerIds | Push
Awaited = WantSumAnswer | WantBitmap | WantDescription | WantIdsReply | WantPush


# ============================================================================== one node's bytes


class NodeCodec:
    """What an entry says about one trie node, written and read: fingerprints, ids, bitmaps.

    ``bits`` is the trie's fanout exponent; the fingerprint key is the session's salt, set
    once it is known (:meth:`set_salt`: at once on the initiator, from the first message on
    the responder).
    """

    def __init__(self, bits: int, fp_bytes: int) -> None:
        self._bits = bits
        self._fp_bytes = fp_bytes
        self._fp_base = hashlib.blake2b(digest_size=1)
        self.salt = b""

    def set_salt(self, salt: bytes) -> None:
        self.salt = salt
        self._fp_base = hashlib.blake2b(digest_size=self._fp_bytes, key=salt, person=_FP_PERSON)

    def fp(self, agg: Aggregate) -> bytes:
        count, idsum, hsum = agg
        h = self._fp_base.copy()
        h.update(
            count.to_bytes(8, "big")
            + (idsum & ID_MASK).to_bytes(ID_BYTES, "big")
            + (hsum & HV_MASK).to_bytes(HV_BYTES, "big")
        )
        return h.digest()

    def suffix_len(self, depth: int) -> int:
        """Bytes of an id sent inside a node: the whole bytes of the prefix are implied."""
        return ID_BYTES - (depth * self._bits) // 8

    def compose(self, addr: Addr, low: int) -> int:
        """The id with ``addr``'s known whole prefix bytes and the given suffix."""
        depth, prefix = addr
        known_bits = 8 * (ID_BYTES - self.suffix_len(depth))
        top = prefix >> (depth * self._bits - known_bits)
        return (top << (ID_BITS - known_bits)) | low

    def in_node(self, addr: Addr, x: int) -> bool:
        depth, prefix = addr
        return x >> (ID_BITS - depth * self._bits) == prefix

    def suffix(self, addr: Addr, x: int) -> bytes:
        s = self.suffix_len(addr[0])
        return (x & ((1 << (8 * s)) - 1)).to_bytes(s, "big")

    def suffixes(self, addr: Addr, ids: list[int]) -> bytes:
        """``_suffix`` of each id, concatenated: id lists are the bulk of most sessions."""
        s = self.suffix_len(addr[0])
        if s == ID_BYTES:
            return b"".join([x.to_bytes(ID_BYTES, "big") for x in ids])
        mask = (1 << (8 * s)) - 1
        return b"".join([(x & mask).to_bytes(s, "big") for x in ids])

    def child(self, addr: Addr, i: int) -> Addr:
        return addr[0] + 1, (addr[1] << self._bits) | i

    def bitmap_len(self, bits: int) -> int:
        return (bits + 7) // 8

    def read_ascending(self, addr: Addr, n: int, last: int, r: ByteCursor) -> list[int]:
        """``n`` ids of ``addr``, each above ``last`` and the one before it.

        Decoded in one pass over one slice; ascending order means checking the first and the
        last id against the node checks them all.
        """
        s, top = self.suffix_len(addr[0]), self.compose(addr, 0)
        if s == 0:  # a last-level node is one id, implied whole by the address
            if n > 1:
                raise DecodeError("ids not in strictly ascending order")
            ids = [top] * n
        else:
            data, from_bytes = r.take(n * s, "id"), int.from_bytes
            ids = [top | from_bytes(data[i : i + s], "big") for i in range(0, n * s, s)]
        if not ids:
            return ids
        if ids[0] <= last or any(map(operator.ge, ids, itertools.islice(ids, 1, None))):
            raise DecodeError("ids not in strictly ascending order")
        if not (self.in_node(addr, ids[0]) and self.in_node(addr, ids[-1])):
            raise DecodeError("id outside the node it was sent for")
        return ids

    def read_id(self, addr: Addr, r: ByteCursor) -> int:
        low = int.from_bytes(r.take(self.suffix_len(addr[0]), "id"), "big")
        x = self.compose(addr, low)
        if not self.in_node(addr, x):
            raise DecodeError("id outside the node it was sent for")
        return x

    def read_bits(self, nbits: int, r: ByteCursor) -> list[int]:
        data = r.take(self.bitmap_len(nbits), "bitmap")
        value = int.from_bytes(data, "big")
        pad = 8 * len(data) - nbits
        if value & ((1 << pad) - 1):
            raise DecodeError("bitmap padding bits are not zero")
        return [i for i in range(nbits) if value >> (8 * len(data) - 1 - i) & 1]
