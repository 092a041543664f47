"""Fault events the engine understands: node crash and restart, network partitions.

Schedules are built by :mod:`meshmsg.sim.traffic` (from the scenario) or by tests; the engine
consumes them like any other external event stream (time-ordered iterables).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeCrash:
    """The node at ``address`` loses power: links drop, uncommitted state is gone."""

    time: float
    address: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeRestart:
    """The node at ``address`` boots again from its committed records."""

    time: float
    address: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Partition:
    """From ``time`` on, nodes in different groups cannot link (``groups=()`` heals).

    Nodes listed in no group form one further group together.
    """

    time: float
    groups: tuple[tuple[int, ...], ...]
