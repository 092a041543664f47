"""Sync records out of place close the link: a Reply to an Offer never made, and a route
table over the bound."""

from __future__ import annotations

import dataclasses

from meshmsg.config import NodeConfig, RoutingConfig
from meshmsg.core.events import LinkClosed
from meshmsg.core.records import Reply, RouteEntry, RouteTable
from meshmsg.errors import CloseReason
from tests.core.node_tools import AttackMesh


def _closures(mesh: AttackMesh) -> list[tuple[CloseReason, str]]:
    return [(e.reason, e.detail) for e in mesh.of_type("carol", LinkClosed)]


def test_a_reply_without_an_offer_closes_the_link() -> None:
    mesh = AttackMesh(["carol"])
    peer = mesh.inject("carol", mesh.stranger("eve"))
    peer.send([Reply(for_me=(b"x" * 16,), have=())])
    assert not peer.up
    assert any("reply without an offer" in detail for _, detail in _closures(mesh))


def test_a_route_table_over_the_bound_closes_the_link() -> None:
    routing = dataclasses.replace(RoutingConfig(), max_route_entries=2)
    mesh = AttackMesh(["carol"], config=NodeConfig(routing=routing))
    peer = mesh.inject("carol", mesh.stranger("eve"))
    entries = tuple(RouteEntry(route=bytes([i]) * 8, p=100) for i in range(3))
    peer.send([RouteTable(entries=entries)])
    assert not peer.up
    assert (CloseReason.TOO_LARGE, "route table too large") in _closures(mesh)
