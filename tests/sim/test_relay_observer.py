"""The curious relay of ``meshmsg/sim/observer.py`` (issue #11, finding 4): its guesses are
scored against the truth and against random guessing among the peers it met."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from meshmsg.core.events import EnvelopeAccepted, EnvelopeHandedOver
from meshmsg.sim.api import run_scenario
from meshmsg.sim.observer import RelayObserver

ROOT = Path(__file__).resolve().parents[2]
TTL = 86_400.0
SENDER, RELAY, RECIPIENT, OTHER = 1, 2, 3, 4
ENV = b"e" * 16
RECEIPT = b"r" * 16


def accepted(env: bytes, *, hops: int, copies: int, lifetime: float = TTL) -> EnvelopeAccepted:
    return EnvelopeAccepted(
        envelope_id=env, link=7, hops=hops, copies=copies, for_us=False, lifetime_s=lifetime
    )


def observer_that_met(*peers: int) -> RelayObserver:
    observer = RelayObserver(ttl_s=TTL, copies=6)
    for peer in peers:
        observer.contact(RELAY, peer)
    return observer


def truth(env: bytes) -> tuple[int, int] | None:
    return (SENDER, RECIPIENT) if env == ENV else None


def test_an_originator_transfer_and_a_claim_name_both_ends() -> None:
    observer = observer_that_met(SENDER, RECIPIENT, OTHER)
    observer.accepted(10.0, RELAY, accepted(ENV, hops=1, copies=3), SENDER)
    claim = EnvelopeHandedOver(envelope_id=ENV, link=8, copies=3, claimed=True)
    observer.handed_over(20.0, RELAY, claim, RECIPIENT)
    got = observer.guesses(truth)
    assert got.observations == 1
    assert got.sender_random == pytest.approx(1 / 3)
    assert got.recipient_random == pytest.approx(1 / 3)
    assert (got.sender_giver, got.sender_rule, got.sender_rule_precision) == (1.0, 1.0, 1.0)
    assert (got.recipient_rule, got.recipient_claimed, got.recipient_receipt) == (1.0, 1.0, 0.0)


def test_a_relayed_transfer_leaves_the_sender_to_chance() -> None:
    """hops = 2 and one copy: not the originator's transfer, so the rule guesses at random
    (scored as the expectation), while "always the giver" is simply wrong here."""
    observer = observer_that_met(SENDER, RECIPIENT, OTHER, 5)
    observer.accepted(10.0, RELAY, accepted(ENV, hops=2, copies=1), OTHER)
    got = observer.guesses(truth)
    assert got.sender_giver == 0.0
    assert got.sender_rule == pytest.approx(got.sender_random) == pytest.approx(1 / 4)
    assert got.sender_rule_sure == 0.0
    assert math.isnan(got.sender_rule_precision)


def test_a_receipt_coming_back_soon_after_a_hand_over_names_the_recipient() -> None:
    observer = observer_that_met(SENDER, RECIPIENT, OTHER)
    observer.accepted(10.0, RELAY, accepted(ENV, hops=2, copies=1), OTHER)
    quiet = EnvelopeHandedOver(envelope_id=ENV, link=8, copies=1, claimed=False)
    observer.handed_over(20.0, RELAY, quiet, RECIPIENT)
    observer.accepted(22.5, RELAY, accepted(RECEIPT, hops=1, copies=3), RECIPIENT)
    got = observer.guesses(truth)
    assert (got.recipient_claimed, got.recipient_receipt, got.recipient_rule) == (0.0, 1.0, 1.0)


def test_a_receipt_with_a_random_start_hop_count_is_caught_by_the_any_hops_rule() -> None:
    """An own envelope starts at hops 1..4 (origin_hops_max = 3): the hops = 1 rule misses a
    receipt that came with 3, the any-hops rule (a relay that knows the maximum) does not."""
    observer = observer_that_met(SENDER, RECIPIENT, OTHER)
    observer.accepted(10.0, RELAY, accepted(ENV, hops=2, copies=1), OTHER)
    quiet = EnvelopeHandedOver(envelope_id=ENV, link=8, copies=1, claimed=False)
    observer.handed_over(20.0, RELAY, quiet, RECIPIENT)
    observer.accepted(22.5, RELAY, accepted(RECEIPT, hops=3, copies=3), RECIPIENT)
    got = observer.guesses(truth)
    assert got.recipient_receipt == 0.0
    assert (got.recipient_receipt_any, got.recipient_receipt_any_precision) == (1.0, 1.0)


def test_the_receipts_alone_rule_ignores_claims() -> None:
    """A receipt on the claimer's link ~2 s after the hand-over names it even without the claim
    (what hiding the claim alone would leave)."""
    observer = observer_that_met(SENDER, RECIPIENT, OTHER)
    observer.accepted(10.0, RELAY, accepted(ENV, hops=2, copies=1), OTHER)
    claim = EnvelopeHandedOver(envelope_id=ENV, link=8, copies=1, claimed=True)
    observer.handed_over(20.0, RELAY, claim, RECIPIENT)
    observer.accepted(22.5, RELAY, accepted(RECEIPT, hops=2, copies=3), RECIPIENT)
    got = observer.guesses(truth)
    assert (got.recipient_claimed, got.recipient_receipt) == (1.0, 0.0)
    assert (got.recipient_receipt_any, got.recipient_receipt_any_precision) == (1.0, 1.0)


def test_a_fresh_envelope_long_after_the_hand_over_is_not_taken_for_a_receipt() -> None:
    observer = observer_that_met(SENDER, RECIPIENT, OTHER)
    observer.accepted(10.0, RELAY, accepted(ENV, hops=2, copies=1), OTHER)
    quiet = EnvelopeHandedOver(envelope_id=ENV, link=8, copies=1, claimed=False)
    observer.handed_over(20.0, RELAY, quiet, RECIPIENT)
    observer.accepted(20.0 + 3_600, RELAY, accepted(RECEIPT, hops=1, copies=3), RECIPIENT)
    got = observer.guesses(truth)
    assert got.recipient_receipt == 0.0
    assert got.recipient_rule == pytest.approx(1 / 3)


def test_the_ends_themselves_and_protocol_envelopes_are_not_scored() -> None:
    observer = observer_that_met(SENDER, RECIPIENT)
    observer.accepted(10.0, RECIPIENT, accepted(ENV, hops=2, copies=1), OTHER)
    observer.accepted(10.0, RELAY, accepted(RECEIPT, hops=1, copies=3), SENDER)
    assert observer.guesses(truth).observations == 0


@pytest.mark.slow
def test_a_run_writes_the_relay_privacy_report(tmp_path: Path) -> None:
    """A small office run with ``output.relay_privacy``: every relay's guesses are scored."""
    overrides = [
        "nodes.count=6", "run.duration_s=40000", "output.plots=false",
        "output.relay_privacy=true", "traffic.interval_s=[60.0, 120.0]",
    ]  # fmt: skip
    scenario = ROOT / "simulations" / "office" / "office.toml"
    run_scenario(scenario, tmp_path, overrides=overrides)
    lines = (tmp_path / "relay_privacy.txt").read_text(encoding="utf-8").splitlines()
    values = dict(line.split(": ") for line in lines[1:])
    assert float(values["observations"]) > 0
    for name in ("sender_random", "sender_giver", "sender_rule", "recipient_rule"):
        assert 0.0 <= float(values[name]) <= 1.0
    # Spray-and-Wait's originator hands the first copies itself: the giver beats chance.
    assert float(values["sender_giver"]) > float(values["sender_random"])
