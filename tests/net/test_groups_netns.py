"""Issue #14 with real daemons in network namespaces: a group of four where one member is
offline during a removal and two messages. The removed member, online later, reads neither
message; the offline member, back later, reads both; every remaining member shows the same
membership and epoch.

Needs root and ``ip netns`` (CI has both); skipped with the reason otherwise. Four hosts on one
bridge and trusted subnet, found by mDNS (no dialling by hand), as in
``tests/net/test_multihost_netns.py``; the in-process variant is
``tests/net/test_groups_daemons.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.net.netns import netns_available
from tests.net.test_multihost_netns import Node, open_lab, wait_until

AVAILABLE, REASON = netns_available()
pytestmark = [pytest.mark.netns, pytest.mark.skipif(not AVAILABLE, reason=REASON)]
NAMES = ("alice", "bob", "carol", "dave")
QUIET_S = 3.0  # after the removed member is back and linked: time for any envelope to reach it


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[dict[str, Node]]:
    with open_lab(NAMES, tmp_path) as nodes:
        for a in nodes.values():
            for b in nodes.values():
                if a is not b:
                    a.cli("contact", "add", b.code, "--name", b.name)
        yield nodes


def _group(node: Node) -> dict[str, Any] | None:
    rows = node.get("/groups")
    return dict(rows[0]) if rows else None


def _members(node: Node) -> set[str]:
    return {m["peer_id"] for m in node.get("/groups/cell")["members"]}


def _bodies(node: Node, group: str = "cell") -> list[str]:
    return sorted(
        m["body"] for m in node.get(f"/groups/{group}/messages") if m["direction"] == "in"
    )


def _has(node: Node, *bodies: str) -> bool:
    if _group(node) is None:
        return False  # the group has not reached this member yet
    got = _bodies(node)
    return all(b in got for b in bodies)


def _all_paired(nodes: list[Node]) -> bool:
    return all(c["paired"] for n in nodes for c in n.get("/contacts"))


def test_a_group_of_four_with_a_member_offline_during_a_removal(lab: dict[str, Node]) -> None:
    alice, bob, carol, dave = (lab[n] for n in NAMES)
    for node in lab.values():
        node.start()
    wait_until("all four find each other by mDNS and pair", lambda: _all_paired(list(lab.values())),
               60)  # fmt: skip
    view = alice.api("POST", "/groups", {"name": "cell", "members": ["bob", "carol", "dave"]})
    assert view["admin"] is True
    alice.api("POST", "/groups/cell/messages", {"body": "welcome"})
    for member in (bob, carol, dave):
        wait_until(f"{member.name} reads welcome", lambda m=member: _has(m, "welcome"))

    carol.stop()  # carol and dave go offline; alice removes carol, then two messages
    dave.stop()
    alice.api("DELETE", f"/groups/cell/members/{carol.peer_id}")
    assert carol.peer_id not in _members(alice)
    alice.api("POST", "/groups/cell/messages", {"body": "one"})
    wait_until("bob learns of the removal", lambda: carol.peer_id not in _members(bob))
    bob.api("POST", "/groups/cell/messages", {"body": "two"})
    wait_until("bob reads one", lambda: _has(bob, "one", "welcome"))
    wait_until("alice reads two", lambda: _has(alice, "two"))

    carol.start()  # the removed member, online later
    wait_until("carol links again", lambda: {alice.peer_id, bob.peer_id} <= carol.peers(), 60)
    wait_until("carol learns she is out", lambda: (_group(carol) or {}).get("member") is False)
    time.sleep(QUIET_S)
    group_id = str((_group(carol) or {})["group_id"])
    assert _bodies(carol, group_id) == ["welcome"]

    dave.start()  # the offline member, back later
    wait_until("dave reads both", lambda: _has(dave, "one", "two", "welcome"), 60)
    views = [_members(n) for n in (alice, bob, dave)]
    assert views[0] == views[1] == views[2] == {alice.peer_id, bob.peer_id, dave.peer_id}
    assert {n.get("/groups/cell")["epoch"] for n in (alice, bob, dave)} == {1}
