"""The web UI's side of the daemon: its files, the browser session, QR images, the guard.

The UI is plain ES modules and CSS shipped in the package (``app/static/``): no build step, no
CDN, nothing fetched from outside, so it works on a machine with no internet at all. The page
talks to the same JSON API as the CLI, authenticated by the session cookie of
:mod:`meshmsg.app.webauth` instead of the bearer token.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from meshmsg.app.webauth import (
    CSRF_HEADER,
    SECURITY_HEADERS,
    SESSION_COOKIE,
    Guard,
    Refused,
    Server,
)

STATIC: Final = Path(__file__).resolve().parent / "static"
# The files the page is made of: served by name from this list only, never by path.
ASSETS: Final = {
    "app.js": "text/javascript",
    "api.js": "text/javascript",
    "views.js": "text/javascript",
    "groups.js": "text/javascript",
    "people.js": "text/javascript",
    "style.css": "text/css",
    "icon.svg": "image/svg+xml",
}
MAX_TOKEN_FIELD: Final = 256  # the token is 43 characters; anything far longer is not one


def ui_routes(guard: Guard, clock: Callable[[], float] = time.time) -> list[BaseRoute]:
    """The routes of the page and its session, added beside the API's."""

    async def index(request: Request) -> Response:
        guard.check_host(request.headers, _server(request))
        return FileResponse(STATIC / "index.html", media_type="text/html")

    async def asset(request: Request) -> Response:
        guard.check_host(request.headers, _server(request))
        name = str(request.path_params["name"])
        kind = ASSETS.get(name)
        if kind is None:
            return JSONResponse({"error": f"no such file: {name[:40]}"}, status_code=404)
        return FileResponse(STATIC / name, media_type=kind)

    async def open_session(request: Request) -> Response:
        guard.check_host(request.headers, _server(request))
        guard.check_same_origin(request.headers, _server(request))
        if request.headers.get(CSRF_HEADER) != "1":
            raise Refused(403, f"missing {CSRF_HEADER} header")
        given = await _token_field(request)
        if not guard.token_ok(given):
            raise Refused(401, "wrong token: run `meshmsg ui` again")
        session = guard.sessions.open(clock())
        response = Response(status_code=204)
        response.set_cookie(
            SESSION_COOKIE,
            session,
            max_age=int(guard.sessions.lifetime_s),
            path="/",
            httponly=True,
            samesite="strict",
        )
        return response

    async def close_session(request: Request) -> Response:
        guard.check_request(
            request.method, request.headers, _server(request), _cookie(request), clock()
        )
        guard.sessions.close(_cookie(request))
        response = Response(status_code=204)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    return [
        Route("/", _refusals(index), methods=["GET"]),
        Route("/ui/{name}", _refusals(asset), methods=["GET"]),
        Route("/session", _refusals(open_session), methods=["POST"]),
        Route("/session", _refusals(close_session), methods=["DELETE"]),
    ]


def _server(request: Request) -> Server | None:
    server = request.scope.get("server")
    return (str(server[0]), int(server[1])) if server else None


def _cookie(request: Request) -> str | None:
    return request.cookies.get(SESSION_COOKIE)


async def _token_field(request: Request) -> str:
    body = await request.body()
    if len(body) > MAX_TOKEN_FIELD + 32:
        raise Refused(413, "session request too big")
    try:
        data = json.loads(body or b"null")
    except (UnicodeDecodeError, ValueError) as exc:
        raise Refused(400, "body is not JSON") from exc
    token = data.get("token") if isinstance(data, dict) else None
    if not isinstance(token, str) or len(token) > MAX_TOKEN_FIELD:
        raise Refused(400, 'expected {"token": "..."}')
    return token


def _refusals(
    handler: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except Refused as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)

    return run


class SecurityHeaders:
    """ASGI middleware: the headers of :data:`SECURITY_HEADERS` on every HTTP answer."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._headers = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self._headers]}
            await send(message)

        await self._app(scope, receive, with_headers)


__all__ = ["ASSETS", "STATIC", "SecurityHeaders", "ui_routes"]
