"""Settings from config.toml, init and unlock, the daemon lock (meshmsg/app/datadir.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshmsg.app.datadir import Settings, daemon_lock, daemon_running, init_data_dir, unlock
from meshmsg.errors import ConfigError, KeystoreError
from meshmsg.net.storage import DataDir


def test_settings_defaults_and_values(tmp_path: Path) -> None:
    assert Settings.from_dict({}, base=tmp_path) == Settings()
    settings = Settings.from_dict(
        {
            "name": "relay-1",
            "profile": "crisis",
            "network": {
                "listen": "127.0.0.1:9000",
                "static_peers": ["127.0.0.1:9001"],
                "site_key": "ab" * 32,
                "trusted_networks": ["10.0.0.0/24"],
            },
            "api": {"port": 0},
            "keystore": {"key_file": "relay.key"},
        },
        base=tmp_path,
    )
    assert (settings.listen_host, settings.listen_port, settings.api_port) == ("127.0.0.1", 9000, 0)
    assert settings.key_file == tmp_path / "relay.key"
    config = settings.node_config()
    assert config.site_key == bytes.fromhex("ab" * 32)
    assert config.message.latency_budget_s == 14 * 86_400


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"nmae": "typo"}, "unknown setting nmae"),
        ({"network": {"lisen": "x"}}, "unknown setting network.lisen"),
        ({"profile": "party"}, "profile must be one of"),
        ({"network": {"listen": "localhost:7447"}}, "IP:port"),
        ({"network": {"listen": "127.0.0.1:70000"}}, "0-65535"),
        ({"api": {"port": True}}, "must be int"),
        ({"network": {"site_key": "abcd"}}, "64 hex digits"),
        ({"network": {"static_peers": ["nohost"]}}, "bad peer address"),
        ({"network": {"static_peers": "127.0.0.1:1"}}, "must be list"),
        ({"name": "Ö" * 40}, "name refused: display name is longer than 64 bytes"),
        ({"name": "evil\x1b[31m"}, "name refused: .*control character U\\+001B"),
        ({"name": "a\u202eb"}, "control character U\\+202E"),
        ({"name": "  "}, "name is empty"),
    ],
)
def test_settings_refuse_mistakes(tmp_path: Path, raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_dict(raw, base=tmp_path)


def test_init_unlock_and_wrong_passphrase(tmp_path: Path) -> None:
    data_dir = DataDir(tmp_path / "node")
    identity = init_data_dir(data_dir, passphrase="pw", name="ann", kdf_fast=True)
    settings = Settings.load(data_dir)
    assert settings.name == "ann"
    assert unlock(data_dir, settings, lambda: "pw").identity.peer_id == identity.peer_id
    with pytest.raises(KeystoreError, match="wrong passphrase"):
        unlock(data_dir, settings, lambda: "PW")
    with pytest.raises(KeystoreError, match="already holds"):
        init_data_dir(data_dir, passphrase="pw", kdf_fast=True)


def test_key_file_mode(tmp_path: Path) -> None:
    data_dir = DataDir(tmp_path / "relay")
    identity = init_data_dir(data_dir, passphrase=None, key_file=True)
    settings = Settings.load(data_dir)
    assert settings.key_file == data_dir.key_file_path
    asked: list[bool] = []
    unlocked = unlock(data_dir, settings, lambda: asked.append(True) or "")
    assert unlocked.identity.peer_id == identity.peer_id
    assert asked == []  # no passphrase asked for
    data_dir.key_file_path.chmod(0o644)
    with pytest.raises(KeystoreError, match="others may read it"):
        unlock(data_dir, settings, None)


def test_the_lock_says_whether_a_daemon_runs(tmp_path: Path) -> None:
    data_dir = DataDir(tmp_path / "node").create()
    assert not daemon_running(data_dir)
    with daemon_lock(data_dir) as held:
        assert held
        assert daemon_running(data_dir)
        with daemon_lock(data_dir) as second:
            assert not second
    assert not daemon_running(data_dir)


def test_a_refused_name_leaves_no_half_initialised_node(tmp_path: Path) -> None:
    data_dir = DataDir(tmp_path / "node")
    with pytest.raises(ConfigError, match="longer than 64 bytes"):
        init_data_dir(data_dir, passphrase="pw", name="Ö" * 40, kdf_fast=True)
    assert not data_dir.db_path.exists()
    init_data_dir(data_dir, passphrase="pw", name="ann", kdf_fast=True)  # a retry works


@pytest.mark.parametrize("name", ['Bob "the builder"', "back\\slash\\", "Zoë [red]x[/red] 'q'"])
def test_the_name_in_config_toml_round_trips(tmp_path: Path, name: str) -> None:
    data_dir = DataDir(tmp_path / "node")
    init_data_dir(data_dir, passphrase="pw", name=name, kdf_fast=True)
    assert Settings.load(data_dir).name == name


def test_prompt_receipts_is_off_by_default_and_switches_the_relayed_receipt_timing(
    tmp_path: Path,
) -> None:
    """Issue #11: relayed receipts wait 30-300 s and avoid their relay unless the operator
    chose prompt receipts (then 2 s, like direct ones, to that relay too)."""
    private = Settings.from_dict({}, base=tmp_path).node_config().message
    assert private.receipt_relayed_delay_min_s >= 30.0
    assert private.receipt_hold_s > 0
    raw = {"privacy": {"prompt_receipts": True}}
    prompt = Settings.from_dict(raw, base=tmp_path).node_config().message
    assert prompt.receipt_relayed_delay_min_s == prompt.receipt_relayed_delay_max_s
    assert prompt.receipt_relayed_delay_max_s == prompt.receipt_delay_s
    assert prompt.receipt_hold_s == 0.0
    with pytest.raises(ConfigError, match=r"privacy\.prompt_receipts must be bool"):
        Settings.from_dict({"privacy": {"prompt_receipts": "yes"}}, base=tmp_path)
    with pytest.raises(ConfigError, match=r"unknown setting privacy\.prompt"):
        Settings.from_dict({"privacy": {"prompt": True}}, base=tmp_path)
