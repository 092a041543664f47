"""The entries one side of a sync session awaits, read and checked strictly.

:class:`EntryReader` decodes the entry the head of the ``await`` queue of a
:class:`~meshmsg.core.reconcile.Reconciler` says comes next, checks it against the protocol
and the bounds (raising :class:`~meshmsg.errors.DecodeError`), and applies it: what the reader
now owes the peer, what it awaits next, which ids each side lacks.

The queues and the have/need sets are the session's, shared by reference with the
:class:`~meshmsg.core.syncwriter.EntryWriter`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Final

from meshmsg.config import SyncConfig
from meshmsg.core.cursor import ByteCursor
from meshmsg.core.itemset import ID_BITS, Addr
from meshmsg.core.syncwire import (
    MAX_COUNT,
    AnswerIds,
    AnswerSplit,
    AnswerSum,
    Awaited,
    EntryKind,
    NodeCodec,
    Owed,
    WantBitmap,
    WantDescription,
    WantIdsReply,
    WantPush,
    WantSumAnswer,
)
from meshmsg.errors import CloseReason, DecodeError

_LIMIT: Final = CloseReason.LIMIT_REACHED


class EntryReader:
    """Reads the entries a session awaits (see the module docstring)."""

    def __init__(
        self,
        *,
        bits: int,
        fanout: int,
        config: SyncConfig,
        codec: NodeCodec,
        owe: deque[Owed],
        awaited: deque[Awaited],
        have: set[int],
        need: set[int],
    ) -> None:
        self._config = config
        self._codec = codec
        self._fanout = fanout
        self._max_depth = ID_BITS // bits
        self._fp_bytes = config.fingerprint_bytes
        self._owe = owe
        self._await = awaited
        self._have = have
        self._need = need

    def read_entry(self, want: Awaited, r: ByteCursor) -> None:
        if isinstance(want, WantSumAnswer):
            self._read_sum_answer(want, r)
        elif isinstance(want, WantBitmap):
            self._read_bitmap(want, r)
        elif isinstance(want, WantDescription):
            self._read_description(want, r)
        elif isinstance(want, WantIdsReply):
            self._read_ids_reply(want, r)
        else:
            self._read_push(want, r)

    def _read_sum_answer(self, want: WantSumAnswer, r: ByteCursor) -> None:
        kind = r.u8("entry kind")
        if kind == EntryKind.EQUAL:
            return
        if kind == EntryKind.YOU_HAVE:
            self._have.add(self._codec.read_id(want.addr, r))
        elif kind == EntryKind.YOU_LACK:
            self._add_need(self._codec.read_id(want.addr, r))
        elif kind == EntryKind.PUSH_ALL and want.sent_count == 0:
            self._read_extras(want.addr, set(), r)
        elif kind in (
            EntryKind.SPLIT_IMPURE,
            EntryKind.IDS,
        ):  # a SUM that failed: impure, never SPLIT
            self._read_node(want.addr, kind, r)
        else:
            raise DecodeError(f"entry kind {kind} cannot answer a SUM")

    def _read_description(self, want: WantDescription, r: ByteCursor) -> None:
        kind = r.u8("entry kind")
        if kind == EntryKind.SUM:
            count = r.varint(MAX_COUNT, "count")
            low = int.from_bytes(r.take(self._codec.suffix_len(want.addr[0]), "sum"), "big")
            fp = r.take(self._fp_bytes, "fingerprint")
            self._owe.append(AnswerSum(want.addr, count, low, fp))
        elif kind in (EntryKind.SPLIT, EntryKind.SPLIT_IMPURE, EntryKind.IDS):
            self._read_node(want.addr, kind, r)
        else:
            raise DecodeError(f"entry kind {kind} cannot describe a node")

    def _read_node(self, addr: Addr, kind: int, r: ByteCursor) -> None:
        if kind in (EntryKind.SPLIT, EntryKind.SPLIT_IMPURE):
            if addr[0] >= self._max_depth:
                raise DecodeError("SPLIT of a node that holds a single id")
            fps = r.take(self._fanout * self._fp_bytes, "child fingerprints")
            self._owe.append(AnswerSplit(addr, fps, kind == EntryKind.SPLIT_IMPURE))
            return
        n = r.varint(self._config.max_ids_per_list, "id count")
        ids = self._codec.read_ascending(addr, n, -1, r)
        self._owe.append(AnswerIds(addr, ids))

    def _read_bitmap(self, want: WantBitmap, r: ByteCursor) -> None:
        for i in self._codec.read_bits(self._fanout, r):
            self._await.append(WantDescription(self._codec.child(want.addr, i)))

    def _read_ids_reply(self, want: WantIdsReply, r: ByteCursor) -> None:
        for i in self._codec.read_bits(len(want.sent), r):
            self._have.add(want.sent[i])
        self._read_extras(want.addr, set(want.sent), r)

    def _read_extras(self, addr: Addr, listed: set[int], r: ByteCursor) -> None:
        total = r.varint(self._config.max_diff_ids, "extra id count")
        j = r.varint(total, "id count")
        ids = self._codec.read_ascending(addr, j, -1, r)
        if listed.intersection(ids):
            raise DecodeError("peer claims to lack an id it was just told we have")
        self._add_needs(ids)
        if j < total:
            self._await.append(WantPush(addr, total - j, ids[-1] if ids else -1))

    def _read_push(self, want: WantPush, r: ByteCursor) -> None:
        j = r.varint(want.remaining, "id count")
        if j == 0:
            raise DecodeError("empty PUSH entry")
        ids = self._codec.read_ascending(want.addr, j, want.last, r)
        self._add_needs(ids)
        if j < want.remaining:
            self._await.append(WantPush(want.addr, want.remaining - j, ids[-1]))

    def _add_need(self, x: int) -> None:
        self._add_needs((x,))

    def _add_needs(self, ids: Iterable[int]) -> None:
        """Note ids the peer offers; ``ids`` is at most one message's worth, so the bound is
        checked once after taking them all."""
        self._need.update(ids)
        if len(self._need) > self._config.max_diff_ids:
            raise DecodeError("peer offers more ids than one session may take", reason=_LIMIT)
