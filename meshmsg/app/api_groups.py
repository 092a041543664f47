"""The groups part of the local API (added to ``create_app`` by :func:`group_routes`).

=========================================== ======= ==========================================
path                                        method  what
=========================================== ======= ==========================================
``/groups``                                 GET     our groups, one row each
``/groups``                                 POST    ``{"name", "members": [who, ...]}``: create
``/groups/{group}``                         GET     members, admins, epoch, pending changes
``/groups/{group}/members``                 POST    ``{"who"}``: add (a contact)
``/groups/{group}/members/{who}``           DELETE  remove
``/groups/{group}/admins``                  POST    ``{"who"}``: promote
``/groups/{group}/admins/{who}``            DELETE  demote
``/groups/{group}/rename``                  POST    ``{"name"}``
``/groups/{group}/leave``                   POST    leave the group
``/groups/{group}/messages``                GET     ``?limit=``: the latest messages
``/groups/{group}/messages``                POST    ``{"body", "ttl_s"?}``: send
``/groups/{group}/messages/read``           POST    ``{"message_ids": [...]}``: read receipts
``/groups/{group}/messages/files``          POST    ``{"body"?, "attachments": [ids],
                                                    "ttl_s"?}``: send files uploaded with
                                                    ``POST /attachments``; one encrypted copy
                                                    of each for every member
=========================================== ======= ==========================================

``group`` is a group name or its id (hex); ``who`` a contact name or a peer id (32 hex digits;
a member who is not our contact can be removed by peer id). Live events (``group_changed``,
``group_message_received``, ``group_message_status``) arrive on ``/events`` like every other.
A refused change (not an admin, a limit) is 409 with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import Route

from meshmsg.app.api_files import of_message
from meshmsg.app.api_refs import ApiLike, PeerRef
from meshmsg.app.api_refs import parse_peer as _parse_peer
from meshmsg.app.api_refs import require_contact as _require_contact
from meshmsg.app.groups_view import group_message_view, group_row, group_view
from meshmsg.config import NodeConfig
from meshmsg.core.attach.assembly import AttachmentRef
from meshmsg.core.groups.book import Entry
from meshmsg.core.identity import peer_id_of
from meshmsg.core.node import Node
from meshmsg.errors import GroupError, InvalidAttachment

JSON = dict[str, Any]


class Uploads(Protocol):
    """The uploaded files not yet sent (:class:`meshmsg.app.api_files.FilesApi`)."""

    def uploaded(self, ids: list[object]) -> list[AttachmentRef]: ...

    def sent(self, refs: list[AttachmentRef]) -> None: ...


def _field(data: dict[str, Any], key: str, kind: Any) -> Any:
    value = data.get(key)
    if value is None or not isinstance(value, kind) or isinstance(value, bool):
        raise HTTPException(400, f"missing field {key!r} or of the wrong type")
    return value


def _message_id(value: object) -> bytes:
    try:
        if isinstance(value, str) and len(value) == 32:
            return bytes.fromhex(value)
    except ValueError:
        pass
    raise HTTPException(400, "message ids are 32 hex digits")


def _limit(request: Request, high: int) -> int:
    text = request.query_params.get("limit", "50")
    if not text.isdigit() or not 1 <= int(text) <= high:
        raise HTTPException(400, f"limit must be within 1..{high}")
    return int(text)


def _ttl(data: dict[str, Any], max_ttl_s: float) -> float | None:
    ttl = data.get("ttl_s")
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        raise HTTPException(400, "ttl_s must be a number")
    if not (math.isfinite(ttl) and 0 < ttl <= max_ttl_s):
        raise HTTPException(400, f"ttl_s must be within 0..{max_ttl_s:g} seconds")
    return float(ttl)


def _group_ref(request: Request) -> str | bytes:
    text = str(request.path_params["group"])
    if len(text) == 64:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    return text


def _entry(node: Node, ref: str | bytes) -> Entry:
    try:
        return node.groups.find(ref)
    except GroupError as exc:
        raise HTTPException(404, str(exc)) from exc


def _member_id(node: Node, entry: Entry, ref: PeerRef) -> bytes:
    """A member's peer id: a contact by name or id, or any member by peer id."""
    if isinstance(ref, bytes) and any(peer_id_of(k) == ref for k in entry.group.state.members):
        return ref
    return _require_contact(node, ref).peer_id


class GroupApi:
    def __init__(self, api: ApiLike, config: NodeConfig, uploads: Uploads) -> None:
        self.api = api
        self.config = config
        self.uploads = uploads

    async def _run(self, fn: Callable[[Node, float], JSON | list[JSON] | None], *,
                   write: bool) -> Any:  # fmt: skip
        try:
            return await (self.api.write(fn) if write else self.api.call(fn))
        except GroupError as exc:
            raise HTTPException(409, str(exc)) from exc

    async def listing(self, request: Request) -> list[JSON]:
        def read(node: Node, _: float) -> list[JSON]:
            return [group_row(node, e) for e in node.groups.entries.values()]

        result: list[JSON] = await self._run(read, write=False)
        return result

    async def create(self, request: Request) -> JSON:
        data = await self.api.body(request)
        name = _field(data, "name", str)
        refs = [_parse_peer(w) for w in _field(data, "members", list) if isinstance(w, str)]

        def create(node: Node, now: float) -> JSON:
            members = [_require_contact(node, r).peer_id for r in refs]
            gid = node.create_group(name, members, now=now)
            return group_view(node, node.groups.find(gid))

        result: JSON = await self._run(create, write=True)
        return result

    async def show(self, request: Request) -> JSON:
        ref = _group_ref(request)
        result: JSON = await self._run(lambda n, _: group_view(n, _entry(n, ref)), write=False)
        return result

    def change(self, action: str, who_from: str | None) -> Callable[[Request], Awaitable[JSON]]:
        async def change(request: Request) -> JSON:
            ref = _group_ref(request)
            data = await self.api.body(request) if request.method == "POST" else {}
            who: PeerRef | None = None
            if who_from == "body":
                who = _parse_peer(_field(data, "who", str))
            elif who_from == "path":
                who = _parse_peer(str(request.path_params["who"]))
            name = _field(data, "name", str) if action == "rename" else None

            def apply(node: Node, now: float) -> JSON:
                entry = _entry(node, ref)
                member = None if who is None else _member_id(node, entry, who)
                node.change_group(entry.group.id, action, member=member, name=name, now=now)
                return group_view(node, entry)

            result: JSON = await self._run(apply, write=True)
            return result

        return change

    async def messages(self, request: Request) -> list[JSON]:
        ref = _group_ref(request)
        limit = _limit(request, self.config.net.api_max_messages)

        def read(node: Node, _: float) -> list[JSON]:
            entry = _entry(node, ref)
            ordered = sorted(entry.messages.values(), key=lambda m: m.sent_at)
            return [group_message_view(node, m) for m in ordered[-limit:]]

        result: list[JSON] = await self._run(read, write=False)
        return result

    async def send(self, request: Request) -> JSON:
        ref = _group_ref(request)
        data = await self.api.body(request)
        body = _field(data, "body", str)
        if not body.strip():
            raise HTTPException(400, "message body is empty")
        ttl_s = _ttl(data, self.config.message.max_ttl_s)

        def send(node: Node, now: float) -> JSON:
            entry = _entry(node, ref)
            mid = node.send_group_message(entry.group.id, body, now=now, ttl_s=ttl_s)
            return group_message_view(node, entry.messages[mid])

        result: JSON = await self._run(send, write=True)
        return result

    async def send_files(self, request: Request) -> JSON:
        ref = _group_ref(request)
        data = await self.api.body(request)
        body = data.get("body") or ""
        ids = data.get("attachments")
        if not isinstance(body, str) or not isinstance(ids, list) or not ids:
            raise HTTPException(400, "body is text; attachments is a non-empty list of ids")
        ttl_s = _ttl(data, self.config.message.max_ttl_s)
        refs = self.uploads.uploaded(ids)

        def send(node: Node, now: float) -> JSON:
            entry = _entry(node, ref)
            mid = node.send_group_message(entry.group.id, body, now=now, ttl_s=ttl_s, refs=refs)
            view = group_message_view(node, entry.messages[mid])
            return {**view, "attachments": of_message(node, mid)}

        try:
            result: JSON = await self._run(send, write=True)
        except InvalidAttachment as exc:
            raise HTTPException(400, str(exc)) from exc
        self.uploads.sent(refs)
        return result

    async def mark_read(self, request: Request) -> JSON:
        ref = _group_ref(request)
        data = await self.api.body(request)
        ids = [_message_id(i) for i in _field(data, "message_ids", list)]

        def mark(node: Node, now: float) -> JSON:
            node.mark_group_read(_entry(node, ref).group.id, ids, now=now)
            return {"marked": len(ids)}

        result: JSON = await self._run(mark, write=True)
        return result


def group_routes(api: ApiLike, config: NodeConfig, uploads: Uploads) -> list[Route]:
    g, e = GroupApi(api, config, uploads), api.endpoint
    return [
        Route("/groups", e(g.listing), methods=["GET"]),
        Route("/groups", e(g.create, 201), methods=["POST"]),
        Route("/groups/{group}", e(g.show), methods=["GET"]),
        Route("/groups/{group}/members", e(g.change("add", "body")), methods=["POST"]),
        Route("/groups/{group}/members/{who}", e(g.change("remove", "path")), methods=["DELETE"]),
        Route("/groups/{group}/admins", e(g.change("promote", "body")), methods=["POST"]),
        Route("/groups/{group}/admins/{who}", e(g.change("demote", "path")), methods=["DELETE"]),
        Route("/groups/{group}/rename", e(g.change("rename", None)), methods=["POST"]),
        Route("/groups/{group}/leave", e(g.change("leave", None)), methods=["POST"]),
        Route("/groups/{group}/messages", e(g.messages), methods=["GET"]),
        Route("/groups/{group}/messages", e(g.send, 201), methods=["POST"]),
        Route("/groups/{group}/messages/read", e(g.mark_read), methods=["POST"]),
        Route("/groups/{group}/messages/files", e(g.send_files, 201), methods=["POST"]),
    ]
