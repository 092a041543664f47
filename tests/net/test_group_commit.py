"""Durable submits with group commit (#17.4): shared commits, never an answer before its commit.

The runner level uses the fake node and gated storage of ``test_runner``; the API level a real
daemon (``test_api``'s helpers) and a list sent to ``POST /messages``.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import trio
import trio.testing

from meshmsg.core.effects import Persist
from tests.net.test_api import daemon
from tests.net.test_runner import FakeNode, GatedStorage, put, running

SUBMITS = 100


class RecordingStorage(GatedStorage):
    """Gated storage that writes each commit into the log the submitters also write to."""

    def __init__(self, log: list[tuple[str, int]]) -> None:
        super().__init__()
        self.log = log

    def apply(self, persist: Persist) -> None:
        super().apply(persist)
        self.log.append(("commit", persist.token))  # a merged Persist carries its last token


async def test_concurrent_submits_share_commits_and_are_answered_only_after_them() -> None:
    log: list[tuple[str, int]] = []
    storage = RecordingStorage(log)
    tokens = itertools.count(1)

    def submit_one(node: FakeNode, _now: float) -> int:
        token = next(tokens)
        node.script(Persist(token=token, puts=(put(token.to_bytes(4, "big"), b"m"),)))
        return token

    async def submitter() -> None:
        token = await h.runner.call(submit_one)
        await h.runner.wait_durable()  # what the API's send does before answering
        log.append(("ack", token))

    async with running(storage=storage) as h, trio.open_nursery() as nursery:
        for _ in range(SUBMITS):
            nursery.start_soon(submitter)
        await trio.to_thread.run_sync(storage.started.wait)  # the first commit is under way
        await trio.testing.wait_all_tasks_blocked()
        assert h.runner.statistics().persists_pending == SUBMITS  # all issued, disk busy
        storage.gate.set()
    committed = 0
    for what, token in log:  # tokens are issued in order, commits are in order
        if what == "commit":
            committed = token
        else:
            assert token <= committed, f"submit {token} answered before its commit"
    assert sorted(t for w, t in log if w == "ack") == list(range(1, SUBMITS + 1))
    assert len(storage.batches) == 2  # those that waited for the first commit share the next
    assert storage.batches[-1] == SUBMITS


async def test_a_list_of_messages_is_one_request_and_shares_commits(tmp_path: Path) -> None:
    async with daemon(tmp_path, "alice") as alice, daemon(tmp_path, "bobby") as bobby:
        response = await alice.client.post("/contacts", json={"code": bobby.code})
        assert response.status_code == 201, response.text
        to = response.json()["peer_id"]
        before = alice.handle.runner.statistics().commits
        bodies = [f"note {i}" for i in range(200)]
        response = await alice.client.post(
            "/messages", json=[{"to": to, "body": b} for b in bodies]
        )
        assert response.status_code == 201, response.text
        sent = response.json()
        stats = alice.handle.runner.statistics()
        assert stats.persists_committed >= len(bodies)  # answered after the commit of all of them
        assert stats.commits - before < len(bodies) // 10
        assert [m["body"] for m in sent] == bodies
        stored = await alice.get(f"/conversations/{to}/messages")
        assert [m["message_id"] for m in stored] == [m["message_id"] for m in sent]
        bad = [{"to": to, "body": "fine"}, {"to": to, "body": " "}]
        response = await alice.client.post("/messages", json=bad)
        assert response.status_code == 400  # checked before the node saw any of them
        assert len(await alice.get(f"/conversations/{to}/messages")) == len(bodies)
