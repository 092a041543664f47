"""The browser's way into the API (app/webauth.py): each defence refuses what it is for.

Runs the real API on hypercorn on loopback; every refusal is checked against a request that
differs from an accepted one in exactly the one thing the defence looks at.
"""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, RejectConnection, Request

from meshmsg.app.webauth import (
    CONTENT_SECURITY_POLICY,
    SESSION_COOKIE,
    BrowserSessions,
    Guard,
    Refused,
)
from tests.net.test_api import TOKEN, daemon

CSRF = {"x-meshmsg-csrf": "1"}


def origin(url: str) -> dict[str, str]:
    return {"origin": url}


@asynccontextmanager
async def signed_in(url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client holding a browser session (the cookie), as the page has after sign-in."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        response = await client.post(
            "/session", json={"token": TOKEN}, headers={**CSRF, **origin(url)}
        )
        assert response.status_code == 204, response.text
        assert SESSION_COOKIE in client.cookies
        yield client


async def test_sign_in_sets_a_strict_httponly_cookie_and_never_the_token(tmp_path: Path) -> None:
    async with daemon(tmp_path, "alice") as d, httpx.AsyncClient(base_url=d.url) as anon:
        response = await anon.post(
            "/session", json={"token": TOKEN}, headers={**CSRF, **origin(d.url)}
        )
        assert response.status_code == 204
        cookie = response.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
        assert TOKEN not in cookie
        wrong = await anon.post("/session", json={"token": "x" * len(TOKEN)},
                                headers={**CSRF, **origin(d.url)})  # fmt: skip
        assert wrong.status_code == 401


async def test_a_session_reads_and_writes_with_origin_and_header(tmp_path: Path) -> None:
    async with daemon(tmp_path, "alice") as d, signed_in(d.url) as browser:
        assert (await browser.get("/status")).status_code == 200
        ok = await browser.post("/contacts", json={"code": "MM1:nope"},
                                headers={**CSRF, **origin(d.url)})  # fmt: skip
        assert ok.status_code == 400  # past the guard: the code itself is refused


async def test_wrong_host_is_refused_even_with_the_token(tmp_path: Path) -> None:
    async with daemon(tmp_path, "alice") as d:
        for host in ["evil.example", "evil.example:80", "127.0.0.1:1", "localhost.evil.example"]:
            response = await d.client.get("/status", headers={"host": host})
            assert response.status_code == 421, host
            assert "Host" in response.json()["error"]
        page = await d.client.get("/", headers={"host": "rebound.example"})
        assert page.status_code == 421


async def test_a_foreign_origin_cannot_change_anything(tmp_path: Path) -> None:
    async with daemon(tmp_path, "alice") as d, signed_in(d.url) as browser:
        for bad in ["http://evil.example", "null", d.url + ".evil.example", "https://127.0.0.1"]:
            response = await browser.post("/contacts", json={"code": "MM1:x"},
                                          headers={**CSRF, "origin": bad})  # fmt: skip
            assert response.status_code == 403, bad
        no_origin = await browser.post("/contacts", json={"code": "MM1:x"}, headers=CSRF)
        assert no_origin.status_code == 403
        sign_in = await browser.post("/session", json={"token": TOKEN},
                                     headers={**CSRF, "origin": "http://evil.example"})  # fmt: skip
        assert sign_in.status_code == 403


async def test_a_missing_csrf_header_is_refused(tmp_path: Path) -> None:
    async with daemon(tmp_path, "alice") as d, signed_in(d.url) as browser:
        response = await browser.post("/contacts", json={"code": "MM1:x"}, headers=origin(d.url))
        assert response.status_code == 403
        assert "x-meshmsg-csrf" in response.json()["error"]


async def test_no_cookie_no_token_is_refused(tmp_path: Path) -> None:
    async with daemon(tmp_path, "alice") as d, httpx.AsyncClient(base_url=d.url) as anon:
        response = await anon.get("/status", headers=origin(d.url))
        assert response.status_code == 401
        forged = await anon.get("/status", headers={"cookie": f"{SESSION_COOKIE}=made-up"})
        assert forged.status_code == 401
        # The page itself carries no secret and loads without either.
        page = await anon.get("/")
        assert page.status_code == 200
        assert "meshmsg" in page.text


async def test_every_answer_carries_the_security_headers(tmp_path: Path) -> None:
    async with daemon(tmp_path, "alice") as d, httpx.AsyncClient(base_url=d.url) as anon:
        for path in ["/", "/ui/app.js", "/status", "/ui/missing.js"]:
            response = await anon.get(path)
            assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["referrer-policy"] == "no-referrer"
        assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
        assert (await anon.get("/ui/../api.py")).status_code == 404


async def test_sign_out_ends_the_session(tmp_path: Path) -> None:
    async with daemon(tmp_path, "alice") as d, signed_in(d.url) as browser:
        out = await browser.delete("/session", headers={**CSRF, **origin(d.url)})
        assert out.status_code == 204
        assert (await browser.get("/status")).status_code == 401


async def websocket_handshake(url: str, headers: list[tuple[str, str]]) -> int:
    """Open ``/events`` with these headers; the HTTP status of the answer (101 = accepted)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        ws = WSConnection(ConnectionType.CLIENT)
        await stream.send_all(ws.send(Request(host=f"{host}:{port}", target="/events",
                                              extra_headers=headers)))  # fmt: skip
        with trio.fail_after(10):
            while True:
                ws.receive_data(await stream.receive_some(4096))
                for event in ws.events():
                    if isinstance(event, AcceptConnection):
                        return 101
                    if isinstance(event, RejectConnection):
                        return event.status_code


async def test_websocket_needs_cookie_and_exact_origin(tmp_path: Path) -> None:
    async with daemon(tmp_path, "alice") as d, signed_in(d.url) as browser:
        cookie = f"{SESSION_COOKIE}={browser.cookies[SESSION_COOKIE]}"
        assert await websocket_handshake(d.url, [("cookie", cookie), ("origin", d.url)]) == 101
        foreign = [("cookie", cookie), ("origin", "http://evil.example")]
        assert await websocket_handshake(d.url, foreign) != 101
        assert await websocket_handshake(d.url, [("cookie", cookie)]) != 101
        assert await websocket_handshake(d.url, [("origin", d.url)]) != 101
        bearer = [("authorization", f"Bearer {TOKEN}")]
        assert await websocket_handshake(d.url, bearer) == 101


def test_guard_unit_rules() -> None:
    sessions = BrowserSessions(lifetime_s=10.0, capacity=2)
    guard = Guard(token=b"t0k", sessions=sessions)
    server = ("127.0.0.1", 7000)
    good = {"host": "127.0.0.1:7000", "origin": "http://127.0.0.1:7000", "x-meshmsg-csrf": "1"}
    session = sessions.open(now=0.0)
    guard.check_request("POST", good, server, session, now=1.0)
    guard.check_request("GET", {"host": "localhost:7000"}, server, session, now=1.0)
    with pytest.raises(Refused) as expired:
        guard.check_request("GET", good, server, session, now=11.0)
    assert expired.value.status == 401
    # A third session pushes out the oldest.
    first, second = sessions.open(now=0.0), sessions.open(now=0.0)
    sessions.open(now=0.0)
    assert not sessions.valid(first, now=1.0)
    assert sessions.valid(second, now=1.0)
    token = base64.urlsafe_b64encode(os.urandom(8)).decode()
    assert not guard.token_ok(token)
    assert guard.token_ok("t0k")
