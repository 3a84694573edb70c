"""The notify datagram client against a socket the test binds, as systemd would."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from bzlogger.daemon.sdnotify import Notifier, format_message


@pytest.fixture
def listener(tmp_path: Path) -> tuple[socket.socket, str]:
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(1.0)
    yield sock, path
    sock.close()


def test_messages_arrive_as_datagrams(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    notifier = Notifier(path)
    assert notifier.enabled
    assert notifier.ready("scanning, advertising")
    assert sock.recv(4096) == b"READY=1\nSTATUS=scanning, advertising"
    assert notifier.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert notifier.stopping("flushing")
    assert sock.recv(4096) == b"STOPPING=1\nSTATUS=flushing"
    notifier.close()
    assert not notifier.watchdog()


def test_abstract_socket_address() -> None:
    name = f"bzlogger-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(1.0)
    try:
        assert Notifier(f"@{name}").status("hello")
        assert sock.recv(100) == b"STATUS=hello"
    finally:
        sock.close()


def test_without_socket_everything_is_a_no_op() -> None:
    notifier = Notifier.from_env({})
    assert not notifier.enabled
    assert not notifier.ready("x")
    assert notifier.watchdog_interval_s is None


def test_a_vanished_socket_is_not_fatal(tmp_path: Path) -> None:
    assert not Notifier(str(tmp_path / "gone")).watchdog()


def test_watchdog_interval_is_half_the_timeout() -> None:
    env = {"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "30000000",
           "WATCHDOG_PID": str(os.getpid())}
    assert Notifier.from_env(env).watchdog_interval_s == 15.0
    # A watchdog meant for another process is not ours to ping.
    assert Notifier.from_env({**env, "WATCHDOG_PID": "1"}).watchdog_interval_s is None
    assert Notifier.from_env({**env, "WATCHDOG_USEC": "junk"}).watchdog_interval_s is None


def test_status_text_cannot_inject_keys() -> None:
    assert format_message({"STATUS": "a\nREADY=1"}) == b"STATUS=a READY=1"
    with pytest.raises(ValueError, match="bad notify key"):
        format_message({"status": "x"})
