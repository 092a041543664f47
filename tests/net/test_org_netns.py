"""Issue #12 with real daemons in network namespaces: an organisation directory of 200 signed
members reaches a fresh node through one relay, a search finds a member, a first message to it
is delivered, and a revocation reaches every linked node in one sync; a stranger's request is
blocked, and its later mail is refused without costing storage beyond the request quota.

Needs root and ``ip netns`` (CI has both); skipped with the reason otherwise. Four hosts on one
bridge and trusted subnet (mDNS): bobby holds the directory (a member and relay), alice is a
fresh member who never saw it, carol is a listed member who has not added alice, erin is a
stranger who holds carol's code.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshmsg.app.keystore import load_keystore, open_keystore
from meshmsg.core.identity import Identity
from meshmsg.core.org.keys import OrgSecret
from meshmsg.sim.rng import SeededRng
from tests.net.netns import netns_available
from tests.net.test_multihost_netns import (
    PASSPHRASE,
    Node,
    message_of,
    open_lab,
    status,
    wait_until,
)

AVAILABLE, REASON = netns_available()
pytestmark = [pytest.mark.netns, pytest.mark.skipif(not AVAILABLE, reason=REASON)]
MEMBERS = 200
EXPIRES = 2_000_000_000 + 365 * 86_400  # the entries outlive any test run


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Node]]:
    root = tmp_path_factory.mktemp("org")
    with open_lab(("bobby", "alice", "carol", "erin"), root) as lab:
        lab["erin"].cli("contact", "add", lab["carol"].code)  # a stranger to carol
        yield lab


def _sign_staff(admin: Path, count: int) -> None:
    """The administrator signs ``count`` more members (what ``org sign`` does per code)."""
    secret = OrgSecret.from_bytes(open_keystore(load_keystore(admin / "org.key"), PASSPHRASE))
    people = [Identity.generate(SeededRng(i, "staff")) for i in range(count)]
    with (admin / "members").open("a") as out:
        for i, person in enumerate(people):
            entry = secret.sign_entry(
                person.public, name=f"Staff {i}", unit="Field", role="officer", expires_at=EXPIRES
            )
            out.write(entry.text() + "\n")


def _org(node: Node) -> dict[str, Any]:
    [row] = node.get("/orgs")
    return dict(row)


def test_a_200_member_directory_through_one_relay_then_a_revocation_in_one_sync(
    nodes: dict[str, Node], tmp_path: Path
) -> None:
    bobby, alice, carol = nodes["bobby"], nodes["alice"], nodes["carol"]
    admin = tmp_path / "admin"
    made = bobby.cli("org", "init", "Crisis Staff", "--admin-dir", str(admin))
    org_code = next(line for line in made.splitlines() if line.startswith("MMORG1:"))
    bobby.cli("org", "sign", carol.code, "--name", "Carol Duty", "--unit", "Logistics",
              "--role", "duty officer", "--admin-dir", str(admin))  # fmt: skip
    bobby.cli("org", "sign", alice.code, "--name", "Alice Field", "--admin-dir", str(admin))
    _sign_staff(admin, MEMBERS - 2)
    bobby.cli("org", "publish", "--out", str(tmp_path / "v1.mmdir"), "--admin-dir", str(admin))
    for node in (bobby, alice, carol):
        node.cli("org", "join", org_code)
    bobby.cli("org", "import", str(tmp_path / "v1.mmdir"))

    bobby.start()
    alice.start()  # alice has never seen the directory: only bobby can give it
    wait_until("the directory reaches alice through bobby", lambda: _org(alice)["serial"] == 1)
    assert (_org(alice)["members"], _org(alice)["revoked"]) == (MEMBERS, 0)
    [found] = alice.get("/directory?q=carol%20duty")
    assert (found["peer_id"], found["role"]) == (carol.peer_id, "duty officer")
    added = alice.api("POST", f"/directory/{carol.peer_id}/contact", {})
    assert (added["org_verified"], added["verified"]) == (["Crisis Staff"], False)
    sent = alice.api("POST", "/messages", {"to": carol.peer_id, "body": "report at 10"})
    wait_until("alice's first message is relayed",
               lambda: status(alice, carol, sent["message_id"]) == "relayed")  # fmt: skip

    carol.start()  # carol has not added alice: the message comes as a request, marked
    [request] = wait_until("carol sees alice's request", lambda: carol.get("/requests"))
    assert [m["body"] for m in request["messages"]] == ["report at 10"]
    wait_until("carol's request shows alice as a member of the organisation",
               lambda: carol.get("/requests")[0]["org_verified"] == ["Crisis Staff"])  # fmt: skip
    carol.api("POST", f"/requests/{alice.peer_id}/accept", {})
    assert message_of(carol, alice, sent["message_id"])["body"] == "report at 10"
    wait_until("carol and alice link", lambda: alice.peer_id in carol.peers())

    bobby.cli("org", "revoke", carol.code, "--admin-dir", str(admin))
    bobby.cli("org", "publish", "--out", str(tmp_path / "v2.mmdir"), "--admin-dir", str(admin))
    bobby.cli_inside("org", "import", str(tmp_path / "v2.mmdir"))
    for node in (alice, carol):  # both are linked to bobby now: one sync each
        wait_until(f"the revocation reaches {node.name}", lambda n=node: _org(n)["serial"] == 2)
        assert _org(node)["revoked"] == 1
    [contact] = alice.get("/contacts")
    assert (contact["org_verified"], contact["org_revoked"]) == ([], ["Crisis Staff"])


def _request_of(node: Node, sender: Node) -> list[dict[str, Any]]:
    return [r for r in node.get("/requests") if r["peer_id"] == sender.peer_id]


def test_a_blocked_request_stops_costing_storage(nodes: dict[str, Node]) -> None:
    carol, erin = nodes["carol"], nodes["erin"]
    if not carol.running:
        carol.start()
    erin.start()
    wait_until("erin links to carol", lambda: carol.peer_id in erin.peers())
    erin.api("POST", "/messages", {"to": carol.peer_id, "body": "hello from erin"})
    wait_until("carol sees erin's request", lambda: _request_of(carol, erin))
    carol.api("POST", f"/requests/{erin.peer_id}/decline", {"block": True})
    before = carol.get("/status")["requests"]
    assert (before["blocked"], before["held_bytes"]) == (1, 0), before
    for i in range(20):
        erin.api("POST", "/messages", {"to": carol.peer_id, "body": f"again {i} " + "x" * 500})
    wait_until("carol refuses erin's later mail",
               lambda: carol.get("/status")["requests"]["refused"] >= 20, 60)  # fmt: skip
    after = carol.get("/status")["requests"]
    assert (after["held_bytes"], after["pending"]) == (0, 0), after
    assert not _request_of(carol, erin)
    assert not [c for c in carol.get("/conversations") if c.get("peer_id") == erin.peer_id]
