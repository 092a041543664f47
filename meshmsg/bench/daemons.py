"""Real daemons measured as users run them: durable API submits (#17.4), end to end (#17.3).

``measure_api_submits`` starts ``meshmsg run`` as a child process on loopback, with one contact
that it met once (they paired) and that is offline since (so every message is sealed while
the period's budget lasts, stored, and stays queued: the cost measured is taking the message
durably, not delivering it), and posts ``n`` messages through the local HTTP API from
``concurrency`` tasks at once, each request carrying ``batch`` messages (1: ``POST /messages``
with one object, the way a chat client sends; more: a list, the way a bot or a gateway sends).
A message counts once its request was answered, and the daemon answers only after the commit
that holds it, so the figure is acknowledged-and-committed messages per second.

The limit, measured in the same run on the same disk: bare SQLite (WAL, ``synchronous=FULL``)
inserting 1 KiB rows in transactions of as many rows as the daemon put in each of its commits
(messages per commit, read from its statistics): what the disk and SQLite allow at that
grouping, with none of our code. ``paired=False`` measures a contact never met instead, whose
mail is sealed for first contact (issue #12: an ephemeral X25519 key per message), so its rate
is bound by public-key work, not by the disk.

``measure_daemon_messages`` (#17.3) runs two daemons that are contacts and counts messages
from the first send at one to the last arrival at the other, next to the durable-submit limit
measured in the same run.

Run: ``python -m meshmsg.bench.daemons submits --dir DIR -n 20000 -c 64 -b 100`` or
``python -m meshmsg.bench.daemons e2e --dir DIR -n 900``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import trio

from meshmsg.bench.runner import Condition, Measure
from meshmsg.bench.units import per_s, plain

PASSPHRASE = "bench passphrase"
START_S = 60.0  # interpreter start-up and unlock on a loaded 2-core machine
ROW_BYTES = 256  # about a stored message record (an 80-character text, encrypted)
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_CONFIG = '[network]\nlisten = "127.0.0.1:0"\n[api]\nport = 0\n'


@dataclass(frozen=True, slots=True)
class Api:
    """A running daemon's local API (the bench drives the CLI and the API as a user would; it
    imports nothing of ``meshmsg.app``, which imports the bench)."""

    base_url: str
    token: str
    pid: int

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}

    def request(self, method: str, path: str, body: object = None) -> Any:
        # verify=False: plain HTTP on loopback; a verifying client loads the CA bundle, 54 ms
        # of CPU per request here (ssl.create_default_context, median of 15), on the cores the
        # daemon shares.
        response = httpx.request(
            method, self.base_url + path, json=body, headers=self.headers, timeout=60,
            verify=False,
        )  # fmt: skip
        response.raise_for_status()
        return response.json()


def _env() -> dict[str, str]:
    return dict(os.environ, MESHMSG_PASSPHRASE=PASSPHRASE, MESHMSG_KDF_FAST="1")


def meshmsg(root: Path, *args: str) -> str:
    """``meshmsg --data-dir ROOT ARGS`` as a process; its output."""
    cmd = [sys.executable, "-m", "meshmsg", "--data-dir", str(root), *args]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=START_S)
    if done.returncode != 0:
        raise RuntimeError(f"meshmsg {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def make_node(root: Path, name: str) -> Path:
    """An initialised data directory listening on loopback with the API on a free port."""
    home = root / name
    meshmsg(home, "init", "--name", name)
    (home / "config.toml").write_text(f'name = "{name}"\n{_CONFIG}')
    return home


def contact_code(home: Path) -> str:
    out = meshmsg(home, "id", "--no-qr")
    return next(line.strip() for line in out.splitlines() if line.strip().startswith("MM1:"))


def _die_with_parent() -> None:
    """In the daemon before exec: SIGTERM it when this process dies. The suite kills a measure
    that overruns its deadline; without this its daemons would outlive it."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@contextlib.contextmanager
def running_daemon(home: Path) -> Iterator[Api]:
    """``meshmsg run`` on ``home`` as a child process, stopped with SIGTERM at the end."""
    cmd = [sys.executable, "-m", "meshmsg", "--data-dir", str(home), "run"]
    linux = sys.platform == "linux"
    with (home.parent / f"{home.name}.log").open("wb") as log:
        proc = subprocess.Popen(
            cmd, env=_env(), stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent if linux else None,  # called before any thread starts
        )  # fmt: skip
        try:
            yield _wait_up(home, proc)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_up(home: Path, proc: subprocess.Popen[bytes]) -> Api:
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"daemon on {home} exited {proc.returncode}")
        with contextlib.suppress(OSError, ValueError, KeyError, httpx.HTTPError):
            runtime = json.loads((home / "daemon.json").read_text())
            token = (home / "api-token").read_text().strip()
            api = Api(runtime["api"], token, proc.pid)
            if api.request("GET", "/status"):
                return api
        time.sleep(0.1)
    raise RuntimeError(f"daemon on {home} did not answer within {START_S:.0f} s")


async def _post_all(client: Api, to: str, n: int, concurrency: int, batch: int) -> float:
    """Post ``n`` messages; return the seconds from the first request to the last answer.

    Each of the ``concurrency`` workers has a client of its own with one connection: one
    shared pool of 64 connections spent most of this process's time choosing a connection
    (httpcore's ``_assign_requests_to_connections`` walks the pool per request; py-spy,
    2026-12-08), so the figure was the client's, about 100 requests/s.
    """
    bodies = [f"message {i:07d} " + "x" * 64 for i in range(n)]
    requests = [bodies[i : i + batch] for i in range(0, n, batch)]
    failures: list[str] = []

    async def worker(mine: list[list[str]]) -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(
            base_url=client.base_url, headers=client.headers, timeout=120, limits=limits,
            verify=False,
        ) as http:  # fmt: skip
            for texts in mine:
                if batch == 1:
                    payload: Any = {"to": to, "body": texts[0]}
                else:
                    payload = [{"to": to, "body": t} for t in texts]
                try:
                    response = await http.post("/messages", json=payload)
                except httpx.HTTPError as exc:  # one line for the bench table, not a group
                    failures.append(f"{type(exc).__name__}: {exc}")
                    return
                if response.status_code != 201:
                    failures.append(f"send answered {response.status_code}: {response.text}")
                    return

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for k in range(concurrency):
            nursery.start_soon(worker, requests[k::concurrency])
    if failures:
        raise RuntimeError(f"{len(failures)} of {concurrency} senders failed: {failures[0]}")
    return time.perf_counter() - start


def bare_sqlite_rate(db: Path, rows: int, per_commit: int) -> float:
    """Rows/s committed by plain SQLite (WAL, synchronous=FULL) in groups of ``per_commit``."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("CREATE TABLE t (id BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID")
        values = [(os.urandom(16), os.urandom(ROW_BYTES)) for _ in range(rows)]
        start = time.perf_counter()
        for i in range(0, rows, per_commit):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT INTO t VALUES (?, ?)", values[i : i + per_commit])
            conn.execute("COMMIT")
        return rows / (time.perf_counter() - start)
    finally:
        conn.close()


def _never_met(root: Path) -> tuple[Path, Path]:
    return make_node(root, "sender"), make_node(root, "friend")


def _met_once(root: Path) -> tuple[Path, Path]:
    """Two data directories that are contacts of each other, the sender dialling the friend."""
    sender, friend = make_node(root, "sender"), make_node(root, "friend")
    port = _free_port()
    (friend / "config.toml").write_text(
        f'name = "friend"\n[network]\nlisten = "127.0.0.1:{port}"\n[api]\nport = 0\n'
    )
    (sender / "config.toml").write_text(
        f'name = "sender"\n{_CONFIG}'.replace(
            "[api]", f'static_peers = ["127.0.0.1:{port}"]\n[api]'
        )
    )
    meshmsg(sender, "contact", "add", contact_code(friend), "--verified")
    meshmsg(friend, "contact", "add", contact_code(sender), "--verified")
    return sender, friend


def measure_api_submits(
    path: str | os.PathLike[str],
    n: int,
    *,
    concurrency: int = 64,
    batch: int = 1,
    paired: bool = True,
) -> dict[str, float]:
    """Durable submits/s through a daemon's API and the same-run bare SQLite limit.

    Returns:
        ``api_submits_per_s``, ``messages_per_commit``, ``bare_sqlite_rows_per_s`` (the
        limit), ``ratio``, and the parameters ``n``, ``concurrency``, ``batch``.
    """
    with tempfile.TemporaryDirectory(dir=path, prefix="bench-daemons-") as tmp:
        root = Path(tmp)
        sender, friend = _met_once(root) if paired else _never_met(root)
        with running_daemon(sender) as client:
            if paired:
                with running_daemon(friend):  # they meet and pair, then the friend is gone
                    _poll("paired", lambda: bool(client.request("GET", "/contacts")[0]["paired"]),
                          START_S)  # fmt: skip
            else:
                client.request(
                    "POST", "/contacts", {"code": contact_code(friend), "verified": True}
                )
            to = client.request("GET", "/contacts")[0]["peer_id"]
            before = client.request("GET", "/status")["links"]["commits"]
            try:
                elapsed = trio.run(_post_all, client, to, n, concurrency, batch)
            except RuntimeError as exc:
                log = (root / "sender.log").read_text(errors="replace").strip().splitlines()
                raise RuntimeError(f"{exc}; daemon log ends: {log[-3:]}") from exc
            commits = client.request("GET", "/status")["links"]["commits"] - before
        per_commit = max(1, round(n / max(commits, 1)))
        limit = bare_sqlite_rate(root / "bare.db", n, per_commit)
    rate = n / elapsed
    return {
        "api_submits_per_s": rate,
        "messages_per_commit": n / max(commits, 1),
        "bare_sqlite_rows_per_s": limit,
        "ratio": rate / limit,
        "n": float(n),
        "concurrency": float(concurrency),
        "batch": float(batch),
    }


# --- end-to-end messages between two daemons (#17.3) ----------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _poll(what: str, check: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(0.02)


def measure_daemon_messages(path: str | os.PathLike[str], n: int) -> dict[str, float]:
    """Messages/s from one daemon to another on loopback, from the first send to the last
    arrival, next to the same-run durable-submit limit (bare SQLite at 1,000 rows per commit).

    Two ``meshmsg run`` children, contacts of each other (added offline, as users do), the
    sender dialling the other as a static peer; once they are paired, ``n`` messages are posted
    to the sender in lists of up to 1,000 and the recipient's conversation is polled until all
    arrived. ``n`` stays under the default ``max_messages_per_period`` (1,000 a day).
    """
    with tempfile.TemporaryDirectory(dir=path, prefix="bench-daemons-") as tmp:
        root = Path(tmp)
        alice, bobby = _met_once(root)
        with running_daemon(bobby) as b, running_daemon(alice) as a:
            to = a.request("GET", "/contacts")[0]["peer_id"]
            _poll("paired", lambda: bool(a.request("GET", "/contacts")[0]["paired"]), START_S)
            bodies = [{"to": to, "body": f"message {i:07d} " + "x" * 64} for i in range(n)]
            start = time.perf_counter()
            for i in range(0, n, 1_000):
                a.request("POST", "/messages", bodies[i : i + 1_000])

            def arrived() -> bool:
                received = sum(int(c["received"]) for c in b.request("GET", "/conversations"))
                return received >= n

            _poll("all messages arrived", arrived, 120.0)
            elapsed = time.perf_counter() - start
        limit = bare_sqlite_rate(root / "bare.db", n, min(n, 1_000))
    rate = n / elapsed
    return {"e2e_msgs_per_s": rate, "limit_rows_per_s": limit, "ratio": rate / limit,
            "n": float(n)}  # fmt: skip


# --- rows of `meshmsg bench` (registered in rows.MEASURES) --------------------------------


def api_submits(ctx: Any) -> dict[str, float]:
    """Batched API submits (8 requests at once, 1,000 messages each) with the same-run bare
    SQLite limit, and single-message requests (64 at once) as a detail."""
    batched = measure_api_submits(
        ctx.workdir, ctx.size(30_000, 4_000, 2_000), concurrency=8, batch=1_000
    )
    single = measure_api_submits(ctx.workdir, ctx.size(1_000, 100, 100), concurrency=64)
    never_met = measure_api_submits(
        ctx.workdir, ctx.size(4_000, 2_000, 1_000), concurrency=8, batch=1_000, paired=False
    )
    return {**batched, "single_submits_per_s": single["api_submits_per_s"],
            "single_messages_per_commit": single["messages_per_commit"],
            "never_met_submits_per_s": never_met["api_submits_per_s"]}  # fmt: skip


def measures() -> tuple[Measure, ...]:
    """This module's rows, registered in ``bench/rows.py`` MEASURES."""
    return (
        Measure(
            name="api-submits",
            title="durable submits/s through a daemon's API, 8 requests of 1,000 messages at "
            "once (answered after the commit)",
            figure="api_submits_per_s", unit="submits/s", fmt=per_s,
            run=api_submits, limit="bare_sqlite_rows_per_s",
            limit_title="bare SQLite WAL inserts of 256 B rows, same rows per commit, same disk",
            goal=(Condition("api_submits_per_s", ">=", 20_000),), goal_text="≥ 20,000/s",
            details=(("messages_per_commit", "messages per commit:", plain),
                     ("single_submits_per_s", "one message per request, 64 at once:", per_s),
                     ("single_messages_per_commit", "messages per commit:", plain),
                     ("never_met_submits_per_s", "to a contact never met (first-contact "
                      "sealing, public-key work per message):", per_s)),
            repeats=3, quick_repeats=1, timeout_s=240.0, quick_timeout_s=90.0,
            warmup=False,  # every sample starts fresh daemon processes: nothing to warm
        ),
        Measure(
            name="e2e-daemons",
            title="end-to-end messages/s between two daemons on loopback (API in, delivered "
            "out), 900 messages",
            figure="e2e_msgs_per_s", unit="messages/s", fmt=per_s,
            run=daemon_messages, limit="limit_rows_per_s",
            limit_title="durable-submit limit: bare SQLite WAL, 256 B rows, 1,000 per commit",
            repeats=3, quick_repeats=1, timeout_s=240.0, quick_timeout_s=150.0,
            warmup=False,
        ),
    )  # fmt: skip


def daemon_messages(ctx: Any) -> dict[str, float]:
    """End-to-end messages/s between two daemons with the same-run durable-submit limit."""
    return measure_daemon_messages(ctx.workdir, ctx.size(900, 300, 100))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    submits = sub.add_parser("submits", help="durable submits through the API")
    submits.add_argument("--dir", default=".", help="a directory on the disk to measure")
    submits.add_argument("-n", type=int, default=5_000)
    submits.add_argument("-c", "--concurrency", type=int, default=64)
    submits.add_argument("-b", "--batch", type=int, default=1)
    submits.add_argument("--never-met", action="store_true", help="to a contact never met")
    e2e = sub.add_parser("e2e", help="end-to-end messages between two daemons")
    e2e.add_argument("--dir", default=".", help="a directory on the disk to measure")
    e2e.add_argument("-n", type=int, default=900)
    args = parser.parse_args(argv)
    if args.what == "e2e":
        print(json.dumps(measure_daemon_messages(args.dir, args.n), indent=2))
        return
    result = measure_api_submits(
        args.dir, args.n, concurrency=args.concurrency, batch=args.batch, paired=not args.never_met
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
