"""The entries one side of a sync session owes, written: answers, descriptions, id lists.

:class:`EntryWriter` encodes the entry at the head of the ``owe`` queue of a
:class:`~meshmsg.core.reconcile.Reconciler` and, once it is known to fit the message, applies
its effects: what the writer now awaits from the peer, what it owes next, which ids each side
lacks. It also decides how to describe a node found to differ (SUM when it probably holds one
difference, IDS when listing pays, SPLIT otherwise; ``core/reconcile.py`` has the theory).

The queues and the have/need sets are the session's, shared by reference with the
:class:`~meshmsg.core.syncreader.EntryReader`; the writer owns the statistics of each depth and
the count of ids its pushes pin.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

from meshmsg.config import SyncConfig
from meshmsg.core.itemset import ID_BITS, ID_BYTES, Addr, Aggregate, ItemSet, hash_value
from meshmsg.core.syncwire import (
    AnswerIds,
    AnswerSplit,
    AnswerSum,
    Awaited,
    Describe,
    EntryKind,
    NodeCodec,
    Owed,
    Push,
    WantBitmap,
    WantIdsReply,
    WantSumAnswer,
    bitmap,
    varint,
)

_Entry = tuple[bytes, Callable[[], None]]  # encoded entry, and its effects once it is sent


def _nothing() -> None:
    pass


def _pure_probability(differing: int, fanout: int) -> float:
    """P(a differing child holds exactly one difference), from how many of F siblings differ.

    With differences spread as Poisson(μ) over the children, k of F differ when
    1 - e^-μ = k/F; a differing child is pure with probability μ / (e^μ - 1).
    """
    if differing >= fanout:
        return 0.0
    mu = -math.log1p(-differing / fanout)
    return mu * (fanout - differing) / max(differing, 1)  # no differing child: nothing to say


class EntryWriter:
    """Writes the entries a session owes (see the module docstring)."""

    def __init__(
        self,
        items: ItemSet,
        *,
        config: SyncConfig,
        codec: NodeCodec,
        owe: deque[Owed],
        awaited: deque[Awaited],
        have: set[int],
        need: set[int],
        pushed: list[tuple[list[int], int, int]],
    ) -> None:
        self._items = items
        self._config = config
        self._codec = codec
        self._fanout = items.fanout
        self._max_depth = ID_BITS // items._bits
        self._fp_bytes = config.fingerprint_bytes
        self._owe = owe
        self._await = awaited
        self._have = have
        self._need = need
        self._pushed = pushed
        self.pinned = 0  # ids in lists that pushes hold (charged to the node's budget)
        self._level: dict[int, list[int]] = {}  # depth -> [children compared, differing]

    def write_entry(self, task: Owed, room: int) -> bytes | None:
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

    def _entry_for(self, task: Owed, room: int) -> _Entry | None:
        if isinstance(task, AnswerSum):
            return self._sum_answer(task, room)
        if isinstance(task, AnswerSplit):
            return self._bitmap_answer(task)
        if isinstance(task, Describe):
            count = self._items._aggregate(task.addr)[0]
            return self._description(task.addr, count, pure=task.pure)
        if isinstance(task, AnswerIds):
            return self._ids_reply(task, room)
        return self._push(task, room)

    def _sum_answer(self, task: AnswerSum, room: int) -> _Entry | None:
        own = self._items._aggregate(task.addr)
        if self._codec.fp(own) == task.fp:
            return bytes((EntryKind.EQUAL,)), _nothing
        pure = self._decode_pure(task, own)
        if pure is not None:
            kind, x = pure
            target = self._need if kind == EntryKind.YOU_HAVE else self._have
            return bytes((kind,)) + self._codec.suffix(task.addr, x), lambda: target.add(x)
        if task.count == 0:  # the peer has nothing here: it needs all of ours
            mine = self._items._ids_in(task.addr)
            return self._extras(task.addr, bytes((EntryKind.PUSH_ALL,)), mine, room, _nothing)
        # impure: describe the node again, without another SUM (it would not progress)
        return self._description(task.addr, own[0], pure=None)

    def _decode_pure(self, task: AnswerSum, own: Aggregate) -> tuple[int, int] | None:
        """The single id by which the peer's node differs from ours, checked by fingerprint."""
        count, idsum, hsum = own
        mod = 1 << (8 * self._codec.suffix_len(task.addr[0]))
        if task.count == count + 1:  # the peer has one more: the sum difference is that id
            x = self._codec.compose(task.addr, (task.sum_low - idsum) % mod)
            if not self._codec.in_node(task.addr, x) or self._items._has(x):
                return None
            candidate = (count + 1, idsum + x, hsum + hash_value(x.to_bytes(ID_BYTES, "big")))
            return (EntryKind.YOU_HAVE, x) if self._codec.fp(candidate) == task.fp else None
        if task.count == count - 1:  # we have one more
            x = self._codec.compose(task.addr, (idsum - task.sum_low) % mod)
            h = self._items._hv_of(x)
            if h is None or not self._codec.in_node(task.addr, x):
                return None
            candidate = (count - 1, idsum - x, hsum - h)
            return (EntryKind.YOU_LACK, x) if self._codec.fp(candidate) == task.fp else None
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
        s = self._codec.suffix_len(addr[0])
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
        data = b"".join(
            [bytes((EntryKind.IDS,)), varint(len(ids)), self._codec.suffixes(addr, ids)]
        )
        return data, lambda: self._await.append(WantIdsReply(addr, ids))

    def _sum(self, addr: Addr) -> _Entry:
        agg = self._items._aggregate(addr)
        data = (
            bytes((EntryKind.SUM,))
            + varint(agg[0])
            + self._codec.suffix(addr, agg[1])
            + self._codec.fp(agg)
        )
        return data, lambda: self._await.append(WantSumAnswer(addr, agg[0]))

    def _split(self, addr: Addr, *, impure: bool) -> _Entry:
        kind = EntryKind.SPLIT_IMPURE if impure else EntryKind.SPLIT
        fps = b"".join(self._codec.fp(a) for a in self._items._child_aggregates(addr))
        return bytes((kind,)) + fps, lambda: self._await.append(WantBitmap(addr))

    def _bitmap_answer(self, task: AnswerSplit) -> _Entry:
        f = self._fp_bytes
        differing = [
            i
            for i, agg in enumerate(self._items._child_aggregates(task.addr))
            if self._codec.fp(agg) != task.fps[i * f : (i + 1) * f]
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
                self._owe.append(Describe(self._codec.child(task.addr, i), pure))

        return bitmap(differing, self._codec.bitmap_len(self._fanout)), commit

    def _ids_reply(self, task: AnswerIds, room: int) -> _Entry:
        listed = set(task.ids)
        lacking = self._items._absent(task.ids)
        extras = [x for x in self._items._ids_in(task.addr) if x not in listed]
        head = bitmap(lacking, self._codec.bitmap_len(len(task.ids)))

        def then() -> None:
            self._need.update(task.ids[i] for i in lacking)

        return self._extras(task.addr, head, extras, room, then)

    def _extras(
        self, addr: Addr, head: bytes, extras: list[int], room: int, then: Callable[[], None]
    ) -> _Entry:
        """``head``, then our extra ids of ``addr``: as many as fit, the rest in PUSH entries."""
        s = self._codec.suffix_len(addr[0])
        m = varint(len(extras))
        j = max(0, min(len(extras), (room - len(head) - 2 * len(m)) // s))
        suffixes = self._codec.suffixes(addr, extras[:j])

        def commit() -> None:
            self._pushed.append((extras, 0, j))
            self.pinned += len(extras)
            if j < len(extras):
                self._owe.append(Push(addr, extras, j))
            then()

        return b"".join([head, m, varint(j), suffixes]), commit

    def _push(self, task: Push, room: int) -> _Entry | None:
        s = self._codec.suffix_len(task.addr[0])
        remaining = len(task.ids) - task.pos
        j = min(remaining, (room - len(varint(remaining))) // s)
        if j < 1:
            return None
        end = task.pos + j
        suffixes = self._codec.suffixes(task.addr, task.ids[task.pos : end])

        def commit() -> None:
            self._pushed.append((task.ids, task.pos, end))
            if end < len(task.ids):
                self._owe.append(Push(task.addr, task.ids, end))

        return varint(j) + suffixes, commit
