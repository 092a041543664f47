"""Building small engines for tests."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from meshmsg.sim.engine import Engine, EngineConfig, EngineResult, External
from meshmsg.sim.host import NodeFactory, NodeSetup
from meshmsg.sim.links import LinkParams
from meshmsg.sim.report import Recorder
from meshmsg.sim.traces import ContactEvent

RATE = 250_000.0


def up(t: float, a: int, b: int) -> ContactEvent:
    return ContactEvent(time=t, a=a, b=b, up=True, interface="bt")


def down(t: float, a: int, b: int) -> ContactEvent:
    return ContactEvent(time=t, a=a, b=b, up=False, interface="bt")


def run_engine(
    factory: NodeFactory,
    sources: Sequence[Iterable[External]],
    *,
    nodes: int = 3,
    mode: str = "one",
    duration: float = 10.0,
    params: LinkParams | None = None,
    seed: int = 7,
    strict: bool = True,
) -> tuple[EngineResult, Recorder]:
    config = EngineConfig(
        mode=mode,
        duration_s=duration,
        seed=seed,
        interfaces={"bt": params or LinkParams(rate_bps=RATE)},
        default_interface="bt",
        strict=strict,
    )
    setups = [
        NodeSetup(address=i, name=f"n{i}", buffer_bytes=10**6, ttl_s=3600.0, one_mode=mode == "one")
        for i in range(nodes)
    ]
    recorder = Recorder(sample_interval_s=1.0)
    engine = Engine(config, setups, factory, sources, recorder)
    recorder.on_violation(engine.violation)
    return engine.run(), recorder
