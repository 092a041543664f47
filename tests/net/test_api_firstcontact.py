"""Issue #12 over the API on live daemons: pairing on a live link, requests, organisations."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import trio

from meshmsg.core.identity import decode_contact_code
from meshmsg.core.org.directory import build_directory
from meshmsg.core.org.keys import OrgSecret
from meshmsg.sim.rng import SeededRng
from tests.net.test_api import Daemon, daemon


async def _wait(d: Daemon, path: str, check: Any, seconds: float = 15) -> Any:
    with trio.fail_after(seconds):
        while True:
            value = await d.get(path)
            if check(value):
                return value
            await trio.sleep(0.1)


async def test_contacts_added_while_linked_pair_and_deliver(tmp_path: Path) -> None:
    """The browser-test bug: linked as strangers, both add, send: it must arrive."""
    async with daemon(tmp_path, "alice") as alice, daemon(tmp_path, "bob") as bob:
        await alice.handle.runner.peer_discovered(bob.handle.address)
        await _wait(alice, "/status", lambda s: len(s["peers"]) == 1)
        bob_id = (await alice.client.post("/contacts", json={"code": bob.code})).json()["peer_id"]
        alice_id = (await bob.client.post("/contacts", json={"code": alice.code})).json()["peer_id"]
        await _wait(alice, "/contacts", lambda c: c[0]["paired"])
        sent = await alice.client.post("/messages", json={"to": bob_id, "body": "live link"})
        assert sent.status_code == 201
        rows = await _wait(bob, f"/conversations/{alice_id}/messages", lambda m: len(m) == 1)
        assert rows[0]["body"] == "live link"


async def test_requests_accept_and_one_line_errors(tmp_path: Path) -> None:
    async with daemon(tmp_path, "alice") as alice, daemon(tmp_path, "bob") as bob:
        bob_id = (await alice.client.post("/contacts", json={"code": bob.code})).json()["peer_id"]
        await alice.handle.runner.peer_discovered(bob.handle.address)
        await _wait(alice, "/contacts", lambda c: c[0]["pairing"] == "waiting_for_them", 20)
        sent = await alice.client.post("/messages", json={"to": bob_id, "body": "may I?"})
        assert sent.json()["first_contact"] is True
        [request] = await _wait(bob, "/requests", lambda r: len(r) == 1)
        assert [m["body"] for m in request["messages"]] == ["may I?"]
        assert await bob.get("/conversations") == []  # shown apart
        missing = await bob.client.post("/requests/00000000/accept", json={})
        assert missing.status_code == 409
        assert "no single request" in missing.json()["error"]
        accepted = await bob.client.post(f"/requests/{request['peer_id'][:8]}/accept", json={})
        assert accepted.status_code == 200
        await _wait(alice, "/contacts", lambda c: c[0]["paired"])
        assert await bob.get("/requests") == []


async def test_organisation_join_import_search_and_refusals(tmp_path: Path) -> None:
    org = OrgSecret.generate(SeededRng(1, "api-org"), "Ministry")
    async with daemon(tmp_path, "alice") as alice, daemon(tmp_path, "bob") as bob:
        bad = await alice.client.post("/orgs", json={"code": "MMORG1:XYZ"})
        assert bad.status_code == 400
        assert "organisation code" in bad.json()["error"]
        card = decode_contact_code(bob.code)
        entry = org.sign_entry(card.public, name="Bob Builder", unit="Works", role="engineer",
                               expires_at=4_000_000_000)  # fmt: skip
        directory = build_directory(org, serial=3, issued_at=1, entries=[entry], revocations=[],
                                    limits=alice.handle.config.org)  # fmt: skip
        blob = base64.b64encode(directory.data).decode()
        unknown = await alice.client.post("/orgs/directory", json={"directory": blob})
        assert unknown.status_code == 400
        assert "join" in unknown.json()["error"]
        joined = await alice.client.post("/orgs", json={"code": org.public.code()})
        assert joined.status_code == 201
        ok = await alice.client.post("/orgs/directory", json={"directory": blob})
        assert ok.json() == {"serial": 3, "members": 1, "revoked": 0}
        again = await alice.client.post("/orgs/directory", json={"directory": blob})
        assert again.status_code == 400
        assert "not newer" in again.json()["error"]
        [found] = await alice.get("/directory?q=builder")
        assert (found["name"], found["org"]) == ("Bob Builder", "Ministry")
        added = await alice.client.post(f"/directory/{found['peer_id']}/contact", json={})
        assert added.status_code == 201
        assert added.json()["org_verified"] == ["Ministry"]
        assert added.json()["verified"] is False  # not in person
        assert added.json()["pairing"] == "first_contact"
