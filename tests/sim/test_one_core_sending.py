"""The real core in ONE mode sends declared-size transfers as the ONE's routers do.

``meshmsg/core/exchange/onesend.py``: one transfer at a time, a busy peer refuses (it says so:
``OneModeBusy``) and the sender tries another, mail for a peer goes before spraying on both
sides of a meeting (docs/simulator.md, "How the ONE's routers send"). Each test is a small
scripted trace where the rule changes what is sent; each failed before the rule.
"""

from __future__ import annotations

import pytest

from meshmsg.sim.corehost import CoreFactory
from meshmsg.sim.engine import Engine, EngineConfig
from meshmsg.sim.host import NodeSetup
from meshmsg.sim.links import LinkParams
from meshmsg.sim.report import Recorder
from meshmsg.sim.traces import ContactEvent, MessageEvent
from tests.sim.helpers import RATE, down, up


def _setup(address: int, routing: dict[str, object]) -> NodeSetup:
    return NodeSetup(
        address=address, name=f"n{address}", buffer_bytes=10**7, ttl_s=3600.0, one_mode=True,
        routing=routing,
    )  # fmt: skip


def _run(
    contacts: list[ContactEvent], created: list[MessageEvent], *, copies: int = 6,
    seed: int = 7, duration: float = 60.0,
) -> Recorder:  # fmt: skip
    routing = {"policy": "spray-and-wait", "copies": copies, "binary": True}
    setups = [_setup(a, routing) for a in range(10)]
    config = EngineConfig(
        mode="one", duration_s=duration, seed=seed, interfaces={"bt": LinkParams(rate_bps=RATE)},
        default_interface="bt",
    )  # fmt: skip
    recorder = Recorder(sample_interval_s=1.0)
    engine = Engine(config, setups, CoreFactory(), [contacts, created], recorder, pre_pair=True)
    recorder.on_violation(engine.violation)
    assert engine.run().violations == ()
    return recorder


def test_a_busy_peer_refuses_so_the_only_spare_copy_goes_to_a_free_one() -> None:
    # 2 sends M2 (2 MB, 8 s) to 1 from t=5. 0 holds M0 with 2 copies (one to give) and meets
    # 1 at 10.0, then 3 at 10.1. The ONE's 0 finds 1 busy (TRY_LATER_BUSY) and sprays to 3 at
    # once. The core promised the copy to 1, whose Reply came first, and let the transfer wait
    # for 1's slot: 3 was declined.
    contacts = [up(5.0, 1, 2), up(10.0, 0, 1), up(10.1, 0, 3),
                down(30.0, 1, 2), down(30.0, 0, 1), down(30.0, 0, 3)]  # fmt: skip
    created = [
        MessageEvent(time=1.0, message_id="M0", source=0, destination=9, size=300_000),
        MessageEvent(time=4.0, message_id="M2", source=2, destination=1, size=2_000_000),
    ]
    recorder = _run(contacts, created, copies=2)
    assert recorder.records["M2"].delivered_at is not None
    assert [(f, to) for _, f, to in recorder.records["M0"].hops] == [(0, 3)]
    (t, _, _) = recorder.records["M0"].hops[0]
    assert t < 13.0  # not after 1's transfer (13 s at the earliest)


@pytest.mark.parametrize("seed", range(1, 7))
def test_mail_for_a_peer_goes_before_spraying_to_it_on_both_sides(seed: int) -> None:
    # 0 holds M0 for 9 (copies to spray), 1 holds M1 for 0; their contact fits one 300 kB
    # transfer (1.2 s) after the handshake. The ONE sends M1: 0 asks 1 for its mail before it
    # sprays. The core sprayed M0 as soon as 1's Reply asked for it.
    contacts = [up(10.0, 0, 1), down(11.6, 0, 1)]
    created = [
        MessageEvent(time=1.0, message_id="M0", source=0, destination=9, size=300_000),
        MessageEvent(time=1.0, message_id="M1", source=1, destination=0, size=300_000),
    ]
    recorder = _run(contacts, created, seed=seed, duration=20.0)
    assert recorder.records["M1"].delivered_at is not None
    assert recorder.records["M0"].hops == []


@pytest.mark.parametrize("seed", range(1, 4))
def test_two_nodes_picking_one_free_peer_at_once_the_second_is_refused(seed: int) -> None:
    # 0 and 2 each hold a copy to spray and meet the free 1 at the same instant; 0 also meets
    # 3, and 2 meets 4. The ONE updates hosts one after another: the second to try 1 is refused
    # (TRY_LATER_BUSY) and sprays to its other peer at once. The core let both send to 1 (the
    # busy notice travels while both have sent) and the second transfer waited for 1's slot
    # (M2 reached 1 at 12.6 s). Now a node asks first (OneModeAsk) and 1 answers "busy".
    contacts = [up(10.0, 0, 1), up(10.0, 2, 1), up(10.0, 0, 3), up(10.0, 2, 4),
                down(30.0, 0, 1), down(30.0, 2, 1), down(30.0, 0, 3), down(30.0, 2, 4)]  # fmt: skip
    created = [
        MessageEvent(time=1.0, message_id="M0", source=0, destination=9, size=300_000),
        MessageEvent(time=1.0, message_id="M2", source=2, destination=9, size=300_000),
    ]
    recorder = _run(contacts, created, copies=2, seed=seed, duration=40.0)
    hops = [recorder.records[m].hops for m in ("M0", "M2")]
    assert all(len(h) == 1 and h[0][0] < 12.0 for h in hops)  # neither waited for a slot
    assert sorted(h[0][2] for h in hops) != [1, 1]
