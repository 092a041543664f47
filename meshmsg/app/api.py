"""The daemon's local HTTP + WebSocket API: Starlette on hypercorn's trio worker, 127.0.0.1 only.

Every request needs ``Authorization: Bearer <token>``, the token the daemon writes (0600) to
``api-token`` in the data directory at start (compared in constant time), or the session cookie
of the web UI with its CSRF proof; every request needs a loopback ``Host`` (``app/webauth.py``).
Bodies are JSON objects of at most ``NetConfig.api_max_request_bytes``; answers are JSON, errors
``{"error": "<one line>"}`` with a fitting status code. The endpoints (docs/operations.md):

====== =================================== ==============================================
GET    /status                             identity, links, queues, relay usage, discovery
GET    /id                                 contact code, safety number per contact
GET    /id/qr.svg                          the contact code as a QR code (SVG)
GET    /contacts/{peer_id}/safety.svg      the safety number's QR code (SVG)
GET    /contacts                           the contact list
POST   /contacts                           ``{"code", "name"?, "verified"?}``: add a contact
POST   /contacts/{peer_id}/verify          ``{"verified"?: true}``: mark (un)verified
POST   /contacts/{peer_id}/rename          ``{"name"}``: the contact's local name
POST   /contacts/{peer_id}/block           ``{"blocked"?: true}``: (un)block
DELETE /contacts/{peer_id}                 remove a contact
GET    /conversations                      one row per peer, most recent first, ``unread``
GET    /conversations/{peer_id}/messages   ``?limit=&before=``: messages, oldest first
POST   /messages                           ``{"to", "body", "ttl_s"?}``: send; 201 with its id;
                                           or a list of them: sent in order, one commit
POST   /messages/read                      read receipts and the read mark (``api_reads.py``)
WS     /events                             every node event as JSON, live
*      /groups...                          groups (``app/api_groups.py``)
GET    /, /ui/{file}                       the web UI (``app/web.py``), no token needed
POST   /session                            ``{"token"}``: a browser session cookie
DELETE /session                            end the browser session
====== =================================== ==============================================

Wherever a peer id goes (a path's ``{peer_id}``, ``to``, ``peer_id``), a contact's name (any
case) does too. Every error is JSON, Starlette's own (unknown path: 404, wrong method: 405) too.

Handlers run in the daemon's trio loop and reach the Node only through ``NodeRunner.call``,
so the pump stays its one owner; each call runs a read or one command, never waits.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar, cast

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from meshmsg.app.api_files import FilesApi
from meshmsg.app.api_firstcontact import routes as firstcontact_routes
from meshmsg.app.api_groups import group_routes
from meshmsg.app.api_reads import ReadApi
from meshmsg.app.api_refs import PeerRef
from meshmsg.app.api_refs import parse_peer as _parse_peer
from meshmsg.app.api_refs import require_contact as _require_contact
from meshmsg.app.contact_ops import rename_contact
from meshmsg.app.datadir import check_name, own_contact_code
from meshmsg.app.mesh import NodeHandle
from meshmsg.app.qr import render_svg
from meshmsg.app.readmarks import ReadMarks
from meshmsg.app.views import (
    JSON,
    contact_view,
    contacts_view,
    event_view,
    message_view,
    outbox_view,
    requests_quota_view,
    sessions_view,
    store_view,
    to_json,
)
from meshmsg.app.warnings import clock_warnings, host_warnings
from meshmsg.app.web import SecurityHeaders, ui_routes
from meshmsg.app.webauth import SESSION_COOKIE, BrowserSessions, Guard, Refused
from meshmsg.core.identity import decode_contact_code, fingerprint
from meshmsg.core.node import Node
from meshmsg.core.pacing import outbox_waits
from meshmsg.errors import (
    ConfigError,
    InvalidContactCode,
    InvalidMessage,
    LocalProtocolError,
    TransportError,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")
WS_POLICY_VIOLATION: Final = 1008  # RFC 6455: refused (bad or missing token)
WS_TRY_LATER: Final = 1013  # RFC 6455: too many clients, or this one fell behind


Handler = Callable[[Request], Awaitable[Any]]


class Api:
    """The endpoints over one running node."""

    def __init__(self, handle: NodeHandle, guard: Guard) -> None:
        self._handle = handle
        self._runner = handle.runner
        self._guard = guard
        self._net = handle.config.net
        self._ws_clients = 0

    # --- plumbing ----------------------------------------------------------------------------

    def refusal(self, conn: HTTPConnection) -> Refused | None:
        """Why ``conn`` may not proceed (webauth: Host, token or session, CSRF), or None."""
        server = conn.scope.get("server")
        where = (str(server[0]), int(server[1])) if server else None
        cookie = conn.cookies.get(SESSION_COOKIE)
        try:
            if conn.scope["type"] == "websocket":
                self._guard.check_websocket(conn.headers, where, cookie, time.time())
            else:
                self._guard.check_request(
                    conn.scope["method"], conn.headers, where, cookie, time.time()
                )
        except Refused as refused:
            return refused
        return None

    def endpoint(
        self, handler: Handler, status: int = 200
    ) -> Callable[[Request], Awaitable[Response]]:
        """Wrap a handler: auth, errors as JSON, the result as a JSON response."""

        @functools.wraps(handler)
        async def run(request: Request) -> Response:
            refused = self.refusal(request)
            if refused is not None:
                return _error(refused.status, str(refused))
            try:
                result = await handler(request)
            except HTTPException as exc:
                return _error(exc.status_code, exc.detail)
            except InvalidMessage as exc:
                return _error(413, f"message too big: {exc}")
            except (InvalidContactCode, ConfigError) as exc:
                return _error(400, str(exc))
            except LocalProtocolError as exc:  # the Node refused the command as asked
                return _error(409, str(exc))
            except TransportError as exc:
                return _error(503, f"node is shutting down: {exc}")
            if result is None:
                return Response(status_code=204)
            if isinstance(result, Response):  # images (QR codes) are answered as they are
                return result
            return JSONResponse(result, status_code=status)

        return run

    async def call(self, fn: Callable[[Node, float], T]) -> T:
        return await self._runner.call(fn)

    async def write(self, fn: Callable[[Node, float], T]) -> T:
        """A command that changes the node: answered only once its writes are committed."""
        return await self._handle.call_durably(fn)

    async def body(self, request: Request) -> dict[str, Any]:
        """The JSON object in the body, read up to the size cap."""
        data = await self.json(request)
        if not isinstance(data, dict):
            raise HTTPException(400, "body must be a JSON object")
        return data

    async def json(self, request: Request) -> Any:
        """The JSON value in the body, read up to the size cap."""
        cap = self._net.api_max_request_bytes
        chunks: list[bytes] = []
        size = 0
        async with contextlib.aclosing(request.stream()) as stream:  # closed when we stop early
            async for chunk in stream:
                size += len(chunk)
                if size > cap:
                    raise HTTPException(413, f"request body over {cap} bytes")
                chunks.append(chunk)
        try:
            data = json.loads(b"".join(chunks) or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HTTPException(400, f"body is not JSON: {exc}") from exc
        return data

    # --- endpoints ---------------------------------------------------------------------------

    async def status(self, request: Request) -> JSON:
        handle = self._handle
        stats = self._runner.statistics()

        def read(node: Node, now: float) -> JSON:
            return {
                "peer_id": node.identity.peer_id.hex(),
                "fingerprint": fingerprint(node.identity.public),
                "name": handle.settings.name,
                "profile": handle.settings.profile,
                "listen": self._runner.addresses,
                "uptime_s": now - handle.started_at,
                "peers": sessions_view(node, self._runner.link_hosts()),
                "contacts": len(node.contacts),
                "outbox": outbox_view(node),
                # When each wait of the outbox ends at the latest (issue #17): wall-clock time
                "outbox_until": {r: t for r, (_, t) in outbox_waits(node).items() if t is not None},
                "relay": store_view(node),
                "requests": requests_quota_view(node),
                "warnings": clock_warnings(node, now, handle.clocks.latest),
            }

        view = await self.call(read)
        view["links"] = to_json(stats)
        view["discovery"] = handle.discovery_state()
        view["warnings"] += host_warnings(handle.data_root, view["discovery"], view["relay"])
        view["static_peers"] = list(handle.settings.static_peers)
        view["found_by"] = dict(handle.bridge.found_by)
        view["storage"] = {
            "checkpoints": handle.sink.checkpoints,
            "checkpoint_failures": handle.sink.checkpoint_failures,
        }
        return view

    async def identity(self, request: Request) -> JSON:
        settings = self._handle.settings

        def read(node: Node, _now: float) -> JSON:
            return {
                "peer_id": node.identity.peer_id.hex(),
                "fingerprint": fingerprint(node.identity.public),
                "name": settings.name,
                "contact_code": own_contact_code(node.identity, settings),
                "contacts": contacts_view(node),
            }

        return await self.call(read)

    async def own_qr(self, request: Request) -> Response:
        """The QR code of our contact code, as SVG (the web UI's "your code")."""
        settings = self._handle.settings
        code = await self.call(lambda node, _now: own_contact_code(node.identity, settings))
        return Response(render_svg(code), media_type="image/svg+xml")

    async def safety_qr(self, request: Request) -> Response:
        """The QR code of the safety number shared with one contact, as SVG."""
        peer_id = _peer_param(request)

        def read(node: Node, _now: float) -> str:
            return str(contact_view(node, _require_contact(node, peer_id))["safety_qr"])

        return Response(render_svg(await self.call(read)), media_type="image/svg+xml")

    async def list_contacts(self, request: Request) -> list[JSON]:
        return await self.call(lambda node, _now: contacts_view(node))

    async def add_contact(self, request: Request) -> JSON:
        data = await self.body(request)
        card = decode_contact_code(_field(data, "code", str))
        name = _optional(data, "name", str)
        if name is not None:
            check_name(name)  # ConfigError: 400
        verified = _optional(data, "verified", bool) or False

        def add(node: Node, now: float) -> JSON:
            return contact_view(node, node.add_contact(card, verified=verified, now=now, name=name))

        return await self.write(add)

    async def verify_contact(self, request: Request) -> JSON:
        ref = _peer_param(request)
        data = await self.body(request)
        verified = _optional(data, "verified", bool)
        verified = True if verified is None else verified

        def mark(node: Node, now: float) -> JSON:
            contact = _require_contact(node, ref)
            node.set_verified(contact.peer_id, verified, now=now)
            return contact_view(node, contact)

        return await self.write(mark)

    async def block_contact(self, request: Request) -> JSON:
        ref = _peer_param(request)
        blocked = _optional(await self.body(request), "blocked", bool)
        blocked = True if blocked is None else blocked

        def block(node: Node, now: float) -> JSON:
            contact = _require_contact(node, ref)
            node.set_blocked(contact.peer_id, blocked, now=now)
            return contact_view(node, contact)

        return await self.write(block)

    async def rename_contact(self, request: Request) -> JSON:
        ref = _peer_param(request)
        name = check_name(_field(await self.body(request), "name", str))  # ConfigError: 400

        def rename(node: Node, now: float) -> JSON:
            renamed = rename_contact(node, _require_contact(node, ref), name, now=now)
            return contact_view(node, renamed)

        return await self.write(rename)

    async def remove_contact(self, request: Request) -> None:
        ref = _peer_param(request)

        def remove(node: Node, now: float) -> None:
            node.remove_contact(_require_contact(node, ref).peer_id, now=now)

        await self.write(remove)

    async def messages(self, request: Request) -> list[JSON]:
        ref = _peer_param(request)
        limit = _int_query(
            request, "limit", self._net.api_max_messages, 1, self._net.api_max_messages
        )
        before = request.query_params.get("before")
        try:
            before_at = float(before) if before is not None else None
        except ValueError as exc:
            raise HTTPException(400, "before must be a time in seconds") from exc
        if before_at is not None and not math.isfinite(before_at):
            raise HTTPException(400, "before must be a finite time in seconds")

        def read(node: Node, _now: float) -> list[JSON]:
            # By id, a conversation with someone no longer a contact can still be read.
            if isinstance(ref, bytes) and ref in node.conversations.peers():
                peer_id = ref
            else:
                peer_id = _require_contact(node, ref).peer_id
            found = node.conversations.with_peer(peer_id)
            if before_at is not None:
                found = [m for m in found if m.sent_at < before_at]
            return [message_view(m) for m in found[-limit:]]

        return await self.call(read)

    async def send(self, request: Request) -> JSON | list[JSON]:
        """One message (an object) or several (a list, for bots and gateways).

        A list is sent in order by one call and answered after one wait for the commit, so
        its messages share commits; the answer never comes before the commit (#17.4).
        """
        data = await self.json(request)
        max_ttl_s = self._handle.config.message.max_ttl_s
        if not isinstance(data, list):
            return (await self._send_all([_outgoing(data, max_ttl_s)]))[0]
        if not 0 < len(data) <= self._net.api_max_messages:
            raise HTTPException(400, f"send 1 to {self._net.api_max_messages} messages at once")
        return await self._send_all([_outgoing(item, max_ttl_s) for item in data])

    async def _send_all(self, outgoing: list[_Outgoing]) -> list[JSON]:
        def send(node: Node, now: float) -> tuple[list[JSON], Exception | None]:
            views: list[JSON] = []
            for ref, body, ttl_s in outgoing:
                try:
                    peer_id = _require_contact(node, ref).peer_id
                    message_id = node.send_message(peer_id, body, now=now, ttl_s=ttl_s)
                except (HTTPException, InvalidMessage, LocalProtocolError) as exc:
                    return views, exc  # those before it are sent: answered once committed
                message = node.conversations.get(message_id)
                assert message is not None
                views.append(message_view(message))
            return views, None

        views, refused = await self.write(send)
        if refused is None:
            return views
        if len(outgoing) > 1:
            sent = ", ".join(str(v["message_id"]) for v in views) or "none"
            detail = getattr(refused, "detail", None) or str(refused)
            refused = HTTPException(409, f"message {len(views)} refused ({detail}); sent: {sent}")
        raise refused

    async def events(self, websocket: WebSocket) -> None:
        """Stream every node event as JSON until the client goes or falls behind."""
        if self.refusal(websocket) is not None:
            await websocket.close(code=WS_POLICY_VIOLATION)
            return
        if self._ws_clients >= self._net.api_max_ws_clients:
            await websocket.close(code=WS_TRY_LATER)
            return
        self._ws_clients += 1
        try:
            await websocket.accept()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_until_client_leaves, websocket, nursery.cancel_scope)
                with self._runner.subscribe() as events:
                    async for event in events:
                        await websocket.send_json(event_view(event))
                # The pump dropped us for falling behind: say so, the client may reconnect.
                await websocket.close(code=WS_TRY_LATER)
                nursery.cancel_scope.cancel()
        except WebSocketDisconnect:
            pass
        finally:
            self._ws_clients -= 1


async def _until_client_leaves(websocket: WebSocket, scope: trio.CancelScope) -> None:
    """Read (and ignore) what the client sends; stop the stream when it disconnects."""
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
    finally:
        scope.cancel()


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _field(data: dict[str, Any], key: str, kind: Any) -> Any:
    if key not in data:
        raise HTTPException(400, f"missing field {key!r}")
    value = data[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise HTTPException(400, f"field {key!r} has the wrong type")
    return value


def _optional(data: dict[str, Any], key: str, kind: Any) -> Any:
    return _field(data, key, kind) if data.get(key) is not None else None


_Outgoing = tuple[PeerRef, str, float | None]  # recipient, body, ttl_s


def _outgoing(data: object, max_ttl_s: float) -> _Outgoing:
    """One message to send, checked before the node sees any of a request's messages."""
    if not isinstance(data, dict):
        raise HTTPException(400, "a message must be a JSON object")
    peer_id = _parse_peer(_field(data, "to", str))
    body = _field(data, "body", str)
    if not body.strip():
        raise HTTPException(400, "message body is empty")
    return peer_id, body, _ttl(data, max_ttl_s)


def _peer_param(request: Request) -> PeerRef:
    return _parse_peer(str(request.path_params["peer_id"]))


def _ttl(data: dict[str, Any], max_ttl_s: float) -> float | None:
    ttl = _optional(data, "ttl_s", float | int)
    if ttl is not None and not (math.isfinite(ttl) and 0 < ttl <= max_ttl_s):
        raise HTTPException(400, f"ttl_s must be within 0..{max_ttl_s:g} seconds")
    return float(ttl) if ttl is not None else None


def _int_query(request: Request, key: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(key)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError as exc:
        raise HTTPException(400, f"{key} must be an integer") from exc
    if not low <= value <= high:
        raise HTTPException(400, f"{key} must be within {low}..{high}")
    return value


async def _json_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (unknown path, wrong method) as JSON like every other error."""
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def _os_error(exc: BaseException) -> OSError | None:
    if isinstance(exc, BaseExceptionGroup):
        return next((f for e in exc.exceptions if (f := _os_error(e)) is not None), None)
    return exc if isinstance(exc, OSError) else None


def create_app(handle: NodeHandle, token: str, reads: ReadMarks | None = None) -> Starlette:
    """The Starlette application over a running node (read marks in memory unless given)."""
    if not token:
        raise ConfigError("the API needs a non-empty token")
    guard = Guard(token=token.encode(), sessions=BrowserSessions())
    api = Api(handle, guard)
    files = FilesApi(handle, api)  # its uploads are sent to contacts and to groups
    net = handle.config.net
    marks = reads or ReadMarks.in_memory(net.api_max_read_marks)
    e = api.endpoint
    routes = [
        Route("/status", e(api.status), methods=["GET"]),
        Route("/id", e(api.identity), methods=["GET"]),
        Route("/id/qr.svg", e(api.own_qr), methods=["GET"]),
        Route("/contacts/{peer_id}/safety.svg", e(api.safety_qr), methods=["GET"]),
        Route("/contacts", e(api.list_contacts), methods=["GET"]),
        Route("/contacts", e(api.add_contact, 201), methods=["POST"]),
        Route("/contacts/{peer_id}/verify", e(api.verify_contact), methods=["POST"]),
        Route("/contacts/{peer_id}/block", e(api.block_contact), methods=["POST"]),
        Route("/contacts/{peer_id}/rename", e(api.rename_contact), methods=["POST"]),
        Route("/contacts/{peer_id}", e(api.remove_contact), methods=["DELETE"]),
        Route("/conversations/{peer_id}/messages", e(api.messages), methods=["GET"]),
        Route("/messages", e(api.send, 201), methods=["POST"]),
        *ReadApi(api, marks, net.api_max_messages).routes(),  # app/api_reads.py
        *firstcontact_routes(api),  # requests, organisations, directory (issue #12)
        WebSocketRoute("/events", api.events),
        *group_routes(api, handle.config, files),
        *ui_routes(guard),
    ]
    routes.extend(files.routes())  # attachments: meshmsg/app/api_files.py
    return Starlette(
        routes=routes,
        exception_handlers={HTTPException: _json_error},
        middleware=[Middleware(SecurityHeaders)],
    )


async def serve_api(
    handle: NodeHandle,
    token: str,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    reads: ReadMarks | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the API until cancelled; ``task_status`` gets its base URL (``http://127.0.0.1:N``).

    Raises:
        ConfigError: ``host`` is not a loopback address (the API is for this machine only).
        TransportError: the port could not be bound.
    """
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError as exc:
        raise ConfigError(f"API host must be a loopback IP address, not {host!r}") from exc
    if not loopback:
        raise ConfigError(f"API host must be a loopback address, not {host!r}")
    config = HypercornConfig()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logger  # our logger: no handlers of its own, quiet unless configured
    config.graceful_timeout = 1.0
    app = create_app(handle, token, reads)
    started = time.monotonic()
    async with trio.open_nursery() as nursery:
        try:
            binds: list[str] = await nursery.start(functools.partial(serve, cast(Any, app), config))
        except (OSError, BaseExceptionGroup) as exc:  # hypercorn's nurseries group the OSError
            failure = _os_error(exc)
            if failure is None:
                raise
            raise TransportError(f"cannot serve the API on {host}:{port}: {failure}") from failure
        logger.info("API on %s after %.2f s", binds[0], time.monotonic() - started)
        task_status.started(binds[0])


__all__ = ["create_app", "serve_api"]
