"""The API's attachment endpoints: streamed uploads, ranged downloads, progress.

====== ===================================== ============================================
POST   /attachments?name=&type=              the raw file as the body (streamed to disk, then
                                             sealed into the chunk store): 201 with its id
POST   /messages/files                       ``{"to", "body"?, "attachments": [ids],
                                             "ttl_s"?}``: send a message with uploaded files
GET    /attachments?peer=                    own and received attachments (with a contact)
GET    /attachments/{id}                     one attachment: name, size, role, progress
GET    /attachments/{id}/content             the plaintext; ``Range: bytes=`` gives 206
POST   /attachments/{id}/fetch               fetch one the download rules left pending
====== ===================================== ============================================

Progress is on ``/events`` (``attachment_progress``, ``attachment_complete``, ...). Uploads
never sit in memory: the body goes to a temporary file beside the chunk store as it arrives
(at most ``attach.max_attachment_bytes``), and a worker thread seals it chunk by chunk.
Downloads decrypt one chunk at a time. Uploaded files not yet sent are kept for the
daemon's run (at most ``MAX_UPLOADS``); a restart deletes their chunks (they have no record).
"""

from __future__ import annotations

import contextlib
import secrets
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any, Final
from urllib.parse import quote

import trio
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from meshmsg.app.files import parse_range, seal_stream
from meshmsg.app.mesh import NodeHandle
from meshmsg.app.views import JSON, message_view
from meshmsg.core.attach.assembly import AttachmentRef
from meshmsg.core.attach.table import Carried, Role
from meshmsg.core.node import Node
from meshmsg.errors import InvalidAttachment

MAX_UPLOADS: Final = 64  # sealed and not yet sent; the oldest is dropped (and its chunks)
_ID_HEX: Final = 64
_ROLES: Final = {Role.OWN: "sent", Role.WANTED: "received", Role.RELAY: "carried",
                 Role.PENDING: "pending"}  # fmt: skip


def attachment_view(item: Carried) -> JSON:
    ref = item.ref
    return {
        "attachment_id": item.attachment_id.hex(),
        "role": _ROLES[item.role],
        "name": ref.name if ref is not None else None,
        "size": ref.size if ref is not None else None,
        "media_type": ref.media_type if ref is not None else None,
        "message_id": item.message_id.hex() if item.message_id is not None else None,
        "peer_id": item.peer_id.hex() if item.peer_id is not None else None,
        "chunks": item.held.count,
        "held": item.held.held,
        "complete": item.held.complete,
        "ciphertext_bytes": item.size,
    }


class FilesApi:
    """Attachment endpoints over one running node; ``endpoint`` is the API's auth wrapper."""

    def __init__(self, handle: NodeHandle, api: Any) -> None:  # app.api.Api: no import cycle
        self._handle = handle
        self._api = api
        self._uploads: OrderedDict[bytes, AttachmentRef] = OrderedDict()

    def routes(self) -> list[BaseRoute]:
        e = self._api.endpoint
        return [
            Route("/attachments", e(self.upload, 201), methods=["POST"]),
            Route("/attachments", e(self.list), methods=["GET"]),
            Route("/messages/files", e(self.send, 201), methods=["POST"]),
            Route("/attachments/{attachment_id}", e(self.show), methods=["GET"]),
            Route("/attachments/{attachment_id}/fetch", e(self.fetch), methods=["POST"]),
            Route("/attachments/{attachment_id}/content", e(self.content), methods=["GET"]),
        ]

    async def upload(self, request: Request) -> JSON:
        name = request.query_params.get("name", "")
        media_type = request.query_params.get("type")
        config = self._handle.config.attach
        store = self._handle.chunks
        temporary = trio.Path(store.root / f"upload-{secrets.token_hex(8)}")
        try:
            size = await _receive_to(request, temporary, config.max_attachment_bytes)

            def seal() -> AttachmentRef:  # in a worker thread: file reads and encryption
                with open(temporary, "rb") as source:
                    return seal_stream(store, source, size, name, config, media_type)

            ref = await trio.to_thread.run_sync(seal)
        except InvalidAttachment as exc:
            raise HTTPException(400, str(exc)) from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                await temporary.unlink()
        self._uploads[ref.attachment_id] = ref
        while len(self._uploads) > MAX_UPLOADS:
            _, dropped = self._uploads.popitem(last=False)
            await trio.to_thread.run_sync(store.delete, dropped.attachment_id)
        return {"attachment_id": ref.attachment_id.hex(), "name": ref.name, "size": ref.size,
                "media_type": ref.media_type}  # fmt: skip

    async def send(self, request: Request) -> JSON:
        data = await self._api.body(request)
        to = _hex_field(data, "to", 32)
        body = data.get("body") or ""
        ids = data.get("attachments")
        ttl = data.get("ttl_s")
        if not isinstance(body, str) or not isinstance(ids, list) or not ids:
            raise HTTPException(400, "body is text; attachments is a non-empty list of ids")
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int | float)):
            raise HTTPException(400, "ttl_s is a number of seconds")
        refs = self.uploaded(ids)

        def send(node: Node, now: float) -> JSON:
            if node.contacts.get(to) is None:
                raise HTTPException(404, f"unknown contact {to.hex()}")
            message_id = node.send_files(to, body, refs, now=now, ttl_s=ttl)
            message = node.conversations.get(message_id)
            assert message is not None
            return {**message_view(message), "attachments": of_message(node, message_id)}

        try:
            view: JSON = await self._api.write(send)
        except InvalidAttachment as exc:
            raise HTTPException(400, str(exc)) from exc
        self.sent(refs)
        return view

    def uploaded(self, ids: list[object]) -> list[AttachmentRef]:
        """The uploads these ids (64 hex digits each) name; HTTP 404 for one not uploaded."""
        refs = []
        for value in ids:
            ref = self._uploads.get(_parse_id(value))
            if ref is None:
                raise HTTPException(404, f"no uploaded attachment {value}: upload it first")
            refs.append(ref)
        return refs

    def sent(self, refs: list[AttachmentRef]) -> None:
        """These uploads left in a message: the node keeps them now."""
        for ref in refs:
            self._uploads.pop(ref.attachment_id, None)

    async def list(self, request: Request) -> list[JSON]:
        peer = request.query_params.get("peer")
        peer_id = bytes.fromhex(peer) if peer and len(peer) == 32 and _is_hex(peer) else None
        if peer is not None and peer_id is None:
            raise HTTPException(400, "peer is 32 hex digits")

        def read(node: Node, _now: float) -> list[JSON]:
            return [
                attachment_view(item) for item in node.attachments.values()
                if item.role is not Role.RELAY and (peer_id is None or item.peer_id == peer_id)
            ]  # fmt: skip

        views: list[JSON] = await self._api.call(read)
        return views

    async def show(self, request: Request) -> JSON:
        attachment_id = _parse_id(request.path_params["attachment_id"])
        item = await self._api.call(lambda node, _now: node.attachments.get(attachment_id))
        if item is None:
            raise HTTPException(404, "no such attachment")
        return attachment_view(item)

    async def fetch(self, request: Request) -> JSON:
        attachment_id = _parse_id(request.path_params["attachment_id"])

        def fetch(node: Node, now: float) -> JSON:
            item = node.attachments.get(attachment_id)
            if item is None or item.role not in (Role.PENDING, Role.WANTED):
                raise HTTPException(404, "no attachment addressed to us with that id")
            node.fetch_attachment(attachment_id, now=now)
            return attachment_view(item)

        view: JSON = await self._api.write(fetch)
        return view

    async def content(self, request: Request) -> Response:
        attachment_id = _parse_id(request.path_params["attachment_id"])
        item = await self._api.call(lambda node, _now: node.attachments.get(attachment_id))
        if item is None or item.ref is None:
            raise HTTPException(404, "no attachment of ours with that id")
        if not item.held.complete:
            raise HTTPException(409, f"incomplete: {item.held.held} of {item.held.count} chunks")
        ref = item.ref
        try:
            span = parse_range(request.headers.get("range"), ref.size)
        except ValueError as exc:
            return _error(416, str(exc), {"content-range": f"bytes */{ref.size}"})
        start, end = span if span is not None else (0, ref.size)
        headers = {
            "accept-ranges": "bytes",
            "content-length": str(end - start),
            "content-disposition": f"attachment; filename*=UTF-8''{quote(ref.name, safe='')}",
        }
        if span is not None:
            headers["content-range"] = f"bytes {start}-{end - 1}/{ref.size}"
        return StreamingResponse(
            self._plaintext(ref, start, end), status_code=206 if span is not None else 200,
            headers=headers, media_type=ref.media_type or "application/octet-stream",
        )  # fmt: skip

    async def _plaintext(self, ref: AttachmentRef, start: int, end: int) -> AsyncIterator[bytes]:
        """Decrypted one chunk at a time in a worker thread: memory is one chunk."""
        store, config = self._handle.chunks, self._handle.config.attach
        pieces = store.read_plain(ref, start, end, config)
        while True:
            piece = await trio.to_thread.run_sync(next, pieces, None)
            if piece is None:
                return
            yield piece


async def _receive_to(request: Request, path: trio.Path, cap: int) -> int:
    size = 0
    async with (
        await trio.open_file(path, "xb") as sink,
        contextlib.aclosing(request.stream()) as stream,
    ):
        async for piece in stream:
            size += len(piece)
            if size > cap:
                raise HTTPException(413, f"attachments are at most {cap:,} bytes")
            await sink.write(piece)
    return size


def of_message(node: Node, message_id: bytes) -> list[JSON]:
    """The attachments a message (pairwise or group) carries, as the API shows them."""
    return [attachment_view(i) for i in node.attachments.values() if i.message_id == message_id]


def _parse_id(value: object) -> bytes:
    if not isinstance(value, str) or len(value) != _ID_HEX or not _is_hex(value):
        raise HTTPException(400, "attachment ids are 64 hex digits")
    return bytes.fromhex(value)


def _hex_field(data: dict[str, Any], key: str, digits: int) -> bytes:
    value = data.get(key)
    if not isinstance(value, str) or len(value) != digits or not _is_hex(value):
        raise HTTPException(400, f"field {key!r} is {digits} hex digits")
    return bytes.fromhex(value)


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers=headers)
