"""Reference agents with the ONE's router rules, a supported API for researchers.

They speak the simulator's driver interface (:class:`~meshmsg.sim.host.SimulatedNode`) but not
the protocol: tiny nodes that follow the ONE's ``DirectDeliveryRouter``, ``EpidemicRouter`` and
binary ``SprayAndWaitRouter`` rule by rule. Over ONE mode they reproduce the ONE's figures on
its reference trace, so they separate what the engine and link model do from what the real core
does (docs/simulator.md). A scenario selects one with
``agent = "meshmsg.sim.agents:DirectFactory"`` (or ``RelayFactory``, whose policy comes from
``[routing] policy``: ``epidemic`` or ``spray-and-wait`` with ``copies``).

Agents address each other by :func:`ident` and read the engine's message body
(``"<message id>:<padding>"``, ``size`` bytes): the id before the colon names the message.
"""

from meshmsg.sim.agents.common import TTL_CHECK_INTERVAL_S, address_of, ident
from meshmsg.sim.agents.direct import DirectFactory, DirectNode
from meshmsg.sim.agents.relay import RelayFactory, RelayNode

__all__ = [
    "TTL_CHECK_INTERVAL_S",
    "DirectFactory",
    "DirectNode",
    "RelayFactory",
    "RelayNode",
    "address_of",
    "ident",
]
