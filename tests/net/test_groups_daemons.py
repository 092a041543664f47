"""Groups between real daemons (in-process, loopback TCP, SQLite, the local API).

Issue #14: a group of four where one member is offline during a removal and two messages; the
removed member, online later, reads neither message; the offline member, back later, reads
both; every remaining member shows the same membership.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import trio

from meshmsg.app.api import serve_api
from meshmsg.app.datadir import Settings, own_contact_code, unlock
from meshmsg.app.datadir import init_data_dir as init
from meshmsg.app.mesh import NodeHandle, open_mesh_node
from meshmsg.net.storage import DataDir

TOKEN = "test-token-0123456789"
PASSPHRASE = "correct horse"
WAIT_S = 30.0


@dataclass
class Daemon:
    name: str
    handle: NodeHandle
    client: httpx.AsyncClient
    code: str

    async def get(self, path: str) -> Any:
        response = await self.client.get(path)
        assert response.status_code == 200, response.text
        return response.json()

    async def post(self, path: str, body: dict[str, Any], status: int = 200) -> Any:
        response = await self.client.post(path, json=body)
        assert response.status_code == status, response.text
        return response.json()

    async def dial(self, other: Daemon) -> None:
        await self.handle.runner.peer_discovered(other.handle.address)

    async def bodies(self, group: str) -> list[str]:
        return sorted(m["body"] for m in await self.get(f"/groups/{group}/messages")
                      if m["direction"] == "in")  # fmt: skip

    async def members(self, group: str) -> set[str]:
        return {m["peer_id"] for m in (await self.get(f"/groups/{group}"))["members"]}


@asynccontextmanager
async def daemon(root: Path, name: str) -> AsyncIterator[Daemon]:
    data_dir = DataDir(root / name)
    if not (root / name).exists():
        init(data_dir, passphrase=PASSPHRASE, name=name, kdf_fast=True)
    settings = Settings(name=name, listen_host="127.0.0.1", listen_port=0, api_port=0)
    unlocked = unlock(data_dir, settings, lambda: PASSPHRASE)
    async with open_mesh_node(data_dir, settings, unlocked) as handle, trio.open_nursery() as n:
        url = await n.start(serve_api, handle, TOKEN, "127.0.0.1", 0)
        headers = {"authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as client:
            yield Daemon(name, handle, client, own_contact_code(unlocked.identity, settings))
        n.cancel_scope.cancel()


async def until(check: Callable[[], Any], what: str) -> None:
    with trio.move_on_after(WAIT_S) as scope:
        while not await check():  # noqa: ASYNC110 - polling the API, as a client would
            await trio.sleep(0.1)
    assert not scope.cancelled_caught, f"timed out waiting for {what}"


async def befriend(daemons: list[Daemon]) -> dict[str, str]:
    """Every pair adds the other's code and meets once (pairing); name -> peer id."""
    ids = {d.name: (await d.get("/id"))["peer_id"] for d in daemons}
    for a in daemons:
        for b in daemons:
            if a is not b:
                await a.post("/contacts", {"code": b.code}, 201)
    for i, a in enumerate(daemons):
        for b in daemons[i + 1 :]:
            await a.dial(b)

    async def paired() -> bool:
        rows = [c for d in daemons for c in await d.get("/contacts")]
        return all(c["paired"] for c in rows)

    await until(paired, "pairing")
    return ids


async def test_a_group_of_four_with_a_member_offline_during_a_removal(tmp_path: Path) -> None:
    async with daemon(tmp_path, "alice") as alice, daemon(tmp_path, "bob") as bob:
        async with daemon(tmp_path, "carol") as carol, daemon(tmp_path, "dave") as dave:
            ids = await befriend([alice, bob, carol, dave])
            created = {"name": "cell", "members": ["bob", "carol", "dave"]}
            view = await alice.post("/groups", created, 201)
            assert view["admin"] is True
            await alice.post("/groups/cell/messages", {"body": "welcome"}, 201)
            for member in (bob, carol, dave):
                await until(lambda m=member: _has(m, "cell", ["welcome"]), f"{member.name} welcome")
        # carol and dave are offline now: alice removes carol, then two messages
        removed = await alice.client.delete(f"/groups/cell/members/{ids['carol']}")
        assert removed.status_code == 200, removed.text
        assert ids["carol"] not in await alice.members("cell")
        await alice.post("/groups/cell/messages", {"body": "one"}, 201)
        await until(lambda: _knows_removal(bob, ids["carol"]), "bob learns of the removal")
        await bob.post("/groups/cell/messages", {"body": "two"}, 201)
        await until(lambda: _has(bob, "cell", ["one", "welcome"]), "bob reads one")
        await until(lambda: _has(alice, "cell", ["two"]), "alice reads two")
        async with daemon(tmp_path, "carol") as carol:  # the removed member, online later
            for other in (alice, bob):
                await carol.dial(other)
            await until(lambda: _group_field(carol, "member", False), "carol learns she is out")
            await trio.sleep(2.0)  # time for any envelope to reach her
            assert await carol.bodies(f"{_gid(await carol.get('/groups'))}") == ["welcome"]
        async with daemon(tmp_path, "dave") as dave:  # the offline member, back later
            for other in (alice, bob):
                await dave.dial(other)
            await until(lambda: _has(dave, "cell", ["one", "two", "welcome"]), "dave reads both")
            views = [await d.members("cell") for d in (alice, bob, dave)]
            assert views[0] == views[1] == views[2] == {ids["alice"], ids["bob"], ids["dave"]}
            epochs = {(await d.get("/groups/cell"))["epoch"] for d in (alice, bob, dave)}
            assert epochs == {1}


async def _has(d: Daemon, group: str, bodies: list[str]) -> bool:
    response = await d.client.get(f"/groups/{group}/messages")
    if response.status_code != 200:
        return False  # the group has not reached this member yet
    got = sorted(m["body"] for m in response.json() if m["direction"] == "in")
    return all(b in got for b in bodies)


async def _knows_removal(d: Daemon, peer_id: str) -> bool:
    return peer_id not in await d.members("cell")


async def _group_field(d: Daemon, field: str, value: object) -> bool:
    rows = await d.get("/groups")
    return bool(rows) and rows[0][field] == value


def _gid(rows: list[dict[str, Any]]) -> str:
    return str(rows[0]["group_id"])


async def test_group_api_errors_are_clear(tmp_path: Path) -> None:
    async with daemon(tmp_path, "alice") as alice, daemon(tmp_path, "bob") as bob:
        await alice.post("/contacts", {"code": bob.code}, 201)
        cases = [
            ("POST", "/groups", {"name": "x", "members": ["zed"]}, 404, "unknown contact 'zed'"),
            ("POST", "/groups", {"members": []}, 400, "'name'"),
            ("GET", "/groups/nope", None, 404, "no group 'nope'"),
            ("POST", "/groups/nope/messages", {"body": "hi"}, 404, "no group"),
        ]
        for method, path, body, status, text in cases:
            response = await alice.client.request(method, path, json=body)
            assert response.status_code == status, response.text
            assert text in response.json()["error"]
        await alice.post("/groups", {"name": "x", "members": ["bob"]}, 201)
        response = await alice.client.post("/groups/x/members", json={"who": "bob"})
        assert response.status_code == 409
        assert "already a member" in response.json()["error"]
        response = await alice.client.post("/groups/x/messages", json={"body": " "})
        assert response.status_code == 400
        sent = await alice.post("/groups/x/messages", {"body": "hi"}, 201)
        assert sent["status"] == "queued"
        assert sent["recipients"] == 1
        rows = await alice.get("/groups")
        assert [(r["name"], r["members"], r["epoch"]) for r in rows] == [("x", 2, 0)]
