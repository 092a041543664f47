"""The mDNS backend: python-zeroconf behind a small protocol (this is zeroconf's only importer).

:class:`MdnsBackend` is what discovery needs of mDNS; :class:`ZeroconfBackend` implements it on
python-zeroconf's blocking API (threads: see ``net/discovery.py``), and tests inject a fake.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Protocol, TypeVar

from zeroconf import Error as ZeroconfError
from zeroconf import IPVersion, ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

from meshmsg.errors import TransportError

logger = logging.getLogger(__name__)

SERVICE_TYPE: Final = "_meshmsg._tcp.local."
# 64 random bits: a collision between two nodes on one link is negligible, and the label (16 hex
# digits) says nothing about the node.
INSTANCE_LABEL_BYTES: Final = 8
# A float rounding guard for the token bucket: without it a wait of 1e-17 s could be rounded
# away and the hand-out loop would spin without the clock moving.
_TOKEN_EPSILON: Final = 1e-9
_IFNAME: Final = re.compile(r"[A-Za-z0-9_.:@-]{1,15}")  # Linux IFNAMSIZ is 16 with the NUL

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
T = TypeVar("T")


# --- The mDNS backend ----------------------------------------------------------------------------


class BrowseChange(enum.Enum):
    """What the browser saw happen to a service instance."""

    ADDED = "added"
    UPDATED = "updated"
    REMOVED = "removed"


@dataclass(frozen=True, slots=True, kw_only=True)
class Advert:
    """Our service as announced: nothing here may identify the node or its user."""

    name: str  # "<random label>._meshmsg._tcp.local."
    server: str  # "<random label>.local.": not the machine's host name
    port: int
    addresses: tuple[str, ...]
    txt: Mapping[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedService:
    """A peer's service record set, as resolved (all of it remote input)."""

    name: str
    port: int | None
    addresses: tuple[str, ...]  # IPv6 link-local ones carry their scope (``fe80::1%2``)
    txt: Mapping[bytes, bytes | None]


BrowseCallback = Callable[[BrowseChange, str], None]


class MdnsBackend(Protocol):
    """What discovery needs from mDNS. Methods may block; callbacks may come from any thread.

    Methods raise only :class:`TransportError`.
    """

    @property
    def needs_thread(self) -> bool:
        """True if the methods block (run them in a worker thread)."""
        ...

    def open(self) -> None: ...

    def register(self, advert: Advert) -> str:
        """Announce ``advert``; return the name actually registered (after a conflict rename)."""
        ...

    def unregister(self, name: str) -> None: ...

    def start_browsing(self, service_type: str, callback: BrowseCallback) -> None: ...

    def resolve(self, service_type: str, name: str, timeout_s: float) -> ResolvedService | None: ...

    def close(self) -> None: ...


BackendFactory = Callable[[tuple[str, ...]], MdnsBackend]

_CHANGES: Final = {
    ServiceStateChange.Added: BrowseChange.ADDED,
    ServiceStateChange.Updated: BrowseChange.UPDATED,
    ServiceStateChange.Removed: BrowseChange.REMOVED,
}
# zeroconf raises its own errors, OSError from sockets, ValueError from bad records.
_ZEROCONF_ERRORS: Final = (ZeroconfError, OSError, ValueError, RuntimeError)


class ZeroconfBackend:
    """python-zeroconf's blocking API, bound to our trusted addresses only."""

    needs_thread = True

    def __init__(self, interfaces: tuple[str, ...]) -> None:
        self._interfaces = list(interfaces)
        self._zc: Zeroconf | None = None
        self._browser: ServiceBrowser | None = None
        self._infos: dict[str, ServiceInfo] = {}

    def _ip_version(self) -> IPVersion:
        versions = {ipaddress.ip_address(a).version for a in self._interfaces}
        if versions == {4}:
            return IPVersion.V4Only
        return IPVersion.V6Only if versions == {6} else IPVersion.All

    @property
    def zc(self) -> Zeroconf:
        if self._zc is None:
            raise TransportError("mDNS backend is not open")
        return self._zc

    def open(self) -> None:
        try:
            # use_asyncio=False: zeroconf runs its own loop thread, never touching trio's.
            self._zc = Zeroconf(
                interfaces=self._interfaces, ip_version=self._ip_version(), use_asyncio=False
            )
        except _ZEROCONF_ERRORS as exc:
            raise TransportError(f"cannot start mDNS on {self._interfaces}: {exc}") from exc

    def register(self, advert: Advert) -> str:
        try:
            info = ServiceInfo(
                SERVICE_TYPE,
                advert.name,
                port=advert.port,
                properties=dict(advert.txt),
                server=advert.server,
                parsed_addresses=list(advert.addresses),
            )
            self.zc.register_service(info, allow_name_change=True)
        except _ZEROCONF_ERRORS as exc:
            raise TransportError(f"mDNS registration failed: {exc}") from exc
        self._infos[info.name] = info
        return info.name

    def unregister(self, name: str) -> None:
        info = self._infos.pop(name, None)
        if info is None:
            return
        try:
            self.zc.unregister_service(info)
        except _ZEROCONF_ERRORS as exc:
            raise TransportError(f"mDNS unregistration failed: {exc}") from exc

    def start_browsing(self, stype: str, callback: BrowseCallback) -> None:
        # zeroconf calls handlers with these keyword names, on its browser thread.
        def on_change(
            zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
        ) -> None:
            callback(_CHANGES[state_change], name)

        try:
            self._browser = ServiceBrowser(self.zc, stype, handlers=[on_change])
        except _ZEROCONF_ERRORS as exc:
            raise TransportError(f"mDNS browsing failed: {exc}") from exc

    def resolve(self, service_type: str, name: str, timeout_s: float) -> ResolvedService | None:
        try:
            info = self.zc.get_service_info(service_type, name, round(timeout_s * 1000))
            if info is None:
                return None
            addresses = tuple(info.parsed_scoped_addresses())
        except _ZEROCONF_ERRORS as exc:
            raise TransportError(f"mDNS resolve of {name!r} failed: {exc}") from exc
        return ResolvedService(
            name=info.name, port=info.port, addresses=addresses, txt=dict(info.properties)
        )

    def close(self) -> None:
        try:
            if self._browser is not None:
                self._browser.cancel()
            if self._zc is not None:
                self._zc.close()  # also sends goodbyes for what is still registered
        except _ZEROCONF_ERRORS as exc:
            raise TransportError(f"mDNS shutdown failed: {exc}") from exc
        finally:
            self._browser = None
            self._zc = None
