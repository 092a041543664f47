"""The API's contact names, rename and block, and its errors as JSON (issue #15, everyday use)."""

from __future__ import annotations

from pathlib import Path

from tests.net.test_api import daemon


async def test_names_work_where_peer_ids_do_and_rename_block(tmp_path: Path) -> None:
    async with daemon(tmp_path, "alice") as alice, daemon(tmp_path, "bob") as bob:
        added = await alice.client.post("/contacts", json={"code": bob.code})
        bob_id = added.json()["peer_id"]
        sent = await alice.client.post("/messages", json={"to": "BOB", "body": "hi by name"})
        assert sent.status_code == 201, sent.text
        assert sent.json()["peer_id"] == bob_id
        messages = await alice.get("/conversations/bob/messages")
        assert [m["body"] for m in messages] == ["hi by name"]

        renamed = await alice.client.post("/contacts/bob/rename", json={"name": "Robert"})
        assert renamed.status_code == 200, renamed.text
        assert renamed.json()["name"] == "Robert"
        assert renamed.json()["peer_id"] == bob_id
        assert (await alice.client.post("/contacts/bob/verify", json={})).status_code == 404
        bad = await alice.client.post("/contacts/robert/rename", json={"name": "x\x1by"})
        assert bad.status_code == 400
        assert "control character" in bad.json()["error"]

        blocked = await alice.client.post("/contacts/robert/block", json={})
        assert blocked.json()["blocked"] is True
        assert [c["blocked"] for c in await alice.get("/contacts")] == [True]
        unblocked = await alice.client.post(f"/contacts/{bob_id}/block", json={"blocked": False})
        assert unblocked.json()["blocked"] is False
        assert (await alice.client.delete("/contacts/robert")).status_code == 204
        assert await alice.get("/contacts") == []


async def test_every_error_is_json_and_out_of_range_is_400(tmp_path: Path) -> None:
    async with daemon(tmp_path, "alice") as alice, daemon(tmp_path, "bob") as bob:
        await alice.client.post("/contacts", json={"code": bob.code})
        cases = [
            ("GET", "/nowhere", None, 404),
            ("DELETE", "/status", None, 405),
            ("PUT", "/contacts", None, 405),
            ("POST", "/messages", {"to": "bob", "body": "x", "ttl_s": -1}, 400),
            ("POST", "/messages", {"to": "bob", "body": "x", "ttl_s": 10**9}, 400),
            ("GET", "/conversations/bob/messages?limit=0", None, 400),
            ("GET", "/conversations/bob/messages?limit=1000000", None, 400),
            ("GET", "/conversations/bob/messages?before=nan", None, 400),
        ]
        for method, path, body, status in cases:
            response = await alice.client.request(method, path, json=body)
            assert response.status_code == status, (method, path, response.text)
            assert response.headers["content-type"] == "application/json", path
            assert isinstance(response.json()["error"], str), path
            if status == 405:
                assert response.headers["allow"], path  # which methods would do
