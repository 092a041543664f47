"""The ONE's clock rules that ONE mode reproduces: its accumulated update steps and its TTL.

Kept apart from the engine because they are facts about the ONE (``World.update``,
``Message.getTtl``), each tested on its own (``tests/sim/test_engine.py``,
``tests/sim/test_one_ttl.py``).
"""

from __future__ import annotations

from bisect import bisect_left


class StepGrid:
    """The ONE's update steps: ``t[k+1] = t[k] + step`` in floating point, from 0."""

    __slots__ = ("_step", "_times")

    def __init__(self, step: float) -> None:
        self._step = step
        self._times = [0.0]

    def at_or_after(self, t: float) -> float:
        times = self._times
        while times[-1] < t:
            times.append(times[-1] + self._step)
        return times[bisect_left(times, t)]

    def after(self, t: float) -> float:
        s = self.at_or_after(t)
        return s if s > t else self.at_or_after(s + self._step / 2)


def one_ttl_s(created: float, ttl_s: float) -> float:
    """The lifetime a message really has in the ONE, as a TTL from ``created``.

    The ONE keeps TTLs in whole minutes and drops a message once less than one whole minute
    remains (``Message.getTtl`` rounds down), so a message lives at most ``ttl_s - 60`` seconds
    plus the wait for the router's next TTL check (every 60 s, at a phase that depends on each
    node's activity). The core expires envelopes exactly, so ONE mode gives it the lower bound;
    on the reference trace no delivery falls into the 60 s the ONE may add (docs/simulator.md).
    """
    del created  # the bound does not depend on when the message was made
    return max(ttl_s - 60.0, 1.0)
