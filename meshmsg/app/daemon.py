"""The daemon (``meshmsg run``): a running node, its local API, and the process around them.

:func:`run_daemon` holds the data directory's lock, starts the node (:func:`~meshmsg.app.mesh.
open_mesh_node`), serves the local API (``app/api.py``) on 127.0.0.1, writes ``daemon.json``
(the API address and pid) for the CLI, and stops cleanly on SIGINT or SIGTERM.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import trio

from meshmsg.app.api import serve_api
from meshmsg.app.datadir import Settings, Unlocked, daemon_lock, runtime_path
from meshmsg.app.mesh import NodeHandle, open_mesh_node
from meshmsg.app.readmarks import ReadMarks
from meshmsg.errors import StorageError
from meshmsg.net.storage import DataDir

logger = logging.getLogger(__name__)

API_TOKEN_BYTES: Final = 32  # 256 bits, URL-safe base64: unguessable, fits a header


# --- the daemon --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DaemonInfo:
    """What ``meshmsg run`` prints once it is up."""

    api_url: str
    listen: list[str]
    discovery: dict[str, object]
    static_peers: tuple[str, ...]


def write_api_token(data_dir: DataDir) -> str:
    """A fresh bearer token, written 0600 (atomically: a reader sees the old or the new one).

    Raises:
        StorageError: the file could not be written.
    """
    token = secrets.token_urlsafe(API_TOKEN_BYTES)
    _write_private(data_dir.api_token_path, token + "\n")
    return token


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StorageError(f"cannot write {path}: {exc}") from exc


async def run_daemon(
    data_dir: DataDir,
    settings: Settings,
    unlocked: Unlocked,
    *,
    on_ready: Callable[[DaemonInfo], None] = lambda _: None,
    on_event: Callable[[NodeHandle, object], None] | None = None,
    api_host: str = "127.0.0.1",
    stop: trio.Event | None = None,
) -> None:
    """``meshmsg run``: serve the node and the local API until SIGINT/SIGTERM or ``stop``.

    Raises:
        StorageError: another daemon holds the data directory, or the database failed.
        TransportError: a listening socket could not be opened.
    """
    with daemon_lock(data_dir) as held:
        if not held:
            raise StorageError(f"a daemon is already running on {data_dir.root}")
        token = write_api_token(data_dir)
        async with open_mesh_node(data_dir, settings, unlocked) as handle, trio.open_nursery() as n:
            reads = ReadMarks.in_data_dir(
                data_dir.root, unlocked.db_key, handle.config.net.api_max_read_marks
            )
            serve = functools.partial(serve_api, reads=reads)
            api_url = await n.start(serve, handle, token, api_host, settings.api_port)
            _write_private(
                runtime_path(data_dir),
                json.dumps({"api": api_url, "pid": os.getpid(), "listen": handle.address}),
            )
            try:
                if on_event is not None:
                    n.start_soon(_echo_events, handle, on_event)
                on_ready(
                    DaemonInfo(
                        api_url=api_url,
                        listen=handle.runner.addresses,
                        discovery=handle.discovery_state(),
                        static_peers=settings.static_peers,
                    )
                )
                await _wait_for_stop(stop)
            finally:
                runtime_path(data_dir).unlink(missing_ok=True)
                n.cancel_scope.cancel()


async def _echo_events(handle: NodeHandle, on_event: Callable[[NodeHandle, object], None]) -> None:
    with handle.runner.subscribe() as events:
        async for event in events:
            on_event(handle, event)


async def _wait_for_stop(stop: trio.Event | None) -> None:
    async with trio.open_nursery() as nursery:
        if stop is not None:

            async def stopped() -> None:
                await stop.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(stopped)
        if threading.current_thread() is threading.main_thread():
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break
        else:
            await trio.sleep_forever()


__all__ = ["DaemonInfo", "run_daemon", "write_api_token"]
