"""The daemon's local API on a live hypercorn on loopback, over real nodes on loopback TCP."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from meshmsg.app.api import serve_api
from meshmsg.app.client import DaemonClient, EventStream
from meshmsg.app.datadir import Settings, own_contact_code, unlock
from meshmsg.app.datadir import init_data_dir as init
from meshmsg.app.mesh import NodeHandle, open_mesh_node
from meshmsg.core.effects import Persist
from meshmsg.errors import InvalidMessage, LocalProtocolError, TransportError
from meshmsg.net.storage import DataDir, Storage

TOKEN = "test-token-0123456789"
PASSPHRASE = "correct horse"


@dataclass
class Daemon:
    handle: NodeHandle
    url: str
    client: httpx.AsyncClient
    code: str

    async def get(self, path: str) -> Any:
        response = await self.client.get(path)
        assert response.status_code == 200, response.text
        return response.json()


def make_dir(root: Path, name: str) -> tuple[DataDir, Settings]:
    data_dir = DataDir(root / name)
    init(data_dir, passphrase=PASSPHRASE, name=name, kdf_fast=True)
    settings = Settings(name=name, listen_host="127.0.0.1", listen_port=0, api_port=0)
    return data_dir, settings


@asynccontextmanager
async def daemon(root: Path, name: str) -> AsyncIterator[Daemon]:
    data_dir, settings = make_dir(root, name)
    unlocked = unlock(data_dir, settings, lambda: PASSPHRASE)
    async with open_mesh_node(data_dir, settings, unlocked) as handle, trio.open_nursery() as n:
        url = await n.start(serve_api, handle, TOKEN, "127.0.0.1", 0)
        headers = {"authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as client:
            yield Daemon(handle, url, client, own_contact_code(unlocked.identity, settings))
        n.cancel_scope.cancel()


async def test_every_endpoint_needs_the_token(tmp_path: Path) -> None:
    async with daemon(tmp_path, "alice") as d, httpx.AsyncClient(base_url=d.url) as anon:
        for method, path in [("GET", "/status"), ("GET", "/contacts"), ("GET", "/id"),
                             ("POST", "/messages"), ("GET", "/conversations")]:  # fmt: skip
            assert (await anon.request(method, path)).status_code == 401
            wrong = {"authorization": "Bearer " + "x" * len(TOKEN)}
            response = await anon.request(method, path, headers=wrong)
            assert response.status_code == 401
            assert "token" in response.json()["error"]
        assert (await d.client.get("/status")).status_code == 200


async def test_websocket_refuses_a_wrong_token(tmp_path: Path) -> None:
    async with daemon(tmp_path, "alice") as d:
        with pytest.raises(TransportError, match="refused"):
            async with EventStream(DaemonClient(d.url, "wrong")) as events:
                await events.next()


async def test_input_is_validated_with_clear_errors(tmp_path: Path) -> None:
    async with daemon(tmp_path, "alice") as d:
        cases = [
            ("/contacts", {"code": "MM1:NOPE"}, 400, "contact code"),
            ("/contacts", {"name": "x"}, 400, "missing field 'code'"),
            ("/messages", {"to": "zz", "body": "hi"}, 404, "unknown contact 'zz'"),
            ("/messages", {"to": "00" * 16, "body": "hi"}, 404, "unknown contact"),
            ("/messages", {"to": "00" * 16, "body": 5}, 400, "wrong type"),
        ]
        for path, body, status, text in cases:
            response = await d.client.post(path, json=body)
            assert response.status_code == status, response.text
            assert text in response.json()["error"]
        response = await d.client.post("/messages", content=b"[1, 2")
        assert response.status_code == 400
        big = "x" * (d.handle.config.net.api_max_request_bytes + 1)
        response = await d.client.post("/messages", json={"to": "00" * 16, "body": big})
        assert response.status_code == 413
        response = await d.client.delete("/contacts/" + "11" * 16)
        assert response.status_code == 404


async def test_contacts_send_list_and_live_events(tmp_path: Path) -> None:
    async with daemon(tmp_path, "alice") as alice, daemon(tmp_path, "bob") as bob:
        added = await alice.client.post("/contacts", json={"code": bob.code})
        assert added.status_code == 201
        bob_id = added.json()["peer_id"]
        assert added.json()["name"] == "bob"
        assert added.json()["verified"] is False
        assert (await bob.client.post("/contacts", json={"code": alice.code})).status_code == 201
        alice_id = (await alice.get("/id"))["peer_id"]
        contacts = await alice.get("/contacts")
        assert [c["peer_id"] for c in contacts] == [bob_id]
        numbers = {c["safety_number"] for c in (await alice.get("/id"))["contacts"]}
        assert numbers == {(await bob.get("/id"))["contacts"][0]["safety_number"]}

        verify = await alice.client.post(f"/contacts/{bob_id}/verify", json={})
        assert verify.json()["verified"] is True

        too_big = "é" * 20_000  # 40,000 bytes of UTF-8: over the 32 KiB body limit
        response = await alice.client.post("/messages", json={"to": bob_id, "body": too_big})
        assert response.status_code == 413
        assert "message too big" in response.json()["error"]

        client = DaemonClient(bob.url, TOKEN)
        async with EventStream(client) as events:
            sent = await alice.client.post("/messages", json={"to": bob_id, "body": "hello bob"})
            assert sent.status_code == 201
            message_id = sent.json()["message_id"]
            await alice.handle.runner.peer_discovered(bob.handle.address)
            with trio.fail_after(10):
                while True:
                    event = await events.next()
                    assert event is not None
                    if event["type"] == "message_received":
                        break
        assert event["body"] == "hello bob"
        assert event["message_id"] == message_id
        assert event["peer_id"] == alice_id

        messages = await bob.get(f"/conversations/{alice_id}/messages")
        assert [(m["body"], m["direction"]) for m in messages] == [("hello bob", "in")]
        assert [row["unread"] for row in await bob.get("/conversations")] == [1]
        read = await bob.client.post(
            "/messages/read", json={"peer_id": alice_id, "message_ids": [message_id]}
        )
        assert read.json() == {"marked": 1, "read_up_to": messages[0]["received_at"]}
        assert [row["unread"] for row in await bob.get("/conversations")] == [0]
        # Alice dialled: on Bob's side the link is inbound, shown with the host it came from.
        (inbound,) = (await bob.get("/status"))["peers"]
        assert inbound["inbound"] is True
        assert inbound["address"] == "127.0.0.1"
        with trio.fail_after(15):  # receipts are batched for receipt_delay_s (2 s)
            while True:
                rows = await alice.get(f"/conversations/{bob_id}/messages")
                if rows[0]["status"] == "read":
                    break
                await trio.sleep(0.1)
        steps = [s["status"] for s in rows[0]["timeline"]]
        assert steps[0] == "queued"
        assert steps[-1] == "read"
        conversations = await alice.get("/conversations")
        assert conversations[0]["peer_id"] == bob_id
        assert conversations[0]["messages"] == 1

        status = await alice.get("/status")
        assert status["peer_id"] == alice_id
        assert [p["peer_id"] for p in status["peers"]] == [bob_id]
        assert status["links"]["links"] == 1
        assert status["discovery"]["enabled"] is False
        assert status["relay"]["max_bytes"] > 0

        assert (await alice.client.delete(f"/contacts/{bob_id}")).status_code == 204
        assert await alice.get("/contacts") == []


async def test_client_maps_errors_to_one_line(tmp_path: Path) -> None:
    async with daemon(tmp_path, "alice") as alice, daemon(tmp_path, "bob") as bob:
        client = DaemonClient(alice.url, TOKEN)
        bob_id = (await alice.client.post("/contacts", json={"code": bob.code})).json()["peer_id"]
        with pytest.raises(InvalidMessage, match="too big"):
            await client.apost("/messages", {"to": bob_id, "body": "x" * 40_000})
        with pytest.raises(LocalProtocolError, match="unknown contact"):
            await client.apost("/messages", {"to": "00" * 16, "body": "hi"})
        stopped = DaemonClient("http://127.0.0.1:9", TOKEN)
        with pytest.raises(TransportError, match="daemon not running"):
            await stopped.apost("/messages", {})


async def test_a_send_is_answered_only_once_it_is_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 201 is an acknowledgement: a crash right after it must not lose the message."""
    gate = threading.Event()
    gate.set()
    apply = Storage.apply

    def held_apply(storage: Storage, persist: Persist) -> None:
        assert gate.wait(10), "the test never opened the gate"
        apply(storage, persist)

    monkeypatch.setattr(Storage, "apply", held_apply)
    async with daemon(tmp_path, "alice") as alice, daemon(tmp_path, "bob") as bob:
        bob_id = (await alice.client.post("/contacts", json={"code": bob.code})).json()["peer_id"]
        answers: list[httpx.Response] = []

        async def send() -> None:
            answers.append(await alice.client.post("/messages", json={"to": bob_id, "body": "x"}))

        gate.clear()  # the disk stalls
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            with trio.fail_after(10):
                while alice.handle.runner.statistics().persists_pending == 0:  # noqa: ASYNC110
                    await trio.sleep(0.01)
            await trio.sleep(0.2)
            assert answers == []  # queued in the node, not yet on disk: no answer yet
            gate.set()
        assert answers[0].status_code == 201
        assert alice.handle.runner.statistics().persists_pending == 0
