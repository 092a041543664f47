"""Read positions of the web UI (app/readmarks.py): durable, forward only, bounded, sealed."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from meshmsg.app.readmarks import FILE_NAME, ReadMarks, subkey
from meshmsg.app.views import conversations_view
from meshmsg.core.conversations import StoredMessage

KEY = bytes(range(32))
PEER = "ab" * 16
GROUP = "cd" * 32


async def test_a_position_survives_a_new_instance_and_never_moves_back(tmp_path: Path) -> None:
    marks = ReadMarks.in_data_dir(tmp_path, KEY, 10)
    assert marks.position(PEER) == 0.0
    assert await marks.advance(PEER, 100.5)
    assert not await marks.advance(PEER, 99.0)  # an older message read later: no step back
    assert await marks.advance(GROUP, 7.0)
    again = ReadMarks.in_data_dir(tmp_path, KEY, 10)
    assert (again.position(PEER), again.position(GROUP)) == (100.5, 7.0)


async def test_the_file_names_no_conversation_in_clear(tmp_path: Path) -> None:
    await ReadMarks.in_data_dir(tmp_path, KEY, 10).advance(PEER, 1.0)
    raw = (tmp_path / FILE_NAME).read_bytes()
    assert PEER.encode() not in raw
    assert bytes.fromhex(PEER) not in raw
    assert (tmp_path / FILE_NAME).stat().st_mode & 0o077 == 0


async def test_a_file_under_another_key_is_set_aside_not_trusted(tmp_path: Path) -> None:
    await ReadMarks.in_data_dir(tmp_path, KEY, 10).advance(PEER, 5.0)
    other = ReadMarks.in_data_dir(tmp_path, bytes(32), 10)
    assert other.position(PEER) == 0.0
    assert (tmp_path / f"{FILE_NAME}.damaged").exists()
    assert not (tmp_path / FILE_NAME).exists()


async def test_beyond_the_bound_the_longest_read_conversation_is_forgotten(tmp_path: Path) -> None:
    marks = ReadMarks.in_data_dir(tmp_path, KEY, 2)
    await marks.advance("01" * 16, 1.0)
    await marks.advance("02" * 16, 2.0)
    await marks.advance("03" * 16, 3.0)
    again = ReadMarks.in_data_dir(tmp_path, KEY, 2)
    assert [again.position(f"0{i}" * 16) for i in (1, 2, 3)] == [0.0, 2.0, 3.0]


async def test_only_conversation_ids_are_accepted() -> None:
    marks = ReadMarks.in_memory(4)
    for bad in ("", "xy" * 16, "ab" * 15, PEER.upper()):
        with pytest.raises(ValueError, match="conversation id"):
            await marks.advance(bad, 1.0)
    assert not await marks.advance(PEER, float("nan"))


@given(st.binary(max_size=300))
def test_any_damaged_file_opens_as_no_marks(tmp_path_factory: pytest.TempPathFactory,
                                            junk: bytes) -> None:  # fmt: skip
    root = tmp_path_factory.mktemp("marks")
    (root / FILE_NAME).write_bytes(junk)
    assert ReadMarks.in_data_dir(root, KEY, 4).position(PEER) == 0.0


def test_the_subkey_is_not_the_database_key() -> None:
    assert subkey(KEY) != KEY
    assert len(subkey(KEY)) == 32


def test_unread_counts_compare_arrival_times_to_the_millisecond() -> None:
    """The core keeps times in whole milliseconds: a mark taken from a message's live time must
    still cover the same message read back after a restart (this failed before the fix)."""
    peer = bytes.fromhex(PEER)
    live = 1_796_636_703.5186954
    messages = [
        StoredMessage(
            message_id=bytes([i]) * 16,
            peer_id=peer,
            outgoing=False,
            body=str(i),
            sent_at=at - 0.1,
            received_at=at,
        )
        for i, at in enumerate((live - 1, round(live, 3), live + 1))
    ]
    node = SimpleNamespace(
        conversations=SimpleNamespace(peers=lambda: [peer], with_peer=lambda _p: messages),
        contacts=SimpleNamespace(get=lambda _p: None),
        requests=SimpleNamespace(get=lambda _p: None),
    )
    (row,) = conversations_view(cast(Any, node), lambda _c: live)
    assert row["unread"] == 1
    assert row["read_up_to"] == live
    (row,) = conversations_view(cast(Any, node))
    assert row["unread"] == 3


async def test_concurrent_marks_keep_the_newest(tmp_path: Path) -> None:
    marks = ReadMarks.in_data_dir(tmp_path, KEY, 10)
    async with trio.open_nursery() as nursery:  # each waits for the file in a worker thread
        for at in (5.0, 3.0, 4.0):
            nursery.start_soon(marks.advance, PEER, at)
    assert marks.position(PEER) == 5.0
    assert ReadMarks.in_data_dir(tmp_path, KEY, 10).position(PEER) == 5.0
