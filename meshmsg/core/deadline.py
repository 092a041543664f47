"""Deadlines set as "a delay from now" that survive the wall clock stepping back (#17 item 5).

Every input carries ``now``, the driver's wall clock; NTP or an operator may step it back by
hours. A deadline stored as an absolute time ``set_at + delay`` then lies ``delay + step`` in
the future: receipts owed before a 12 h step back waited 12 h, on links that stayed up
(``tests/soak/test_clock_step_receipts.py``). A :class:`Deadline` remembers when it was set; an
input whose ``now`` is earlier than that means the clock went back, and the deadline moves back
by the same amount, so what was left of the delay is what is left.

Deadlines that are absolute by nature do not use this: expiries (an envelope's ``expiry_at``
is the sender's wall-clock promise) and key periods (days since 1970; a channel's clock is
monotonic, ``docs/protocol/e2e.md`` §2) rightly wait for the wall clock. A forward step makes
a relative deadline due early, which only means the work is done sooner; so does a step back
for the rare absolute time kept in one (receipts retried at the end of a key period): the work
finds it is not time yet and sets the deadline again.
"""

from __future__ import annotations


class Deadline:
    """An optional due time, shifted back with the clock (see the module docstring)."""

    __slots__ = ("_at", "_set_at")

    def __init__(self) -> None:
        self._at: float | None = None
        self._set_at = 0.0  # the latest ``now`` seen while set: the clock's high-water mark

    @property
    def at(self) -> float | None:
        """When it is due (None: not set); what ``next_deadline`` reports."""
        return self._at

    def follow_clock(self, now: float) -> None:
        """Move the due time back by as much as the clock went back since it was last seen."""
        if self._at is None:
            return
        if now < self._set_at:
            self._at -= self._set_at - now
        self._set_at = now

    def no_later_than(self, at: float, now: float) -> None:
        """Be due at ``at`` unless already due earlier."""
        self.follow_clock(now)
        if self._at is None or at < self._at:
            self._at = at
        self._set_at = now

    def due(self, now: float) -> bool:
        """Whether it is set and its time has come (after following the clock)."""
        self.follow_clock(now)
        return self._at is not None and now >= self._at

    def clear(self) -> None:
        self._at = None
