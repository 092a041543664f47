"""Routing decisions against the ONE's semantics."""

from __future__ import annotations

import pytest

from meshmsg.config import RoutingConfig
from meshmsg.core.routing import PeerRouting, make_router, peer_routing, route_id
from meshmsg.core.store import StoreItem, Tier
from meshmsg.errors import ConfigError

PEER = PeerRouting(route_id=b"P" * 8, predictabilities={})


def item(copies: int, route_hint: bytes | None = None, seq: int = 0) -> StoreItem:
    it = StoreItem(
        envelope_id=bytes(16), envelope=b"e", tag=bytes(16), expiry_at=1e9, copies=copies,
        hops=0, tier=Tier.OWN, source=None, received_at=0.0, route_hint=route_hint,
    )  # fmt: skip
    it.seq = seq
    return it


def router(policy: str, **kw: object):  # type: ignore[no-untyped-def]
    return make_router(RoutingConfig(policy=policy, **kw), b"M" * 8)  # type: ignore[arg-type]


@pytest.mark.parametrize(("copies", "give", "keep"), [(6, 3, 3), (3, 1, 2), (2, 1, 1), (1, 0, 1)])
def test_binary_spray_and_wait_matches_the_one(copies: int, give: int, keep: int) -> None:
    r = router("spray-and-wait")
    it = item(copies)
    assert r.copies_to_give(it, PEER, now=0) == give
    if give:
        # Receiver gets floor(n/2), sender keeps ceil(n/2) (the paper; the ONE since 2017);
        # copies are conserved.
        assert r.copies_kept(it, give, to_recipient=False) == keep
        assert give + keep == copies


def test_source_spray_and_wait_hands_one_copy() -> None:
    r = router("spray-and-wait", binary=False)
    assert r.copies_to_give(item(4), PEER, now=0) == 1
    assert r.copies_kept(item(4), 1, to_recipient=False) == 3


def test_direct_and_epidemic() -> None:
    assert router("direct").copies_to_give(item(1), PEER, now=0) == 0
    assert router("epidemic").copies_to_give(item(1), PEER, now=0) == 1
    assert router("epidemic").copies_kept(item(1), 1, to_recipient=False) == 1


def test_delivery_drops_the_copy_unless_one_semantics() -> None:
    assert router("epidemic").copies_kept(item(1), 1, to_recipient=True) == 0
    one = router("spray-and-wait", drop_after_delivery=False)
    assert one.copies_kept(item(6), 6, to_recipient=True) == 3  # ONE halves on any transfer
    assert one.copies_kept(item(3), 3, to_recipient=True) == 2  # ... keeping the larger half


def test_prophet_encounter_transitivity_and_aging() -> None:
    r = router("prophet")
    b, c = b"B" * 8, b"C" * 8
    r.meet(peer_routing(b, [(c, 65_535)]), now=0.0)
    assert r.predictability(b, 0.0) == pytest.approx(0.75)
    assert r.predictability(c, 0.0) == pytest.approx(0.75 * 1.0 * 0.25)
    r.meet(peer_routing(b, []), now=0.0)
    assert r.predictability(b, 0.0) == pytest.approx(0.75 + 0.25 * 0.75)
    # Aging: gamma^(elapsed / 30 s).
    assert r.predictability(b, 300.0) == pytest.approx((0.75 + 0.25 * 0.75) * 0.98**10)


def test_prophet_forwards_only_to_a_better_peer() -> None:
    r = router("prophet")
    dest = b"D" * 8
    better = peer_routing(b"B" * 8, [(dest, 30_000)])
    worse = peer_routing(b"C" * 8, [])
    assert r.copies_to_give(item(1, route_hint=dest), better, now=0) == 1
    assert r.copies_to_give(item(1, route_hint=dest), worse, now=0) == 0
    assert r.copies_to_give(item(1, route_hint=None), better, now=0) == 0
    ranked = r.order_for([item(1, b"X" * 8, seq=0), item(1, dest, seq=1)], better)
    assert ranked[0].route_hint == dest


def test_prophet_table_is_bounded() -> None:
    r = router("prophet", max_route_entries=3)
    r.meet(peer_routing(b"B" * 8, [(bytes([i]) * 8, 1000 + i) for i in range(10)]), now=0)
    assert len(r.table(0)) == 3


def test_route_id_is_stable_and_short() -> None:
    assert route_id(b"k" * 32) == route_id(b"k" * 32)
    assert len(route_id(b"k" * 32)) == 8
    assert route_id(b"k" * 32) != route_id(b"j" * 32)


def test_unknown_policy_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown routing policy"):
        router("flooding")


@pytest.mark.parametrize(
    ("copies", "reserved", "give"), [(6, 0, 3), (6, 3, 1), (6, 4, 1), (6, 5, 0)]
)
def test_copies_in_flight_are_not_given_twice(copies: int, reserved: int, give: int) -> None:
    it = item(copies)
    it.reserved = reserved
    assert router("spray-and-wait").copies_to_give(it, PEER, now=0) == give
    # What a peer took custody of leaves with it; the rest stays (conservation).
    if give:
        assert router("spray-and-wait").copies_kept(it, give, to_recipient=False) == copies - give
