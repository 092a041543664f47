"""The attachment carrier: advertise holdings, pull missing chunks from anyone, custody per
attachment, completion receipts (docs/protocol/attachments.md, "Carrying").

Sans-IO like the rest of the core. It talks to its node through :class:`AttachHost`: records go
out on links, chunk bodies go to and come from the driver as effects, persisted state as puts.
Per link it keeps the peer's advertised holdings and the chunks asked of it; per node a bit per
chunk. A transfer cut at any chunk boundary resumes at the next meeting with whoever holds the
missing chunks, because a node asks for chunks, never for "the rest of a transfer".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from meshmsg.config import NodeConfig
from meshmsg.core.attach.assembly import AttachmentRef, Bitfield, check_chunk
from meshmsg.core.attach.format import manifest_for_id
from meshmsg.core.attach.records import (
    MAX_REQUEST,
    AttachmentDone,
    AttachmentDoneState,
    AttachmentState,
    Chunk,
    ChunkHoldings,
    ChunkMissing,
    ChunkRequest,
    HoldingEntry,
)
from meshmsg.core.attach.table import AttachmentTable, Carried, Role
from meshmsg.core.attach.wirestate import carried_from_state, done_record, state_record
from meshmsg.core.effects import (
    ChunkEffect,
    DeleteChunks,
    LinkId,
    LoadChunk,
    RecordKind,
    StoreChunk,
    StoredRecord,
)
from meshmsg.core.envelope import capped_expiry
from meshmsg.core.events import (
    AttachEvent,
    AttachmentComplete,
    AttachmentDelivered,
    AttachmentDropped,
    AttachmentProgress,
)
from meshmsg.core.store import Tier
from meshmsg.core.wire import Record
from meshmsg.errors import CloseReason, InvalidAttachment, LocalProtocolError, RemoteProtocolError

# Bits of a ChunkHoldings record's entries: a 128 MiB attachment's entry is ~400 B, so a frame holds
# dozens; a 65,536-chunk entry is 8 KiB. The carrier splits records at this many bytes.
_HOLDINGS_RECORD_BYTES = 48_000


class AttachHost(Protocol):
    """What the carrier needs from the node it runs in."""

    def send(self, link: LinkId, record: Record) -> None: ...
    def violation(self, link: LinkId, reason: CloseReason, detail: str) -> None: ...
    def chunk_effect(self, effect: ChunkEffect) -> None: ...
    def attach_event(self, event: AttachEvent) -> None: ...
    def persist(
        self, puts: tuple[StoredRecord, ...], deletes: tuple[tuple[RecordKind, bytes], ...]
    ) -> None: ...


@dataclass(slots=True)
class _Peer:
    """What one link told us and what we asked of it."""

    peer_id: bytes
    tier: Tier
    holdings: dict[bytes, Bitfield] = field(default_factory=dict)
    offered: dict[bytes, int] = field(default_factory=dict)  # copies the peer would hand us
    asked: set[tuple[bytes, int]] = field(default_factory=set)
    unstored: int = 0  # chunks from this link handed to the driver, not yet stored
    holdings_bytes: int = 0  # bitfield bytes kept in ``holdings``, bounded per link
    loading: int = 0  # LoadChunk effects for this link not yet answered
    handed: set[bytes] = field(default_factory=set)  # copy budget already handed on this link
    brought: set[bytes] = field(default_factory=set)  # attachments this link sent chunks of


class AttachmentCarrier:
    """Every attachment of one node and the attachment half of each meeting."""

    def __init__(self, config: NodeConfig, host: AttachHost) -> None:
        self._config = config
        self._limits = config.attach
        self._host = host
        self.table = AttachmentTable(config.attach)
        self._done: dict[bytes, tuple[bytes, float]] = {}
        self._links: dict[LinkId, _Peer] = {}
        self._asked: set[tuple[bytes, int]] = set()  # asked on any link: never twice at once
        # Chunks handed to the driver to store, and the link each came from: they count in that
        # link's window until stored, so a disk slower than the link holds back the requests
        # instead of piling chunk bodies up in the driver's queue.
        self._storing_from: dict[tuple[bytes, int], LinkId] = {}
        # Whether an attachment belongs to a group message (set by the node's Attachments part):
        # its members complete it without a receipt and carry it on to each other.
        self.shared: Callable[[Carried], bool] = _not_shared

    # ------------------------------------------------------------------ restore and commands

    def restore(
        self,
        states: Iterable[AttachmentState],
        done: Iterable[AttachmentDoneState],
        held: Mapping[bytes, Iterable[int]],
    ) -> list[bytes]:
        """Rebuild from persisted records and the chunk store's scan; return ids whose chunks
        on disk have no record (a crash between the two): the driver deletes them."""
        for state in states:
            item = carried_from_state(state)
            for index in held.get(item.attachment_id, ()):
                if 0 <= index < item.manifest.count:
                    item.held.add(index)
            self.table.add(item)
        for stone in done:
            self._done[stone.attachment_id] = (stone.token, stone.expiry_at / 1000)
        return [i for i in held if i not in self.table]

    def add_own(
        self, ref: AttachmentRef, *, peer_id: bytes | None, message_id: bytes, expiry_at: float
    ) -> None:
        """An attachment we sealed, every chunk already in the chunk store (``peer_id`` None:
        for a group)."""
        manifest = ref.check(self._limits)
        item = Carried(
            attachment_id=ref.attachment_id, manifest=manifest, role=Role.OWN,
            expiry_at=expiry_at, copies=self._config.routing.copies, tier=Tier.OWN,
            ref=ref, peer_id=peer_id, message_id=message_id,
        )  # fmt: skip
        item.held = Bitfield.full(manifest.count)
        self.table.add(item)
        self._save(item)
        self._advertise_on_links(item)  # links already up learn of it now, not next meeting

    def want(
        self, ref: AttachmentRef, *, peer_id: bytes, message_id: bytes, expiry_at: float,
        now: float,
    ) -> Role:  # fmt: skip
        """An attachment addressed to us arrived in a message: fetch it now if the automatic
        download rules allow, else keep it pending until :meth:`fetch`. Raises if invalid."""
        manifest = ref.check(self._limits)
        existing = self.table.get(ref.attachment_id)
        if existing is not None and existing.role is not Role.RELAY:
            return existing.role  # the same message again
        if existing is None and ref.attachment_id in self._done:
            return Role.WANTED  # we completed it before (a duplicate of an old message)
        # A relay copy we took before the message said it is ours (its holdings came first, as
        # on a link that is up) is still subject to the download rules: kept, not completed.
        carried_whole = existing is not None and existing.held.complete
        auto = ref.size <= self._limits.auto_download_max_bytes or carried_whole
        item = Carried(
            attachment_id=ref.attachment_id, manifest=manifest,
            role=Role.WANTED if auto else Role.PENDING, expiry_at=expiry_at, copies=1,
            tier=Tier.OWN, ref=ref, peer_id=peer_id, message_id=message_id,
        )  # fmt: skip
        if existing is not None:  # we were carrying it for someone: it was for us all along
            item.held, item.storing = existing.held, existing.storing
        self.table.add(item)
        self._save(item)
        if item.held.complete:
            self._completed(item, now)
        self._pull_all()
        return item.role

    def fetch(self, attachment_id: bytes, now: float) -> None:
        """The user asked for a pending attachment: start fetching it."""
        item = self.table.get(attachment_id)
        if item is None or item.role not in (Role.PENDING, Role.WANTED):
            raise LocalProtocolError("no attachment addressed to us with that id")
        was_pending, item.role = item.role is Role.PENDING, Role.WANTED
        self._save(item)
        if was_pending and item.held.complete:
            self._completed(item, now)  # carried whole as a relay copy before it was ours
        self._pull_all()

    def discard(self, attachment_id: bytes) -> None:
        """Forget an attachment and delete its chunks (the user deleted it)."""
        self._drop(attachment_id, "discarded")

    # ------------------------------------------------------------------ links

    def link_up(self, link: LinkId, peer_id: bytes, tier: Tier) -> None:
        self._links[link] = _Peer(peer_id=peer_id, tier=tier)
        self._advertise(link, list(self.table.items.values()))

    def link_down(self, link: LinkId) -> None:
        peer = self._links.pop(link, None)
        if peer is not None and not self._limits.resume_cut_transfers:
            self._lose_cut(peer)
        if peer is not None and peer.asked:
            self._asked -= peer.asked
            self._pull_all()  # what this link owed us may be held by another

    def _lose_cut(self, peer: _Peer) -> None:
        """Whole transfers (``attach.resume_cut_transfers`` off, simulator research only): an
        attachment not complete when the link that brought chunks of it goes down loses every
        chunk it holds; the entry (role, copies, expiry) stays and fetches it again from zero."""
        for attachment_id in sorted(peer.brought):
            item = self.table.get(attachment_id)
            if item is None or item.held.complete or not (item.held.held or item.storing):
                continue
            item.held, item.storing = Bitfield(item.manifest.count), set()
            self._host.chunk_effect(DeleteChunks(attachment_id=attachment_id))
            self._save(item)

    def handle(self, link: LinkId, record: Record, now: float) -> bool:
        """Process an attachment record; False if ``record`` is not one."""
        peer = self._links.get(link)
        if peer is None:
            return False
        try:
            if isinstance(record, ChunkHoldings):
                self._on_holdings(link, peer, record.entries, now)
            elif isinstance(record, ChunkRequest):
                self._on_request(link, peer, record)
            elif isinstance(record, Chunk):
                self._on_chunk(link, peer, record)
            elif isinstance(record, ChunkMissing):
                self._on_missing(link, peer, record)
            elif isinstance(record, AttachmentDone):
                self._on_done(link, record, now)
            else:
                return False
        except InvalidAttachment as exc:
            self._host.violation(link, CloseReason.MALFORMED, str(exc))
        except RemoteProtocolError as exc:
            self._host.violation(link, exc.reason, str(exc))
        return True

    # ------------------------------------------------------------------ driver answers

    def chunk_loaded(
        self, link: LinkId, attachment_id: bytes, index: int, proof: tuple[bytes, ...], data: bytes
    ) -> None:
        peer = self._links.get(link)
        if peer is None:
            return  # the link closed while the driver read: nothing to send
        peer.loading -= 1
        self._host.send(
            link, Chunk(attachment_id=attachment_id, index=index, proof=proof, data=data)
        )

    def chunk_load_failed(self, link: LinkId, attachment_id: bytes, index: int) -> None:
        item = self.table.get(attachment_id)
        if item is not None:
            item.held.discard(index)  # the store lost it: fetch it again if we still want it
        peer = self._links.get(link)
        if peer is not None:
            peer.loading -= 1
            self._host.send(link, ChunkMissing(attachment_id=attachment_id, indexes=(index,)))

    def chunk_stored(self, attachment_id: bytes, index: int, now: float) -> None:
        link = self._storing_from.pop((attachment_id, index), None)
        peer = self._links.get(link) if link is not None else None
        if peer is not None:
            peer.unstored -= 1
        item = self.table.get(attachment_id)
        if item is None or index not in item.storing:
            self._pull_all()
            return  # dropped meanwhile: the driver's DeleteChunks follows this write
        item.storing.discard(index)
        item.held.add(index)
        self._host.attach_event(
            AttachmentProgress(
                attachment_id=attachment_id, held=item.held.held, count=item.held.count
            )
        )
        if item.held.complete:
            self._completed(item, now)
        elif item.held.held % self._update_step(item) == 0:
            self._advertise_on_links(item)  # peers pulling behind us need not wait for the end
        self._pull_all()

    # ------------------------------------------------------------------ time

    def next_deadline(self) -> float | None:
        times = [expiry for _, expiry in self._done.values()]
        own = self.table.next_expiry()
        if own is not None:
            times.append(own)
        return min(times, default=None)

    def on_timer(self, now: float) -> None:
        for attachment_id in self.table.expired(now):
            self._drop(attachment_id, "expired")
        for attachment_id in [i for i, (_, at) in self._done.items() if at <= now]:
            del self._done[attachment_id]
            self._host.persist((), ((RecordKind.ATTACHMENT_DONE, attachment_id),))

    # ------------------------------------------------------------------ records

    def _on_holdings(
        self, link: LinkId, peer: _Peer, entries: tuple[HoldingEntry, ...], now: float
    ) -> None:
        for entry in entries:
            manifest = manifest_for_id(entry.attachment_id, entry.manifest)
            bits = Bitfield(manifest.count, entry.bits)
            before = peer.holdings.get(entry.attachment_id)
            peer.holdings_bytes += len(entry.bits) - (len(before.encode()) if before else 0)
            if peer.holdings_bytes > self._limits.max_peer_holdings_bytes:
                raise RemoteProtocolError(
                    "too many holdings advertised", reason=CloseReason.LIMIT_REACHED
                )
            peer.holdings[entry.attachment_id] = bits
            peer.offered[entry.attachment_id] = entry.copies
            done = self._done.get(entry.attachment_id)
            if done is not None:
                self._send_done(link, entry.attachment_id, *done)
                continue
            if entry.attachment_id not in self.table:
                self._maybe_take(peer, entry, now)
        self._pull(link, peer)

    def _maybe_take(self, peer: _Peer, entry: HoldingEntry, now: float) -> None:
        """Take a relay copy if the policy hands us one and the quota has room for all of it."""
        if entry.copies < 1 or self._config.routing.policy == "direct":
            return
        if len(self.table.items) >= self._limits.max_attachments:
            return
        expiry = capped_expiry(entry.expiry_at / 1000, self._config.message, now)
        manifest = manifest_for_id(entry.attachment_id, entry.manifest)
        item = Carried(
            attachment_id=entry.attachment_id, manifest=manifest, role=Role.RELAY,
            expiry_at=expiry, copies=min(entry.copies, self._config.routing.copies),
            tier=peer.tier,
            source=peer.peer_id if peer.tier is Tier.STRANGER else None,
        )  # fmt: skip
        evicted = self.table.admit(item, now)
        if evicted is None:
            return
        for victim in evicted:
            self._forget(victim, "evicted")
        self._save(item)

    def _on_request(self, link: LinkId, peer: _Peer, record: ChunkRequest) -> None:
        if peer.loading + len(record.indexes) > MAX_REQUEST:
            raise RemoteProtocolError(
                "too many chunks asked at once", reason=CloseReason.LIMIT_REACHED
            )
        item = self.table.get(record.attachment_id)
        missing = []
        for index in record.indexes:
            if item is None or index not in item.held:
                missing.append(index)
                continue
            peer.loading += 1
            self._host.chunk_effect(
                LoadChunk(link=link, attachment_id=record.attachment_id, index=index)
            )
        if item is not None and record.attachment_id not in peer.holdings:
            self._hand_copies(peer, item)
        if missing:
            self._host.send(
                link, ChunkMissing(attachment_id=record.attachment_id, indexes=tuple(missing))
            )

    def _hand_copies(self, peer: _Peer, item: Carried) -> None:
        """A peer that starts a new copy (asks without having advertised it) takes the copies
        we offered it: the copy rule applies per attachment, when the taking starts."""
        if item.attachment_id in peer.handed or item.role not in (Role.OWN, Role.RELAY):
            return
        peer.handed.add(item.attachment_id)
        given = self._offer_copies(item)
        if given and self._config.routing.policy in ("spray-and-wait", "prophet"):
            item.copies -= given
            self._save(item)

    def _on_chunk(self, link: LinkId, peer: _Peer, record: Chunk) -> None:
        key = (record.attachment_id, record.index)
        if key not in peer.asked:
            raise RemoteProtocolError("a chunk that was not asked for")
        peer.asked.discard(key)
        self._asked.discard(key)
        item = self.table.get(record.attachment_id)
        if item is None:
            return  # dropped while in flight (purged, evicted): nothing to keep
        check_chunk(item.manifest, record.index, record.proof, record.data)
        peer.brought.add(record.attachment_id)
        if record.index not in item.held and record.index not in item.storing:
            item.storing.add(record.index)
            store = StoreChunk(
                attachment_id=record.attachment_id, index=record.index,
                proof=record.proof, data=record.data,
            )  # fmt: skip
            self._host.chunk_effect(store)
            self._storing_from[(record.attachment_id, record.index)] = link
            peer.unstored += 1
        self._pull(link, peer)

    def _on_missing(self, link: LinkId, peer: _Peer, record: ChunkMissing) -> None:
        bits = peer.holdings.get(record.attachment_id)
        for index in record.indexes:
            key = (record.attachment_id, index)
            if key in peer.asked:
                peer.asked.discard(key)
                self._asked.discard(key)
            if bits is not None:
                bits.discard(index)
        self._pull_all()

    def _on_done(self, link: LinkId, record: AttachmentDone, now: float) -> None:
        item = self.table.get(record.attachment_id)
        if item is None:
            return  # cannot check a token for an attachment we never saw: ignore it
        if not item.manifest.is_done_token(record.token):
            raise InvalidAttachment("a completion receipt with the wrong token")
        if item.role in (Role.WANTED, Role.PENDING) or self.shared(item):
            return  # we are the recipient, or one member's receipt is not every member's
        expiry = capped_expiry(record.expiry_at / 1000, self._config.message, now)
        self._remember_done(record.attachment_id, record.token, expiry)
        if item.role is Role.OWN:
            self._host.attach_event(AttachmentDelivered(attachment_id=record.attachment_id))
        self._drop(record.attachment_id, "purged")
        for other in self._links:
            if other != link:
                self._send_done(other, record.attachment_id, record.token, expiry)

    # ------------------------------------------------------------------ pulling

    def _pull_all(self) -> None:
        for link, peer in self._links.items():
            self._pull(link, peer)

    def _pull(self, link: LinkId, peer: _Peer) -> None:
        """Ask this peer for chunks we lack, up to the window, nearest-complete attachment first
        (finishing one file beats half of two)."""
        # At most a window asked and not yet received, and at most ``chunks_unstored`` asked or
        # not yet stored: the link fetches the next batch while the disk syncs the last one.
        asked = len(peer.asked)
        room = min(
            self._limits.requests_in_flight - asked,
            self._limits.chunks_unstored - asked - peer.unstored,
        )
        if room <= 0 or not peer.holdings:
            return
        if asked and room < min(self._limits.request_batch, self._limits.requests_in_flight):
            # Chunks are still on their way: wait until a batch can be asked in one request
            # (one wake-up and one disk read trip for the sender, not one per chunk). Their
            # arrival calls this again; with nothing asked any room is used, so no stall.
            return
        fetching = [
            self.table.items[i] for i in peer.holdings
            if i in self.table and self.table.items[i].fetching
        ]  # fmt: skip
        fetching.sort(key=lambda i: -i.held.held / i.held.count)
        for item in fetching:
            wanted = []
            for index in item.wanted_from(peer.holdings[item.attachment_id]):
                key = (item.attachment_id, index)
                if key not in self._asked:
                    wanted.append(index)
                    if len(wanted) == room:
                        break
            if wanted:
                self._ask(link, peer, item.attachment_id, wanted)
                room -= len(wanted)
                if room == 0:
                    return

    def _ask(self, link: LinkId, peer: _Peer, attachment_id: bytes, indexes: list[int]) -> None:
        keys = {(attachment_id, index) for index in indexes}
        peer.asked |= keys
        self._asked |= keys
        self._host.send(link, ChunkRequest(attachment_id=attachment_id, indexes=tuple(indexes)))

    # ------------------------------------------------------------------ completion and drops

    def _completed(self, item: Carried, now: float) -> None:
        if item.role is Role.WANTED and item.ref is not None:
            self._host.attach_event(AttachmentComplete(attachment_id=item.attachment_id))
            if self.shared(item):  # a group's: no receipt, we hand it on to other members
                for link in self._links:
                    self._advertise(link, [item])
                return
            token = item.ref.done_token
            expiry = now + self._config.message.max_ttl_s
            self._remember_done(item.attachment_id, token, expiry)
            for link in self._links:
                self._send_done(link, item.attachment_id, token, expiry)
        else:
            for link in self._links:  # peers fetching from us now can take every chunk
                self._advertise(link, [item])

    def _remember_done(self, attachment_id: bytes, token: bytes, expiry: float) -> None:
        if len(self._done) >= self._config.message.dedup_entries:
            oldest = min(self._done, key=lambda i: self._done[i][1])
            del self._done[oldest]
            self._host.persist((), ((RecordKind.ATTACHMENT_DONE, oldest),))
        self._done[attachment_id] = (token, expiry)
        self._host.persist((done_record(attachment_id, token, expiry),), ())

    def _send_done(self, link: LinkId, attachment_id: bytes, token: bytes, expiry: float) -> None:
        self._host.send(
            link,
            AttachmentDone(attachment_id=attachment_id, token=token, expiry_at=int(expiry * 1000)),
        )

    def _drop(self, attachment_id: bytes, reason: str) -> None:
        if attachment_id in self.table:
            self._forget(attachment_id, reason)

    def _forget(self, attachment_id: bytes, reason: str) -> None:
        """Remove from the table (if still there), persist that, delete the chunks."""
        self.table.remove(attachment_id)
        self._asked = {k for k in self._asked if k[0] != attachment_id}
        for peer in self._links.values():
            peer.asked = {k for k in peer.asked if k[0] != attachment_id}
        self._host.persist((), ((RecordKind.ATTACHMENT, attachment_id),))
        self._host.chunk_effect(DeleteChunks(attachment_id=attachment_id))
        self._host.attach_event(AttachmentDropped(attachment_id=attachment_id, reason=reason))

    # ------------------------------------------------------------------ helpers

    def _advertise(self, link: LinkId, items: list[Carried]) -> None:
        entries: list[HoldingEntry] = []
        size = 0
        for item in items:
            ours = item.role is Role.WANTED and item.held.complete and not self.shared(item)
            if item.role is Role.PENDING or ours:
                continue  # nothing to give, or the file is ours now (a group's is everyone's)
            entry = HoldingEntry(
                attachment_id=item.attachment_id, manifest=item.manifest.encode(),
                expiry_at=int(item.expiry_at * 1000), copies=self._offer_copies(item),
                bits=item.held.encode(),
            )  # fmt: skip
            if entries and (
                len(entries) == self._limits.max_have_entries
                or size + len(entry.bits) > _HOLDINGS_RECORD_BYTES
            ):
                self._host.send(link, ChunkHoldings(entries=tuple(entries)))
                entries, size = [], 0
            entries.append(entry)
            size += len(entry.bits) + 150
        if entries:
            self._host.send(link, ChunkHoldings(entries=tuple(entries)))

    def _advertise_on_links(self, item: Carried) -> None:
        """Tell every link that is up what we hold of ``item`` (#13, #17 item 2): holdings
        are otherwise sent only when a link comes up. Peers that told us they hold all of it
        have nothing to learn."""
        for link, peer in self._links.items():
            theirs = peer.holdings.get(item.attachment_id)
            if theirs is None or not theirs.complete:
                self._advertise(link, [item])

    def _update_step(self, item: Carried) -> int:
        """Chunks stored between two holdings updates of ``item`` on the links that are up."""
        updates = self._limits.holdings_updates_per_attachment
        return max(1, -(-item.manifest.count // updates))

    def _offer_copies(self, item: Carried) -> int:
        """Copies a peer may take: binary Spray-and-Wait hands half; epidemic always one."""
        policy = self._config.routing.policy
        if item.role not in (Role.OWN, Role.RELAY) or policy == "direct":
            return 0
        if policy == "epidemic":
            return 1
        if item.copies <= 1:
            return 0  # wait phase: only the recipient fetches from us
        return item.copies // 2 if self._config.routing.binary else 1

    def _save(self, item: Carried) -> None:
        self._host.persist((state_record(item),), ())


def _not_shared(item: Carried) -> bool:
    return False
