"""What users run, below the CLI: the data directory, its settings, the keystore, offline access.

Theory of operation
-------------------
A node lives in one *data directory* (:class:`~meshmsg.net.storage.DataDir`): platformdirs'
user data directory by default, ``MESHMSG_HOME`` or ``--data-dir`` otherwise. ``meshmsg init``
creates it with :func:`init_data_dir`: a fresh identity and database key sealed together in the
keystore (Argon2id over a passphrase, or a 0600 key file for unattended relays), an empty
encrypted database, and a commented ``config.toml`` read by :meth:`Settings.load`.

:func:`unlock` opens the keystore again. The daemon (``meshmsg.app.daemon``) then owns the
database for as long as it runs and holds ``daemon.lock``; :class:`OfflineNode` gives the CLI the
same Node for the few commands that are safe without a daemon (``id``, ``contact add/list``), and
refuses while a daemon holds the lock, since two writers would each keep a diverging Node.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, TypeVar

import nacl.pwhash.argon2id as argon2id
import platformdirs

from meshmsg.app import keystore
from meshmsg.config import NodeConfig
from meshmsg.core.address import LISTEN, parse_address
from meshmsg.core.effects import (
    CloseLink,
    DeleteChunks,
    Dial,
    LoadEnvelope,
    Persist,
    RecordKind,
    Transmit,
)
from meshmsg.core.identity import IDENTITY_BYTES, Identity, _check_name, encode_contact_code
from meshmsg.core.node import Node
from meshmsg.errors import ConfigError, InvalidContactCode, KeystoreError, StorageError
from meshmsg.net.chunkstore import ChunkStore
from meshmsg.net.peers import parse_peer_address
from meshmsg.net.storage import DB_KEY_BYTES, DataDir, Storage, new_db_key
from meshmsg.sysrng import SystemRng

logger = logging.getLogger(__name__)

APP_NAME: Final = "meshmsg"
HOME_ENV: Final = "MESHMSG_HOME"
PASSPHRASE_ENV: Final = "MESHMSG_PASSPHRASE"
# Tests only: Argon2id at libsodium's minimum cost, so a test suite can init many nodes. A
# keystore sealed this way is cheap to brute-force; the costs are stored in its header, so
# unlocking needs no flag. Documented in docs/operations.md as test-only.
KDF_FAST_ENV: Final = "MESHMSG_KDF_FAST"
DEFAULT_PORT: Final = 7447
DEFAULT_API_PORT: Final = 7448
PROFILES: Final = ("office", "crisis")
LOCK_FILE: Final = "daemon.lock"
RUNTIME_FILE: Final = "daemon.json"

T = TypeVar("T")

CONFIG_TEMPLATE: Final = """\
# meshmsg node settings (docs/operations.md explains each one).

# Display name put into your contact code (others see it as a claim, not as proof).
{name_line}

# "office": mail is kept 1 day; "crisis": mail travels up to 14 days.
profile = "office"

[network]
# Where this node accepts links from peers (host:port). 0.0.0.0 means every interface.
listen = "0.0.0.0:{port}"
# Networks on which mDNS may announce and find peers: CIDRs or interface names.
# Empty: mDNS is off and only static peers are dialled.
trusted_networks = []
# Peers to dial where multicast does not work, as "host:port".
static_peers = []
# Optional site key (64 hex digits): only nodes with the same key can link, and outsiders
# learn no identity. Generate one with: python -c "import secrets; print(secrets.token_hex(32))"
# site_key = ""

[api]
# The local HTTP + WebSocket API listens on 127.0.0.1 only. 0 picks a free port.
port = {api_port}

[keystore]
# Unattended relays only: unlock with this 0600 key file instead of a passphrase.
# key_file = "keystore.key"

[privacy]
# true: receipts for mail a relay brought leave after 2 s, even to that relay, which then
# learns you were the recipient. false (default): a random 30-300 s later, not to that relay.
# prompt_receipts = false
"""


# --- where the data lives --------------------------------------------------------------------


def default_data_dir() -> Path:
    """``MESHMSG_HOME`` if set, else platformdirs' user data directory for meshmsg."""
    home = os.environ.get(HOME_ENV)
    return Path(home) if home else Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def lock_path(data_dir: DataDir) -> Path:
    return data_dir.root / LOCK_FILE


def runtime_path(data_dir: DataDir) -> Path:
    return data_dir.root / RUNTIME_FILE


def is_initialised(data_dir: DataDir) -> bool:
    return data_dir.keystore_path.exists()


def require_initialised(data_dir: DataDir) -> None:
    """Raises: KeystoreError: the directory holds no keystore yet."""
    if not is_initialised(data_dir):
        raise KeystoreError(f"no meshmsg identity in {data_dir.root}: run `meshmsg init` first")


# --- settings ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """The contents of ``config.toml``, checked. Unknown keys are refused (typos must not hide)."""

    name: str | None = None
    profile: str = "office"
    listen_host: str = "0.0.0.0"
    listen_port: int = DEFAULT_PORT
    trusted_networks: tuple[str, ...] = ()
    static_peers: tuple[str, ...] = ()
    site_key: bytes | None = field(default=None, repr=False)
    api_port: int = DEFAULT_API_PORT
    key_file: Path | None = None
    # Receipts for mail a relay handed over leave after 2 s, even to that relay (which then
    # learns who the recipient was), instead of a random 30-300 s and not to that relay for
    # 10 min (issue #11): for a team that values a quick "delivered" over that privacy.
    prompt_receipts: bool = False

    @classmethod
    def load(cls, data_dir: DataDir) -> Settings:
        """Read ``config.toml`` (defaults if it is missing).

        Raises:
            ConfigError: unreadable TOML, an unknown key, or a bad value.
        """
        path = data_dir.config_path
        if not path.exists():
            return cls()
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from exc
        return cls.from_dict(raw, base=data_dir.root, source=str(path))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], *, base: Path, source: str = "config") -> Settings:
        """Check a parsed ``config.toml``; relative paths are relative to ``base``.

        Raises:
            ConfigError: an unknown key or a bad value (the message names it and ``source``).
        """
        top = _Section(raw, source, "")
        raw_name = top.get("name", str, "")
        name = check_name(raw_name, f"{source}: name") if raw_name else None
        profile = _profile(top.get("profile", str, "office"), source)
        network = top.section("network")
        api = top.section("api")
        keys = top.section("keystore")
        privacy = top.section("privacy")
        top.done()
        host, port = _listen(network.get("listen", str, f"0.0.0.0:{DEFAULT_PORT}"), source)
        key_file = keys.get("key_file", str, "")
        settings = cls(
            name=name,
            profile=profile,
            listen_host=host,
            listen_port=port,
            trusted_networks=_strings(network.get("trusted_networks", list, []), source),
            static_peers=_strings(network.get("static_peers", list, []), source),
            site_key=_site_key(network.get("site_key", str, ""), source),
            api_port=_port(api.get("port", int, DEFAULT_API_PORT), source, "api.port"),
            key_file=(base / key_file) if key_file else None,
            prompt_receipts=privacy.get("prompt_receipts", bool, False),
        )
        for section in (network, api, keys, privacy):
            section.done()
        for peer in settings.static_peers:
            parse_peer_address(peer)  # ConfigError names the bad one
        # Trusted networks may name interfaces that come and go (a laptop's Wi-Fi): they are
        # resolved when the daemon starts, so `meshmsg id` works wherever the laptop is.
        return settings

    def node_config(self) -> NodeConfig:
        """The NodeConfig of this profile, with the site key."""
        base = NodeConfig.crisis() if self.profile == "crisis" else NodeConfig.office()
        # A daemon has its database: carried bodies live there (StoreConfig.bodies_on_disk).
        store = replace(base.store, bodies_on_disk=True)
        config = base.replace(site_key=self.site_key, store=store)
        if not self.prompt_receipts:
            return config
        return relayed_receipts_after(config, config.message.receipt_delay_s)


def relayed_receipts_after(config: NodeConfig, delay_s: float) -> NodeConfig:
    """``config`` with relayed mail's receipts sealed ``delay_s`` after the opening and never
    kept from their relay (``privacy.prompt_receipts``; the demo, which shows their trip)."""
    message = replace(
        config.message, receipt_relayed_delay_min_s=delay_s,
        receipt_relayed_delay_max_s=delay_s, receipt_hold_s=0.0,
    )  # fmt: skip
    return config.replace(message=message)


def check_name(name: str, what: str = "name") -> str:
    """``name`` if it may be a display name: the contact code's rule, checked once for everyone.

    The same rule applies to ``init --name``, ``config.toml``, a contact's local name and a code's
    name, so a name accepted anywhere can also be put into a contact code (and shown safely).

    Raises:
        ConfigError: empty, longer than CONTACT_NAME_MAX_BYTES in UTF-8, or with control,
            line-break or bidi characters.
    """
    if not name.strip():
        raise ConfigError(f"{what} is empty")
    try:
        # The core's rule (core/identity.py); it has no public name for it yet.
        _check_name(name)
    except InvalidContactCode as exc:
        size = len(name.encode("utf-8", errors="surrogatepass"))
        raise ConfigError(f"{what} refused: {exc} ({size} bytes given)") from exc
    return name


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string. JSON's escapes (\\", \\\\, \\uXXXX) are TOML's too."""
    return json.dumps(text, ensure_ascii=False)


class _Section:
    """One TOML table being read: typed gets, then :meth:`done` refuses what was not read."""

    def __init__(self, raw: object, source: str, prefix: str) -> None:
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: [{prefix.rstrip('.')}] must be a table")
        self._raw: dict[str, Any] = raw
        self._source = source
        self._prefix = prefix
        self._read: set[str] = set()

    def get(self, key: str, kind: type[T], default: T) -> T:
        self._read.add(key)
        value = self._raw.get(key, default)
        # bool is an int in Python; a port of `true` is a typo, not 1.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(
                f"{self._source}: {self._prefix}{key} must be {kind.__name__}, got {value!r}"
            )
        return value

    def section(self, key: str) -> _Section:
        self._read.add(key)
        return _Section(self._raw.get(key, {}), self._source, f"{self._prefix}{key}.")

    def done(self) -> None:
        unknown = sorted(set(self._raw) - self._read)
        if unknown:
            names = ", ".join(self._prefix + k for k in unknown)
            raise ConfigError(f"{self._source}: unknown setting {names}")


def _profile(value: str, source: str) -> str:
    if value not in PROFILES:
        raise ConfigError(f"{source}: profile must be one of {', '.join(PROFILES)}, not {value!r}")
    return value


def _port(value: int, source: str, key: str) -> int:
    if not 0 <= value <= 65_535:
        raise ConfigError(f"{source}: {key} must be 0-65535, not {value}")
    return value


def _listen(text: str, source: str) -> tuple[str, int]:
    def error(message: str) -> ConfigError:
        return ConfigError(f"{source}: network.listen must be IP:port: {message}")

    return parse_address(text, LISTEN, error)


def _strings(values: list[Any], source: str) -> tuple[str, ...]:
    if not all(isinstance(v, str) for v in values):
        raise ConfigError(f"{source}: expected a list of strings, got {values!r}")
    return tuple(values)


def _site_key(text: str, source: str) -> bytes | None:
    if not text:
        return None
    try:
        key = bytes.fromhex(text)
    except ValueError as exc:
        raise ConfigError(f"{source}: network.site_key must be 64 hex digits") from exc
    if len(key) != 32:
        raise ConfigError(f"{source}: network.site_key must be 64 hex digits (32 bytes)")
    return key


# --- init and unlock ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Unlocked:
    """What the keystore holds: the identity and the database key."""

    identity: Identity = field(repr=False)
    db_key: bytes = field(repr=False)


def kdf_fast_requested() -> bool:
    return os.environ.get(KDF_FAST_ENV, "") not in ("", "0")


def init_data_dir(
    data_dir: DataDir,
    *,
    passphrase: str | None,
    key_file: bool = False,
    name: str | None = None,
    kdf_fast: bool = False,
) -> Identity:
    """Create a node: identity, database key, keystore, empty database, ``config.toml``.

    Args:
        passphrase: seals the keystore (Argon2id); None with ``key_file``.
        key_file: seal with a new 0600 key file (``keystore.key``) instead: unattended relays.
        name: the display name written into ``config.toml``.
        kdf_fast: Argon2id at minimum cost. Tests only.

    Raises:
        KeystoreError: already initialised, empty passphrase, or a file could not be written.
        StorageError: the directory or database could not be created.
    """
    if name is not None:
        check_name(name)  # before anything is created: a refused name leaves no half a node
    data_dir.create()
    if is_initialised(data_dir):
        raise KeystoreError(f"{data_dir.root} already holds an identity; refusing to replace it")
    identity = Identity.generate(SystemRng())
    db_key = new_db_key()
    secret = identity.to_bytes() + db_key
    if key_file:
        blob = keystore.seal_keystore_with_key(
            secret, keystore.create_key_file(data_dir.key_file_path)
        )
    else:
        blob = _seal_with_passphrase(secret, passphrase, kdf_fast)
    Storage.open(data_dir.db_path, db_key).close()  # the database exists before the keystore
    if not data_dir.config_path.exists():
        _write_config(data_dir, name, key_file)
    keystore.save_keystore(data_dir.keystore_path, blob)
    return identity


def _seal_with_passphrase(secret: bytes, passphrase: str | None, kdf_fast: bool) -> bytes:
    if not passphrase:
        raise KeystoreError("refusing an empty passphrase")
    if kdf_fast:
        return keystore.seal_keystore(
            secret, passphrase, ops_limit=argon2id.OPSLIMIT_MIN, mem_limit=argon2id.MEMLIMIT_MIN
        )
    return keystore.seal_keystore(secret, passphrase)


def change_passphrase(
    data_dir: DataDir, settings: Settings, unlocked: Unlocked, new: str, *, kdf_fast: bool = False
) -> None:
    """Seal the keystore's secret again under ``new``; the file is replaced atomically.

    Raises:
        KeystoreError: a key-file node (no passphrase to change), an empty passphrase, or the
            keystore could not be written (the old one is then still in place).
    """
    if settings.key_file is not None:
        raise KeystoreError("this node unlocks with a key file, not a passphrase")
    secret = unlocked.identity.to_bytes() + unlocked.db_key
    keystore.save_keystore(data_dir.keystore_path, _seal_with_passphrase(secret, new, kdf_fast))


def _write_config(data_dir: DataDir, name: str | None, key_file: bool) -> None:
    name_line = f"name = {toml_string(name)}" if name else '# name = "alice"'
    text = CONFIG_TEMPLATE.format(name_line=name_line, port=DEFAULT_PORT, api_port=DEFAULT_API_PORT)
    if key_file:
        text = text.replace('# key_file = "keystore.key"', 'key_file = "keystore.key"')
    try:
        fd = os.open(data_dir.config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        raise StorageError(f"cannot write {data_dir.config_path}: {exc}") from exc


def unlock(data_dir: DataDir, settings: Settings, passphrase: Callable[[], str] | None) -> Unlocked:
    """Open the keystore: with the key file if one is configured, else with the passphrase.

    ``passphrase`` is called only when needed (it may prompt).

    Raises:
        KeystoreError: no keystore, wrong passphrase or key file, a damaged keystore, or no
            passphrase source.
    """
    require_initialised(data_dir)
    blob = keystore.load_keystore(data_dir.keystore_path)
    if settings.key_file is not None:
        secret = keystore.open_keystore_with_key(blob, keystore.load_key_file(settings.key_file))
    else:
        if passphrase is None:
            raise KeystoreError(f"a passphrase is needed: set {PASSPHRASE_ENV} or use a terminal")
        secret = keystore.open_keystore(blob, passphrase())
    if len(secret) != IDENTITY_BYTES + DB_KEY_BYTES:
        raise KeystoreError("keystore holds an unexpected secret (not written by meshmsg init)")
    return Unlocked(Identity.from_bytes(secret[:IDENTITY_BYTES]), secret[IDENTITY_BYTES:])


def own_contact_code(identity: Identity, settings: Settings) -> str:
    return encode_contact_code(identity.public, settings.name)


# --- the daemon lock ---------------------------------------------------------------------------


@contextmanager
def daemon_lock(data_dir: DataDir) -> Iterator[bool]:
    """Try to take the data directory's lock; yield whether we hold it.

    The daemon holds it while it runs; offline commands hold it while they write. It is an
    advisory ``flock``: the kernel drops it when the process dies, so a crash leaves no stale lock.
    """
    fd = os.open(lock_path(data_dir), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def daemon_running(data_dir: DataDir) -> bool:
    """Whether a daemon holds this data directory (its lock is taken)."""
    if not lock_path(data_dir).exists():
        return False
    with daemon_lock(data_dir) as held:
        return not held


# --- offline access ----------------------------------------------------------------------------


class OfflineNode:
    """The node without a network, for CLI commands that need no peers (see :func:`open_offline`).

    Each :meth:`run` applies one command and commits every ``Persist`` it caused before
    returning; events are dropped (nobody listens) and there are no links to transmit on.
    """

    def __init__(self, node: Node, storage: Storage, chunks: ChunkStore) -> None:
        self.node = node
        self._storage = storage
        self._chunks = chunks

    def run(self, fn: Callable[[Node, float], T]) -> T:
        """Apply ``fn(node, now)`` and commit what it persisted.

        Raises:
            StorageError: a commit failed.
            Exception: whatever ``fn`` raised (for the Node: LocalProtocolError, ...).
        """
        node = self.node
        now = time.time()
        result = fn(node, now)
        while (effect := node.next_effect()) is not None:
            if isinstance(effect, Persist):
                self._storage.apply(effect)
                node.storage_committed(effect.token, now=now)
            elif isinstance(effect, DeleteChunks):  # an attachment expired or was discarded
                self._chunks.delete(effect.attachment_id)
            elif isinstance(effect, LoadEnvelope):  # carried mail became ours (a new contact)
                self._load(node, effect.envelope_id, now)
            else:  # with no links nothing else can be asked of us
                assert isinstance(effect, Transmit | Dial | CloseLink)
        while node.next_event() is not None:
            pass
        return result

    def _load(self, node: Node, envelope_id: bytes, now: float) -> None:
        try:
            record = self._storage.load_one(RecordKind.ENVELOPE, envelope_id)
        except StorageError as exc:
            logger.warning("envelope %s unreadable: %s", envelope_id.hex(), exc)
            record = None
        node.envelope_loaded(envelope_id, None if record is None else record.value, now=now)


@contextmanager
def open_offline(
    data_dir: DataDir, settings: Settings, unlocked: Unlocked
) -> Iterator[OfflineNode]:
    """Open the node from its database, holding the data directory's lock throughout.

    Raises:
        StorageError: a daemon holds the data directory, or the database failed.
    """
    with daemon_lock(data_dir) as held:
        if not held:
            raise StorageError("the daemon is running: this command must go through it")
        config = settings.node_config()
        with Storage.open(data_dir.db_path, unlocked.db_key, config=config.storage) as storage:
            chunks = ChunkStore(data_dir.chunks_path)
            node = Node(
                identity=unlocked.identity,
                config=config,
                rng=SystemRng(),
                now=time.time(),
                records=storage.iter_all(),
                chunks=chunks.scan(),
            )
            yield OfflineNode(node, storage, chunks)


def read_text_file(path: Path, limit: int) -> str:
    """Read a small text file (the API token, the runtime file), bounded.

    Raises:
        OSError: missing or unreadable.
    """
    with path.open("r", encoding="utf-8") as f:
        return f.read(limit)


__all__ = [
    "HOME_ENV",
    "KDF_FAST_ENV",
    "PASSPHRASE_ENV",
    "OfflineNode",
    "Settings",
    "Unlocked",
    "change_passphrase",
    "check_name",
    "daemon_lock",
    "daemon_running",
    "default_data_dir",
    "init_data_dir",
    "kdf_fast_requested",
    "open_offline",
    "own_contact_code",
    "toml_string",
    "unlock",
]
