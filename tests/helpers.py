"""Test helpers shared across the suite: in-memory link pairs and node meshes in virtual time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import nacl.bindings

from meshmsg.config import NodeConfig
from meshmsg.core.link import Link, LinkState, PeerHandshake, PeerVerdict
from meshmsg.core.records import LINK_RECORDS, Hello
from meshmsg.core.wire import Record
from meshmsg.sim.rng import SeededRng


def static_keypair(rng: SeededRng) -> tuple[bytes, bytes]:
    private = rng.randbytes(32)
    return private, nacl.bindings.crypto_scalarmult_base(private)


@dataclass
class LinkPair:
    """Two :class:`Link` objects joined in memory; the test advances virtual time itself.

    ``transcript`` keeps every chunk moved, as (sender, bytes), for tamper and replay tests.
    """

    initiator: Link
    responder: Link
    now: float = 0.0
    received: dict[str, list[Record]] = field(default_factory=lambda: {"i": [], "r": []})
    transcript: list[tuple[str, bytes]] = field(default_factory=list)
    seen_peers: dict[str, PeerHandshake] = field(default_factory=dict)
    statics: dict[str, bytes] = field(default_factory=dict)  # each side's Noise public key

    @classmethod
    def create(
        cls,
        *,
        seed: int = 7,
        config: NodeConfig | None = None,
        responder_config: NodeConfig | None = None,
        verdicts: tuple[PeerVerdict, PeerVerdict] = (PeerVerdict.CONTACT, PeerVerdict.CONTACT),
        records: Sequence[Record] = (),
    ) -> LinkPair:
        config = config or NodeConfig()
        rng = SeededRng(seed, "linkpair")
        i_priv, i_pub = static_keypair(rng)
        r_priv, r_pub = static_keypair(rng)
        hello = [Hello(version=1, capabilities=(1,), agent="test"), *records]
        pair: LinkPair

        def decider(side: str, verdict: PeerVerdict):  # type: ignore[no-untyped-def]
            def decide(peer: PeerHandshake) -> PeerVerdict:
                pair.seen_peers[side] = peer
                return verdict

            return decide

        initiator = Link(
            initiator=True, static_private=i_priv, config=config, rng=rng, now=0.0,
            handshake_records=hello, decide=decider("i", verdicts[0]), registry=LINK_RECORDS,
        )  # fmt: skip
        responder = Link(
            initiator=False, static_private=r_priv, config=responder_config or config, rng=rng,
            now=0.0, handshake_records=hello, decide=decider("r", verdicts[1]),
            registry=LINK_RECORDS,
        )  # fmt: skip
        pair = cls(initiator=initiator, responder=responder, statics={"i": i_pub, "r": r_pub})
        return pair

    def side(self, name: str) -> Link:
        return self.initiator if name == "i" else self.responder

    def transfer(self, max_rounds: int = 20) -> int:
        """Move bytes both ways until quiet; return the number of chunks moved."""
        moved = 0
        for _ in range(max_rounds):
            progress = False
            for src, dst in (("i", "r"), ("r", "i")):
                data = self.side(src).data_to_send(self.now)
                if data and self.side(dst).state is not LinkState.CLOSED:
                    self.transcript.append((src, data))
                    self.received[dst].extend(self.side(dst).receive_data(data, self.now))
                    moved += 1
                    progress = True
            if not progress:
                return moved
        raise AssertionError("links did not go quiet")

    def establish(self) -> LinkPair:
        self.transfer()
        assert self.initiator.state is LinkState.ESTABLISHED
        assert self.responder.state is LinkState.ESTABLISHED
        return self
