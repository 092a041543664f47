"""Set reconciliation: two nodes learn which ids each lacks, in bytes that grow with the difference.

Theory of operation
-------------------
**The index.** An item is a 16-byte id (BLAKE2b-128 of an envelope: uniform, and not chosen by
honest peers) plus an expiry. :class:`ItemSet` keeps the ids in a trie of fanout ``F = 2**b`` over
the id bits (``b = 4``: one hex digit per level). The *node* at depth ``L`` with prefix ``P`` is
the set of ids whose top ``L*b`` bits are ``P``; two peers name the same node without sending any
bound, because the partition is fixed by the id space rather than by either store. Every trie node
keeps three aggregates, updated along one root-to-leaf path on each add and remove (O(depth)):

* ``count``;
* ``idsum`` = Σ id (used mod 2^128): if two versions of a node differ by exactly one id, the
  difference of their sums *is* that id (a "pure" node, as in an IBLT cell);
* ``hsum`` = Σ SHAKE128(id) as 1024-bit numbers (used mod 2^1024): the collision-resistant part.
  A sum of raw ids alone can be collided cheaply by someone who plants chosen ids in both stores
  (Wagner's generalised birthday: about 2^16 work at 128 bits); at 1024 bits and the store quotas
  that bound how many planted ids fit, the same attack costs about 2^80 (docs/protocol/sync.md).

A node's *fingerprint* is BLAKE2b keyed with the session salt over (count, idsum, hsum), cut to
``fingerprint_bytes``. The salt is fresh per session and travels inside the encrypted link, so a
truncation collision is a one-session accident that nobody can precompute; the next session, with
another salt, finds what this one missed.

**The session.** A strict ping-pong; each message is a list of *entries*, each about one node.
Entries carry no address: both sides keep two mirrored FIFO queues, ``owe`` (entries we must
send, in order) and ``await`` (entries the peer must send, in order). Every entry, when written
or read, pops the head of the writer's ``owe`` (the reader's ``await``) and may append to either
queue; both sides apply the same appends in the same order, so the queues stay mirror images
and the reader always knows which node the next entry is about. Entry kinds:

* ``SUM(count, idsum suffix, fp)``: answered by ``EQUAL``; ``YOU_HAVE``/``YOU_LACK`` + the id when
  the node is pure (the answerer checks the candidate id against the fingerprint); ``PUSH_ALL``
  when the sender's count is 0; otherwise ``SPLIT`` or ``IDS`` about the same node;
* ``SPLIT``: the ``F`` child fingerprints; answered by an ``F``-bit bitmap of the children that
  differ, after which the answerer *describes* each differing child (``SUM``, ``SPLIT`` or ``IDS``);
* ``IDS``: the sender's ids in the node; answered by a bitmap of those the answerer lacks plus
  the answerer's extra ids, continued in ``PUSH`` entries if they do not fit one message.

The initiator's first message carries the salt and a ``SUM`` of the whole set: identical stores
finish in one round trip. A describer picks ``SUM`` when the node is probably pure (estimated
from how many siblings differed), ``IDS`` when it holds few ids, ``SPLIT`` otherwise.
Ids inside a node are sent without the prefix bytes both sides already know.

**Results.** Each side ends knowing its own two lists: ``have_ids`` (we have, the peer lacks) and
``need_ids`` (the peer has, we lack). The set may change during a session; every id whose
presence on each side stayed the same for the whole session is reported exactly (up to the
per-session fingerprint collision odds). An id added or removed meanwhile may be missed (the next
session finds it) and the lists are filtered against the current set when read, so ``have_ids``
never names an id we no longer hold and ``need_ids`` never names one we hold.

**Bounds.** Every message is at most ``max_message_bytes``; a session at most
``max_round_trips`` round trips, ``max_pending_tasks`` queued entries each way and
``max_diff_ids`` needed ids; all sessions of a node together hold at most
``max_node_session_ids`` ids (:class:`SyncBudget`). Ids we push are kept as runs of lists we
already hold (the trie's shared cache), so a peer claiming an empty set costs a reference, not
a copy of the store. Bytes that break the format or a bound raise :class:`DecodeError`
and the session is over (a later call raises :class:`LocalProtocolError`).
"""

from __future__ import annotations

import enum
import functools
import hashlib
import itertools
import math
import operator
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from meshmsg.config import SyncConfig
from meshmsg.core.cursor import ByteCursor
from meshmsg.core.itemset import HV_BYTES, ID_BITS, ID_BYTES, Addr, Aggregate, ItemSet, hash_value
from meshmsg.errors import CloseReason, DecodeError, LocalProtocolError

VERSION: Final = 1
SALT_BYTES: Final = 16
_ID_MASK: Final = (1 << ID_BITS) - 1
_HV_MASK: Final = (1 << (8 * HV_BYTES)) - 1
_FP_PERSON: Final = b"meshmsg-sync-v1"
_MAX_COUNT: Final = (1 << 40) - 1  # a count on the wire; far above any store
_HEADER_RESERVE: Final = 4  # version byte + entry count (a varint of at most 3 bytes)
_ROOT: Final[Addr] = (0, 0)

# ============================================================================== wire helpers


class _Kind:
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


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _reader(message: bytes) -> ByteCursor:
    """Strict cursor over one message: every read checks bounds and canonical form."""
    return ByteCursor(
        message,
        error=DecodeError,
        truncated="sync message truncated in {what}",
        too_large=functools.partial(DecodeError, reason=CloseReason.TOO_LARGE),
    )


def _pure_probability(differing: int, fanout: int) -> float:
    """P(a differing child holds exactly one difference), from how many of F siblings differ.

    With differences spread as Poisson(μ) over the children, k of F differ when
    1 - e^-μ = k/F; a differing child is pure with probability μ / (e^μ - 1).
    """
    if differing >= fanout:
        return 0.0
    mu = -math.log1p(-differing / fanout)
    return mu * (fanout - differing) / max(differing, 1)  # no differing child: nothing to say


# ============================================================================== session queues


@dataclass(slots=True)
class _AnswerSum:  # owed: the peer sent SUM(addr)
    addr: Addr
    count: int
    sum_low: int
    fp: bytes


@dataclass(slots=True)
class _AnswerSplit:  # owed: the peer sent SPLIT(addr)
    addr: Addr
    fps: bytes
    impure: bool  # known to hold two differences or more


@dataclass(slots=True)
class _Describe:  # owed: a child we found differing; say SUM, SPLIT or IDS about it
    addr: Addr
    pure: float | None  # estimated odds that it holds exactly one difference; None: it does not


@dataclass(slots=True)
class _AnswerIds:  # owed: the peer listed its ids
    addr: Addr
    ids: list[int]


@dataclass(slots=True)
class _Push:  # owed: our extra ids of a node that did not fit yet
    addr: Addr
    ids: list[int]
    pos: int


@dataclass(slots=True)
class _WantSumAnswer:  # awaited: answer to our SUM
    addr: Addr
    sent_count: int


@dataclass(slots=True)
class _WantBitmap:  # awaited: answer to our SPLIT
    addr: Addr


@dataclass(slots=True)
class _WantDescription:  # awaited: the peer describes a child it found differing
    addr: Addr


@dataclass(slots=True)
class _WantIdsReply:  # awaited: answer to our IDS
    addr: Addr
    sent: list[int]


@dataclass(slots=True)
class _WantPush:  # awaited: more of the peer's extra ids
    addr: Addr
    remaining: int
    last: int


_Owed = _AnswerSum | _AnswerSplit | _Describe | _AnswerIds | _Push
_Awaited = _WantSumAnswer | _WantBitmap | _WantDescription | _WantIdsReply | _WantPush
_Entry = tuple[bytes, Callable[[], None]]  # encoded entry, and its effects once it is sent


def _nothing() -> None:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncStats:
    """Counters of one session (bytes are whole messages as returned and received)."""

    messages_sent: int
    messages_received: int
    bytes_sent: int
    bytes_received: int
    peak_queued: int  # most entries queued in either direction after any message


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


# ============================================================================== node budget


class SyncBudget:
    """The ids all running sessions of one node may hold together (``held_ids``).

    A session only holds ids a peer made it learn or push, but 256 links may each run one: a
    peer that finds the node's sessions at ``max_ids`` together has its session ended with
    ``LIMIT_REACHED`` (it may come back later). Lists shared between sessions are counted
    once per session, so the bound is on the worst case, not on what is shared.
    """

    def __init__(self, max_ids: int) -> None:
        self._max = max_ids
        self._sessions: weakref.WeakSet[Reconciler] = weakref.WeakSet()

    def register(self, session: Reconciler) -> None:
        self._sessions.add(session)

    @property
    def held(self) -> int:
        return sum(session.held_ids for session in list(self._sessions))

    def check(self) -> None:
        """Raises DecodeError (LIMIT_REACHED) when the node's sessions hold too much."""
        if self.held > self._max:
            raise DecodeError("this node's sync sessions hold too many ids; later", reason=_LIMIT)


# ============================================================================== the session


class Reconciler:
    """One reconciliation session over ``items``, on one side. See the module docstring.

    Args:
        items: our set; it may change during the session (semantics in the module docstring).
        initiator: True on the side that calls :meth:`start`.
        salt: the initiator's fresh random salt (``SALT_BYTES``); the responder passes ``b""``
            and takes the salt from the first message.
        config: the limits; ``split_fanout`` must equal ``items.fanout``.
        budget: shared by every session of one node (``max_node_session_ids``); None gives
            the session a budget of its own.

    Raises:
        LocalProtocolError: a salt of the wrong size for the role, or a fanout mismatch.
    """

    def __init__(
        self,
        items: ItemSet,
        *,
        initiator: bool,
        salt: bytes = b"",
        config: SyncConfig,
        budget: SyncBudget | None = None,
    ) -> None:
        if items.fanout != config.split_fanout:
            raise LocalProtocolError("ItemSet fanout differs from SyncConfig.split_fanout")
        if initiator and len(salt) != SALT_BYTES:
            raise LocalProtocolError(f"the initiator's salt is exactly {SALT_BYTES} bytes")
        if not initiator and salt:
            raise LocalProtocolError("the responder takes the salt from the first message")
        self._items = items
        self._config = config
        self._initiator = initiator
        self._bits = items._bits
        self._fanout = items.fanout
        self._max_depth = ID_BITS // self._bits
        self._fp_bytes = config.fingerprint_bytes
        self._fp_base = hashlib.blake2b(digest_size=1)
        if initiator:
            self._set_salt(salt)
        self._owe: deque[_Owed] = deque()
        self._await: deque[_Awaited] = deque()
        self._have: set[int] = set()
        # Ids we pushed to the peer (it lacks them), as runs of lists we already hold (most
        # often the trie's shared cache): a count-0 SUM must not copy the store per session.
        self._pushed: list[tuple[list[int], int, int]] = []
        self._pinned = 0  # ids in lists that pushes hold (charged to the node's budget)
        self._budget = budget if budget is not None else SyncBudget(config.max_node_session_ids)
        self._budget.register(self)
        self._need: set[int] = set()
        self._level: dict[int, list[int]] = {}  # depth -> [children compared, differing]
        self._state = _State.NEW
        self._sent = self._received = self._bytes_sent = self._bytes_received = 0
        self._peak_queued = 0

    # ------------------------------------------------------------------------ public API

    @property
    def done(self) -> bool:
        """True once neither side owes the other anything; the lists are then final."""
        return self._state is _State.DONE

    @property
    def have_ids(self) -> tuple[bytes, ...]:
        """Ids we hold that the peer lacks, ascending (filtered against our current set)."""
        have = self._have.union(*(ids[a:b] for ids, a, b in self._pushed))
        return _as_bytes(self._items._present(have, held=True))

    @property
    def need_ids(self) -> tuple[bytes, ...]:
        """Ids the peer holds that we lack, ascending (filtered against our current set)."""
        return _as_bytes(self._items._present(self._need, held=False))

    @property
    def held_ids(self) -> int:
        """Ids this session holds while it runs (what it learnt, and lists it pushes from);
        none once it is over."""
        if self._state is not _State.RUNNING:
            return 0
        return len(self._have) + len(self._need) + self._pinned

    def statistics(self) -> SyncStats:
        return SyncStats(
            messages_sent=self._sent,
            messages_received=self._received,
            bytes_sent=self._bytes_sent,
            bytes_received=self._bytes_received,
            peak_queued=self._peak_queued,
        )

    def start(self) -> bytes:
        """Return the initiator's first message: version, parameters, salt and a SUM of the set.

        Raises:
            LocalProtocolError: called on the responder or twice.
        """
        if not self._initiator or self._state is not _State.NEW:
            raise LocalProtocolError("start() is called once, by the initiator")
        count, idsum, hsum = self._items._aggregate(_ROOT)
        message = b"".join(
            (
                bytes((VERSION, self._bits, self._fp_bytes)),
                self._salt,
                _varint(count),
                (idsum & _ID_MASK).to_bytes(ID_BYTES, "big"),
                self._fp((count, idsum, hsum)),
            )
        )
        self._await.append(_WantSumAnswer(_ROOT, count))
        self._state = _State.RUNNING
        return self._count_sent(message)

    def receive(self, message: bytes) -> bytes | None:
        """Take the peer's message; return our next message, or None when the session is done.

        Raises:
            DecodeError: the message is malformed, out of protocol or breaks a bound; the
                session is then over.
            LocalProtocolError: called after the session ended or before :meth:`start`.
        """
        if self._state in (_State.DONE, _State.FAILED):
            raise LocalProtocolError(f"reconciliation session is {self._state.value}")
        if self._initiator and self._state is _State.NEW:
            raise LocalProtocolError("the initiator calls start() before receive()")
        try:
            return self._receive(message)
        except DecodeError:
            self._state = _State.FAILED
            raise

    # ------------------------------------------------------------------------ framing

    def _receive(self, message: bytes) -> bytes | None:
        cfg = self._config
        if len(message) > cfg.max_message_bytes:
            raise DecodeError("sync message too large", reason=CloseReason.TOO_LARGE)
        if self._received >= cfg.max_round_trips:
            raise DecodeError("sync session exceeds its round bound", reason=_LIMIT)
        self._received += 1
        self._bytes_received += len(message)
        reader = _reader(message)
        if self._state is _State.NEW:
            self._read_init(reader)
            self._state = _State.RUNNING
        else:
            self._read_entries(reader)
        if not reader.at_end():
            raise DecodeError("trailing bytes after the last sync entry")
        self._check_pending()
        if not self._owe and not self._await:
            self._state = _State.DONE
            return None
        if self._sent >= cfg.max_round_trips:
            raise DecodeError("sync session exceeds its round bound", reason=_LIMIT)
        out = self._build()
        self._check_pending()
        self._budget.check()
        if not self._owe and not self._await:
            self._state = _State.DONE
        return self._count_sent(out)

    def _count_sent(self, message: bytes) -> bytes:
        self._sent += 1
        self._bytes_sent += len(message)
        return message

    def _check_pending(self) -> None:
        queued = max(len(self._owe), len(self._await))
        self._peak_queued = max(self._peak_queued, queued)
        if queued > self._config.max_pending_tasks:
            raise DecodeError("too many pending sync entries", reason=_LIMIT)

    def _read_init(self, r: ByteCursor) -> None:
        version = r.u8("version")
        if version != VERSION:
            raise DecodeError(f"sync version {version} unsupported", reason=_UNSUPPORTED)
        bits, fp_bytes = r.u8("fanout"), r.u8("fingerprint size")
        if bits != self._bits or fp_bytes != self._fp_bytes:
            raise DecodeError(
                f"sync parameters (fanout 2^{bits}, {fp_bytes}-byte fingerprints) differ from ours",
                reason=_UNSUPPORTED,
            )
        self._set_salt(r.take(SALT_BYTES, "salt"))
        count = r.varint(_MAX_COUNT, "count")
        total = int.from_bytes(r.take(ID_BYTES, "sum"), "big")
        fp = r.take(self._fp_bytes, "fingerprint")
        self._owe.append(_AnswerSum(_ROOT, count, total, fp))

    def _read_entries(self, r: ByteCursor) -> None:
        version = r.u8("version")
        if version != VERSION:
            raise DecodeError(f"sync version {version} unsupported", reason=_UNSUPPORTED)
        n = r.varint(self._config.max_message_bytes, "entry count")
        if n == 0 and (self._await or not self._owe):
            raise DecodeError("empty sync message while the peer owes entries")
        for _ in range(n):
            if not self._await:
                raise DecodeError("sync entry the protocol did not ask for")
            self._read_entry(self._await.popleft(), r)

    def _build(self) -> bytes:
        body = bytearray()
        count = 0
        budget = self._config.max_message_bytes - _HEADER_RESERVE
        while self._owe:
            task = self._owe.popleft()
            entry = self._write_entry(task, budget - len(body))
            if entry is None:  # does not fit: it leads the next message
                self._owe.appendleft(task)
                break
            body += entry
            count += 1
        return bytes((VERSION,)) + _varint(count) + bytes(body)

    # ------------------------------------------------------------------------ node geometry

    def _set_salt(self, salt: bytes) -> None:
        self._salt = salt
        self._fp_base = hashlib.blake2b(digest_size=self._fp_bytes, key=salt, person=_FP_PERSON)

    def _fp(self, agg: Aggregate) -> bytes:
        count, idsum, hsum = agg
        h = self._fp_base.copy()
        h.update(
            count.to_bytes(8, "big")
            + (idsum & _ID_MASK).to_bytes(ID_BYTES, "big")
            + (hsum & _HV_MASK).to_bytes(HV_BYTES, "big")
        )
        return h.digest()

    def _suffix_len(self, depth: int) -> int:
        """Bytes of an id sent inside a node: the whole bytes of the prefix are implied."""
        return ID_BYTES - (depth * self._bits) // 8

    def _compose(self, addr: Addr, low: int) -> int:
        """The id with ``addr``'s known whole prefix bytes and the given suffix."""
        depth, prefix = addr
        known_bits = 8 * (ID_BYTES - self._suffix_len(depth))
        top = prefix >> (depth * self._bits - known_bits)
        return (top << (ID_BITS - known_bits)) | low

    def _in_node(self, addr: Addr, x: int) -> bool:
        depth, prefix = addr
        return x >> (ID_BITS - depth * self._bits) == prefix

    def _suffix(self, addr: Addr, x: int) -> bytes:
        s = self._suffix_len(addr[0])
        return (x & ((1 << (8 * s)) - 1)).to_bytes(s, "big")

    def _suffixes(self, addr: Addr, ids: list[int]) -> bytes:
        """``_suffix`` of each id, concatenated: id lists are the bulk of most sessions."""
        s = self._suffix_len(addr[0])
        if s == ID_BYTES:
            return b"".join([x.to_bytes(ID_BYTES, "big") for x in ids])
        mask = (1 << (8 * s)) - 1
        return b"".join([(x & mask).to_bytes(s, "big") for x in ids])

    def _child(self, addr: Addr, i: int) -> Addr:
        return addr[0] + 1, (addr[1] << self._bits) | i

    def _bitmap_len(self, bits: int) -> int:
        return (bits + 7) // 8

    # ------------------------------------------------------------------------ writing entries

    def _write_entry(self, task: _Owed, room: int) -> bytes | None:
        """Encode ``task``; if it fits ``room``, apply its effects and return its bytes.

        Effects (queue appends, have/need) are deferred to ``commit`` so that an entry that
        does not fit leaves no trace and simply leads the next message.
        """
        entry = self._entry_for(task, room)
        if entry is None or len(entry[0]) > room:
            return None
        data, commit = entry
        commit()
        return data

    def _entry_for(self, task: _Owed, room: int) -> _Entry | None:
        if isinstance(task, _AnswerSum):
            return self._sum_answer(task, room)
        if isinstance(task, _AnswerSplit):
            return self._bitmap_answer(task)
        if isinstance(task, _Describe):
            count = self._items._aggregate(task.addr)[0]
            return self._description(task.addr, count, pure=task.pure)
        if isinstance(task, _AnswerIds):
            return self._ids_reply(task, room)
        return self._push(task, room)

    def _sum_answer(self, task: _AnswerSum, room: int) -> _Entry | None:
        own = self._items._aggregate(task.addr)
        if self._fp(own) == task.fp:
            return bytes((_Kind.EQUAL,)), _nothing
        pure = self._decode_pure(task, own)
        if pure is not None:
            kind, x = pure
            target = self._need if kind == _Kind.YOU_HAVE else self._have
            return bytes((kind,)) + self._suffix(task.addr, x), lambda: target.add(x)
        if task.count == 0:  # the peer has nothing here: it needs all of ours
            mine = self._items._ids_in(task.addr)
            return self._extras(task.addr, bytes((_Kind.PUSH_ALL,)), mine, room, _nothing)
        # impure: describe the node again, without another SUM (it would not progress)
        return self._description(task.addr, own[0], pure=None)

    def _decode_pure(self, task: _AnswerSum, own: Aggregate) -> tuple[int, int] | None:
        """The single id by which the peer's node differs from ours, checked by fingerprint."""
        count, idsum, hsum = own
        mod = 1 << (8 * self._suffix_len(task.addr[0]))
        if task.count == count + 1:  # the peer has one more: the sum difference is that id
            x = self._compose(task.addr, (task.sum_low - idsum) % mod)
            if not self._in_node(task.addr, x) or self._items._has(x):
                return None
            candidate = (count + 1, idsum + x, hsum + hash_value(x.to_bytes(ID_BYTES, "big")))
            return (_Kind.YOU_HAVE, x) if self._fp(candidate) == task.fp else None
        if task.count == count - 1:  # we have one more
            x = self._compose(task.addr, (idsum - task.sum_low) % mod)
            h = self._items._hv_of(x)
            if h is None or not self._in_node(task.addr, x):
                return None
            candidate = (count - 1, idsum - x, hsum - h)
            return (_Kind.YOU_LACK, x) if self._fp(candidate) == task.fp else None
        return None

    def _description(self, addr: Addr, count: int, *, pure: float | None) -> _Entry:
        """Describe a differing node: SUM when probably pure, IDS when listing pays, else SPLIT.

        ``pure`` is the estimated odds that the node holds exactly one difference, or None when
        its SUM already failed (another SUM would not progress).

        Listing pays when the ids cost no more than splitting would: a SPLIT entry plus about a
        SUM per difference below it, with the differences per node estimated from all children
        compared at this depth (``_expected_differences``). In the tail of a session (few open
        nodes) nodes up to ``id_list_threshold`` ids are listed anyway: there a round trip saved
        matters more than a few hundred bytes.
        """
        cfg = self._config
        if addr[0] >= self._max_depth or count <= cfg.ids_outright_max:
            return self._ids(addr)
        if pure is not None and pure >= cfg.min_pure_probability:
            return self._sum(addr)
        s = self._suffix_len(addr[0])
        split_cost = 1.0 + self._fanout * self._fp_bytes
        split_cost += self._expected_differences(addr[0]) * (2 + s + self._fp_bytes)
        listable = count <= cfg.id_list_threshold
        if count * s <= split_cost and (listable or math.isfinite(split_cost)):
            return self._ids(addr)
        if listable and len(self._owe) < cfg.tail_nodes:
            return self._ids(addr)
        return self._split(addr, impure=pure is None)

    def _expected_differences(self, depth: int) -> float:
        """E[differences | node differs] at ``depth``, pooled over every split we answered.

        Ids are uniform, so differences spread evenly over the nodes of a depth: if K of the N
        children compared there differed, each holds Poisson(μ) with 1 - e^-μ = K/N. All
        differing: unbounded (a dense difference, where lists beat splits). No sample (a node
        whose SUM failed): at least two.
        """
        compared, differing = self._level.get(depth, (0, 0))
        if compared == 0:
            return 2.0
        if differing >= compared:
            return math.inf
        mu = -math.log1p(-differing / compared)
        return max(mu / -math.expm1(-mu), 1.0)

    def _ids(self, addr: Addr) -> _Entry:
        ids = self._items._ids_in(addr)
        data = b"".join([bytes((_Kind.IDS,)), _varint(len(ids)), self._suffixes(addr, ids)])
        return data, lambda: self._await.append(_WantIdsReply(addr, ids))

    def _sum(self, addr: Addr) -> _Entry:
        agg = self._items._aggregate(addr)
        data = bytes((_Kind.SUM,)) + _varint(agg[0]) + self._suffix(addr, agg[1]) + self._fp(agg)
        return data, lambda: self._await.append(_WantSumAnswer(addr, agg[0]))

    def _split(self, addr: Addr, *, impure: bool) -> _Entry:
        kind = _Kind.SPLIT_IMPURE if impure else _Kind.SPLIT
        fps = b"".join(self._fp(a) for a in self._items._child_aggregates(addr))
        return bytes((kind,)) + fps, lambda: self._await.append(_WantBitmap(addr))

    def _bitmap_answer(self, task: _AnswerSplit) -> _Entry:
        f = self._fp_bytes
        differing = [
            i
            for i, agg in enumerate(self._items._child_aggregates(task.addr))
            if self._fp(agg) != task.fps[i * f : (i + 1) * f]
        ]
        # If a single child of a node known to be impure differs, that child holds all of the
        # node's differences: it is impure too, and a SUM would only cost a round trip.
        known_impure = task.impure and len(differing) == 1
        pure = None if known_impure else _pure_probability(len(differing), self._fanout)

        def commit() -> None:
            level = self._level.setdefault(task.addr[0] + 1, [0, 0])
            level[0] += self._fanout
            level[1] += len(differing)
            for i in differing:
                self._owe.append(_Describe(self._child(task.addr, i), pure))

        return _bitmap(differing, self._bitmap_len(self._fanout)), commit

    def _ids_reply(self, task: _AnswerIds, room: int) -> _Entry:
        listed = set(task.ids)
        lacking = self._items._absent(task.ids)
        extras = [x for x in self._items._ids_in(task.addr) if x not in listed]
        head = _bitmap(lacking, self._bitmap_len(len(task.ids)))

        def then() -> None:
            self._need.update(task.ids[i] for i in lacking)

        return self._extras(task.addr, head, extras, room, then)

    def _extras(
        self, addr: Addr, head: bytes, extras: list[int], room: int, then: Callable[[], None]
    ) -> _Entry:
        """``head``, then our extra ids of ``addr``: as many as fit, the rest in PUSH entries."""
        s = self._suffix_len(addr[0])
        m = _varint(len(extras))
        j = max(0, min(len(extras), (room - len(head) - 2 * len(m)) // s))
        suffixes = self._suffixes(addr, extras[:j])

        def commit() -> None:
            self._pushed.append((extras, 0, j))
            self._pinned += len(extras)
            if j < len(extras):
                self._owe.append(_Push(addr, extras, j))
            then()

        return b"".join([head, m, _varint(j), suffixes]), commit

    def _push(self, task: _Push, room: int) -> _Entry | None:
        s = self._suffix_len(task.addr[0])
        remaining = len(task.ids) - task.pos
        j = min(remaining, (room - len(_varint(remaining))) // s)
        if j < 1:
            return None
        end = task.pos + j
        suffixes = self._suffixes(task.addr, task.ids[task.pos : end])

        def commit() -> None:
            self._pushed.append((task.ids, task.pos, end))
            if end < len(task.ids):
                self._owe.append(_Push(task.addr, task.ids, end))

        return _varint(j) + suffixes, commit

    # ------------------------------------------------------------------------ reading entries

    def _read_entry(self, want: _Awaited, r: ByteCursor) -> None:
        if isinstance(want, _WantSumAnswer):
            self._read_sum_answer(want, r)
        elif isinstance(want, _WantBitmap):
            self._read_bitmap(want, r)
        elif isinstance(want, _WantDescription):
            self._read_description(want, r)
        elif isinstance(want, _WantIdsReply):
            self._read_ids_reply(want, r)
        else:
            self._read_push(want, r)

    def _read_sum_answer(self, want: _WantSumAnswer, r: ByteCursor) -> None:
        kind = r.u8("entry kind")
        if kind == _Kind.EQUAL:
            return
        if kind == _Kind.YOU_HAVE:
            self._have.add(self._read_id(want.addr, r))
        elif kind == _Kind.YOU_LACK:
            self._add_need(self._read_id(want.addr, r))
        elif kind == _Kind.PUSH_ALL and want.sent_count == 0:
            self._read_extras(want.addr, set(), r)
        elif kind in (_Kind.SPLIT_IMPURE, _Kind.IDS):  # a SUM that failed: impure, never SPLIT
            self._read_node(want.addr, kind, r)
        else:
            raise DecodeError(f"entry kind {kind} cannot answer a SUM")

    def _read_description(self, want: _WantDescription, r: ByteCursor) -> None:
        kind = r.u8("entry kind")
        if kind == _Kind.SUM:
            count = r.varint(_MAX_COUNT, "count")
            low = int.from_bytes(r.take(self._suffix_len(want.addr[0]), "sum"), "big")
            fp = r.take(self._fp_bytes, "fingerprint")
            self._owe.append(_AnswerSum(want.addr, count, low, fp))
        elif kind in (_Kind.SPLIT, _Kind.SPLIT_IMPURE, _Kind.IDS):
            self._read_node(want.addr, kind, r)
        else:
            raise DecodeError(f"entry kind {kind} cannot describe a node")

    def _read_node(self, addr: Addr, kind: int, r: ByteCursor) -> None:
        if kind in (_Kind.SPLIT, _Kind.SPLIT_IMPURE):
            if addr[0] >= self._max_depth:
                raise DecodeError("SPLIT of a node that holds a single id")
            fps = r.take(self._fanout * self._fp_bytes, "child fingerprints")
            self._owe.append(_AnswerSplit(addr, fps, kind == _Kind.SPLIT_IMPURE))
            return
        n = r.varint(self._config.max_ids_per_list, "id count")
        ids = self._read_ascending(addr, n, -1, r)
        self._owe.append(_AnswerIds(addr, ids))

    def _read_bitmap(self, want: _WantBitmap, r: ByteCursor) -> None:
        for i in self._read_bits(self._fanout, r):
            self._await.append(_WantDescription(self._child(want.addr, i)))

    def _read_ids_reply(self, want: _WantIdsReply, r: ByteCursor) -> None:
        for i in self._read_bits(len(want.sent), r):
            self._have.add(want.sent[i])
        self._read_extras(want.addr, set(want.sent), r)

    def _read_extras(self, addr: Addr, listed: set[int], r: ByteCursor) -> None:
        total = r.varint(self._config.max_diff_ids, "extra id count")
        j = r.varint(total, "id count")
        ids = self._read_ascending(addr, j, -1, r)
        if listed.intersection(ids):
            raise DecodeError("peer claims to lack an id it was just told we have")
        self._add_needs(ids)
        if j < total:
            self._await.append(_WantPush(addr, total - j, ids[-1] if ids else -1))

    def _read_push(self, want: _WantPush, r: ByteCursor) -> None:
        j = r.varint(want.remaining, "id count")
        if j == 0:
            raise DecodeError("empty PUSH entry")
        ids = self._read_ascending(want.addr, j, want.last, r)
        self._add_needs(ids)
        if j < want.remaining:
            self._await.append(_WantPush(want.addr, want.remaining - j, ids[-1]))

    def _read_ascending(self, addr: Addr, n: int, last: int, r: ByteCursor) -> list[int]:
        """``n`` ids of ``addr``, each above ``last`` and the one before it.

        Decoded in one pass over one slice; ascending order means checking the first and the
        last id against the node checks them all.
        """
        s, top = self._suffix_len(addr[0]), self._compose(addr, 0)
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
        if not (self._in_node(addr, ids[0]) and self._in_node(addr, ids[-1])):
            raise DecodeError("id outside the node it was sent for")
        return ids

    def _read_id(self, addr: Addr, r: ByteCursor) -> int:
        low = int.from_bytes(r.take(self._suffix_len(addr[0]), "id"), "big")
        x = self._compose(addr, low)
        if not self._in_node(addr, x):
            raise DecodeError("id outside the node it was sent for")
        return x

    def _read_bits(self, nbits: int, r: ByteCursor) -> list[int]:
        data = r.take(self._bitmap_len(nbits), "bitmap")
        value = int.from_bytes(data, "big")
        pad = 8 * len(data) - nbits
        if value & ((1 << pad) - 1):
            raise DecodeError("bitmap padding bits are not zero")
        return [i for i in range(nbits) if value >> (8 * len(data) - 1 - i) & 1]

    def _add_need(self, x: int) -> None:
        self._add_needs((x,))

    def _add_needs(self, ids: Iterable[int]) -> None:
        """Note ids the peer offers; ``ids`` is at most one message's worth, so the bound is
        checked once after taking them all."""
        self._need.update(ids)
        if len(self._need) > self._config.max_diff_ids:
            raise DecodeError("peer offers more ids than one session may take", reason=_LIMIT)


_LIMIT: Final = CloseReason.LIMIT_REACHED
_UNSUPPORTED: Final = CloseReason.UNSUPPORTED


def _as_bytes(ids: list[int]) -> tuple[bytes, ...]:
    return tuple([x.to_bytes(ID_BYTES, "big") for x in ids])


def _bitmap(indices: list[int], size: int) -> bytes:
    """Big-endian bitmap of ``size`` bytes with bit ``i`` (from the top) set for each index."""
    value = 0
    for i in indices:
        value |= 1 << (8 * size - 1 - i)
    return value.to_bytes(size, "big")


__all__ = ["ID_BYTES", "SALT_BYTES", "VERSION", "ItemSet", "Reconciler", "SyncBudget", "SyncStats"]
