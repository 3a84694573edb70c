"""The store's master key: creating the key file, finding and loading it safely.

The key file holds 32 random bytes as 64 hex characters and a newline. Under systemd
the daemon may receive it as a credential (``LoadCredential=store.key:/etc/...``); then
``$CREDENTIALS_DIRECTORY/store.key`` is used instead of ``[store] key_file``.
"""

from __future__ import annotations

import binascii
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

from bzlogger.errors import StoreError

MASTER_KEY_LENGTH = 32
CREDENTIAL_NAME = "store.key"


def key_path(key_file: Path, environ: Mapping[str, str] | None = None) -> Path:
    """Where the master key is read from: the systemd credential when one is passed,
    else ``key_file``."""
    env = os.environ if environ is None else environ
    credentials = env.get("CREDENTIALS_DIRECTORY")
    if credentials:
        candidate = Path(credentials) / CREDENTIAL_NAME
        if candidate.exists():
            return candidate
    return key_file


def load_master_key(key_file: Path, environ: Mapping[str, str] | None = None) -> bytes:
    """Read the 32-byte master key, refusing a missing, malformed or group/world
    readable file with an error that says what to do."""
    path = key_path(key_file, environ)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise StoreError(
            f"store key file {path} does not exist; run `bzlogger init` to create it "
            "(or restore it from your backup if the store already holds data)"
        ) from None
    except OSError as error:
        raise StoreError(f"cannot read store key file {path}: {error.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise StoreError(f"store key file {path} is not a regular file")
        if info.st_mode & 0o077:
            raise StoreError(
                f"store key file {path} is accessible by group or others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); refusing to use it: "
                f"run `chmod 600 {path}`"
            )
        raw = os.read(fd, 4096)
    finally:
        os.close(fd)
    return parse_key(raw, path)


def parse_key(raw: bytes, path: Path) -> bytes:
    """The key from the file's content: 64 hex characters (surrounding whitespace
    allowed) or exactly 32 raw bytes."""
    text = raw.strip()
    if len(text) == 2 * MASTER_KEY_LENGTH:
        try:
            return binascii.unhexlify(text)
        except binascii.Error:
            pass
    if len(raw) == MASTER_KEY_LENGTH:
        return raw
    raise StoreError(
        f"store key file {path} does not hold a key (expected 64 hex characters); "
        "restore it from your backup"
    )


def create_key_file(path: Path) -> bool:
    """Create ``path`` with a fresh random key, mode 0600. Never overwrites: returns
    False when the file already exists."""
    try:
        path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return False
    except OSError as error:
        raise StoreError(f"cannot create store key file {path}: {error.strerror}") from None
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, secrets.token_bytes(MASTER_KEY_LENGTH).hex().encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    _fsync_dir(path.parent)
    return True


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
