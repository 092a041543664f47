"""Link semantics: the ONE mode's transfer steps, busy nodes and aborts; messenger pipelining."""

from __future__ import annotations

import pytest

from meshmsg.sim.links import LinkParams
from tests.sim.fakes import ScriptFactory, Send
from tests.sim.helpers import RATE, down, run_engine, up

HELLO_S = 2 / RATE  # the scripted nodes' 2-byte hello


def test_one_mode_small_envelope_completes_at_the_next_step() -> None:
    factory = ScriptFactory({0: [Send(to=1, data=b"x" * 1000)]})
    _, rec = run_engine(factory, [[up(0.05, 0, 1)]])
    assert factory.node(1).received() == [(0.1, b"x" * 1000)]
    assert (rec.started, rec.aborted) == (1, 0)


def test_one_mode_control_frames_are_not_rounded_to_steps() -> None:
    factory = ScriptFactory()
    run_engine(factory, [[up(0.05, 0, 1)]])
    hello = [t for t, kind, _, d in factory.node(1).log if kind == "rx" and d[:1] == b"h"]
    assert hello == [pytest.approx(0.05 + HELLO_S, abs=1e-12)]


def test_one_mode_transfer_of_exactly_one_step_duration() -> None:
    # 25,000 B at 250,000 B/s take 0.1 s: started just after 0.05, due just after 0.15.
    factory = ScriptFactory({0: [Send(to=1, data=b"y" * 25_000)]})
    run_engine(factory, [[up(0.05, 0, 1)]])
    assert [t for t, _ in factory.node(1).received()] == [pytest.approx(0.2)]


def test_one_mode_each_envelope_in_a_frame_takes_a_step() -> None:
    factory = ScriptFactory({0: [Send(to=1, data=b"z" * 2000, envelopes=2)]})
    _, rec = run_engine(factory, [[up(0.05, 0, 1)]])
    assert [t for t, _ in factory.node(1).received()] == [pytest.approx(0.2)]
    assert rec.started == 2


def test_one_mode_busy_receiver_makes_the_other_sender_wait() -> None:
    factory = ScriptFactory({0: [Send(to=1, data=b"a" * 1000)], 2: [Send(to=1, data=b"c" * 1000)]})
    run_engine(factory, [[up(0.05, 0, 1), up(0.05, 1, 2)]])
    got = {data[:1]: t for t, data in factory.node(1).received()}
    assert got == {b"a": pytest.approx(0.1), b"c": pytest.approx(0.2)}


def test_one_mode_a_sending_node_cannot_receive_at_the_same_time() -> None:
    factory = ScriptFactory({0: [Send(to=1, data=b"a" * 1000)], 2: [Send(to=0, data=b"c" * 1000)]})
    run_engine(factory, [[up(0.05, 0, 1), up(0.05, 0, 2)]])
    assert [t for t, _ in factory.node(1).received()] == [pytest.approx(0.1)]
    assert [t for t, _ in factory.node(0).received()] == [pytest.approx(0.2)]


def test_one_mode_a_declared_transfer_is_announced_when_it_can_start() -> None:
    # Node 1 receives from 0 until 0.1; node 2's announcement of 600 kB (a control frame)
    # waits for that, arrives as its transfer starts, and the transfer takes 2.4 s of link.
    announce = Send(to=1, data=b"n", envelopes=0, one_bytes=600_000)
    declared = Send(to=1, data=b"d" * 100, one_bytes=600_000)
    factory = ScriptFactory({0: [Send(to=1, data=b"a" * 1000)], 2: [announce, declared]})
    _, rec = run_engine(factory, [[up(0.05, 0, 1), up(0.05, 1, 2)]])
    got = {data[:1]: t for t, data in factory.node(1).received()}
    assert got[b"a"] == pytest.approx(0.1)
    assert got[b"n"] == pytest.approx(0.1 + 1 / RATE)
    assert got[b"d"] == pytest.approx(2.5)  # 0.1 + 1 B + 2.4 s: under a byte left at 2.5
    assert (rec.started, rec.aborted) == (2, 0)


def test_one_mode_contact_down_aborts_the_transfer() -> None:
    factory = ScriptFactory({0: [Send(to=1, data=b"y" * 25_000)]})
    _, rec = run_engine(factory, [[up(0.05, 0, 1), down(0.12, 0, 1)]])
    assert factory.node(1).received() == []
    assert (rec.started, rec.aborted) == (1, 1)
    lost = [(t, kind) for t, kind, _, _ in factory.node(1).log if kind == "lost"]
    assert lost == [(0.12, "lost")]


def test_one_mode_transfer_due_at_the_down_instant_is_finalised_first() -> None:
    # The ONE processes the "down" event and then updates the hosts, which finalise transfers
    # whose time has passed: the message arrives although the contact ended at that instant.
    factory = ScriptFactory({0: [Send(to=1, data=b"x" * 1000)]})
    _, rec = run_engine(factory, [[up(0.05, 0, 1), down(0.1, 0, 1)]])
    assert [t for t, _ in factory.node(1).received()] == [0.1]
    assert rec.aborted == 0


def test_one_mode_external_event_is_an_update_instant() -> None:
    # An unrelated contact at 0.07 is an update: the 1 kB transfer (due 0.054) completes there.
    factory = ScriptFactory({0: [Send(to=1, data=b"x" * 1000)]})
    run_engine(factory, [[up(0.05, 0, 1), up(0.07, 1, 2)]])
    assert [t for t, _ in factory.node(1).received()] == [0.07]


def test_messenger_mode_pipelines_frames_with_latency() -> None:
    params = LinkParams(rate_bps=RATE, latency_s=0.01)
    factory = ScriptFactory({0: [Send(to=1, data=b"a" * 1000), Send(to=1, data=b"b" * 1000)]})
    _, rec = run_engine(factory, [[up(0.05, 0, 1)]], mode="messenger", params=params)
    hello_back = 0.05 + HELLO_S + 0.01  # node 0 hears node 1's hello, then sends both
    times = [t for t, _ in factory.node(1).received()]
    assert times == [
        pytest.approx(hello_back + 0.004 + 0.01),
        pytest.approx(hello_back + 0.008 + 0.01),
    ]
    assert rec.started == 2


def test_messenger_mode_loss_delays_and_keeps_order() -> None:
    params = LinkParams(rate_bps=RATE, loss_prob=0.999, retransmit_s=0.5)
    factory = ScriptFactory({0: [Send(to=1, data=b"a" * 1000), Send(to=1, data=b"b" * 1000)]})
    run_engine(factory, [[up(0.05, 0, 1)]], mode="messenger", params=params)
    got = factory.node(1).received()
    assert [d[:1] for _, d in got] == [b"a", b"b"]
    assert got[0][0] == pytest.approx(0.05 + 2 * 0.5 + HELLO_S + 0.004)  # hellos, frame held


def test_messenger_mode_corruption_flips_one_byte() -> None:
    params = LinkParams(rate_bps=RATE, corrupt_prob=0.999)
    factory = ScriptFactory()
    run_engine(factory, [[up(0.05, 0, 1)]], mode="messenger", params=params)
    frames = [d for _, kind, _, d in factory.node(1).log if kind == "rx"]
    sent = b"h\x00"  # node 0's hello
    assert len(frames) == 1
    assert sum(x != y for x, y in zip(frames[0], sent, strict=True)) == 1


def test_messenger_mode_contact_down_drops_frames_in_flight() -> None:
    params = LinkParams(rate_bps=RATE, latency_s=1.0)
    factory = ScriptFactory({0: [Send(to=1, data=b"a" * 1000)]})
    _, rec = run_engine(factory, [[up(0.05, 0, 1), down(1.5, 0, 1)]], mode="messenger",
                        params=params)  # fmt: skip
    assert factory.node(1).received() == []
    assert rec.aborted == 1
