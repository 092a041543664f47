"""Warnings a person must see on the status page and in `meshmsg status`: one line each.

Each names what is wrong, what it costs and what fixes it:

* **clock faults** (issue 11 #2): a channel whose clock runs ahead of ours (one wrong reading
  moved it; the next meeting with the contact repairs it), and a contact whose clock differs
  from ours at a meeting (mail between the two cannot be read until a clock is corrected);
* **no trusted network**: mDNS is off, only static peers are dialled;
* **disk nearly full**: a commit that fails for lack of space stops the node from accepting
  anything, so it is said before it happens;
* **relay store nearly full**: new mail for others is refused or evicts older mail.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from meshmsg.core.clockcheck import channels_ahead
from meshmsg.core.events import ClockSkewDetected
from meshmsg.core.node import Node
from meshmsg.net.runner import NodeRunner

DISK_LOW_BYTES: Final = 256 * 1024 * 1024  # below this, a burst of relayed mail can fill it
STORE_FULL_SHARE: Final = 0.9  # eviction of mail carried for others starts at the cap
DAY_S: Final = 86_400.0


class ClockWatch:
    """Keeps the latest :class:`ClockSkewDetected` per contact from the node's events."""

    def __init__(self) -> None:
        self.latest: dict[bytes, ClockSkewDetected] = {}

    async def watch(self, runner: NodeRunner[Node]) -> None:
        """Follow the runner's events until cancelled (re-subscribes after a burst drop)."""
        while True:
            with runner.subscribe() as events:
                async for event in events:
                    if isinstance(event, ClockSkewDetected):
                        self.latest[event.peer_id] = event


def _span(seconds: float) -> str:
    days = abs(seconds) / DAY_S
    return f"about {days:.0f} days" if days >= 1.5 else f"about {abs(seconds) / 3600:.0f} hours"


def clock_warnings(node: Node, now: float, skews: Mapping[bytes, ClockSkewDetected]) -> list[str]:
    """Lines for channels ahead of ``now`` and for contacts whose clock differs from ours."""
    lines: list[str] = []
    names = {c.peer_id: c.name for c in node.contacts}
    ahead = channels_ahead(node.contacts, now, node.config.message)
    if ahead:
        who = ", ".join(sorted(names.get(p, p.hex()[:8]) for p, _ in ahead))
        most = max(seconds for _, seconds in ahead)
        lines.append(
            f"This device's clock was ahead by {_span(most)} for {who}: mail with them waits "
            "until the next meeting with each, which repairs it."
        )
    for peer_id, skew in sorted(skews.items()):
        if not skew.repaired and peer_id in names:
            lines.append(
                f"{names[peer_id]}'s clock differs from ours by {_span(skew.skew_s)}: messages "
                "between you cannot be read until the wrong clock is corrected."
            )
    return lines


def host_warnings(
    data_root: Path, discovery: Mapping[str, object], relay: Mapping[str, int]
) -> list[str]:
    """Lines about this machine: discovery, disk space, the relay store's fill."""
    lines: list[str] = []
    if not discovery.get("enabled"):
        reason = discovery.get("reason") or "no trusted network is configured"
        lines.append(f"mDNS discovery is off ({reason}): only static peers are dialled.")
    free = shutil.disk_usage(data_root).free
    if free < DISK_LOW_BYTES:
        lines.append(
            f"The disk holding {data_root} has only {free // (1024 * 1024)} MiB free: "
            "free space before the node can no longer store mail."
        )
    if relay["max_bytes"] and relay["bytes"] >= STORE_FULL_SHARE * relay["max_bytes"]:
        lines.append("The relay store is over 90 % full: older mail carried for others is evicted.")
    return lines


__all__ = ["ClockWatch", "clock_warnings", "host_warnings"]
