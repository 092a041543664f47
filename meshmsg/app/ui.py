"""``meshmsg ui``: open the web UI of the running daemon in the default browser.

The daemon's token goes into the URL *fragment* (``#token=...``): a fragment never leaves the
browser, so no server, proxy log or ``Referer`` sees it. The page exchanges it once for an
HttpOnly session cookie and removes it from the address bar (``app/webauth.py``).
"""

from __future__ import annotations

import webbrowser
from typing import Protocol

import click

from meshmsg.app.client import NOT_RUNNING, DaemonClient
from meshmsg.net.storage import DataDir


class _HasDataDir(Protocol):
    data_dir: DataDir


def ui_url(client: DaemonClient) -> str:
    """The address that signs a browser in: the page, with the token in the fragment."""
    return f"{client.base_url}/#token={client.token}"


@click.command("ui")
@click.option("--print", "print_only", is_flag=True, help="Print the URL instead of opening it.")
@click.pass_context
def ui_command(ctx: click.Context, print_only: bool) -> None:
    """Open the web UI of the running daemon (`meshmsg run`) in your browser."""
    root: _HasDataDir = ctx.find_root().obj
    client = DaemonClient.connect(root.data_dir)
    if client is None:
        raise click.ClickException(NOT_RUNNING)
    url = ui_url(client)
    if print_only or not webbrowser.open(url):
        click.echo("Open this address in a browser on this machine (it signs the browser in once):")
        click.echo(url)
        return
    click.echo(f"Opened the web UI at {client.base_url}/ in your browser.")


__all__ = ["ui_command", "ui_url"]
