"""The conversation list and read marks of the local API (added to ``create_app``).

====== =================================== ==============================================
GET    /conversations                      one row per peer, most recent first, with
                                           ``unread`` and ``read_up_to``
POST   /messages/read                      ``{"peer_id", "message_ids"}``: read receipts,
                                           and the conversation's read mark moves
====== =================================== ==============================================

The read marks (``app/readmarks.py``) are what keeps unread counts across restarts of the
daemon: a mark is durable before the answer, like the receipts the same call queues.
"""

from __future__ import annotations

from typing import Final

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import Route

from meshmsg.app.api_refs import ApiLike, parse_peer, require_contact
from meshmsg.app.readmarks import ReadMarks
from meshmsg.app.views import JSON, arrived_at, conversations_view
from meshmsg.core.node import Node

MESSAGE_ID_HEX: Final = 32


class ReadApi:
    def __init__(self, api: ApiLike, reads: ReadMarks, max_ids: int) -> None:
        self.api = api
        self.reads = reads
        self.max_ids = max_ids

    async def conversations(self, request: Request) -> list[JSON]:
        return await self.api.call(lambda node, _now: conversations_view(node, self.reads.position))

    async def mark_read(self, request: Request) -> JSON:
        data = await self.api.body(request)
        who, raw_ids = data.get("peer_id"), data.get("message_ids")
        if not isinstance(who, str):
            raise HTTPException(400, "missing field 'peer_id' or of the wrong type")
        if not isinstance(raw_ids, list):
            raise HTTPException(400, "missing field 'message_ids' or of the wrong type")
        if len(raw_ids) > self.max_ids:
            raise HTTPException(400, f"at most {self.max_ids} message ids at once")
        ref, ids = parse_peer(who), [parse_message_id(i) for i in raw_ids]

        def mark(node: Node, now: float) -> tuple[str, float]:
            peer_id = require_contact(node, ref).peer_id
            node.mark_read(peer_id, ids, now=now)
            found = (node.conversations.get(i) for i in ids)
            seen = [arrived_at(m) for m in found if m and not m.outgoing and m.peer_id == peer_id]
            return peer_id.hex(), max(seen, default=0.0)

        peer, read_at = await self.api.write(mark)
        await self.reads.advance(peer, read_at)  # durable before the answer, like the receipts
        return {"marked": len(ids), "read_up_to": self.reads.position(peer)}

    def routes(self) -> list[Route]:
        e = self.api.endpoint
        return [
            Route("/conversations", e(self.conversations), methods=["GET"]),
            Route("/messages/read", e(self.mark_read), methods=["POST"]),
        ]


def parse_message_id(value: object) -> bytes:
    if not isinstance(value, str) or len(value) != MESSAGE_ID_HEX:
        raise HTTPException(400, "message ids are 32 hex digits")
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        raise HTTPException(400, "message ids are 32 hex digits") from exc


__all__ = ["ReadApi", "parse_message_id"]
