"""Fuzz target for the local API: any request a local client sends to any route (issue #11).

One real node (a fresh data directory, loopback only, no mDNS) runs the API's Starlette
application on a trio loop in a background thread, for the life of the process. Each input picks
a route and method from the application itself (routes added later are fuzzed without editing
this file), fills the route's path parameters, and sends the rest of the input as the body with
the bearer token. The contract: no answer is a server error (5xx), every error is a JSON object
with an ``"error"`` string, every JSON answer parses, and no request takes longer than
``REQUEST_TIMEOUT_S`` (a hang is a finding).

Registered by :mod:`tests.fuzz.targets` importing this module.
"""

from __future__ import annotations

import tempfile
import threading
import urllib.parse
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx
import trio
from starlette.applications import Starlette
from starlette.routing import Route

from meshmsg.app.api import create_app
from meshmsg.app.datadir import Settings, init_data_dir, unlock
from meshmsg.app.mesh import open_mesh_node
from meshmsg.net.storage import DataDir
from tests.fuzz.harness import Cursor, check, sized, target

TOKEN: Final = "fuzz-token-0123456789abcdef"
PASSPHRASE: Final = "fuzz passphrase"
REQUEST_TIMEOUT_S: Final = 5.0  # a request to an idle local node takes milliseconds
START_TIMEOUT_S: Final = 60.0
BASE_URL: Final = "http://127.0.0.1:7000"  # what a local client's Host header says
# Answers that are not JSON by design: the page, its assets, QR codes and attachment bytes.
_NOT_JSON_TYPES: Final = ("image/svg+xml", "text/html", "text/css", "text/javascript",
                          "application/octet-stream")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Endpoint:
    method: str
    path_format: str  # "/contacts/{peer_id}/verify"
    params: tuple[str, ...]

    @property
    def selector(self) -> int:
        """A 16-bit name of the route that stays the same when other routes are added."""
        return zlib.crc32(f"{self.method} {self.path_format}".encode()) & 0xFFFF


def endpoints(app: Starlette) -> list[Endpoint]:
    """Every (method, route) of ``app``, in a stable order (the fuzzer's first byte picks one)."""
    found = [
        Endpoint(method, route.path_format, tuple(route.param_convertors))
        for route in app.routes
        if isinstance(route, Route)
        for method in sorted(route.methods or ())
        if method != "HEAD"
    ]
    return sorted(found, key=lambda e: (e.path_format, e.method))


class ApiWorld:
    """A running node and its API application, served to this thread through trio's portal."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="meshmsg-fuzz-api-")
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._client: httpx.AsyncClient | None = None
        self.endpoints: list[Endpoint] = []
        self._by_selector: dict[int, Endpoint] = {}
        threading.Thread(target=self._run, name="fuzz-api", daemon=True).start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise RuntimeError("the fuzzed API's node did not start")
        if self._failure is not None:
            raise RuntimeError("the fuzzed API's node failed to start") from self._failure

    def _run(self) -> None:
        try:
            trio.run(self._serve)
        except BaseException as exc:  # reported to the constructor, which raises it
            self._failure = exc
            self._ready.set()

    async def _serve(self) -> None:
        data_dir = DataDir(Path(self._tmp.name) / "node")
        init_data_dir(data_dir, passphrase=PASSPHRASE, name="fuzz", kdf_fast=True)
        settings = Settings(name="fuzz", listen_host="127.0.0.1", listen_port=0, api_port=0)
        unlocked = unlock(data_dir, settings, lambda: PASSPHRASE)
        async with open_mesh_node(data_dir, settings, unlocked, mdns=False) as handle:
            app = create_app(handle, TOKEN)
            self.endpoints = endpoints(app)
            self._by_selector = {e.selector: e for e in self.endpoints}
            transport = httpx.ASGITransport(app=app)
            headers = {"authorization": f"Bearer {TOKEN}", "content-type": "application/json"}
            async with httpx.AsyncClient(
                transport=transport, base_url=BASE_URL, headers=headers
            ) as client:
                self._client = client
                self._token = trio.lowlevel.current_trio_token()
                self._ready.set()
                await trio.sleep_forever()

    def pick(self, selector: int) -> Endpoint:
        """The route named by ``selector``, or else one by position (any value picks one)."""
        return self._by_selector.get(selector) or self.endpoints[selector % len(self.endpoints)]

    def request(self, endpoint: Endpoint, path: str, body: bytes) -> httpx.Response:
        client = self._client
        assert client is not None

        async def send() -> httpx.Response:
            with trio.fail_after(REQUEST_TIMEOUT_S):  # TooSlowError: a hang, a finding
                return await client.request(endpoint.method, path, content=body)

        response: httpx.Response = trio.from_thread.run(send, trio_token=self._token)
        return response


_WORLD: ApiWorld | None = None


def world() -> ApiWorld:
    global _WORLD  # one node per process: starting one per input would dominate the run
    if _WORLD is None:
        _WORLD = ApiWorld()
    return _WORLD


def path_of(endpoint: Endpoint, c: Cursor) -> str:
    """The route's path with each parameter taken from the input (any text, URL-quoted)."""
    path = endpoint.path_format
    for name in endpoint.params:
        text = c.sized().decode("utf-8", errors="replace")
        path = path.replace("{" + name + "}", urllib.parse.quote(text, safe="") or "x", 1)
    return path


def check_answer(endpoint: Endpoint, path: str, response: httpx.Response) -> None:
    where = f"{endpoint.method} {path} -> {response.status_code}"
    check(response.status_code < 500, f"{where}: {response.text[:500]}")
    kind = response.headers.get("content-type", "")
    if response.status_code >= 400:
        check(kind.startswith("application/json"), f"{where}: error not JSON ({kind})")
        payload = response.json()
        check(isinstance(payload, dict) and isinstance(payload.get("error"), str), where)
    elif kind.startswith("application/json"):
        response.json()  # raises on a malformed JSON answer: a crash
    else:
        check(kind.startswith(_NOT_JSON_TYPES) or not response.content, f"{where}: {kind}")


def seeds_api() -> Iterator[bytes]:
    """A well-formed and a malformed request for the routes that take a body or a name."""
    known = {(e.method, e.path_format): e.selector for e in world().endpoints}
    samples: list[tuple[str, str, list[bytes], bytes]] = [
        ("POST", "/messages", [], b'{"to": "00000000000000000000000000000000", "body": "hi"}'),
        ("POST", "/messages", [], b'{"to": 5, "body": "\\ud800", "ttl_s": 1e309}'),
        ("POST", "/contacts", [], b'{"code": "MM1:not-a-code", "name": "x"}'),
        ("POST", "/groups", [], b'{"name": "cell", "members": ["alice", ""]}'),
        ("POST", "/groups/{group}/members", [b"cell"], b'{"who": "bob"}'),
        ("DELETE", "/groups/{group}/members/{who}", [b"cell", b"../bob"], b""),
        ("POST", "/contacts/{peer_id}/rename", [b"00" * 16], b'{"name": "new name"}'),
        ("POST", "/messages/read", [], b'{"peer": "alice", "message_ids": [[]]}'),
        ("POST", "/orgs/directory", [], b'[1, 2, {"a": null}]'),
        ("GET", "/conversations/{peer_id}/messages", [b"alice"], b""),
        ("POST", "/attachments", [], b"\xff\xfe not json"),
        ("POST", "/session", [], b'{"token": ""}'),
    ]
    for method, path, params, body in samples:
        yield known[(method, path)].to_bytes(2, "big") + b"".join(sized(p) for p in params) + body


@target("api", seeds=seeds_api, max_len=4096)
def fuzz_api(data: bytes) -> None:
    """Any route, method, path parameters and body from the input, sent with the token to a
    real node's API: never a 5xx, every error a JSON object with an "error" string, every JSON
    answer well formed, no request over REQUEST_TIMEOUT_S."""
    api = world()
    c = Cursor(data)
    endpoint = api.pick(c.u16())
    path = path_of(endpoint, c)
    check_answer(endpoint, path, api.request(endpoint, path, c.rest()))
