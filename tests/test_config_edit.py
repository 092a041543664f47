"""``meshmsg config set/show`` and init's network offer (meshmsg/app/config_edit.py)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from meshmsg.app.config_edit import dump, local_networks, set_setting
from meshmsg.app.datadir import Settings
from meshmsg.errors import ConfigError
from meshmsg.net.storage import DataDir
from tests.test_cli import assert_one_line_error, init, mm, runner

__all__ = ["runner"]  # the fixture, shared with test_cli


def test_set_keeps_comments_and_checks_like_a_load(runner: CliRunner, tmp_path: Path) -> None:
    home = tmp_path / "alice"
    assert mm(runner, home, "init", "--name", "alice").exit_code == 0
    data_dir = DataDir(home)
    set_setting(data_dir, "network.trusted_networks", "192.168.10.0/24, eth0")
    set_setting(data_dir, "network.static_peers", "10.20.0.5:7447")
    set_setting(data_dir, "network.listen", "127.0.0.1:9000")
    set_setting(data_dir, "api.port", "0")
    set_setting(data_dir, "network.site_key", "ab" * 32)  # replaces the commented example
    text = (home / "config.toml").read_text()
    assert "# Peers to dial where multicast does not work" in text  # comments survive
    settings = Settings.load(data_dir)
    assert settings.trusted_networks == ("192.168.10.0/24", "eth0")
    assert settings.static_peers == ("10.20.0.5:7447",)
    assert (settings.listen_host, settings.listen_port, settings.api_port) == ("127.0.0.1", 9000, 0)
    assert settings.site_key == bytes.fromhex("ab" * 32)
    for key, value, error in [
        ("network.listen", "localhost:1", "IP:port"),
        ("api.port", "70000", "0-65535"),
        ("api.port", "x", "must be an integer"),
        ("network.static_peers", "nohost", "bad peer address"),
        ("network.trusted_networks", "10.0.0.1/24", "bad trusted network"),
        ("name", "Ö" * 40, "longer than 64 bytes"),
        ("profile", "party", "profile must be one of"),
    ]:
        with pytest.raises(ConfigError, match=error):
            set_setting(data_dir, key, value)
    assert (home / "config.toml").read_text() == text  # a refused value changes nothing


def test_set_writes_the_file_anew_when_a_line_edit_cannot(tmp_path: Path) -> None:
    data_dir = DataDir(tmp_path)
    (tmp_path / "config.toml").write_text('[network]\nstatic_peers = [\n  "10.0.0.1:1",\n]\n')
    set_setting(data_dir, "network.static_peers", "10.0.0.2:2")
    assert Settings.load(data_dir).static_peers == ("10.0.0.2:2",)
    set_setting(data_dir, "name", 'Al "x" \\ y')
    assert Settings.load(data_dir).name == 'Al "x" \\ y'
    raw = {"name": "a", "network": {"static_peers": ["1.2.3.4:5"]}, "api": {"port": 0}}
    assert tomllib.loads(dump(raw)) == raw


def test_config_cli_and_init_offers_networks(runner: CliRunner, tmp_path: Path) -> None:
    home = tmp_path / "alice"
    created = mm(runner, home, "init", "--name", "alice")
    assert created.exit_code == 0, created.output
    if local_networks():  # a machine with only loopback has nothing to offer
        assert "meshmsg config set network.trusted_networks" in created.output
    assert "trusted_networks = []" in (home / "config.toml").read_text()  # not enabled
    init(runner, tmp_path / "bob", "bob")
    result = mm(runner, home, "config", "set", "network.static_peers", "10.0.0.5:7447,10.0.0.6:1")
    assert result.exit_code == 0, result.output
    shown = mm(runner, home, "config", "show").output
    assert 'network.static_peers = ["10.0.0.5:7447", "10.0.0.6:1"]' in shown
    assert_one_line_error(mm(runner, home, "config", "set", "api.port", "70000"), "0-65535")
    bad_key = mm(runner, home, "config", "set", "network.lisen", "x")
    assert bad_key.exit_code == 2


def test_prompt_receipts_is_set_like_the_others(runner: CliRunner, tmp_path: Path) -> None:
    home = tmp_path / "alice"
    assert mm(runner, home, "init", "--name", "alice").exit_code == 0
    data_dir = DataDir(home)
    assert Settings.load(data_dir).prompt_receipts is False
    set_setting(data_dir, "privacy.prompt_receipts", "true")  # replaces the commented example
    assert Settings.load(data_dir).prompt_receipts is True
    assert "# true: receipts for mail a relay brought" in (home / "config.toml").read_text()
    set_setting(data_dir, "privacy.prompt_receipts", "False")
    assert Settings.load(data_dir).prompt_receipts is False
    with pytest.raises(ConfigError, match="must be true or false"):
        set_setting(data_dir, "privacy.prompt_receipts", "yes")
    shown = mm(runner, home, "config", "show")
    assert "privacy.prompt_receipts = false" in shown.output
