"""Files in and out of the chunk store, for the CLI and the API: streamed, never whole in memory.

``seal_path`` encrypts a file into the chunk store under a fresh key (one chunk in memory at a
time); ``save_to`` writes a complete attachment's plaintext to a path (a ``.part`` file, fsync,
rename: a crash never leaves a half file under the real name); ``parse_range`` reads one HTTP
``Range: bytes=`` header strictly, for the API's ranged downloads.
"""

from __future__ import annotations

import mimetypes
import os
import secrets
from pathlib import Path
from typing import BinaryIO

from meshmsg.config import AttachConfig
from meshmsg.core.attach.assembly import AttachmentRef, check_name
from meshmsg.errors import InvalidAttachment
from meshmsg.net.chunkstore import ChunkStore

_RANGE_PREFIX = "bytes="
_MAX_RANGE_HEADER = 100  # one range of two 20-digit numbers; anything longer is not ours


def media_type_of(name: str) -> str:
    """A media type guessed from the file name (empty if unknown); the recipient only shows it."""
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed or ""


def seal_stream(
    store: ChunkStore, source: BinaryIO, size: int, name: str, config: AttachConfig,
    media_type: str | None = None,
) -> AttachmentRef:  # fmt: skip
    """Encrypt ``size`` bytes from ``source`` into ``store`` under a fresh random key."""
    if not 0 <= size <= config.max_attachment_bytes:
        raise InvalidAttachment(
            f"{name}: {size:,} bytes; attachments are at most {config.max_attachment_bytes:,}"
        )
    media_type = media_type if media_type is not None else media_type_of(name)
    check_name(name, media_type, config)  # refuse here rather than at the recipient
    return store.seal_file(
        source, size, name, media_type,
        key=secrets.token_bytes(32), done_token=secrets.token_bytes(16), config=config,
    )  # fmt: skip


def seal_path(store: ChunkStore, path: Path, config: AttachConfig) -> AttachmentRef:
    """Encrypt the file at ``path`` into ``store``; the attachment's name is the file's."""
    with open(path, "rb") as source:
        size = os.fstat(source.fileno()).st_size
        return seal_stream(store, source, size, path.name, config)


def save_to(store: ChunkStore, ref: AttachmentRef, out: Path, config: AttachConfig) -> Path:
    """Write the attachment's plaintext to ``out`` (a directory: ``out/<name>``); refuse to
    overwrite an existing file. Returns the path written."""
    target = out / ref.name if out.is_dir() else out
    if target.exists():
        raise FileExistsError(f"{target} exists; choose another --out")
    partial = target.with_name(target.name + ".part")
    try:
        with open(partial, "xb") as sink:
            for piece in store.read_plain(ref, 0, ref.size, config):
                sink.write(piece)
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return target


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The byte range [start, end) one ``Range`` header asks for, or None for the whole file.

    Only a single ``bytes=`` range (``a-b``, ``a-`` or ``-n``) is served; anything else, or a
    range outside the file, raises ``ValueError`` (the API answers 416).
    """
    if header is None:
        return None
    if len(header) > _MAX_RANGE_HEADER or not header.startswith(_RANGE_PREFIX):
        raise ValueError("only one bytes= range is served")
    first, dash, last = header[len(_RANGE_PREFIX) :].strip().partition("-")
    if not dash or "," in last or not (first.isdigit() or last.isdigit()):
        raise ValueError("only one bytes= range is served")
    if not first:
        length = int(last)
        if length == 0 or size == 0:
            raise ValueError("empty suffix range")
        return max(0, size - length), size
    start = int(first)
    end = size if not last else int(last) + 1
    if not last.isdigit() and last:
        raise ValueError("bad range end")
    if start >= size or end <= start:
        raise ValueError(f"range {header!r} is outside the file of {size} bytes")
    return start, min(end, size)
