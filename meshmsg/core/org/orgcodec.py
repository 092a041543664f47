"""Organisation directories on disk: one META record per joined organisation,
``org:`` ‖ org id → u16 length ‖ the organisation code ‖ the newest signed directory (or
nothing). Restoring re-verifies it. How directories travel: :mod:`meshmsg.core.exchange.orgs`.
"""

from __future__ import annotations

import struct
from typing import Final

from meshmsg.core.effects import RecordKind, StoredRecord
from meshmsg.core.org.directory import OrgBook
from meshmsg.core.org.keys import decode_org_code
from meshmsg.errors import DirectoryError, StorageError

ORG_KEY: Final = b"org:"
_U16: Final = struct.Struct(">H")


def org_record(book: OrgBook, org_id: bytes) -> StoredRecord:
    joined = book.get(org_id)
    assert joined is not None
    code = joined.org.code().encode("ascii")
    directory = joined.directory.data if joined.directory is not None else b""
    value = _U16.pack(len(code)) + code + directory
    return StoredRecord(kind=RecordKind.META, key=ORG_KEY + org_id, value=value)


def restore(orgs: OrgBook, record: StoredRecord) -> bool:
    """A persisted organisation? Rebuild it (True), else leave the record to the caller."""
    if not record.key.startswith(ORG_KEY):
        return False
    value = record.value
    try:
        length = _U16.unpack(value[:2])[0]
        org = decode_org_code(value[2 : 2 + length].decode("ascii"))
        orgs.join(org)
        if len(value) > 2 + length:
            orgs.accept(org.org_id, value[2 + length :])
    except (struct.error, UnicodeDecodeError, DirectoryError) as exc:
        raise StorageError(f"persisted organisation is damaged: {exc}") from exc
    return True
