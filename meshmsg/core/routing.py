"""Store-and-forward routing policies: Direct, Epidemic, Spray-and-Wait, PRoPHET.

Theory of operation
-------------------
When two nodes meet, the node learns (by set reconciliation and an offer/reply exchange) which of
its envelopes the peer lacks and which of those the peer claims as its own mail (it recognised
the tag). Mail for the peer always goes first, whatever the policy. For every other envelope the
policy answers two questions, with the ONE simulator's semantics so results compare with it:

* :meth:`Router.copies_to_give`: hand this item to this peer, and with how many copies (0: no);
* :meth:`Router.copies_kept`: how many copies we keep after the peer took custody (0: drop it).

==================  ==============================  ===========================================
policy              gives to a non-recipient peer    keeps after a hand-over
==================  ==============================  ===========================================
direct              never (only the recipient)       0 after delivery, else all
epidemic            1 copy of every item             all
spray-and-wait      floor(n/2) if n > 1 (binary),    ceil(n/2) (binary), n - 1 (source mode)
                    1 if n > 1 (source mode)
prophet             1 if P(peer, dest) > P(me, dest) all
==================  ==============================  ===========================================

After a delivery to the recipient, ``drop_after_delivery`` (default on) drops the carrier's copy;
the ONE keeps it, so ONE-mode scenarios turn it off and then Spray-and-Wait halves as the ONE
does (``SprayAndWaitRouter.transferDone``).

PRoPHET needs to know an envelope's destination, which envelopes never show. A sender using
PRoPHET therefore attaches a *route hint* beside the envelope: an 8-byte pseudonym of the
recipient (:func:`route_id`, stable, so anyone who knows the recipient's public key can
recognise it). This is the price of destination-aware routing, stated in docs/threat-model.md;
the default policy needs no hint. Predictabilities are kept per route id with the ONE's 2003
rules (encounter, transitivity, continuous aging) and exchanged at each meeting quantised to
16 bits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from meshmsg.config import RoutingConfig
from meshmsg.core.store import StoreItem
from meshmsg.errors import ConfigError

ROUTE_ID_BYTES = 8
POLICIES = ("direct", "epidemic", "spray-and-wait", "prophet")
_P_SCALE = 65_535  # predictabilities travel as uint16 fixed point


def route_id(identity_public: bytes) -> bytes:
    """The routing pseudonym of an identity (PRoPHET route hints and tables)."""
    return hashlib.blake2b(
        identity_public, digest_size=ROUTE_ID_BYTES, person=b"meshmsg-route-v1"
    ).digest()


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerRouting:
    """What the router knows about the peer at a meeting."""

    route_id: bytes
    predictabilities: dict[bytes, float]


class Router:
    """One node's routing state and decisions. Construct with :func:`make_router`."""

    def __init__(self, config: RoutingConfig, own_route_id: bytes) -> None:
        if config.policy not in POLICIES:
            raise ConfigError(f"unknown routing policy {config.policy!r}; use one of {POLICIES}")
        if config.copies < 1:
            raise ConfigError("routing copies must be at least 1")
        self.config = config
        self.policy = config.policy
        self.own_route_id = own_route_id
        self._preds: dict[bytes, float] = {}
        self._aged_at: float | None = None

    @property
    def needs_route_hint(self) -> bool:
        return self.policy == "prophet"

    def initial_copies(self) -> int:
        return self.config.copies if self.policy == "spray-and-wait" else 1

    # ------------------------------------------------------------ decisions

    def copies_to_give(self, item: StoreItem, peer: PeerRouting, now: float) -> int:
        """Copies to hand to a peer that is not the recipient (0: keep it from them)."""
        match self.policy:
            case "direct":
                return 0
            case "epidemic":
                return 1
            case "spray-and-wait":
                # Copies promised to transfers still in flight are not ours to give again.
                available = item.copies - item.reserved
                if available <= 1:
                    return 0
                # Binary: the receiver gets floor(n/2), as in Spyropoulos et al. and the ONE
                # since 2017 (akeranen/the-one#44); its 1.6.0 release had the halves swapped.
                return available // 2 if self.config.binary else 1
            case _:  # prophet
                if item.route_hint is None:
                    return 0
                mine = self.predictability(item.route_hint, now)
                theirs = peer.predictabilities.get(item.route_hint, 0.0)
                return 1 if theirs > mine else 0

    def copies_kept(self, item: StoreItem, given: int, *, to_recipient: bool) -> int:
        """Copies left with us after the peer took custody of ``given`` copies."""
        if to_recipient and self.config.drop_after_delivery:
            return 0
        if self.policy != "spray-and-wait":
            return item.copies
        if to_recipient:  # the ONE reduces copies on every completed transfer, this one too
            return (item.copies + 1) // 2 if self.config.binary else item.copies - given
        return item.copies - given  # binary: ceil(n/2) when floor(n/2) went

    def order_for(self, items: Iterable[StoreItem], peer: PeerRouting) -> list[StoreItem]:
        """Order candidate items for a peer: PRoPHET best-first (GRTRMax), others FIFO."""
        ordered = sorted(items, key=lambda i: i.seq)
        if self.policy == "prophet":
            preds = peer.predictabilities
            ordered.sort(key=lambda i: -preds.get(i.route_hint or b"", 0.0))
        return ordered

    # ------------------------------------------------------------- PRoPHET

    def predictability(self, destination: bytes, now: float) -> float:
        self._age(now)
        return self._preds.get(destination, 0.0)

    def meet(self, peer: PeerRouting, now: float) -> None:
        """Apply PRoPHET's encounter and transitivity rules for a peer we just met."""
        if self.policy != "prophet":
            return
        self._age(now)
        cfg = self.config
        old = self._preds.get(peer.route_id, 0.0)
        p_ab = old + (1.0 - old) * cfg.prophet_p_init
        self._preds[peer.route_id] = p_ab
        for dest, p_bc in peer.predictabilities.items():
            if dest == self.own_route_id or dest == peer.route_id:
                continue
            p_old = self._preds.get(dest, 0.0)
            self._preds[dest] = p_old + (1.0 - p_old) * p_ab * p_bc * cfg.prophet_beta
        self._bound_table()

    def table(self, now: float) -> list[tuple[bytes, int]]:
        """Our predictabilities, quantised for the wire, in a deterministic order."""
        self._age(now)
        return [(dest, round(p * _P_SCALE)) for dest, p in sorted(self._preds.items())]

    def export_state(self) -> tuple[float | None, dict[bytes, float]]:
        return self._aged_at, dict(self._preds)

    def import_state(self, aged_at: float | None, preds: dict[bytes, float]) -> None:
        self._aged_at, self._preds = aged_at, dict(preds)

    def _age(self, now: float) -> None:
        if self._aged_at is None or now <= self._aged_at:
            self._aged_at = now if self._aged_at is None else self._aged_at
            return
        units = (now - self._aged_at) / self.config.prophet_time_unit_s
        factor = self.config.prophet_gamma**units
        for dest in self._preds:
            self._preds[dest] *= factor
        self._aged_at = now

    def _bound_table(self) -> None:
        excess = len(self._preds) - self.config.max_route_entries
        if excess > 0:
            weakest = sorted(self._preds.items(), key=lambda kv: (kv[1], kv[0]))[:excess]
            for dest, _ in weakest:
                del self._preds[dest]


def peer_routing(route: bytes, entries: Iterable[tuple[bytes, int]]) -> PeerRouting:
    """Build a peer's routing view from the table it sent (quantised values back to floats)."""
    return PeerRouting(route_id=route, predictabilities={dest: q / _P_SCALE for dest, q in entries})


def make_router(config: RoutingConfig, own_route_id: bytes) -> Router:
    return Router(config, own_route_id)
