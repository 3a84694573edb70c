"""The systemd notify protocol: one datagram per message to ``$NOTIFY_SOCKET``.

The message is newline-separated ``KEY=VALUE`` assignments (``READY=1``,
``STATUS=...``, ``WATCHDOG=1``, ``STOPPING=1``). An address starting with ``@`` is
a Linux abstract socket. Without ``$NOTIFY_SOCKET`` (not started by systemd, or
``Type=simple``) every call is a no-op, so the daemon has no special case. A failed send
is logged and ignored: a notification can never bring the daemon down.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from bzlogger.logsetup import get_logger

NOTIFY_SOCKET_ENV = "NOTIFY_SOCKET"
WATCHDOG_USEC_ENV = "WATCHDOG_USEC"
WATCHDOG_PID_ENV = "WATCHDOG_PID"

_log = get_logger("sdnotify")


def _address(raw: str) -> str | bytes:
    # An abstract socket name starts with a NUL byte; systemd writes it as "@".
    return b"\0" + raw[1:].encode() if raw.startswith("@") else raw


def format_message(fields: Mapping[str, str]) -> bytes:
    """``KEY=VALUE`` lines; a value may not contain a newline (it would start a new key)."""
    lines = []
    for key, value in fields.items():
        if not key.isupper() or "=" in key:
            raise ValueError(f"bad notify key {key!r}")
        lines.append(f"{key}={value.replace(chr(10), ' ')}")
    return "\n".join(lines).encode()


class Notifier:
    """Sends notify messages to one socket, or to none when ``address`` is None."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self.address = address or None
        self.watchdog_usec = watchdog_usec
        self._sock: socket.socket | None = None
        if self.address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """The notifier systemd asked for through the environment.

        ``WATCHDOG_USEC`` only counts when ``WATCHDOG_PID`` is unset or names this
        process (systemd's rule, so a child process does not ping for its parent).
        """
        env = os.environ if environ is None else environ
        usec: int | None = None
        pid = env.get(WATCHDOG_PID_ENV)
        if env.get(WATCHDOG_USEC_ENV) and (not pid or pid == str(os.getpid())):
            try:
                usec = int(env[WATCHDOG_USEC_ENV])
            except ValueError:
                usec = None
            usec = usec if usec and usec > 0 else None
        return cls(env.get(NOTIFY_SOCKET_ENV), usec)

    @property
    def enabled(self) -> bool:
        """True when systemd listens."""
        return self._sock is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to send ``WATCHDOG=1`` (half systemd's timeout), None when unwatched."""
        return None if self.watchdog_usec is None else self.watchdog_usec / 2e6

    def send(self, **fields: str) -> bool:
        """Send one message; True if it went out (False when disabled or on error)."""
        if self._sock is None or self.address is None:
            return False
        try:
            self._sock.sendto(format_message(fields), _address(self.address))
        except OSError as error:
            _log.warning("notify_failed", error=str(error))
            return False
        return True

    def ready(self, status: str) -> bool:
        """``READY=1`` with a status line."""
        return self.send(READY="1", STATUS=status)

    def status(self, text: str) -> bool:
        """A ``STATUS=`` line shown by ``systemctl status``."""
        return self.send(STATUS=text)

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: the daemon is healthy."""
        return self.send(WATCHDOG="1")

    def stopping(self, status: str = "stopping") -> bool:
        """``STOPPING=1``."""
        return self.send(STOPPING="1", STATUS=status)

    def close(self) -> None:
        """Close the socket; later sends are no-ops."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
