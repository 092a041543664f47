"""Issue #12 with real daemons in network namespaces: first contact through a relay between two
people who were never online together, the heal when they meet, and a one-sided contact that
holds one link for 20 s and reaches the other as a request.

Needs root and ``ip netns`` (CI has both); skipped with the reason otherwise. Four hosts on one
bridge and trusted subnet (mDNS): alice and carol hold each other's code and have never met;
bobby is a relay that knows nobody; dave holds carol's code, carol does not hold his.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from tests.net.netns import netns_available
from tests.net.test_multihost_netns import (
    Node,
    linked_lines,
    message_of,
    open_lab,
    status,
    wait_until,
)

AVAILABLE, REASON = netns_available()
pytestmark = [pytest.mark.netns, pytest.mark.skipif(not AVAILABLE, reason=REASON)]
# The loop this catches dropped and redialled about once a second (58 drops in 50 s in the
# issue): 20 s would show ~20 of them against the bound of 3.
ONE_SIDED_S = 20.0


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Node]]:
    root = tmp_path_factory.mktemp("firstcontact")
    # The first test follows carol's receipt back through relay bobby within seconds.
    with open_lab(("alice", "bobby", "carol", "dave"), root, prompt_receipts=True) as lab:
        # Codes exchanged by radio: never online together, never met.
        lab["alice"].cli("contact", "add", lab["carol"].code)
        lab["carol"].cli("contact", "add", lab["alice"].code)
        lab["dave"].cli("contact", "add", lab["carol"].code)  # one-sided
        yield lab


def test_first_contact_through_a_relay_then_heal_at_the_first_meeting(
    nodes: dict[str, Node], record_property: Callable[[str, object], None]
) -> None:
    alice, bobby, carol = nodes["alice"], nodes["bobby"], nodes["carol"]
    started = time.monotonic()
    bobby.start()
    alice.start()
    wait_until("alice links to relay bobby", lambda: bobby.peer_id in alice.peers())
    [contact] = alice.get("/contacts")
    assert contact["pairing"] == "first_contact"
    sent = alice.api("POST", "/messages", {"to": carol.peer_id, "body": "water at the school"})
    mid = sent["message_id"]
    assert sent["first_contact"] is True
    wait_until("alice sees RELAYED", lambda: status(alice, carol, mid) == "relayed")
    alice.stop()
    wait_until("bobby notices alice left", lambda: alice.peer_id not in bobby.peers())

    carol.start()  # alice is offline, and they never met: only bobby can hand it over
    got = wait_until("carol reads it", lambda: message_of(carol, alice, mid))
    assert (got["body"], got["direction"]) == ("water at the school", "in")
    time.sleep(3)  # carol's delivered receipt is batched for 2 s, then goes to bobby
    carol.stop()
    wait_until("bobby notices carol left", lambda: carol.peer_id not in bobby.peers())

    alice.start()
    wait_until("alice, back later, sees DELIVERED",
               lambda: status(alice, carol, mid) == "delivered")  # fmt: skip
    assert not linked_lines(alice, carol), alice.log()  # never online together so far
    record_property("first_contact_delivered_s", round(time.monotonic() - started, 2))

    carol.start()  # now they meet: the first-contact channel heals into a paired one
    wait_until("alice and carol pair at their first meeting",
               lambda: alice.get("/contacts")[0]["paired"])  # fmt: skip
    assert any("paired with carol" in line for line in alice.log().splitlines()), alice.log()


def test_a_one_sided_contact_holds_one_link_and_reaches_them_as_a_request(
    nodes: dict[str, Node], record_property: Callable[[str, object], None]
) -> None:
    carol, dave = nodes["carol"], nodes["dave"]
    if not carol.running:
        carol.start()
    dave.start()
    wait_until("dave links to carol", lambda: carol.peer_id in dave.peers(), 30)
    time.sleep(ONE_SIDED_S)
    links = dave.get("/status")["links"]
    # Every link dave made or took in ONE_SIDED_S, and how many of them ended: mDNS finds the three
    # others once each way; of two links to one peer both keep one (DUPLICATE_LINK).
    attempts = int(links["dials_succeeded"]) + int(links["accepted"])
    ended = attempts - int(links["links"])
    to_carol = [ln for ln in dave.log().splitlines() if "linked to contact carol" in ln]
    record_property("one_sided_link_attempts", attempts)
    record_property("one_sided_links_ended", ended)
    record_property("one_sided_links_to_carol", len(to_carol))
    print(f"dave in {ONE_SIDED_S:.0f} s: {attempts} links made or taken, {ended} ended, "
          f"{len(to_carol)} to carol")  # fmt: skip
    # No link-and-drop loop: one link to carol, or two when both dialled at the same instant
    # (mDNS finds both ways at once); before the fix it was about one a second.
    assert len(to_carol) <= 2, dave.log()
    assert ended <= 3, links  # at most the duplicate of each pair
    [contact] = dave.get("/contacts")
    assert contact["pairing"] == "waiting_for_them"
    sent = dave.api("POST", "/messages", {"to": carol.peer_id, "body": "dave here"})
    [request] = wait_until("carol sees a request", lambda: carol.get("/requests"))
    assert [m["body"] for m in request["messages"]] == ["dave here"]
    carol.api("POST", f"/requests/{dave.peer_id}/accept", {})
    wait_until("dave and carol pair on the live link",
               lambda: dave.get("/contacts")[0]["paired"])  # fmt: skip
    wait_until("dave sees DELIVERED",
               lambda: status(dave, carol, sent["message_id"]) == "delivered")  # fmt: skip
