"""The node's state: the containers every part of the core reads and changes.

A :class:`NodeState` is plain data (no effects, no events): who we are, the contact book and
its tag index, the relay store and the reconciliation set over it, purge tokens, routing,
conversations, and the sessions of open links. The parts of the meeting protocol
(:mod:`meshmsg.core.exchange`) are handed the state and an
:class:`~meshmsg.core.outbox.Outbox`; :mod:`meshmsg.core.codec` builds a state from persisted
records. Fields that schedule work (receipts due, key periods due) belong to the part that owns
that work, not to this object, so no part writes another's bookkeeping.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from meshmsg.config import NodeConfig
from meshmsg.core.contacts import ContactBook
from meshmsg.core.conversations import Conversations
from meshmsg.core.effects import LinkId
from meshmsg.core.erasure import KeyErasure
from meshmsg.core.firstcontact import FirstContactIndex
from meshmsg.core.groups.book import GroupBook
from meshmsg.core.identity import Identity
from meshmsg.core.itemset import ItemSet
from meshmsg.core.org.directory import OrgBook
from meshmsg.core.receiptholds import ReceiptHolds
from meshmsg.core.requests import RequestBook
from meshmsg.core.rng import Rng
from meshmsg.core.routing import Router, make_router, route_id
from meshmsg.core.session import PeerSession
from meshmsg.core.store import RelayStore
from meshmsg.core.tagindex import TagIndex
from meshmsg.core.tombstones import Tombstones


@dataclass(slots=True)
class BodyWanted:
    """A ``LoadEnvelope`` asked of the driver and not answered yet: whether an opening waits
    for the body (and the relay ``via`` whose hand-over made it openable), whether the record
    is to be written again (its copies changed), besides the transfers marked
    ``InFlight.loading`` (StoreConfig.bodies_on_disk, docs/storage.md)."""

    to_open: bool = False
    via: bytes | None = None
    rewrite: bool = False


@dataclass(slots=True, kw_only=True, eq=False)
class NodeState:
    """Everything one device knows, apart from its queued output."""

    identity: Identity
    config: NodeConfig
    rng: Rng
    contacts: ContactBook
    tags: TagIndex  # tags of every contact's channel -> (contact, counter)
    store: RelayStore
    items: ItemSet  # what reconciliation compares: store items and purge tokens
    tombstones: Tombstones
    router: Router
    conversations: Conversations
    groups: GroupBook  # our groups: membership, sender chains, group messages
    sessions: dict[LinkId, PeerSession] = field(default_factory=dict)
    # Envelope ids admitted to the store, and ids of purge tokens of mail we opened, whose
    # Persist the driver has not confirmed yet: neither offered, pushed nor acknowledged until
    # it has (exchange/holdings.py).
    uncommitted: set[bytes] = field(default_factory=set)
    # The last written key state of each contact, to mark writes that erase keys (erasure.py).
    erasure: KeyErasure = field(default_factory=KeyErasure)
    # Issue #12: message requests and blocked strangers, organisations joined and their
    # directories, our own first-contact tags.
    requests: RequestBook
    orgs: OrgBook
    first_index: FirstContactIndex
    # Delivered receipts kept from the relay that handed their mail over (issue #11, 4).
    receipt_holds: ReceiptHolds = field(default_factory=ReceiptHolds)
    # Carried envelopes' bodies asked of the driver, by id (at most one load per item).
    body_loads: dict[bytes, BodyWanted] = field(default_factory=dict)

    @classmethod
    def empty(
        cls, *, identity: Identity, config: NodeConfig, rng: Rng, one_mode: bool = False
    ) -> NodeState:
        """A state with nothing in it (a first start, before restoring records)."""
        limit = config.message.max_contacts
        return cls(
            identity=identity,
            config=config,
            rng=rng,
            contacts=ContactBook(limit),
            tags=TagIndex(max_contacts=limit),
            store=RelayStore(config.store, one_mode=one_mode),
            items=ItemSet(),
            tombstones=Tombstones(config.message.dedup_entries, config.store),
            router=make_router(config.routing, route_id(identity.public.identity_key)),
            conversations=Conversations(),
            groups=GroupBook(identity, config, rng),
            requests=RequestBook(config.first_contact),
            orgs=OrgBook(config.org),
            first_index=FirstContactIndex(
                identity.public, config.message, config.first_contact.tag_slots
            ),
        )
