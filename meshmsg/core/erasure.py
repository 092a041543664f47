"""Which writes of key state erase keys, so the driver can make the old bytes leave the disk.

A contact's channel state is one record, replaced in place. When the state that replaces it
has deleted keys (a period rollover, a heal that moved to a new epoch), the old sealed value
must not outlive the write: SQLite keeps it in the WAL until a checkpoint
(docs/storage.md, "Deleted data"). The Node marks such a ``Persist`` with ``erases_keys`` and
the driver checkpoints after committing it.

The channel may move on before anything is written (``open`` and ``seal`` advance its clock
first, even for an envelope that then fails authentication), so the comparison is with what
was last *written*, not with the previous call: ``(period, epoch)`` only grows, and either
growing means slots or an epoch were deleted; a channel replaced by a new pairing is another
object (its identity is part of the mark), and every key of the old one is gone.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from meshmsg.core.contacts import ContactBook
from meshmsg.core.e2e import ContactChannel
from meshmsg.core.effects import RecordKind, StoredRecord

# The key suffix of our own group sender chain's record (core/groups/persist.py): rewritten
# after every group message we seal, with that message's key gone.
OWN_GROUP_CHAIN: Final = b"\xff\xff\xff\xff"
_Mark = tuple[int, int, int]  # (channel object id, period, epoch) of a written channel state


class KeyErasure:
    """The mark of each contact's last written channel state."""

    def __init__(self) -> None:
        self._written: dict[bytes, _Mark] = {}

    def note_restored(self, peer_id: bytes, channel: ContactChannel) -> None:
        """The state on disk at start: later writes compare with it."""
        self._written[peer_id] = _mark(channel)

    def erases(self, puts: Iterable[StoredRecord], contacts: ContactBook) -> bool:
        """Whether writing ``puts`` replaces channel states that still hold deleted keys."""
        erased = False
        for put in puts:
            if put.kind is RecordKind.GROUP_KEY and put.key.endswith(OWN_GROUP_CHAIN):
                erased = True  # our group sender chain stepped past a sealed message's key
                continue
            if put.kind is not RecordKind.CHANNEL:
                continue
            contact = contacts.get(put.key)
            if contact is None or contact.channel is None:
                continue
            mark = _mark(contact.channel)
            old = self._written.get(put.key)
            erased = erased or (old is not None and mark != old)
            self._written[put.key] = mark
        return erased

    def stale(self, peer_id: bytes, channel: ContactChannel) -> bool:
        """Whether the written state of ``peer_id`` holds keys the live one deleted."""
        old = self._written.get(peer_id)
        return old is not None and old != _mark(channel)


def _mark(channel: ContactChannel) -> _Mark:
    return id(channel), channel.period, channel.epoch
