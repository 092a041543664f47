"""The API's attachment endpoints on live daemons: streamed upload, send, progress, ranges."""

from __future__ import annotations

import hashlib
import random
from collections.abc import AsyncIterator
from pathlib import Path

import trio

from meshmsg.app.client import DaemonClient, EventStream
from tests.net.test_api import TOKEN, daemon

SIZE = 1_000_000  # 17 chunks


async def pieces(data: bytes, size: int = 50_000) -> AsyncIterator[bytes]:
    """A streamed request body (chunked transfer encoding: no length known up front)."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_upload_send_progress_and_ranged_download(tmp_path: Path) -> None:
    data = random.Random(5).randbytes(SIZE)
    async with daemon(tmp_path, "alice") as alice, daemon(tmp_path, "bob") as bob:
        bob_id = (await alice.client.post("/contacts", json={"code": bob.code})).json()["peer_id"]
        await bob.client.post("/contacts", json={"code": alice.code})
        alice_id = (await alice.get("/id"))["peer_id"]
        upload = await alice.client.post("/attachments?name=site%20map.png", content=pieces(data))
        assert upload.status_code == 201, upload.text
        uploaded = upload.json()
        assert (uploaded["name"], uploaded["size"], uploaded["media_type"]) == (
            "site map.png",
            SIZE,
            "image/png",
        )
        sent = await alice.client.post(
            "/messages/files",
            json={"to": bob_id, "body": "the map", "attachments": [uploaded["attachment_id"]]},
        )
        assert sent.status_code == 201, sent.text
        assert sent.json()["attachments"][0]["role"] == "sent"
        attachment_id = uploaded["attachment_id"]
        progress = []
        async with EventStream(DaemonClient(bob.url, TOKEN)) as events:
            await alice.handle.runner.peer_discovered(bob.handle.address)
            with trio.fail_after(30):
                while (event := await events.next()) is not None:
                    if event["type"] == "attachment_progress":
                        progress.append(event["held"])
                    if event["type"] == "attachment_complete":
                        break
        assert progress == list(range(1, 18))
        listed = await bob.get(f"/attachments?peer={alice_id}")
        assert [(a["name"], a["complete"], a["role"]) for a in listed] == [
            ("site map.png", True, "received")
        ]
        whole = await bob.client.get(f"/attachments/{attachment_id}/content")
        assert whole.status_code == 200
        assert hashlib.sha256(whole.content).digest() == hashlib.sha256(data).digest()
        assert whole.headers["content-type"] == "image/png"
        part = await bob.client.get(
            f"/attachments/{attachment_id}/content", headers={"range": "bytes=61000-62999"}
        )
        assert part.status_code == 206
        assert part.content == data[61_000:63_000]
        assert part.headers["content-range"] == f"bytes 61000-62999/{SIZE}"
        bad = await bob.client.get(
            f"/attachments/{attachment_id}/content", headers={"range": f"bytes={SIZE}-"}
        )
        assert bad.status_code == 416


async def test_attachment_endpoints_refuse_bad_input(tmp_path: Path) -> None:
    async with daemon(tmp_path, "alice") as alice:
        no_name = await alice.client.post("/attachments", content=b"x")
        assert no_name.status_code == 400
        assert "name" in no_name.json()["error"]
        unknown = "ab" * 32
        assert (await alice.client.get(f"/attachments/{unknown}")).status_code == 404
        assert (await alice.client.get("/attachments/nothex")).status_code == 400
        assert (await alice.client.get(f"/attachments/{unknown}/content")).status_code == 404
        send = await alice.client.post(
            "/messages/files", json={"to": "00" * 16, "attachments": [unknown]}
        )
        assert send.status_code == 404
        assert "upload it first" in send.json()["error"]
        anonymous = await alice.client.get(
            f"/attachments/{unknown}/content", headers={"authorization": ""}
        )
        assert anonymous.status_code == 401
        assert list((tmp_path / "alice" / "chunks").iterdir()) == []  # nothing left behind
