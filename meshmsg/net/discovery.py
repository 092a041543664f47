"""Finding peers: mDNS on trusted networks, and static ``host:port`` peers as a fallback.

Theory of operation. Discovery only produces *hints*: an address worth dialling. Who a peer is
comes out of the Noise handshake, never out of mDNS, so the advert carries no identity: a
random instance name drawn from the injected ``Rng`` (renewed every ``mdns_rotate_s``), the TCP
port and ``v=<protocol version>`` in TXT. A rogue responder can therefore only make us dial it,
and that is bounded (security research §2, A1 and A3): at most ``max_discovered_peers`` tracked
addresses, at most ``dial_attempts_per_s`` hand-outs per second (token bucket of depth
``dial_burst``), and a doubling backoff for peers the caller reports as failing.

mDNS runs only on *trusted networks* (:class:`TrustedNetworks`): zeroconf binds to our own
addresses inside them, and a resolved service whose addresses all lie outside them is ignored.
With no trusted network, mDNS is off and only :class:`StaticPeers` work.

Threads (libraries-and-limits §3). python-zeroconf's blocking API runs its own asyncio loop
thread and a browser thread. This module is its only importer:

* every blocking call (open, register, unregister, resolve, close) goes through
  ``trio.to_thread.run_sync``;
* browser callbacks arrive on zeroconf's thread and cross into trio with
  ``TrioToken.run_sync_soon``, which never blocks that thread (``trio.from_thread.run`` would);
  ``RunFinishedError`` means trio has already exited, and the event is moot;
* on the trio side a bounded memory channel queues the events; overflow is counted and dropped,
  since a flood of names is exactly the attack the bounds are for;
* registration (about 1.65 s of probing) runs in a background task; close is shielded.

The backend is injectable (:class:`MdnsBackend`), so unit tests drive the logic with a fake and
a mock clock; ``needs_thread = False`` makes the bridge call the fake inline.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import ipaddress
import logging
import re
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, TypeVar

import ifaddr
import trio

from meshmsg.config import PROTOCOL_VERSION, NetConfig
from meshmsg.core.rng import Rng
from meshmsg.errors import ConfigError, TransportError
from meshmsg.net.mdns import (
    Advert,
    BackendFactory,
    BrowseChange,
    MdnsBackend,
    ResolvedService,
    ZeroconfBackend,
)
from meshmsg.net.peers import (
    PeerHandout,
    PeerStatistics,
    PeerTable,
    TrustedNetworks,
    system_adapters,
)

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


# --- Discovery -----------------------------------------------------------------------------------


def advert_txt(config: NetConfig) -> dict[str, str]:
    """The TXT of our advert: the protocol version and nothing else.

    Raises:
        ConfigError: if even that does not fit in ``mdns_txt_max_bytes``.
    """
    txt = {"v": str(PROTOCOL_VERSION)}
    if txt_wire_bytes(txt) >= config.mdns_txt_max_bytes:
        raise ConfigError(f"mDNS TXT of {txt_wire_bytes(txt)} bytes exceeds mdns_txt_max_bytes")
    return txt


def txt_wire_bytes(txt: Mapping[str, str]) -> int:
    """Size of a TXT record on the wire: one length byte plus ``key=value`` per entry."""
    return sum(1 + len(f"{k}={v}".encode()) for k, v in txt.items())


@dataclass(frozen=True, slots=True, kw_only=True)
class DiscoveryStatistics:
    """A snapshot of what discovery did; ``disabled_reason`` says why mDNS is off."""

    enabled: bool
    disabled_reason: str | None
    instance: str | None  # our current advert name
    interfaces: tuple[str, ...]  # the addresses zeroconf is bound to
    registrations: int
    advert_errors: int
    events_dropped: int  # browser events lost to a full queue (a flood)
    resolving: int
    resolve_failures: int
    ignored_self: int
    ignored_untrusted: int  # services with no address inside the trusted networks
    ignored_version: int  # TXT without v=<our protocol version>
    ignored_invalid: int  # no usable port
    peers: PeerStatistics


class _Lookup(enum.Enum):
    """Where a running lookup stands, as events for its name keep arriving."""

    WANTED = "wanted"
    AGAIN = "again"  # added or updated meanwhile: the answer in flight may be stale
    GONE = "gone"  # removed meanwhile: drop the answer


@dataclass(slots=True)
class _Counters:
    registrations: int = 0
    advert_errors: int = 0
    events_dropped: int = 0
    resolve_failures: int = 0
    ignored_self: int = 0
    ignored_untrusted: int = 0
    ignored_version: int = 0
    ignored_invalid: int = 0
    own_names: deque[str] = field(default_factory=lambda: deque(maxlen=4))


class Discovery(PeerHandout):
    """A running mDNS discovery; get one from :func:`open_discovery`."""

    def __init__(
        self,
        config: NetConfig,
        trusted: TrustedNetworks,
        port: int,
        rng: Rng,
        local: tuple[str, ...],
        backend: MdnsBackend | None,
        disabled_reason: str | None,
    ) -> None:
        self._config = config
        self._trusted = trusted
        self._port = port
        self._rng = rng
        self._local = local
        self._backend = backend
        self._disabled_reason = disabled_reason
        self._txt = advert_txt(config)
        super().__init__(PeerTable(config))
        self._counters = _Counters()
        self._instance: str | None = None
        self._resolving: dict[str, _Lookup] = {}  # names being resolved
        self._send, self._recv = trio.open_memory_channel[tuple[BrowseChange, str]](
            config.mdns_event_queue
        )
        self._token = trio.lowlevel.current_trio_token()

    def statistics(self) -> DiscoveryStatistics:
        c = self._counters
        return DiscoveryStatistics(
            enabled=self._backend is not None,
            disabled_reason=self._disabled_reason,
            instance=self._instance,
            interfaces=self._local,
            registrations=c.registrations,
            advert_errors=c.advert_errors,
            events_dropped=c.events_dropped,
            resolving=len(self._resolving),
            resolve_failures=c.resolve_failures,
            ignored_self=c.ignored_self,
            ignored_untrusted=c.ignored_untrusted,
            ignored_version=c.ignored_version,
            ignored_invalid=c.ignored_invalid,
            peers=self._table.statistics(),
        )

    # The thread bridge ---------------------------------------------------------------------------

    async def _blocking(self, fn: Callable[[], T], *, abandon: bool = False) -> T:
        """Run a backend call: in a worker thread for zeroconf, inline for a test fake."""
        if self._backend is not None and not self._backend.needs_thread:
            await trio.lowlevel.checkpoint()
            return fn()
        return await trio.to_thread.run_sync(fn, abandon_on_cancel=abandon)

    def _on_browse(self, change: BrowseChange, name: str) -> None:
        """Browser callback, on zeroconf's thread: hand over without ever blocking it."""
        with contextlib.suppress(trio.RunFinishedError):  # trio has exited: nobody to tell
            self._token.run_sync_soon(self._enqueue, change, name)

    def _enqueue(self, change: BrowseChange, name: str) -> None:
        """On trio's thread. A callback that raised here would crash trio: never let it."""
        try:
            self._send.send_nowait((change, name))
        except trio.WouldBlock:
            self._counters.events_dropped += 1
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass  # shutting down

    # Background tasks ----------------------------------------------------------------------------

    async def _start(self, nursery: trio.Nursery) -> None:
        backend = self._require_backend()
        await self._blocking(backend.open)
        await self._blocking(lambda: backend.start_browsing(SERVICE_TYPE, self._on_browse))
        nursery.start_soon(self._serve_advert)
        nursery.start_soon(self._serve_events, nursery)

    def _require_backend(self) -> MdnsBackend:
        if self._backend is None:
            raise TransportError("mDNS discovery is off")
        return self._backend

    def _new_advert(self) -> Advert:
        label = self._rng.randbytes(INSTANCE_LABEL_BYTES).hex()
        return Advert(
            name=f"{label}.{SERVICE_TYPE}",
            server=f"{label}.local.",
            port=self._port,
            addresses=self._local,
            txt=self._txt,
        )

    async def _serve_advert(self) -> None:
        """Keep one advert up; every ``mdns_rotate_s`` replace it with a fresh random name.

        The new name is registered before the old one is withdrawn, so peers never see a gap
        (and, since they track addresses, do not dial us again). The IP address stays the same,
        so rotation unlinks names over time, not presence on the link.
        """
        backend = self._require_backend()
        while True:
            advert = self._new_advert()
            self._remember_own(advert.name)
            try:
                name = await self._blocking(functools.partial(backend.register, advert))
            except TransportError as exc:
                self._counters.advert_errors += 1
                logger.warning("mDNS advert failed, retrying later: %s", exc)
                await trio.sleep(self._config.mdns_advert_retry_s)
                continue
            self._remember_own(name)
            previous, self._instance = self._instance, name
            self._counters.registrations += 1
            if previous is not None:
                await self._withdraw(backend, previous)
            await trio.sleep(self._config.mdns_rotate_s)

    def _remember_own(self, name: str) -> None:
        # Our browser sees our own adverts (and goodbyes for withdrawn ones): recognise them.
        if name.lower() not in self._counters.own_names:
            self._counters.own_names.append(name.lower())

    async def _withdraw(self, backend: MdnsBackend, name: str) -> None:
        try:
            await self._blocking(lambda: backend.unregister(name))
        except TransportError as exc:
            self._counters.advert_errors += 1
            logger.warning("mDNS unregistration of %s failed: %s", name, exc)

    async def _serve_events(self, nursery: trio.Nursery) -> None:
        async for change, name in self._recv:
            key = name.lower()
            if key in self._counters.own_names:
                self._counters.ignored_self += 1
            elif change is BrowseChange.REMOVED:
                self._forget(key)
            elif key in self._resolving:
                self._resolving[key] = _Lookup.AGAIN  # the answer in flight may be stale
            elif len(self._resolving) >= self._config.mdns_max_resolving:
                self._counters.events_dropped += 1
            else:
                self._resolving[key] = _Lookup.WANTED
                nursery.start_soon(self._resolve, name)

    def _forget(self, key: str) -> None:
        if key in self._resolving:
            self._resolving[key] = _Lookup.GONE
        if self._table.remove_instance(key):
            self._lot.unpark_all()

    async def _resolve(self, name: str) -> None:
        """Look a service up until no newer event arrived meanwhile; then act on the answer."""
        key = name.lower()
        backend = self._require_backend()
        lookup = functools.partial(
            backend.resolve, SERVICE_TYPE, name, self._config.mdns_resolve_timeout_s
        )
        try:
            state = _Lookup.AGAIN
            while state is _Lookup.AGAIN:
                self._resolving[key] = _Lookup.WANTED
                # Abandoning is safe: a lookup changes nothing, and shutdown need not wait.
                info = await self._blocking(lookup, abandon=True)
                state = self._resolving[key]
        except TransportError as exc:
            self._counters.resolve_failures += 1
            logger.debug("%s", exc)
            return
        finally:
            self._resolving.pop(key, None)
        if info is None:
            self._counters.resolve_failures += 1
        elif state is _Lookup.WANTED:
            self._accept(key, info)

    def _accept(self, key: str, info: ResolvedService) -> None:
        if info.txt.get(b"v") != str(PROTOCOL_VERSION).encode():
            self._counters.ignored_version += 1
            return
        if info.port is None or not 0 < info.port <= 65_535:
            self._counters.ignored_invalid += 1
            return
        hosts = [a for a in info.addresses if a in self._trusted]
        if not hosts:
            self._counters.ignored_untrusted += 1
            return
        if info.port == self._port and hosts[0] in self._local:
            self._counters.ignored_self += 1  # our own advert under a name we no longer hold
            return
        if self._table.add(hosts[0], info.port, key, trio.current_time()):
            self._lot.unpark_all()

    def _close(self) -> None:
        self._close_source()
        self._send.close()


def _plan(
    trusted: TrustedNetworks, adapters: Callable[[], Iterable[ifaddr.Adapter]]
) -> tuple[tuple[str, ...], str | None]:
    """Our addresses to bind mDNS to, or why mDNS stays off."""
    if not trusted:
        return (), "no trusted network is configured"
    local = trusted.local_addresses(adapters())
    if not local:
        nets = ", ".join(str(n) for n in trusted.networks)
        return (), f"this host has no address inside the trusted networks ({nets})"
    return local, None


@contextlib.asynccontextmanager
async def open_discovery(
    config: NetConfig,
    trusted: TrustedNetworks,
    port: int,
    rng: Rng,
    *,
    backend_factory: BackendFactory = ZeroconfBackend,
    adapters: Callable[[], Iterable[ifaddr.Adapter]] = system_adapters,
) -> AsyncIterator[Discovery]:
    """Advertise ``port`` and browse for peers on the trusted networks.

    With no trusted network, or none that this host is on, mDNS stays off (logged as a
    warning, and stated in ``statistics().disabled_reason``) and the ``Discovery`` never hands
    out a peer: static peers still work. On exit the advert is withdrawn (goodbye packets) and
    zeroconf's threads stop; exit may wait for a registration in progress (about 1.7 s).

    Raises:
        ConfigError: ``port`` is not 1-65535, or the TXT does not fit ``mdns_txt_max_bytes``.
        TransportError: zeroconf could not start (for instance no multicast on the interface).
    """
    if not 0 < port <= 65_535:
        raise ConfigError(f"port {port} is not 1-65535")
    local, reason = _plan(trusted, adapters)
    if reason is not None:
        logger.warning("mDNS discovery is off: %s; only static peers will be dialled", reason)
        disc = Discovery(config, trusted, port, rng, local, None, reason)
        try:
            yield disc
        finally:
            disc._close()
        return
    backend = backend_factory(local)
    disc = Discovery(config, trusted, port, rng, local, backend, None)
    try:
        async with _collapse_groups(), trio.open_nursery() as nursery:
            await disc._start(nursery)
            try:
                yield disc
            finally:
                disc._close()
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await disc._blocking(backend.close)


@contextlib.asynccontextmanager
async def _collapse_groups() -> AsyncIterator[None]:
    """Re-raise a lone exception out of the nursery's ExceptionGroup.

    Our background tasks catch their own errors, so a group of one is the caller's body
    failing; callers of ``async with open_discovery(...)`` should see their own exception.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1 and not isinstance(group.exceptions[0], BaseExceptionGroup):
            raise group.exceptions[0] from None
        raise
