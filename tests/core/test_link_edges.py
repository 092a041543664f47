"""Link edges: a peer's Close with a reason code we do not know still closes (as a local
error), a Rekey that is not the last record of its frame is a protocol violation, a record
larger than one frame is refused and nothing is queued, and a closed link ignores timers
and a second close."""

from __future__ import annotations

import dataclasses

import pytest

from meshmsg.config import LinkConfig, NodeConfig
from meshmsg.core.link import LinkState
from meshmsg.core.records import Close, Ping, Rekey
from meshmsg.errors import CloseReason, LocalProtocolError, RemoteProtocolError
from tests.helpers import LinkPair


def test_a_close_with_an_unknown_reason_code_closes_as_a_local_error() -> None:
    pair = LinkPair.create().establish()
    pair.initiator.send([Close(reason=250, detail="from a newer version")])
    pair.transfer()
    assert pair.responder.state is LinkState.CLOSED
    assert pair.responder.closed_by_peer
    assert pair.responder.close_reason is CloseReason.LOCAL_ERROR


def test_a_rekey_that_is_not_the_last_record_of_its_frame_is_refused() -> None:
    pair = LinkPair.create().establish()
    pair.initiator.send([Rekey(), Ping(nonce=7)])
    data = pair.initiator.data_to_send(pair.now)
    with pytest.raises(RemoteProtocolError, match="Rekey must be the last record"):
        pair.responder.receive_data(data, pair.now)
    assert pair.responder.state is LinkState.CLOSED


def test_a_record_larger_than_one_frame_is_refused_and_nothing_is_queued() -> None:
    config = NodeConfig(link=dataclasses.replace(LinkConfig(), max_batch_bytes=64))
    pair = LinkPair.create(config=config).establish()
    big = Close(reason=0, detail="d" * 100)
    with pytest.raises(LocalProtocolError, match="exceeds one frame"):
        pair.initiator.send([big])
    assert not pair.initiator.has_pending
    pair.initiator.send([Ping(nonce=1)])  # the link still works
    data = pair.initiator.data_to_send(pair.now)
    assert data
    assert pair.responder.receive_data(data, pair.now) == []  # a Ping is the link's own
    assert pair.responder.state is LinkState.ESTABLISHED


def test_a_closed_link_ignores_timers_and_a_second_close() -> None:
    pair = LinkPair.create().establish()
    pair.initiator.close(CloseReason.NORMAL, "bye")
    pair.initiator.close(CloseReason.TIMEOUT, "again")  # nothing changes
    assert pair.initiator.close_reason is CloseReason.NORMAL
    pair.initiator.handle_timer(pair.now + 10_000)  # no deadline fires on a closed link
    assert pair.initiator.state is LinkState.CLOSED
