"""Files in the CLI: ``send WHO --file PATH`` (WHO a contact or a group), the attachments
under ``inbox WHO``, ``save``.

Uploads stream the file to the daemon's API (``POST /attachments``; it is never read whole),
with a progress bar; ``save`` streams the decrypted file back into a ``.part`` file and
renames it when complete, so an interrupted save never leaves a half file under its name.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Final
from urllib.parse import quote

import click
import httpx
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from meshmsg.app.cli_common import Ctx, console, pass_ctx
from meshmsg.app.client import NOT_RUNNING, DaemonClient
from meshmsg.app.safe_text import escape_controls
from meshmsg.app.views import JSON
from meshmsg.errors import LocalProtocolError, TransportError

_PIECE: Final = 1 << 16  # bytes per read while uploading or saving
_TIMEOUT_S: Final = 60.0  # sealing a large file happens before the upload's answer


def send_files(
    client: DaemonClient, target: JSON, paths: tuple[Path, ...], body: str, ttl: float | None
) -> JSON:
    """Upload each file (streamed, with a progress bar), then send them in one message."""
    ids = [upload(client, path)["attachment_id"] for path in paths]
    payload: dict[str, object] = {"to": target["peer_id"], "body": body, "attachments": ids}
    if ttl is not None:
        payload["ttl_s"] = ttl
    sent: JSON = client.post("/messages/files", payload)
    return sent


def send_files_to_group(
    client: DaemonClient, group_path: str, paths: tuple[Path, ...], body: str, ttl: float | None
) -> JSON:
    """Upload each file, then send them in one group message: one encrypted copy of each file
    for every member (``POST /groups/{group}/messages/files``)."""
    ids = [upload(client, path)["attachment_id"] for path in paths]
    payload: dict[str, object] = {"body": body, "attachments": ids}
    if ttl is not None:
        payload["ttl_s"] = ttl
    sent: JSON = client.post(f"{group_path}/messages/files", payload)
    return sent


def upload(client: DaemonClient, path: Path) -> JSON:
    size = path.stat().st_size
    with _progress() as bar, open(path, "rb") as source:
        task = bar.add_task(escape_controls(path.name), total=size)

        def body() -> Iterator[bytes]:
            while piece := source.read(_PIECE):
                bar.advance(task, len(piece))
                yield piece

        response = _call(client, "POST", f"/attachments?name={quote(path.name)}", body())
    uploaded: JSON = response
    return uploaded


def attachments_table(
    client: DaemonClient, peer_id: str | None, *, message_ids: set[str] | None = None
) -> Table | None:
    """The attachments exchanged with one contact (or of these group messages), or None."""
    if peer_id is not None:
        rows = client.get(f"/attachments?peer={peer_id}")
    else:
        rows = [a for a in client.get("/attachments") if a["message_id"] in (message_ids or ())]
    if not rows:
        return None
    table = Table(title="Attachments", title_justify="left")
    for column in ("id", "name", "size", "", "progress"):
        table.add_column(column)
    for row in rows:
        done = f"{100 * row['held'] // row['chunks']} %" if row["chunks"] else "-"
        state = {"sent": "sent", "received": "complete" if row["complete"] else "fetching",
                 "pending": "not fetched: meshmsg save"}[row["role"]]  # fmt: skip
        table.add_row(
            row["attachment_id"][:16], escape_controls(row["name"] or "?"),
            _size(row["size"] or 0), state, done,
        )  # fmt: skip
    return table


@click.command()
@click.argument("attachment_id")
@click.option(
    "--out", type=click.Path(path_type=Path), default=None,
    help="File or directory to save to (default: the current directory, its own name).",
)  # fmt: skip
@pass_ctx
def save(ctx: Ctx, attachment_id: str, out: Path | None) -> None:
    """Save a received attachment (its id, or the start of it, from `meshmsg inbox WHO`)."""
    client = ctx.require_daemon()
    item = _find(client, attachment_id)
    if item["role"] == "pending":
        client.post(f"/attachments/{item['attachment_id']}/fetch", {})
        console.print("Fetching it at the next meeting with the sender or a relay holding it.")
        return
    if not item["complete"]:
        console.print(f"Not complete yet: {item['held']} of {item['chunks']} chunks.")
        return
    target = (out or Path.cwd()) / item["name"] if out is None or out.is_dir() else out
    if target.exists():
        raise LocalProtocolError(f"{target} exists: choose another --out")
    _download(client, item, target)
    console.print(f"Saved {escape_controls(item['name'])} to {escape_controls(str(target))}.")


def _find(client: DaemonClient, prefix: str) -> JSON:
    prefix = prefix.lower()
    found = [a for a in client.get("/attachments") if a["attachment_id"].startswith(prefix)]
    if len(prefix) < 8 or len(found) != 1:
        raise LocalProtocolError(f"no single attachment starts with {prefix!r} (8+ hex digits)")
    match: JSON = found[0]
    return match


def _download(client: DaemonClient, item: JSON, target: Path) -> None:
    partial = target.with_name(target.name + ".part")
    path = f"/attachments/{item['attachment_id']}/content"
    try:
        with (
            httpx.Client(base_url=client.base_url, timeout=_TIMEOUT_S) as http,
            http.stream("GET", path, headers=client.headers) as response,
            open(partial, "xb") as sink,
            _progress() as bar,
        ):
            if response.status_code != 200:
                raise LocalProtocolError(f"the daemon refused: {response.read().decode()}")
            task = bar.add_task(escape_controls(item["name"]), total=item["size"])
            for piece in response.iter_bytes(_PIECE):
                sink.write(piece)
                bar.advance(task, len(piece))
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(partial, target)
    except httpx.HTTPError as exc:
        raise TransportError(f"download failed: {exc}") from exc
    finally:
        partial.unlink(missing_ok=True)


def _call(client: DaemonClient, method: str, path: str, content: Iterator[bytes]) -> JSON:
    try:
        with httpx.Client(base_url=client.base_url, timeout=_TIMEOUT_S) as http:
            response = http.request(method, path, content=content, headers=client.headers)
    except httpx.ConnectError as exc:
        raise TransportError(NOT_RUNNING) from exc
    except httpx.HTTPError as exc:
        raise TransportError(f"upload failed: {exc}") from exc
    if response.status_code >= 400:
        raise LocalProtocolError(response.json().get("error", response.text))
    result: JSON = response.json()
    return result


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        console=console, transient=True,
    )  # fmt: skip


def _size(size: int) -> str:
    if size < 1024:
        return f"{size:,} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:.1f} {unit}"
