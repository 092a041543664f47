"""Small value checks of the core that only a bad caller or a bad peer reaches: key shares
with epochs out of range or in the wrong order, X25519 keys of the wrong length, a routing
configuration without copies, and the tag index keeping the first owner of a colliding tag."""

from __future__ import annotations

import dataclasses

import pytest

from meshmsg.config import RoutingConfig
from meshmsg.core.keyschedule import MAX_EPOCH, KeyShare, x25519
from meshmsg.core.routing import Router
from meshmsg.core.tagindex import MatchKind, TagIndex
from meshmsg.errors import ConfigError, DecodeError, HandshakeError

SHARE = KeyShare(public=b"p" * 32, random=b"r" * 32, period=10, epoch=3, previous=2)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"epoch": MAX_EPOCH + 1}, "epoch out of range"),
        ({"previous": -1}, "epoch out of range"),
        ({"previous": 3}, "previous epoch must be older"),
        ({"epoch": None}, "previous epoch must be older"),
        ({"final_counts": ((9, 1), (8, 1))}, "increasing period order"),
    ],
)
def test_key_shares_with_bad_epochs_or_counts_are_refused(
    changes: dict[str, object], reason: str
) -> None:
    SHARE.check()
    bad = dataclasses.replace(SHARE, **changes)  # type: ignore[arg-type]
    with pytest.raises(DecodeError, match=reason):
        bad.check()


def test_x25519_refuses_keys_of_the_wrong_length() -> None:
    with pytest.raises(HandshakeError, match="32 bytes"):
        x25519(b"s" * 31, b"p" * 32)
    with pytest.raises(HandshakeError, match="32 bytes"):
        x25519(b"s" * 32, b"p" * 33)


def test_a_routing_configuration_needs_copies_and_a_known_policy() -> None:
    with pytest.raises(ConfigError, match="copies must be at least 1"):
        Router(dataclasses.replace(RoutingConfig(), copies=0), b"r" * 8)
    with pytest.raises(ConfigError, match="unknown routing policy"):
        Router(dataclasses.replace(RoutingConfig(), policy="flood"), b"r" * 8)


def test_the_tag_index_keeps_the_first_owner_of_a_colliding_tag() -> None:
    index = TagIndex(max_contacts=4)
    tag = b"t" * 16
    index.put(tag, (b"a" * 16, 0, 1, 0, MatchKind.LIVE))
    index.put(tag, (b"b" * 16, 0, 1, 0, MatchKind.LIVE))  # another contact's tag collides
    entry = index.entry(tag)
    assert entry is not None
    assert entry[0] == b"a" * 16
    index.drop(tag, b"b" * 16)  # not b's to drop
    assert index.entry(tag) is not None
    index.drop(tag, b"a" * 16)
    assert index.entry(tag) is None
    assert index.count(b"a" * 16) == 0
