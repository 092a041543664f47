"""Commands a workload gives one node at a time: the application's calls that are not a
pairwise ``send_message`` (creating a group, writing to it).

A :class:`NodeCommand` is an external event like a message creation: the engine hands the node
to ``run`` at ``time`` (then drains the node's effects and events as after any input), or
calls ``skipped`` if the node is down. The workload that made the command keeps what it learns
(``meshmsg.sim.grouptraffic``); the engine knows nothing of groups.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from meshmsg.errors import GroupError, InvalidAttachment, InvalidMessage, LocalProtocolError

REFUSALS = (LocalProtocolError, InvalidMessage, InvalidAttachment, GroupError)
"""What a node raises when the application asks for something it refuses: reported by the
command's ``skipped`` with the node's words, as a message the source could not create."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeCommand:
    time: float
    address: int
    label: str  # for the event log: what the command does
    run: Callable[[object, float], None]  # (node, now); may raise one of REFUSALS
    skipped: Callable[[float, str], None]  # (now, why): the node was down or refused
