"""Who may talk to the local API: scripts with the bearer token, and the browser it was given to.

Theory of operation
-------------------
The API listens on loopback only, but a loopback port is reachable from every web page the user
opens, so the browser is the attacker's way in. Each defence answers one attack:

* **DNS rebinding** (a page on ``evil.example`` re-resolves its name to 127.0.0.1 and reads our
  answers as same-origin): every request, HTTP or WebSocket, must carry a ``Host`` that names
  the loopback address and port we listen on (``127.0.0.1:P``, ``localhost:P``, ``[::1]:P``).
* **Token theft from the page or its history**: ``meshmsg ui`` opens
  ``http://127.0.0.1:P/#token=T``. A fragment never reaches a server, a log or a ``Referer``;
  the page's script reads it, posts it once to ``POST /session``, and removes it from the
  address bar. The answer sets a random session cookie: ``HttpOnly`` (script cannot read it),
  ``SameSite=Strict`` (no other site's request carries it), ``Path=/``. The API token itself is
  never stored in the browser.
* **CSRF** (a foreign page makes the browser send a state-changing request that carries the
  cookie): a cookie-authenticated request other than GET/HEAD needs ``Origin`` equal to our own
  origin exactly, and the custom header ``X-Meshmsg-CSRF: 1``, which a cross-site form cannot set
  and which makes a cross-site ``fetch`` preflight (that we never answer with CORS headers).
* **Cross-site WebSocket hijacking** (WebSockets are not covered by the same-origin policy): the
  ``/events`` handshake needs the bearer token, or the cookie with an exact ``Origin``.
* **Injected script**: every answer carries a strict ``Content-Security-Policy`` (scripts and
  styles only from our origin, no inline code, no framing, no plugins), ``nosniff`` and
  ``Referrer-Policy: no-referrer``.

Scripts keep using ``Authorization: Bearer``: no cookie, no Origin needed.
Sessions live in memory: a daemon restart asks the browser for the token again (``meshmsg ui``).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

SESSION_COOKIE: Final = "meshmsg_session"
CSRF_HEADER: Final = "x-meshmsg-csrf"
SESSION_BYTES: Final = 32  # 256 random bits: unguessable
MAX_SESSIONS: Final = 16  # browsers on one machine; the oldest goes when a 17th logs in
SESSION_LIFETIME_S: Final = 7 * 24 * 3600.0  # a week, then `meshmsg ui` again
SAFE_METHODS: Final = frozenset({"GET", "HEAD"})
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS: Final = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}


class Refused(Exception):
    """A request the guard turns away; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(slots=True)
class BrowserSessions:
    """Session ids handed to browsers that proved they had the token; newest last."""

    lifetime_s: float = SESSION_LIFETIME_S
    capacity: int = MAX_SESSIONS
    _expiry: dict[str, float] = field(default_factory=dict)

    def open(self, now: float) -> str:
        while len(self._expiry) >= self.capacity:
            del self._expiry[next(iter(self._expiry))]
        session = secrets.token_urlsafe(SESSION_BYTES)
        self._expiry[session] = now + self.lifetime_s
        return session

    def valid(self, session: str | None, now: float) -> bool:
        if not session:
            return False
        # Look up by constant-time comparison: a dict lookup's timing is not a concern for a
        # 256-bit random key, but keep one rule for every secret we compare.
        for known, expiry in list(self._expiry.items()):
            if hmac.compare_digest(known.encode(), session.encode()):
                if expiry > now:
                    return True
                del self._expiry[known]
        return False

    def close(self, session: str | None) -> None:
        if session:
            self._expiry.pop(session, None)


Server = tuple[str, int]
"""The listening address a request came in on (the ASGI scope's ``server``)."""


@dataclass(frozen=True, slots=True)
class Guard:
    """The decisions of the module docstring, for requests to one daemon."""

    token: bytes
    sessions: BrowserSessions

    def check_host(self, headers: Mapping[str, str], server: Server | None) -> None:
        """Refuse a ``Host`` that is not our loopback address and port (DNS rebinding)."""
        if headers.get("host", "").lower() not in _authorities(server):
            raise Refused(421, "wrong Host header: the API answers only to its loopback address")

    def bearer_ok(self, headers: Mapping[str, str]) -> bool:
        scheme, _, given = headers.get("authorization", "").partition(" ")
        # compare_digest takes the same time whatever prefix of the token is right.
        return scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), self.token)

    def token_ok(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.token)

    def check_request(
        self,
        method: str,
        headers: Mapping[str, str],
        server: Server | None,
        cookie: str | None,
        now: float,
    ) -> None:
        """Authorise an API request: the bearer token, or a session with CSRF proof."""
        self.check_host(headers, server)
        if self.bearer_ok(headers):
            return
        if not self.sessions.valid(cookie, now):
            raise Refused(401, "missing or wrong bearer token (see api-token in the data dir)")
        if method.upper() not in SAFE_METHODS:
            self.check_same_origin(headers, server)
            if headers.get(CSRF_HEADER) != "1":
                raise Refused(403, f"missing {CSRF_HEADER} header")

    def check_websocket(
        self, headers: Mapping[str, str], server: Server | None, cookie: str | None, now: float
    ) -> None:
        """Authorise a WebSocket handshake (no preflight protects it: Origin must be exact)."""
        self.check_host(headers, server)
        if self.bearer_ok(headers):
            return
        if not self.sessions.valid(cookie, now):
            raise Refused(401, "missing or wrong bearer token or session")
        self.check_same_origin(headers, server)

    def check_same_origin(self, headers: Mapping[str, str], server: Server | None) -> None:
        origins = {f"http://{authority}" for authority in _authorities(server)}
        if headers.get("origin", "").lower() not in origins:
            raise Refused(403, "cross-origin request refused")


def _authorities(server: Server | None) -> frozenset[str]:
    """``host:port`` spellings that name the loopback socket ``server`` (none if unknown)."""
    if server is None:
        return frozenset()
    host, port = server
    names = {host, "localhost"}
    return frozenset(f"[{n}]:{port}" if ":" in n else f"{n}:{port}" for n in names)


__all__ = [
    "CSRF_HEADER",
    "SECURITY_HEADERS",
    "SESSION_COOKIE",
    "BrowserSessions",
    "Guard",
    "Refused",
    "Server",
]
