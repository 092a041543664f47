"""A burst of small records is split into frames the peer accepts (max_records_per_frame)."""

from __future__ import annotations

from meshmsg.core.link import LinkState
from meshmsg.core.records import Hello, Ping
from tests.helpers import LinkPair


def test_many_small_records_at_once_stay_within_the_record_limit_per_frame() -> None:
    """Found with a 100-member group: a burst of ~30-byte records (purge tokens, custody)
    filled one frame with more records than the peer accepts, and the peer closed the link."""
    pair = LinkPair.create().establish()
    limit = pair.initiator._config.wire.max_records_per_frame
    burst = [Hello(version=1, capabilities=(n % 256,), agent=None) for n in range(3 * limit + 7)]
    pair.initiator.send(burst)
    pair.initiator.send([Ping(nonce=n) for n in range(2 * limit)])  # answered by as many Pongs
    pair.transfer()
    assert pair.responder.state is LinkState.ESTABLISHED
    assert pair.initiator.state is LinkState.ESTABLISHED
    hellos = [r for r in pair.received["r"] if isinstance(r, Hello)]
    assert hellos == burst
