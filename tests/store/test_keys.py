"""The master key file: creation, permissions, format, systemd credentials."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from bzlogger.errors import StoreError
from bzlogger.store.keys import create_key_file, key_path, load_master_key


def test_created_with_mode_0600_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "store.key"
    old = os.umask(0)
    try:
        assert create_key_file(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(load_master_key(path)) == 32


def test_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "store.key"
    create_key_file(path)
    before = path.read_bytes()
    assert not create_key_file(path)
    assert path.read_bytes() == before


def test_missing_key_says_to_run_init(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="bzlogger init"):
        load_master_key(tmp_path / "nope.key")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "store.key"
    create_key_file(path)
    path.chmod(mode)
    with pytest.raises(StoreError, match="group or others"):
        load_master_key(path)


@pytest.mark.parametrize("content", [b"", b"abc\n", b"zz" * 32 + b"\n", b"00" * 31 + b"\n"])
def test_malformed_key_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "store.key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(StoreError, match="does not hold a key"):
        load_master_key(path)


def test_hex_in_any_case_and_raw_bytes_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "store.key"
    path.write_bytes(b"AB" * 32 + b"\n")
    path.chmod(0o600)
    assert load_master_key(path) == b"\xab" * 32
    path.write_bytes(b"\x01" * 32)
    assert load_master_key(path) == b"\x01" * 32


def test_systemd_credential_is_preferred(tmp_path: Path) -> None:
    configured = tmp_path / "store.key"
    create_key_file(configured)
    credentials = tmp_path / "creds"
    credentials.mkdir()
    create_key_file(credentials / "store.key")
    env = {"CREDENTIALS_DIRECTORY": str(credentials)}
    assert key_path(configured, env) == credentials / "store.key"
    assert load_master_key(configured, env) == load_master_key(credentials / "store.key")
    assert load_master_key(configured, env) != load_master_key(configured, {})
    assert key_path(configured, {"CREDENTIALS_DIRECTORY": str(tmp_path / "empty")}) == configured
