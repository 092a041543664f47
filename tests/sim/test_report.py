"""MessageStatsReport definitions, checked against values computed by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from meshmsg.core.events import (
    DropReason,
    EnvelopeAccepted,
    EnvelopeDropped,
    MessageQueued,
    MessageReceived,
)
from meshmsg.errors import LocalProtocolError
from meshmsg.sim.report import Recorder, compute_stats, one_median
from meshmsg.sim.traces import MessageEvent


def test_stats_follow_the_one_definitions() -> None:
    s = compute_stats(
        sim_time=100.0, created=4, started=9, relayed=7, aborted=2, dropped=1, removed=1,
        latencies=[10.0, 30.0, 20.0], hopcounts=[1, 3, 2], buffertimes=[5.0, 15.0],
    )  # fmt: skip
    assert s.delivered == 3
    assert s.delivery_prob == 3 / 4
    assert s.overhead_ratio == (7 - 3) / 3
    assert (s.latency_avg, s.latency_med) == (20.0, 20.0)
    assert (s.hopcount_avg, s.hopcount_med) == (2.0, 2)
    assert (s.buffertime_avg, s.buffertime_med) == (10.0, 15.0)  # the ONE's median: sorted[n//2]
    assert s.response_prob == 0.0
    assert math.isnan(s.rtt_avg)


def test_empty_run_gives_nan_and_zero_like_the_one() -> None:
    s = compute_stats(
        sim_time=1.0, created=0, started=0, relayed=0, aborted=0, dropped=0, removed=0,
        latencies=[], hopcounts=[], buffertimes=[],
    )  # fmt: skip
    text = s.to_text("empty")
    assert "delivery_prob: 0.0000\n" in text
    assert "overhead_ratio: NaN\n" in text
    assert "hopcount_med: 0\n" in text
    assert "latency_med: NaN\n" in text


def test_report_text_has_the_one_field_order() -> None:
    s = compute_stats(
        sim_time=43200.0, created=2, started=1, relayed=1, aborted=0, dropped=0, removed=0,
        latencies=[12.345678], hopcounts=[1], buffertimes=[],
    )  # fmt: skip
    lines = s.to_text("x").splitlines()
    assert lines[:4] == ["Message stats for scenario x", "sim_time: 43200.0000", "created: 2",
                         "started: 1"]  # fmt: skip
    assert [line.split(":")[0] for line in lines[2:]] == [
        "created", "started", "relayed", "aborted", "dropped", "removed", "delivered",
        "delivery_prob", "response_prob", "overhead_ratio", "latency_avg", "latency_med",
        "hopcount_avg", "hopcount_med", "buffertime_avg", "buffertime_med", "rtt_avg", "rtt_med",
    ]  # fmt: skip
    assert "latency_avg: 12.3457" in lines


def test_one_median_is_the_upper_middle_element() -> None:
    assert one_median([4.0, 1.0, 3.0, 2.0]) == 3.0
    assert math.isnan(one_median([]))


def test_recorder_counts_a_two_hop_delivery(tmp_path: Path) -> None:
    rec = Recorder(sample_interval_s=10.0)
    rec.created(0.0, MessageEvent(time=0.0, message_id="M1", source=0, destination=2, size=9),
                b"m1")  # fmt: skip
    rec.node_event(0.0, 0, MessageQueued(message_id=b"m1", peer_id=b"p2", envelope_id=b"e1"), None)
    rec.transfer(5.0, 0, 1, 1, ok=True)
    accepted = EnvelopeAccepted(envelope_id=b"e1", link=1, hops=1, copies=1, for_us=False)
    rec.node_event(5.0, 1, accepted, 0)
    rec.transfer(7.0, 1, 2, 1, ok=True)
    final = EnvelopeAccepted(envelope_id=b"e1", link=2, hops=2, copies=1, for_us=True)
    rec.node_event(7.0, 2, final, 1)
    received = MessageReceived(message_id=b"m1", peer_id=b"p0", sent_at=0.0, received_at=7.0,
                               body="", hops=2)  # fmt: skip
    rec.node_event(7.0, 2, received, None)
    rec.node_event(9.0, 1, EnvelopeDropped(envelope_id=b"e1", reason=DropReason.PURGED), None)
    rec.node_event(20.0, 0, EnvelopeDropped(envelope_id=b"e1", reason=DropReason.EXPIRED), None)
    s = rec.stats(30.0)
    assert (s.created, s.started, s.relayed, s.delivered) == (1, 2, 2, 1)
    assert (s.dropped, s.removed) == (1, 1)
    assert (s.latency_avg, s.hopcount_avg, s.overhead_ratio) == (7.0, 2.0, 1.0)
    assert s.buffertime_avg == ((9.0 - 5.0) + (20.0 - 0.0)) / 2
    assert rec.copies == [(0.0, 0), (10.0, 1), (20.0, 1), (30.0, 0)]  # held just before t
    rec.write_messages(tmp_path / "m.jsonl")
    record = json.loads((tmp_path / "m.jsonl").read_text())
    assert record["hops"] == [{"t": 5.0, "from": 0, "to": 1}, {"t": 7.0, "from": 1, "to": 2}]
    assert record["latency_s"] == 7.0
    assert [d["reason"] for d in record["drops"]] == ["purged", "expired"]


def test_recorder_flags_a_second_delivery_to_the_application() -> None:
    rec = Recorder(sample_interval_s=10.0)
    rec.created(0.0, MessageEvent(time=0.0, message_id="M1", source=0, destination=1, size=9),
                b"m1")  # fmt: skip
    received = MessageReceived(message_id=b"m1", peer_id=b"p0", sent_at=0.0, received_at=1.0,
                               body="", hops=1)  # fmt: skip
    rec.node_event(1.0, 1, received, None)
    with pytest.raises(LocalProtocolError, match="delivered to the application twice"):
        rec.node_event(2.0, 1, received, None)
    assert rec.stats(3.0).delivered == 1


@pytest.mark.parametrize("for_us", [True, False])
def test_recorder_counts_hops_along_the_path_not_the_transfer_field(for_us: bool) -> None:
    """An originator's copy starts at a random hop count (issue #11, finding 4): the recorder
    counts the transfers that brought the copy to its recipient (here 2), whatever the field
    says, whether it is taken for the recipient or opened later from the carried store."""
    rec = Recorder(sample_interval_s=10.0)
    rec.created(0.0, MessageEvent(time=0.0, message_id="M1", source=0, destination=2, size=9),
                b"m1")  # fmt: skip
    rec.node_event(0.0, 0, MessageQueued(message_id=b"m1", peer_id=b"p2", envelope_id=b"e1"), None)
    first = EnvelopeAccepted(envelope_id=b"e1", link=1, hops=4, copies=3, for_us=False)
    rec.node_event(5.0, 1, first, 0)
    final = EnvelopeAccepted(envelope_id=b"e1", link=2, hops=5, copies=1, for_us=for_us)
    rec.node_event(7.0, 2, final, 1)
    received = MessageReceived(message_id=b"m1", peer_id=b"p0", sent_at=0.0, received_at=7.0,
                               body="", hops=5)  # fmt: skip
    rec.node_event(7.0, 2, received, None)
    assert rec.stats(30.0).hopcount_avg == 2.0
