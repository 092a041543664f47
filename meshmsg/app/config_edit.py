"""``meshmsg config set KEY VALUE``: change one setting of ``config.toml``, checked like a load.

The new contents are checked by :meth:`Settings.from_dict`, the same code that reads the file
at every start, so a value ``config set`` accepts is one ``meshmsg run`` accepts. The file is
edited in place, line by line, so that its comments stay; the edit is then parsed again and, in
the rare case it does not give exactly the intended table (say a list written over several
lines), the file is written out anew instead (without comments). Either way it is replaced
atomically.
"""

from __future__ import annotations

import copy
import ipaddress
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Final

import ifaddr

from meshmsg.app.datadir import Settings, toml_string
from meshmsg.errors import ConfigError, StorageError
from meshmsg.net.peers import TrustedNetworks
from meshmsg.net.storage import DataDir

SETTINGS: Final[dict[str, type]] = {
    "name": str,
    "profile": str,
    "network.listen": str,
    "network.trusted_networks": list,
    "network.static_peers": list,
    "network.site_key": str,
    "api.port": int,
    "keystore.key_file": str,
    "privacy.prompt_receipts": bool,
}
_HEADER: Final = re.compile(r"\s*\[([A-Za-z_]+)\]\s*(#.*)?")


def parse_value(key: str, text: str) -> Any:
    """VALUE as the setting's type: lists are comma-separated (empty: none), ports integers.

    Raises:
        ConfigError: an unknown key, or a port that is not an integer.
    """
    kind = SETTINGS.get(key)
    if kind is None:
        raise ConfigError(f"unknown setting {key!r}; one of: {', '.join(SETTINGS)}")
    if kind is list:
        return [item.strip() for item in text.split(",") if item.strip()]
    if kind is bool:
        if text.strip().lower() not in ("true", "false"):
            raise ConfigError(f"{key} must be true or false, not {text!r}")
        return text.strip().lower() == "true"
    if kind is int:
        try:
            return int(text)
        except ValueError as exc:
            raise ConfigError(f"{key} must be an integer, not {text!r}") from exc
    return text


def set_setting(data_dir: DataDir, key: str, text: str) -> Settings:
    """Set ``key`` to VALUE ``text`` in ``config.toml``; return the settings as they now are.

    Raises:
        ConfigError: an unknown key or a value ``config.toml`` would refuse (nothing written).
        StorageError: the file could not be written.
    """
    path = data_dir.config_path
    try:
        old = path.read_text(encoding="utf-8") if path.exists() else ""
        raw = tomllib.loads(old)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    value = parse_value(key, text)
    updated = _with(raw, key, value)
    settings = Settings.from_dict(updated, base=data_dir.root, source=f"config set {key}")
    if key == "network.trusted_networks":
        _check_cidrs(value)
    new = _edit_lines(old, key, value)
    if _parsed(new) != updated:  # a layout the line edit cannot handle
        new = dump(updated)
    _replace(path, new)
    return settings


def _parsed(text: str) -> dict[str, Any] | None:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return None


def _with(raw: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    updated = copy.deepcopy(raw)
    section, _, leaf = key.rpartition(".")
    table = updated.setdefault(section, {}) if section else updated
    table[leaf] = value
    return updated


def _check_cidrs(specs: list[str]) -> None:
    # Interface names are resolved when the daemon starts (a laptop's Wi-Fi comes and goes);
    # CIDRs can be checked now, by the parser the daemon uses.
    TrustedNetworks.parse([s for s in specs if "/" in s])


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return str(value)


def _edit_lines(text: str, key: str, value: Any) -> str:
    """``text`` with ``key``'s line replaced (or a commented example of it, or one added)."""
    section, _, leaf = key.rpartition(".")
    lines = text.splitlines()
    current, start, end = "", 0, None  # the target section's lines are start..end
    for i, line in enumerate(lines):
        header = _HEADER.fullmatch(line)
        if header is None:
            continue
        if current == section and end is None:
            end = i
        current = header.group(1)
        if current == section:
            start, end = i + 1, None
    if section and start == 0:  # no such section yet
        lines += ["", f"[{section}]"]
        start = len(lines)
    end = len(lines) if end is None else end
    new_line = f"{leaf} = {toml_value(value)}"
    setting = re.compile(rf"\s*{re.escape(leaf)}\s*=.*")
    example = re.compile(rf"\s*#\s*{re.escape(leaf)}\s*=.*")
    for pattern in (setting, example):
        for i in range(start, end):
            if pattern.fullmatch(lines[i]):
                lines[i] = new_line
                return "\n".join(lines) + "\n"
    lines.insert(end, new_line)
    return "\n".join(lines) + "\n"


def dump(raw: dict[str, Any]) -> str:
    """A whole ``config.toml`` from its table (top-level keys, then one table per section)."""
    out = [f"{k} = {toml_value(v)}" for k, v in raw.items() if not isinstance(v, dict)]
    for name, table in raw.items():
        if isinstance(table, dict):
            out += ["", f"[{name}]", *(f"{k} = {toml_value(v)}" for k, v in table.items())]
    return "\n".join(out) + "\n"


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StorageError(f"cannot write {path}: {exc}") from exc


def local_networks() -> list[tuple[str, str]]:
    """The IPv4 networks this machine is on now, as ``(CIDR, interface)``, loopback excluded."""
    found: list[tuple[str, str]] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if not isinstance(ip.ip, str):  # IPv6: link-local and global addresses, skipped
                continue
            net = ipaddress.ip_network(f"{ip.ip}/{ip.network_prefix}", strict=False)
            if not net.is_loopback and (str(net), adapter.nice_name) not in found:
                found.append((str(net), adapter.nice_name))
    return found


__all__ = ["SETTINGS", "dump", "local_networks", "parse_value", "set_setting", "toml_value"]
