"""The node's groups: membership, keys and messages, as plain decisions (no effects).

Theory of operation
-------------------
:class:`GroupBook` is what a node knows of its groups, and the rules of what to tell whom. It
produces :class:`Outgoing` values (end-to-end records for one member, to be sealed over the
pairwise channel with that member) and group envelopes (one ciphertext for all members); the
node's exchange part (:mod:`meshmsg.core.exchange.groups`) seals, stores, persists and reports.

What goes to whom (docs/protocol/groups.md §5):

* an operation we author goes to every member of the new state, to the member it removes (so
  it learns it was removed) and, for an ADD, the whole graph to the new member;
* a received ``GroupOps`` whose sender lacks some of our operations (its heads are all known
  to us, and we have more) is answered with what it lacks; every ``GroupText`` carries the
  sender's heads too, and a receiver that lacks one asks (a ``GroupOps`` with our heads only);
* our sender chain goes to every other member when a generation starts, and to a member who
  appears in our view later (it reads from then on, not the history);
* a chain from someone who is not (yet) a member in our view waits, bounded, until the
  operation that adds them arrives, and is discarded if it never does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from meshmsg.config import NodeConfig
from meshmsg.core.attach.records import AttachmentRefEntry
from meshmsg.core.envelope import Envelope, capped_expiry
from meshmsg.core.groups.group import Group
from meshmsg.core.groups.keyring import GroupKeys, GroupMatch, chain_key, key_record
from meshmsg.core.groups.ops import GroupOp, OpKind, parse_op, sign_op
from meshmsg.core.groups.records import (
    GROUP_ENVELOPE_RECORDS,
    GROUP_FILES_BODY_BYTES,
    MAX_HEADS,
    GroupFiles,
    GroupKey,
    GroupOps,
    GroupReceipt,
    GroupText,
)
from meshmsg.core.identity import Identity, PublicIdentity, peer_id_of
from meshmsg.core.rng import Rng
from meshmsg.core.wire import Record, decode_records, encode_record
from meshmsg.errors import DecodeError, GroupError, InvalidMessage

_MS = 1000.0
# Operation bytes per GroupOps record: with heads and framing it stays well inside one
# envelope's inner plaintext (max_inner_bytes, 34,816).
_OPS_BYTES = 24_576
RECEIPT_DELIVERED = 0
RECEIPT_READ = 1


@dataclass(frozen=True, slots=True)
class Outgoing:
    """End-to-end records for one member, over our pairwise channel with it."""

    peer_id: bytes
    records: tuple[Record, ...]


@dataclass(slots=True, kw_only=True)
class GroupMessage:
    message_id: bytes
    group: bytes
    sender: bytes  # identity key
    outgoing: bool
    body: str
    sent_at: float
    received_at: float | None
    expiry_at: float
    envelope_id: bytes | None = None
    recipients: frozenset[bytes] = frozenset()  # outgoing: members (identity keys) at sending
    delivered: set[bytes] = field(default_factory=set)
    read: set[bytes] = field(default_factory=set)
    read_by_me: bool = False
    # Attachments' references, as the message carried them: set when we seal or open it, not
    # persisted (the attachment carrier keeps each attachment with this message's id).
    refs: tuple[AttachmentRefEntry, ...] = ()


@dataclass(slots=True)
class Entry:
    group: Group
    keys: GroupKeys
    waiting: dict[bytes, GroupKey] = field(default_factory=dict)  # chains from non-members
    messages: dict[bytes, GroupMessage] = field(default_factory=dict)
    told: set[bytes] = field(default_factory=set)  # members our current chain went to


@dataclass(frozen=True, slots=True)
class Sealed:
    envelope: bytes
    message: GroupMessage
    shares: list[Outgoing]  # our new chain, to be sealed pairwise *before* the envelope leaves


class GroupBook:
    """See the module docstring."""

    def __init__(self, identity: Identity, config: NodeConfig, rng: Rng) -> None:
        self.identity = identity
        self.me = identity.public.identity_key
        self.config = config
        self.limits = config.groups
        self.rng = rng
        self.entries: dict[bytes, Entry] = {}
        self.own_envelopes: set[bytes] = set()  # envelope ids of our group messages
        # Records for groups we do not know yet (they outran the CREATE), bounded by the
        # group limits; taken when the CREATE arrives, lost on a restart.
        self._orphans: dict[bytes, list[GroupOp]] = {}
        # Groups whose CREATE came but whose ADD of us has not (a big history in several
        # records): held apart until we are a member, so a contact cannot fill our group slots
        # with groups we are not in. At most max_groups, the oldest dropped first.
        self._unjoined: dict[bytes, Entry] = {}
        self._orphan_keys: dict[bytes, dict[bytes, GroupKey]] = {}

    # ------------------------------------------------------------ lookups

    def find(self, name_or_id: str | bytes) -> Entry:
        """A group by id, or by name (unique among our groups), or by a hex id prefix."""
        if isinstance(name_or_id, bytes):
            entry = self.entries.get(name_or_id)
        else:
            named = [e for e in self.entries.values() if e.group.state.name == name_or_id]
            if len(named) > 1:
                raise GroupError(f"several groups are named {name_or_id!r}: use the id")
            entry = named[0] if named else None
            if entry is None and len(name_or_id) >= 8:
                hexed = [e for gid, e in self.entries.items() if gid.hex().startswith(name_or_id)]
                entry = hexed[0] if len(hexed) == 1 else None
        if entry is None:
            raise GroupError(f"no group {name_or_id!r}")
        return entry

    def keeps(self, envelope_id: bytes) -> bool:
        """Whether this is our own group envelope: we hand one copy to each member that claims
        it and keep ours for the others (a member's claim is not everyone's delivery)."""
        return envelope_id in self.own_envelopes

    def lookup(self, tag: bytes) -> tuple[Entry, GroupMatch] | None:
        for entry in self.entries.values():
            match = entry.keys.lookup(tag)
            if match is not None:
                return entry, match
        return None

    # ------------------------------------------------------------ membership

    def create(
        self, name: str, members: Sequence[PublicIdentity], now: float
    ) -> tuple[Entry, list[Outgoing]]:
        if len(self.entries) >= self.limits.max_groups:
            raise GroupError(
                f"at most {self.limits.max_groups} groups per node (groups.max_groups)"
            )
        if len(members) + 1 > self.limits.max_members:
            raise GroupError(f"a group has at most {self.limits.max_members} members")
        root = sign_op(
            self.identity.signing_seed, group=self.rng.randbytes(32), kind=OpKind.CREATE,
            deps=(), target=self.identity.public.to_bytes(), name=name, at_ms=_ms(now),
            limits=self.limits,
        )  # fmt: skip
        entry = self.new_entry(Group(root, self.limits))
        for public in members:
            if public.identity_key != self.me:
                entry.group.author(
                    self.identity.signing_seed, OpKind.ADD, at_ms=_ms(now),
                    target=public.to_bytes(),
                )  # fmt: skip
        self.entries[entry.group.id] = entry
        history = entry.group.missing_for(())
        return entry, [self._ops_to(k, entry, history) for k in self._others(entry)]

    def change(
        self,
        entry: Entry,
        kind: OpKind,
        now: float,
        *,
        target: PublicIdentity | bytes | None = None,
        name: str | None = None,
    ) -> list[Outgoing]:
        """Author one operation (ADD needs the target's public identity). GroupError if refused."""
        raw = target.to_bytes() if isinstance(target, PublicIdentity) else target
        before = set(entry.group.state.members)
        op = entry.group.author(
            self.identity.signing_seed, kind, at_ms=_ms(now), target=raw, name=name
        )
        out = [self._ops_to(k, entry, [op]) for k in self._others(entry) if k in before]
        if kind is OpKind.ADD and op.target_key is not None:
            out.append(self._ops_to(op.target_key, entry, entry.group.missing_for(())))
        if kind is OpKind.REMOVE and op.target_key is not None:
            out.append(self._ops_to(op.target_key, entry, [op]))
        return out + self._after_change(entry, before, now)

    def on_ops(self, sender: bytes, record: GroupOps, now: float) -> tuple[bool, list[Outgoing]]:
        """Operations from a contact (``sender``: its identity key). (changed, replies)."""
        ops: list[GroupOp] = []
        for data in record.ops[: self.limits.max_ops_per_message]:
            try:
                ops.append(parse_op(data, self.limits))
            except InvalidMessage:
                continue  # one bad operation does not spoil the others
        entry = self.entries.get(record.group) or self._unjoined.get(record.group)
        if entry is None:
            entry = self._join(record.group, ops)
            if entry is None:
                return False, []
            ops += self._orphans.pop(record.group, [])
        before = set(entry.group.state.members)
        result = entry.group.receive(ops)
        if record.group not in self.entries:
            if self.me not in entry.group.state.members:
                return False, []  # not (yet) ours: held apart, never listed
            del self._unjoined[record.group]  # the operation adding us arrived: a group of ours
            self.entries[record.group] = entry
            before = set()
        out: list[Outgoing] = []
        if entry.group.knows_all(record.heads):
            lacking = entry.group.missing_for(record.heads)
            if lacking and sender in entry.group.state.members:
                out.append(self._ops_to(sender, entry, lacking))
        out += self._after_change(entry, before, now)
        return bool(result.accepted), out

    def _join(self, group_id: bytes, ops: list[GroupOp]) -> Entry | None:
        """A group we did not know. With its CREATE we start it apart (a big history comes in
        several records: the one adding us may come later); without, its operations wait."""
        root = next((o for o in ops if o.kind is OpKind.CREATE and o.id == group_id), None)
        if root is None:
            held = sum(len(v) for v in self._orphans.values())
            if group_id in self._orphans or len(self._orphans) < self.limits.max_groups:
                room = max(0, self.limits.max_pending_ops - held)
                self._orphans.setdefault(group_id, []).extend(ops[:room])
            return None
        if len(self.entries) >= self.limits.max_groups:
            return None
        if len(self._unjoined) >= self.limits.max_groups:  # the oldest goes
            self._unjoined.pop(next(iter(self._unjoined)))
        entry = self.new_entry(Group(root, self.limits))
        self._unjoined[group_id] = entry
        entry.waiting.update(self._orphan_keys.pop(group_id, {}))
        return entry

    def _after_change(self, entry: Entry, before: set[bytes], now: float) -> list[Outgoing]:
        """Membership moved: forget the chains of those who left, admit waiting chains, and
        hand our current chain to members who just appeared."""
        state = entry.group.state
        for gone in before - set(state.members):
            entry.keys.forget_sender(gone, now)
            entry.told.discard(gone)
        for key, record in list(entry.waiting.items()):
            if key in state.members:
                del entry.waiting[key]
                self.on_key(key, record, now)
        own = entry.keys.own
        if own is None or self.me not in state.members or own.epoch_id != state.epoch_id:
            return []  # a new generation starts (and is shared) with our next message
        share = key_record(own.share())
        fresh = [k for k in self._others(entry) if k not in entry.told]
        entry.told.update(fresh)
        return [Outgoing(peer_id_of(k), (share,)) for k in fresh]

    def on_key(self, sender: bytes, record: GroupKey, now: float) -> bool:
        entry = self.entries.get(record.group)
        if sender == self.me:
            return False
        if entry is None:  # its operations are still on their way: wait, bounded
            held = self._orphan_keys.setdefault(record.group, {})
            if len(held) < self.limits.max_members and (
                len(self._orphan_keys) <= self.limits.max_groups
            ):
                held[sender] = record
            return False
        if sender not in entry.group.state.members:
            if len(entry.waiting) < self.limits.max_members:
                entry.waiting[sender] = record  # the ADD may still be on its way
            return False
        return entry.keys.install(chain_key(record.group, sender, record), now)

    # ------------------------------------------------------------ messages

    def seal_text(
        self, entry: Entry, body: str, now: float, ttl_s: float,
        refs: tuple[AttachmentRefEntry, ...] = (),
    ) -> Sealed:  # fmt: skip
        """Seal a message to the group (with ``refs``: its attachments, already checked)."""
        state = entry.group.state
        if self.me not in state.members:
            raise GroupError("you are no longer a member of this group")
        max_body = GROUP_FILES_BODY_BYTES if refs else self.config.message.max_body_bytes
        if len(body.encode()) > max_body:
            raise GroupError(f"message body over {max_body} bytes")
        chain, fresh = entry.keys.sender(epoch_id=state.epoch_id, rng=self.rng, now=now)
        shares: list[Outgoing] = []
        others = self._others(entry)
        if fresh:  # a new generation: every current member gets it, nobody else
            share = key_record(chain.share())
            shares = [Outgoing(peer_id_of(k), (share,)) for k in others]
            entry.told = set(others)
        message = GroupMessage(
            message_id=self.rng.randbytes(16), group=entry.group.id, sender=self.me,
            outgoing=True, body=body, sent_at=now, received_at=None, expiry_at=now + ttl_s,
            recipients=frozenset(others), refs=refs,
        )  # fmt: skip
        heads = entry.group.heads[:MAX_HEADS]
        record: GroupText | GroupFiles = GroupText(
            group=entry.group.id, message_id=message.message_id, sent_at=_ms(now), body=body,
            heads=heads,
        )  # fmt: skip
        if refs:
            record = GroupFiles(
                group=entry.group.id, message_id=message.message_id, sent_at=_ms(now),
                body=body, heads=heads, refs=refs,
            )  # fmt: skip
        envelope, _token = chain.seal(
            encode_record(record), now=now, ttl_s=ttl_s, rng=self.rng, limits=self.config.message
        )
        entry.messages[message.message_id] = message
        return Sealed(envelope=envelope, message=message, shares=shares)

    def open(
        self, entry: Entry, envelope: Envelope, match: GroupMatch, now: float
    ) -> tuple[GroupMessage | None, list[Outgoing]]:
        """Open group mail. (message, replies); InvalidMessage if it fails authentication."""
        payload = entry.keys.open(envelope, match, now)
        try:
            records = decode_records(payload, GROUP_ENVELOPE_RECORDS, self.config.wire)
        except DecodeError:
            return None, []  # authentic but unreadable (a newer client?)
        text = next((r for r in records if isinstance(r, GroupText | GroupFiles)), None)
        if text is None or text.group != entry.group.id or text.message_id in entry.messages:
            return None, []
        message = GroupMessage(
            message_id=text.message_id, group=entry.group.id, sender=match.sender,
            outgoing=False, body=text.body, sent_at=text.sent_at / _MS, received_at=now,
            expiry_at=capped_expiry(envelope.expiry_at, self.config.message, now),
            refs=text.refs if isinstance(text, GroupFiles) else (),
        )  # fmt: skip
        entry.messages[message.message_id] = message
        out: list[Outgoing] = []
        if not entry.group.knows_all(text.heads):  # we lack operations: ask the sender
            out.append(self._ops_to(match.sender, entry, []))
        if self.config.message.send_receipts:
            out.append(self._receipt(entry, message, RECEIPT_DELIVERED))
        return message, out

    def mark_read(self, entry: Entry, message_ids: Sequence[bytes]) -> list[Outgoing]:
        if not self.config.message.send_receipts:
            return []
        out = []
        for mid in message_ids:
            message = entry.messages.get(mid)
            if message is not None and not message.outgoing:
                out.append(self._receipt(entry, message, RECEIPT_READ))
        return out

    def on_receipt(self, sender: bytes, record: GroupReceipt) -> list[GroupMessage]:
        """A member's receipts for our messages; the messages whose counts changed."""
        entry = self.entries.get(record.group)
        if entry is None:
            return []
        changed = []
        for mid in record.message_ids:
            message = entry.messages.get(mid)
            if message is None or not message.outgoing or sender not in message.recipients:
                continue
            marks = message.read if record.status == RECEIPT_READ else message.delivered
            if sender not in marks:
                marks.add(sender)
                message.delivered.add(sender)  # read implies delivered
                changed.append(message)
        return changed

    # ------------------------------------------------------------ helpers

    def new_entry(self, group: Group) -> Entry:
        return Entry(group, GroupKeys(group.id, self.me, self.limits, self.config.message))

    def _others(self, entry: Entry) -> list[bytes]:
        return sorted(k for k in entry.group.state.members if k != self.me)

    def _ops_to(self, member: bytes, entry: Entry, ops: Sequence[GroupOp]) -> Outgoing:
        """Operations for one member, in records of at most ``max_ops_per_message`` operations
        and ``_OPS_BYTES`` bytes each (so every record fits one envelope)."""
        heads = entry.group.heads[:MAX_HEADS]
        chunks: list[list[bytes]] = [[]]
        size = 0
        for op in ops:
            full = len(chunks[-1]) >= self.limits.max_ops_per_message
            if chunks[-1] and (full or size + len(op.data) > _OPS_BYTES):
                chunks.append([])
                size = 0
            chunks[-1].append(op.data)
            size += len(op.data)
        records: list[Record] = [
            GroupOps(group=entry.group.id, ops=tuple(chunk), heads=heads) for chunk in chunks
        ]
        return Outgoing(peer_id_of(member), tuple(records))

    def _receipt(self, entry: Entry, message: GroupMessage, status: int) -> Outgoing:
        ids = (message.message_id,)
        record = GroupReceipt(group=entry.group.id, status=status, message_ids=ids)
        return Outgoing(peer_id_of(message.sender), (record,))


def _ms(now: float) -> int:
    return max(0, round(now * _MS))
