"""Config errors: each kind gives exit 1 and one line naming the key and what is expected."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bzlogger import config
from bzlogger.cli import cli

CONTRACT_EXAMPLE = """
[store]
path = "/var/lib/bzlogger/bzlogger.db"   # the encrypted SQLite store
key_file = "/etc/bzlogger/store.key"       # the store's master key
retention_days = 21

[ble]
adapter = "hci0"
advertise = ["bluezone"]                   # any of "bluezone", "gaen"
scan = ["bluezone", "gaen"]

[gaen]
# keys that published GAEN exports must be signed with
verification_keys = [{ key_id = "310", key_version = "v1", pem = "/etc/bzlogger/keys/310-v1.pem" }]
"""


def run(tmp_path: Path, text: str, *args: str) -> tuple[int, str, str]:
    path = tmp_path / "bzlogger.toml"
    path.write_text(text)
    result = CliRunner().invoke(cli, ["--config", str(path), *args])
    return result.exit_code, result.stdout, result.stderr


def test_interface_example_is_accepted(tmp_path: Path) -> None:
    code, out, _ = run(tmp_path, CONTRACT_EXAMPLE, "config", "show", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["store"]["retention_days"] == 21
    assert data["ble"]["scan"] == ["bluezone", "gaen"]
    assert data["gaen"]["verification_keys"] == [
        {"key_id": "310", "key_version": "v1", "pem": "/etc/bzlogger/keys/310-v1.pem"}]


@pytest.mark.parametrize(("text", "key", "expect"), [
    ("[store]\nretention = 3\n", "store.retention", "unknown config key"),
    ("[stor]\npath = 'x'\n", "stor", "unknown config key"),
    ("[store]\nretention_days = 'three'\n", "store.retention_days", "wrong type"),
    ("[store]\nretention_days = 0\n", "store.retention_days", "invalid"),
    ("[store]\nretention_days = true\n", "store.retention_days", "wrong type"),
    ("[ble]\nadvertise = ['bluezone', 'wifi']\n", "ble.advertise", "invalid"),
    ("[ble]\nadvertise = 'bluezone'\n", "ble.advertise", "wrong type"),
    ("[ble]\nadapter = 'wlan0'\n", "ble.adapter", "invalid"),
    ("[ble]\nbluezone_max = 7\n", "ble.bluezone_max", "invalid"),
    ("[gaen]\nverification_keys = [{ key_id = '310' }]\n", "gaen.verification_keys[0].pem",
     "missing"),
    ("[gaen]\nverification_keys = [{ key_id = '310', pem = 'k.pem', colour = 'red' }]\n",
     "gaen.verification_keys[0].colour", "unknown config key"),
    ("store = 3\n", "store", "expected a table"),
    ("[store\n", "not valid TOML", "not valid TOML"),
])
def test_bad_config_exits_1_naming_the_key(tmp_path: Path, text: str, key: str,
                                           expect: str) -> None:
    code, out, err = run(tmp_path, text, "config", "check")
    assert code == 1
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert key in lines[0] and expect in lines[0]
    assert "Traceback" not in err


def test_missing_explicit_config_is_an_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--config", str(tmp_path / "nope.toml"), "config", "check"])
    assert result.exit_code == 1
    assert "does not exist" in result.stderr


def test_missing_default_config_gives_defaults(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.CONFIG_ENV, str(tmp_path / "absent.toml"))
    result = CliRunner().invoke(cli, ["config", "show", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["store"]["retention_days"] == 21


def test_env_config_path_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "env.toml"
    path.write_text("[store]\nretention_days = 7\n")
    monkeypatch.setenv(config.CONFIG_ENV, str(path))
    result = CliRunner().invoke(cli, ["config", "show", "--json"])
    assert json.loads(result.stdout)["store"]["retention_days"] == 7


def test_relative_paths_are_taken_from_the_config_directory(tmp_path: Path) -> None:
    code, out, _ = run(tmp_path, "[store]\npath = 'data/b.db'\n", "config", "show", "--json")
    assert code == 0
    assert json.loads(out)["store"]["path"] == str(tmp_path / "data" / "b.db")


def test_reference_lists_every_section() -> None:
    text = config.reference()
    for section in ("[store]", "[ble]", "[encounters]", "[gaen]", "[lists]", "[daemon]",
                    "[door]"):
        assert section in text


def test_version_and_help() -> None:
    assert CliRunner().invoke(cli, ["--version"]).output.startswith("bzlogger, version")
    help_text = CliRunner().invoke(cli, ["--help"]).output
    assert "--config PATH" in help_text and "bzlogger init" in help_text
