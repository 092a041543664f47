"""The CLI's side of the local API: find the daemon, call it, follow its live events.

The daemon writes ``daemon.json`` (its API address) and ``api-token`` into the data directory
and holds ``daemon.lock`` while it runs; :meth:`DaemonClient.connect` reads them. HTTP goes
through httpx; the live event stream is a small WebSocket client on wsproto (hypercorn's own
WebSocket library) over a trio TCP stream. Failures become ``MeshError`` subclasses with one
clear line: the CLI prints it as is.
"""

from __future__ import annotations

import json
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

from meshmsg.app.datadir import daemon_running, read_text_file, runtime_path
from meshmsg.errors import InvalidMessage, LocalProtocolError, TransportError
from meshmsg.net.storage import DataDir

NOT_RUNNING: Final = "daemon not running: start it with `meshmsg run`"
_SMALL_FILE: Final = 4_096  # daemon.json and api-token are far smaller
_READ_BYTES: Final = 65_536


class DaemonClient:
    """Synchronous calls to a running daemon (one short-lived CLI command)."""

    def __init__(self, base_url: str, token: str, *, timeout_s: float = 15.0) -> None:
        self.base_url = base_url
        self.token = token
        self._timeout_s = timeout_s

    @classmethod
    def connect(cls, data_dir: DataDir) -> DaemonClient | None:
        """The client of the daemon running on ``data_dir``, or None when none runs.

        Raises:
            TransportError: a daemon holds the directory but its files cannot be read.
        """
        if not daemon_running(data_dir):
            return None
        try:
            runtime = json.loads(read_text_file(runtime_path(data_dir), _SMALL_FILE))
            token = read_text_file(data_dir.api_token_path, _SMALL_FILE).strip()
        except (OSError, ValueError) as exc:
            # Between taking the lock and writing daemon.json the daemon is still starting.
            raise TransportError(
                f"the daemon is starting or its files are unreadable: {exc}"
            ) from exc
        if not isinstance(runtime, dict) or not isinstance(runtime.get("api"), str):
            raise TransportError("daemon.json is damaged: restart the daemon")
        return cls(runtime["api"], token)

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One API call; returns the decoded JSON (None for 204).

        Raises:
            TransportError: the daemon cannot be reached, refused the token, or failed.
            InvalidMessage: the message is too big (413).
            LocalProtocolError: the daemon refused the request (the message says why).
        """
        try:
            with httpx.Client(base_url=self.base_url, timeout=self._timeout_s) as client:
                response = client.request(method, path, json=body, headers=self.headers)
        except httpx.ConnectError as exc:
            raise TransportError(NOT_RUNNING) from exc
        except httpx.HTTPError as exc:
            raise TransportError(f"daemon API call {method} {path} failed: {exc}") from exc
        return _decode(response)

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("POST", path, body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    async def apost(self, path: str, body: dict[str, Any]) -> Any:
        """:meth:`post` from trio code (``meshmsg chat``)."""
        try:
            async with httpx.AsyncClient(base_url=self.base_url, timeout=self._timeout_s) as client:
                response = await client.post(path, json=body, headers=self.headers)
        except httpx.ConnectError as exc:
            raise TransportError(NOT_RUNNING) from exc
        except httpx.HTTPError as exc:
            raise TransportError(f"daemon API call POST {path} failed: {exc}") from exc
        return _decode(response)


def _decode(response: httpx.Response) -> Any:
    if response.status_code == 204:
        return None
    try:
        data = response.json()
    except ValueError as exc:
        raise TransportError(f"daemon answered {response.status_code} without JSON") from exc
    if response.status_code < 400:
        return data
    message = data.get("error") if isinstance(data, dict) else None
    message = str(message or f"HTTP {response.status_code}")
    if response.status_code == 401:
        raise TransportError(f"the daemon refused our token: {message}")
    if response.status_code == 413:
        raise InvalidMessage(message)
    if response.status_code < 500:
        raise LocalProtocolError(message)
    raise TransportError(f"daemon error: {message}")


class EventStream:
    """The daemon's live events (``WS /events``), one JSON object at a time.

    ``async with EventStream(client) as events: event = await events.next()``; ``next`` returns
    None once the daemon closes the stream.
    """

    def __init__(self, client: DaemonClient) -> None:
        url = urlsplit(client.base_url)
        if url.hostname is None or url.port is None:
            raise TransportError(f"bad API address {client.base_url!r}")
        self._host = url.hostname
        self._port = url.port
        self._token = client.token
        self._ws = WSConnection(ConnectionType.CLIENT)
        self._stream: trio.SocketStream | None = None
        self._pending: list[dict[str, Any]] = []
        self._parts: list[str] = []
        self._closed = False

    async def __aenter__(self) -> EventStream:
        try:
            self._stream = await trio.open_tcp_stream(self._host, self._port)
        except OSError as exc:
            raise TransportError(NOT_RUNNING) from exc
        request = Request(
            host=f"{self._host}:{self._port}",
            target="/events",
            extra_headers=[(b"authorization", f"Bearer {self._token}".encode())],
        )
        await self._send(self._ws.send(request))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._stream is not None:
            await self._stream.aclose()
            self._stream = None

    async def next(self) -> dict[str, Any] | None:
        """The next event, or None when the stream ended.

        Raises:
            TransportError: the daemon refused the stream (bad token, too many clients).
        """
        while not self._pending and not self._closed:
            await self._pump()
        return self._pending.pop(0) if self._pending else None

    async def _send(self, data: bytes) -> None:
        assert self._stream is not None
        try:
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise TransportError("the daemon closed the event stream") from exc

    async def _pump(self) -> None:
        assert self._stream is not None
        try:
            data = await self._stream.receive_some(_READ_BYTES)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise TransportError("the daemon closed the event stream") from exc
        if not data:
            self._closed = True
            return
        self._ws.receive_data(data)
        for event in self._ws.events():
            await self._handle(event)

    async def _handle(self, event: object) -> None:
        match event:
            case AcceptConnection():
                pass
            case RejectConnection(status_code=code):
                self._closed = True
                raise TransportError(f"the daemon refused the event stream (HTTP {code})")
            case TextMessage(data=text, message_finished=finished):
                self._parts.append(text)
                if finished:
                    payload = json.loads("".join(self._parts))
                    self._parts.clear()
                    if isinstance(payload, dict):
                        self._pending.append(payload)
            case Ping():
                await self._send(self._ws.send(event.response()))
            case CloseConnection():
                self._closed = True
                await self._send(self._ws.send(event.response()))
            case _:
                pass


__all__ = ["NOT_RUNNING", "DaemonClient", "EventStream"]
