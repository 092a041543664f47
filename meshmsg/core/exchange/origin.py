"""What an originator's own copy shows a relay: nothing a relay's copy would not (issue #11, 4).

A relay that takes a copy sees its hop count and lifetime beside the envelope. Left as they
were, an originator's first transfers said so outright (``hops = 1``, the full TTL); so an own
envelope starts at a random hop count and expires a random little earlier. ONE mode keeps both
exact: the reference runs count hops and TTLs as the ONE does (docs/threat-model.md).
"""

from __future__ import annotations

from meshmsg.core.state import NodeState


def origin_hops(state: NodeState) -> int:
    """The hop count an own envelope starts at: random in 0..``origin_hops_max``, so that a
    relay cannot tell the originator's transfer by ``hops = 1`` (issue #11, finding 4). ONE
    mode starts at 0: the reference runs count hops as the ONE does."""
    if state.store.one_mode:
        return 0
    return state.rng.randbelow(state.config.message.origin_hops_max + 1)


def origin_ttl_cut(state: NodeState, ttl: float) -> float:
    """How much earlier than ``ttl`` an own envelope expires: random whole seconds up to
    ``origin_ttl_jitter_s`` and a tenth of ``ttl``, so its lifetime at the first relay is not
    the full TTL (issue #11, finding 4). None in ONE mode (the ONE's TTL is exact)."""
    bound = int(min(state.config.message.origin_ttl_jitter_s, ttl / 10))
    if state.store.one_mode or bound <= 0:
        return 0.0
    return float(state.rng.randbelow(bound + 1))


def received_hops(carried: int, *, from_sender: bool) -> int:
    """The hop count a recipient records for mail that arrived with ``carried`` hops.

    Own copies start at a random hop count (``origin_hops``), so the carried count overstates
    the path by up to ``origin_hops_max``. The recipient knows one thing for sure: mail taken
    from a link with its sender came directly (1 hop), and mail from anyone else came over at
    least 2. Between those bounds the carried count is what the user sees (docs/protocol/e2e.md).
    """
    if from_sender:
        return 1
    return max(2, carried)
