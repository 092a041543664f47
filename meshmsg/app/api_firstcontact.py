"""API routes for message requests, organisations and the directory (issue #12).

====== =================================== ==============================================
GET    /requests                           pending message requests, with their messages
POST   /requests/{peer}/accept             the sender becomes a contact; 200 with it
POST   /requests/{peer}/decline            ``{"block"?: false}``: delete (and block)
GET    /orgs                               organisations joined, directory versions
POST   /orgs                               ``{"code"}``: join an organisation (MMORG1:...)
POST   /orgs/directory                     ``{"directory": base64, "org"?}``: import one
GET    /directory?q=TEXT                   search the directories (name, unit, role)
POST   /directory/{peer}/contact           add a member as a contact
====== =================================== ==============================================

``{peer}`` of a request is its peer id or 8+ leading hex digits of it. Errors are one line:
bad or unknown codes, unknown organisations, forged, older, expired or revoked entries are
``400``; a request or member that is not there is ``409`` (the node refused as asked).
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import Route

from meshmsg.app import firstcontact_ops as ops
from meshmsg.errors import DirectoryError


def routes(api: Any) -> list[Route]:
    """The routes over an ``api.Api`` (typed loosely: that module imports this one)."""
    e = api.endpoint

    async def list_requests(request: Request) -> Any:
        return await api.call(ops.requests_view)

    async def accept(request: Request) -> Any:
        who = str(request.path_params["peer"])
        return await _write(api, lambda node, now: ops.accept_request(node, now, who))

    async def decline(request: Request) -> Any:
        who = str(request.path_params["peer"])
        block = (await api.body(request)).get("block", False)
        if not isinstance(block, bool):
            raise HTTPException(400, "field 'block' has the wrong type")
        return await _write(api, lambda n, now: ops.decline_request(n, now, who, block=block))

    async def list_orgs(request: Request) -> Any:
        return await api.call(ops.orgs_view)

    async def join(request: Request) -> Any:
        code = _text(await api.body(request), "code")
        return await _write(api, lambda node, now: ops.join_org(node, now, code))

    async def import_directory(request: Request) -> Any:
        data = await api.body(request)
        blob, org = _text(data, "directory"), data.get("org")
        if org is not None and not isinstance(org, str):
            raise HTTPException(400, "field 'org' has the wrong type")
        return await _write(api, lambda node, now: ops.import_directory(node, now, blob, org))

    async def search(request: Request) -> Any:
        text = request.query_params.get("q", "")
        return await _read(api, lambda node, now: ops.search_directory(node, now, text))

    async def add_member(request: Request) -> Any:
        who = str(request.path_params["peer"])
        return await _write(api, lambda node, now: ops.contact_from_directory(node, now, who))

    return [
        Route("/requests", e(list_requests), methods=["GET"]),
        Route("/requests/{peer}/accept", e(accept), methods=["POST"]),
        Route("/requests/{peer}/decline", e(decline), methods=["POST"]),
        Route("/orgs", e(list_orgs), methods=["GET"]),
        Route("/orgs", e(join, 201), methods=["POST"]),
        Route("/orgs/directory", e(import_directory), methods=["POST"]),
        Route("/directory", e(search), methods=["GET"]),
        Route("/directory/{peer}/contact", e(add_member, 201), methods=["POST"]),
    ]


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise HTTPException(400, f"missing or non-text field {key!r}")
    return value


async def _write(api: Any, fn: Any) -> Any:
    try:
        return await api.write(fn)
    except DirectoryError as exc:
        raise HTTPException(400, str(exc)) from exc


async def _read(api: Any, fn: Any) -> Any:
    try:
        return await api.call(fn)
    except DirectoryError as exc:
        raise HTTPException(400, str(exc)) from exc
