"""Requests, organisations and the directory (issue #12): the commands and views the API and
the offline CLI share. Each function takes the node and ``now`` and returns JSON, so it runs
inside ``NodeRunner.call`` (the pump owns the node) or on an offline node alike."""

from __future__ import annotations

import base64
import binascii

from meshmsg.app.trust_marks import trust_marks
from meshmsg.app.views import JSON, contact_view, parse_peer_id
from meshmsg.core.identity import ContactCard, encode_contact_code, fingerprint
from meshmsg.core.node import Node
from meshmsg.core.org.keys import decode_org_code
from meshmsg.errors import DirectoryError, LocalProtocolError

# --- requests ----------------------------------------------------------------------------------


def requests_view(node: Node, _now: float = 0.0) -> list[JSON]:
    rows: list[JSON] = []
    for request in node.requests:
        messages = node.conversations.with_peer(request.peer_id)
        rows.append({
            "peer_id": request.peer_id.hex(),
            "fingerprint": fingerprint(request.sender),
            "first_at": request.first_at,
            "messages": [{"message_id": m.message_id.hex(), "body": m.body, "sent_at": m.sent_at}
                         for m in messages],
            **trust_marks(node, request.peer_id),
        })  # fmt: skip
    return rows


def find_request(node: Node, who: str) -> bytes:
    """A request by peer id or unique prefix of it (8+ hex digits)."""
    who = who.strip().lower()
    if len(who) == 32:
        return parse_peer_id(who)
    found = [r.peer_id for r in node.requests if r.peer_id.hex().startswith(who)]
    if len(who) < 8 or len(found) != 1:
        raise LocalProtocolError(f"no single request matches {who!r} (use 8+ hex digits of it)")
    return found[0]


def accept_request(node: Node, now: float, who: str) -> JSON:
    contact = node.accept_request(find_request(node, who), now=now)
    return contact_view(node, contact)


def decline_request(node: Node, now: float, who: str, *, block: bool) -> JSON:
    peer_id = find_request(node, who)
    node.decline_request(peer_id, block=block, now=now)
    return {"peer_id": peer_id.hex(), "blocked": block}


# --- organisations and the directory ------------------------------------------------------------


def orgs_view(node: Node, _now: float = 0.0) -> list[JSON]:
    rows: list[JSON] = []
    for joined in node.orgs:
        directory = joined.directory
        rows.append({
            "org_id": joined.org.org_id.hex(), "name": joined.org.name, "code": joined.org.code(),
            "serial": directory.serial if directory else 0,
            "members": len(directory.entries) if directory else 0,
            "revoked": len(directory.revocations) if directory else 0,
        })  # fmt: skip
    return rows


def join_org(node: Node, now: float, code: str) -> JSON:
    org = decode_org_code(code)
    node.join_org(org, now=now)
    return {"org_id": org.org_id.hex(), "name": org.name}


def _org_id(node: Node, who: str | None) -> bytes:
    orgs = list(node.orgs)
    if not orgs:
        raise DirectoryError("unknown organisation: join it first with `meshmsg org join CODE`")
    if who is None:
        if len(orgs) != 1:
            raise DirectoryError("you joined several organisations: name one (--org)")
        return orgs[0].org.org_id
    for joined in orgs:
        if who.casefold() in (joined.org.name.casefold(), joined.org.org_id.hex()):
            return joined.org.org_id
    raise DirectoryError(f"unknown organisation {who!r}: join it first with `meshmsg org join`")


def import_directory(node: Node, now: float, data_b64: str, org: str | None) -> JSON:
    try:
        data = base64.b64decode(data_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DirectoryError("directory is not base64") from exc
    directory = node.import_directory(_org_id(node, org), data, now=now)
    return {"serial": directory.serial, "members": len(directory.entries),
            "revoked": len(directory.revocations)}  # fmt: skip


def search_directory(node: Node, now: float, text: str) -> list[JSON]:
    if not text.strip():
        raise DirectoryError("search text is empty")
    return [
        {"org": org.name, "peer_id": entry.peer_id.hex(), "name": entry.name, "unit": entry.unit,
         "role": entry.role, "fingerprint": fingerprint(entry.member),
         "contact": node.contacts.get(entry.peer_id) is not None,
         "contact_code": encode_contact_code(entry.member, entry.name)}
        for org, entry in node.orgs.search(text, now)
    ]  # fmt: skip


def contact_from_directory(node: Node, now: float, who: str) -> JSON:
    """Add a directory member as a contact (unverified in person, verified by the org)."""
    peer_id = parse_peer_id(who)
    for joined in node.orgs:
        directory = joined.directory
        entry = directory.by_peer.get(peer_id) if directory else None
        if entry is None:
            continue
        if directory is not None and peer_id in directory.revoked:
            raise DirectoryError("that member's entry is revoked")
        if entry.expires_at <= now:
            raise DirectoryError("that member's entry has expired")
        card = ContactCard(public=entry.member, name=entry.name)
        return contact_view(node, node.add_contact(card, verified=False, now=now))
    raise DirectoryError(f"{who} is in no directory we hold")
