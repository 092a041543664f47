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
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Final

from meshmsg.config import SyncConfig
from meshmsg.core.cursor import ByteCursor
from meshmsg.core.itemset import ID_BYTES, ItemSet
from meshmsg.core.syncreader import EntryReader
from meshmsg.core.syncwire import (
    ID_MASK,
    MAX_COUNT,
    ROOT,
    SALT_BYTES,
    VERSION,
    AnswerSum,
    Awaited,
    NodeCodec,
    Owed,
    WantSumAnswer,
    message_reader,
    varint,
)
from meshmsg.core.syncwriter import EntryWriter
from meshmsg.errors import CloseReason, DecodeError, LocalProtocolError

_HEADER_RESERVE: Final = 4  # version byte + entry count (a varint of at most 3 bytes)
_LIMIT: Final = CloseReason.LIMIT_REACHED
_UNSUPPORTED: Final = CloseReason.UNSUPPORTED


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
        self._fp_bytes = config.fingerprint_bytes
        self._codec = NodeCodec(self._bits, self._fp_bytes)
        if initiator:
            self._codec.set_salt(salt)
        self._owe: deque[Owed] = deque()
        self._await: deque[Awaited] = deque()
        self._have: set[int] = set()
        # Ids we pushed to the peer (it lacks them), as runs of lists we already hold (most
        # often the trie's shared cache): a count-0 SUM must not copy the store per session.
        self._pushed: list[tuple[list[int], int, int]] = []
        self._budget = budget if budget is not None else SyncBudget(config.max_node_session_ids)
        self._budget.register(self)
        self._need: set[int] = set()
        # The writer and the reader share the queues and the have/need sets (never rebound).
        self._writer = EntryWriter(
            items, config=config, codec=self._codec, owe=self._owe, awaited=self._await,
            have=self._have, need=self._need, pushed=self._pushed,
        )  # fmt: skip
        self._reader = EntryReader(
            bits=self._bits, fanout=items.fanout, config=config, codec=self._codec,
            owe=self._owe, awaited=self._await, have=self._have, need=self._need,
        )  # fmt: skip
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
        return len(self._have) + len(self._need) + self._writer.pinned

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
        count, idsum, hsum = self._items._aggregate(ROOT)
        message = b"".join(
            (
                bytes((VERSION, self._bits, self._fp_bytes)),
                self._codec.salt,
                varint(count),
                (idsum & ID_MASK).to_bytes(ID_BYTES, "big"),
                self._codec.fp((count, idsum, hsum)),
            )
        )
        self._await.append(WantSumAnswer(ROOT, count))
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
        reader = message_reader(message)
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
        self._codec.set_salt(r.take(SALT_BYTES, "salt"))
        count = r.varint(MAX_COUNT, "count")
        total = int.from_bytes(r.take(ID_BYTES, "sum"), "big")
        fp = r.take(self._fp_bytes, "fingerprint")
        self._owe.append(AnswerSum(ROOT, count, total, fp))

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
            self._reader.read_entry(self._await.popleft(), r)

    def _build(self) -> bytes:
        body = bytearray()
        count = 0
        budget = self._config.max_message_bytes - _HEADER_RESERVE
        while self._owe:
            task = self._owe.popleft()
            entry = self._writer.write_entry(task, budget - len(body))
            if entry is None:  # does not fit: it leads the next message
                self._owe.appendleft(task)
                break
            body += entry
            count += 1
        return bytes((VERSION,)) + varint(count) + bytes(body)


def _as_bytes(ids: list[int]) -> tuple[bytes, ...]:
    return tuple([x.to_bytes(ID_BYTES, "big") for x in ids])


__all__ = ["ID_BYTES", "SALT_BYTES", "VERSION", "ItemSet", "Reconciler", "SyncBudget", "SyncStats"]
