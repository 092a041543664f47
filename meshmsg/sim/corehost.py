"""The real protocol core in the simulator: a :class:`~meshmsg.sim.host.NodeFactory` of ``Node``.

Each node gets a deterministic identity from the run seed (stream ``identity:<address>``) and its
own randomness (``node:<address>``). A scenario's ``[nodes]`` and ``[routing]`` become the
node's ``NodeConfig``: the relay store's cap is ``buffer_bytes``; ONE mode selects the core's
ONE-compatible store (drop-oldest, no tiers) and, unless the scenario says otherwise, keeps
delivered copies as the ONE does. Pre-paired nodes have each other as verified contacts with
pairwise keys already agreed (``meshmsg.core.offlinepair.pair_offline``), as if they had met
before the run: every pair of nodes, or only the given pairs (those that write to each
other); a node writes only to its contacts, so traffic to anyone else fails to queue. Relays
need no pairing: they carry sealed envelopes they cannot read.
A restarted node is rebuilt from exactly the records it had committed.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence

from meshmsg.config import NodeConfig, RoutingConfig
from meshmsg.core.effects import StoredRecord
from meshmsg.core.identity import ContactCard, Identity
from meshmsg.core.node import Node
from meshmsg.core.offlinepair import pair_offline
from meshmsg.errors import ConfigError
from meshmsg.sim.host import CodesOnly, NodeSetup, PrePairing, RecordKey, SimulatedNode
from meshmsg.sim.rng import SeededRng

_ROUTING_KEYS = tuple(f.name for f in dataclasses.fields(RoutingConfig))


def node_config(setup: NodeSetup) -> NodeConfig:
    """The ``NodeConfig`` a scenario gives one node.

    Raises:
        ConfigError: a routing or store value the core refuses.
    """
    base = NodeConfig()
    routing = RoutingConfig(**{k: setup.routing[k] for k in _ROUTING_KEYS if k in setup.routing})  # type: ignore[arg-type]
    store = dataclasses.replace(base.store, max_store_bytes=setup.buffer_bytes)
    ttl = max(setup.ttl_s, base.message.default_ttl_s)
    message = dataclasses.replace(
        base.message,
        max_ttl_s=max(ttl, base.message.max_ttl_s),
        tag_window=setup.tag_window,
        send_receipts=setup.receipts,
        purge_on_delivery=setup.receipts,
    )
    # ONE mode paces and aborts each envelope on its own: one envelope per Transmit.
    sync = dataclasses.replace(base.sync, envelopes_per_transmit=1) if setup.one_mode else base.sync
    return base.replace(routing=routing, store=store, message=message, sync=sync)


class CoreFactory:
    """Builds ``meshmsg.core.node.Node`` instances for a run."""

    def __init__(self) -> None:
        self._identities: list[Identity] = []
        self._prepared: dict[int, Node] = {}
        self._configs: dict[int, NodeConfig] = {}

    def prepare(self, setups: Sequence[NodeSetup], *, seed: int, pre_pair: PrePairing) -> None:
        """Identities for all nodes; pairs ``pre_pair`` names (see :data:`PrePairing`).

        Raises:
            ConfigError: a node would have more contacts than the core's ``max_contacts``, or a
                pair names an address outside the run or a node with itself.
        """
        self._identities = [
            Identity.generate(SeededRng(seed, f"identity:{s.address}")) for s in setups
        ]
        self._configs = {s.address: node_config(s) for s in setups}
        if isinstance(pre_pair, CodesOnly):
            self._pair_some(setups, sorted(pre_pair.pairs), seed, pair=False)
            return
        if isinstance(pre_pair, frozenset):
            self._pair_some(setups, sorted(pre_pair), seed)
            return
        if not pre_pair:
            return
        for s in setups:
            if len(setups) - 1 > self._configs[s.address].message.max_contacts:
                raise ConfigError(
                    f"nodes.pre_pair: {len(setups) - 1} contacts per node exceed the core's "
                    f"max_contacts ({self._configs[s.address].message.max_contacts})"
                )
        nodes = [self._new(s, SeededRng(seed, f"node:{s.address}"), 0.0, ()) for s in setups]
        for node in nodes:
            for other in self._identities:
                if other.peer_id != node.identity.peer_id:
                    node.add_contact(ContactCard(public=other.public), verified=True, now=0.0)
        for i, a in enumerate(nodes):
            for b in nodes[i + 1 :]:
                pair_offline(a, b, now=0.0)
        self._prepared = {s.address: n for s, n in zip(setups, nodes, strict=True)}

    def _pair_some(
        self,
        setups: Sequence[NodeSetup],
        pairs: Sequence[tuple[int, int]],
        seed: int,
        *,
        pair: bool = True,
    ) -> None:
        """Make ``pairs`` (each ``(a, b)`` with ``a < b``) contacts, in sorted order, and pair
        them unless ``pair`` is False (they then write by first contact until they meet)."""
        degree: Counter[int] = Counter()
        for a, b in pairs:
            if not 0 <= a < b < len(setups):
                raise ConfigError(
                    f"nodes.pre_pair: pair ({a}, {b}) is not two nodes a < b of "
                    f"0..{len(setups) - 1}"
                )
            degree.update((a, b))
        for address, count in sorted(degree.items()):
            limit = self._configs[address].message.max_contacts
            if count > limit:
                raise ConfigError(
                    f"nodes.pre_pair: node {address} would have {count} pre-paired contacts, "
                    f"more than the core's max_contacts ({limit})"
                )
        nodes = {
            a: self._new(setups[a], SeededRng(seed, f"node:{a}"), 0.0, ()) for a in sorted(degree)
        }
        for a, b in pairs:
            nodes[a].add_contact(
                ContactCard(public=self._identities[b].public), verified=True, now=0.0
            )
            nodes[b].add_contact(
                ContactCard(public=self._identities[a].public), verified=True, now=0.0
            )
        for a, b in pairs if pair else ():
            pair_offline(nodes[a], nodes[b], now=0.0)
        self._prepared = nodes

    def identity(self, address: int) -> bytes:
        return self._identities[address].peer_id

    def build(
        self, setup: NodeSetup, *, rng: SeededRng, now: float, records: Mapping[RecordKey, bytes]
    ) -> SimulatedNode:
        prepared = self._prepared.pop(setup.address, None)
        if prepared is not None and not records:
            return prepared
        stored = [StoredRecord(kind=k, key=key, value=v) for (k, key), v in records.items()]
        return self._new(setup, rng, now, stored)

    def _new(
        self, setup: NodeSetup, rng: SeededRng, now: float, records: Sequence[StoredRecord]
    ) -> Node:
        return Node(
            identity=self._identities[setup.address],
            config=self._configs[setup.address],
            rng=rng,
            now=now,
            records=records,
            one_mode=setup.one_mode,
        )
