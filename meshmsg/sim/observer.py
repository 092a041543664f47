"""An honest-but-curious relay: what one node learns of who wrote to whom (issue #11, finding 4).

Every node of a run is such a relay. It follows the protocol, and logs what the protocol shows
it: for each envelope copy it carried (taken by a transfer, not addressed to it), the peer it
came from with the transfer's hop count, copy budget and remaining lifetime; the peers it later
handed the copy to, and whether that peer had claimed it as its own mail (``Reply.for_me``);
envelopes that came back from those peers soon after (a delivered receipt looks like that).
At the end it guesses, for each copy, the sender and the recipient, and the report sets its
accuracy beside guessing at random among the peers the relay met. Ground truth (which message
an envelope is) comes from the run's recorder; the relay never sees it.

Guesses (each a rule a real relay could run):

* **sender, giver**: always the peer the copy came from. Spray-and-Wait's originator hands the
  first copies itself, so this is right for a large share of copies whatever the fields say;
  no field can hide it, only routing can.
* **sender, rule**: the giver if the transfer looked like an originator's — ``hops == 1`` and
  the copy budget of binary Spray-and-Wait's first split (``L // 2``), and, if
  ``lifetime_slack_s`` is given, a lifetime within that of the TTL (off by default: mail often
  waits at its sender before the first meeting, so a full TTL is rare and adds nothing to the
  two fields) — else a random peer met. Its *precision* (right among the copies it was sure
  of) is what hiding the originator's fields lowers.
* **sender, hops = 1**: the share of copies that came with ``hops == 1``, and how often their
  giver was the sender (the hop count alone, whatever the copies).
* **recipient, rule**: a peer that claimed the copy (one of them at random when several did:
  decoys claim too, ``core/exchange/claims.py``; scored as its expectation,
  ``recipient_claim_precision`` among the copies claimed); else a peer the copy went to that
  sent us a fresh envelope (``hops == 1``) within ``receipt_window_s`` (a receipt); else a
  random peer met.
* **recipient, receipts alone**: what the receipt timing tells by itself, claims ignored (as
  if the recipient took its mail the way a relay takes custody, which finding 4 also asks
  for). A relay that knows ``message.origin_hops_max`` knows a fresh envelope starts at hops
  1 to ``origin_hops_max + 1`` (4), so it takes any envelope of at most that many hops that
  came from a peer within ``receipt_window_s`` after it handed the copy there for a receipt:
  ``recipient_receipt_any`` of the observations, right ``recipient_receipt_any_precision`` of
  those. (With claims seen, the rule above uses receipts only where no claim was seen, where
  they are mostly the peer's own mail.)

Random guessing among the peers met is scored as its expectation (``1/|met|`` when the truth
is among them), so the figures need no random numbers and are exact.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field

from meshmsg.core.events import EnvelopeAccepted, EnvelopeHandedOver

RECEIPT_WINDOW_S = 10.0  # a receipt follows a delivery after receipt_delay_s (2 s) + a round trip
FRESH_HOPS_MAX = 4  # an own envelope's first transfer shows hops 1..origin_hops_max + 1


@dataclass(slots=True)
class _Carried:
    """One copy a relay carried, and what it saw of it."""

    giver: int
    hops: int
    copies: int
    lifetime_s: float | None
    handed_to: list[tuple[float, int]] = field(default_factory=list)  # (when, peer)
    claimed_by: list[int] = field(default_factory=list)  # every peer that claimed it


@dataclass(frozen=True, slots=True, kw_only=True)
class Guesses:
    """Accuracies over every (relay, carried copy) observation of traffic messages."""

    observations: int
    sender_random: float
    sender_giver: float
    sender_rule: float
    sender_rule_sure: float  # share of observations the rule was sure of
    sender_rule_precision: float  # right among those (nan if none)
    sender_hops1_sure: float  # share with hops == 1 (whatever the copies)
    sender_hops1_precision: float  # the giver was the sender among those
    recipient_random: float
    recipient_rule: float
    recipient_claimed: float  # share of observations where some peer claimed it
    recipient_claim_precision: float  # a claimant (one at random) was the recipient (nan if none)
    recipient_receipt: float  # share guessed by a receipt coming back (no claim seen)
    recipient_rule_precision: float
    recipient_receipt_any: float  # share with an envelope of <= 4 hops soon after (no claims)
    recipient_receipt_any_precision: float  # right among those (nan if none)

    def as_dict(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in self.__slots__}

    def to_text(self, scenario: str) -> str:
        rows = [f"Relay observer for scenario {scenario}"]
        rows += [f"{name}: {value:.4f}" for name, value in self.as_dict().items()]
        return "\n".join(rows) + "\n"


class RelayObserver:
    """Logs what each relay sees (fed by :class:`meshmsg.sim.report.Recorder`)."""

    def __init__(
        self,
        *,
        ttl_s: float,
        copies: int,
        receipt_window_s: float = RECEIPT_WINDOW_S,
        lifetime_slack_s: float | None = None,
        fresh_hops_max: int = FRESH_HOPS_MAX,
    ) -> None:
        self._ttl_s = ttl_s
        self._first_split = copies // 2
        self._receipt_window_s = receipt_window_s
        self._lifetime_slack_s = lifetime_slack_s
        self._met: dict[int, set[int]] = {}
        self._carried: dict[tuple[int, bytes], _Carried] = {}
        self._fresh: dict[tuple[int, int], list[float]] = {}  # (relay, peer) -> arrivals
        self._fresh_hops_max = fresh_hops_max
        self._young: dict[tuple[int, int], list[float]] = {}  # the same, hops <= fresh_hops_max

    def contact(self, a: int, b: int) -> None:
        self._met.setdefault(a, set()).add(b)
        self._met.setdefault(b, set()).add(a)

    def accepted(self, now: float, relay: int, event: EnvelopeAccepted, peer: int | None) -> None:
        if peer is None or event.for_us:
            return
        if event.hops == 1:
            self._fresh.setdefault((relay, peer), []).append(now)
        if event.hops <= self._fresh_hops_max:
            self._young.setdefault((relay, peer), []).append(now)
        key = (relay, event.envelope_id)
        if key not in self._carried:
            self._carried[key] = _Carried(
                giver=peer, hops=event.hops, copies=event.copies, lifetime_s=event.lifetime_s
            )

    def handed_over(
        self, now: float, relay: int, event: EnvelopeHandedOver, peer: int | None
    ) -> None:
        carried = self._carried.get((relay, event.envelope_id))
        if carried is None or peer is None:
            return  # our own mail, or a link the engine no longer knows
        carried.handed_to.append((now, peer))
        if event.claimed and peer not in carried.claimed_by:
            carried.claimed_by.append(peer)

    # ---------------------------------------------------------------------------- guesses

    def guesses(self, truth: Callable[[bytes], tuple[int, int] | None]) -> Guesses:
        """Score every observation of a traffic message (``truth``: envelope id -> (sender,
        recipient), None for receipts and other protocol envelopes)."""
        score = _Score()
        for (relay, env_id), carried in self._carried.items():
            known = truth(env_id)
            if known is None:
                continue
            sender, recipient = known
            if relay in (sender, recipient):
                continue
            met = self._met.get(relay, set())
            self._score_sender(score, carried, sender, met)
            self._score_recipient(score, relay, carried, recipient, met)
        return score.result()

    def _looks_original(self, carried: _Carried) -> bool:
        slack, lifetime = self._lifetime_slack_s, carried.lifetime_s
        full = slack is None or lifetime is None or lifetime >= self._ttl_s - slack
        return carried.hops == 1 and carried.copies == self._first_split and full

    def _score_sender(self, score: _Score, carried: _Carried, sender: int, met: set[int]) -> None:
        chance = _chance(sender, met)
        score.n += 1
        score.sender_random += chance
        score.sender_giver += carried.giver == sender
        if carried.hops == 1:
            score.hops1 += 1
            score.hops1_right += carried.giver == sender
        if self._looks_original(carried):
            score.sender_sure += 1
            score.sender_sure_right += carried.giver == sender
            score.sender_rule += carried.giver == sender
        else:
            score.sender_rule += chance

    def _score_recipient(
        self, score: _Score, relay: int, carried: _Carried, recipient: int, met: set[int]
    ) -> None:
        chance = _chance(recipient, met)
        score.recipient_random += chance
        young = self._receipt_from(relay, carried, self._young)
        if young is not None:
            score.receipt_any += 1
            score.receipt_any_right += young == recipient
        claimants = carried.claimed_by
        if claimants:  # decoys claim too (core/exchange/claims.py): one of them, at random
            right = 1.0 / len(claimants) if recipient in claimants else 0.0
            score.claimed += 1
            score.claimed_right += right
            score.recipient_sure += 1
            score.recipient_sure_right += right
            score.recipient_rule += right
            return
        guess = self._receipt_from(relay, carried, self._fresh)
        score.receipt += guess is not None
        if guess is None:
            score.recipient_rule += chance
            return
        score.recipient_sure += 1
        score.recipient_sure_right += guess == recipient
        score.recipient_rule += guess == recipient

    def _receipt_from(
        self, relay: int, carried: _Carried, fresh: dict[tuple[int, int], list[float]]
    ) -> int | None:
        """The first peer we handed the copy to that sent a fresh envelope soon after."""
        for when, peer in carried.handed_to:
            arrivals = fresh.get((relay, peer), [])  # in time order
            first = bisect.bisect_left(arrivals, when)
            if first < len(arrivals) and arrivals[first] <= when + self._receipt_window_s:
                return peer
        return None


@dataclass(slots=True)
class _Score:
    n: int = 0
    sender_random: float = 0.0
    sender_giver: int = 0
    sender_rule: float = 0.0
    sender_sure: int = 0
    sender_sure_right: int = 0
    hops1: int = 0
    hops1_right: int = 0
    recipient_random: float = 0.0
    recipient_rule: float = 0.0
    recipient_sure: int = 0
    recipient_sure_right: float = 0.0
    claimed: int = 0
    claimed_right: float = 0.0
    receipt: int = 0
    receipt_any: int = 0
    receipt_any_right: int = 0

    def result(self) -> Guesses:
        n = max(1, self.n)
        return Guesses(
            observations=self.n,
            sender_random=self.sender_random / n,
            sender_giver=self.sender_giver / n,
            sender_rule=self.sender_rule / n,
            sender_rule_sure=self.sender_sure / n,
            sender_rule_precision=_ratio(self.sender_sure_right, self.sender_sure),
            sender_hops1_sure=self.hops1 / n,
            sender_hops1_precision=_ratio(self.hops1_right, self.hops1),
            recipient_random=self.recipient_random / n,
            recipient_rule=self.recipient_rule / n,
            recipient_claimed=self.claimed / n,
            recipient_claim_precision=_ratio(self.claimed_right, self.claimed),
            recipient_receipt=self.receipt / n,
            recipient_rule_precision=_ratio(self.recipient_sure_right, self.recipient_sure),
            recipient_receipt_any=self.receipt_any / n,
            recipient_receipt_any_precision=_ratio(self.receipt_any_right, self.receipt_any),
        )


def _chance(truth: int, met: set[int]) -> float:
    """Expected accuracy of a uniform guess among ``met``."""
    return 1.0 / len(met) if truth in met else 0.0


def _ratio(right: float, total: int) -> float:
    return right / total if total else float("nan")
