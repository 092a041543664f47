"""Files in and out of the chunk store (app/files.py): streamed seal, atomic save, ranges."""

from __future__ import annotations

import hashlib
import os
from io import BytesIO
from pathlib import Path

import pytest

from meshmsg.app.files import parse_range, save_to, seal_path, seal_stream
from meshmsg.config import AttachConfig
from meshmsg.errors import InvalidAttachment
from meshmsg.net.chunkstore import ChunkStore

CONFIG = AttachConfig()


def test_seal_a_path_and_save_it_back(tmp_path: Path) -> None:
    source = tmp_path / "photo.jpg"
    source.write_bytes(os.urandom(200_000))
    store = ChunkStore(tmp_path / "chunks")
    ref = seal_path(store, source, CONFIG)
    assert (ref.name, ref.size, ref.media_type) == ("photo.jpg", 200_000, "image/jpeg")
    out = tmp_path / "out"
    out.mkdir()
    written = save_to(store, ref, out, CONFIG)
    assert written == out / "photo.jpg"
    assert (
        hashlib.sha256(written.read_bytes()).digest()
        == hashlib.sha256(source.read_bytes()).digest()
    )
    with pytest.raises(FileExistsError):
        save_to(store, ref, out, CONFIG)
    assert not (out / "photo.jpg.part").exists()


def test_sealing_refuses_what_no_recipient_would_accept(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path)
    small = AttachConfig(max_attachment_bytes=10)
    with pytest.raises(InvalidAttachment, match="at most 10"):
        seal_stream(store, BytesIO(bytes(11)), 11, "x", small)
    for bad in ("a/b", "..", "a\\b", ""):
        with pytest.raises(InvalidAttachment, match="name"):
            seal_stream(store, BytesIO(b"ab"), 2, bad, CONFIG)
    assert store.scan() == {}


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-9", (0, 10)),
        ("bytes=5-", (5, 100)),
        ("bytes=-10", (90, 100)),
        ("bytes=-500", (0, 100)),
        ("bytes=90-200", (90, 100)),
    ],
)
def test_ranges(header: str | None, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize(
    "header",
    ["bytes=100-", "bytes=5-4", "bytes=0-1,3-4", "items=0-1", "bytes=-0", "bytes=a-b", "bytes=-",
     "bytes=" + "1" * 200],
)  # fmt: skip
def test_bad_ranges_are_refused(header: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        parse_range(header, 100)
