"""A private ``dbus-daemon`` with a system-bus-like policy, for the simulated BlueZ.

The policy mirrors what Debian's system bus allows an unprivileged user: anyone may call
methods and receive replies, only ``org.bluez`` may be owned (all processes run as the
same user here, so the ``user="root"`` restriction of ``bluetooth.conf`` cannot be
reproduced), and unrequested replies are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from bzlogger.errors import OperationalError

#: The variable dbus-fast (and so bleak) reads to find the system bus.
SYSTEM_BUS_ENV = "DBUS_SYSTEM_BUS_ADDRESS"

_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <allow own="org.bluez"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
  </policy>
</busconfig>
"""


def bus_config(socket_path: str) -> str:
    """The ``dbus-daemon`` configuration text for a bus listening on ``socket_path``."""
    return _CONFIG.format(socket=socket_path)


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the parent dies, so that a killed test run leaves
    no dbus-daemon behind (Linux prctl PR_SET_PDEATHSIG; a no-op elsewhere)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


class PrivateBus:
    """A ``dbus-daemon`` process of our own; ``address`` is valid between start and stop."""

    def __init__(self) -> None:
        self._dir: Path | None = None
        self._process: asyncio.subprocess.Process | None = None
        self.address = ""

    async def start(self) -> str:
        """Start the daemon and return its address (``unix:path=...``)."""
        executable = shutil.which("dbus-daemon")
        if executable is None:
            raise OperationalError(
                "dbus-daemon not found: install the dbus package (apt-get install dbus)"
            )
        self._dir = Path(tempfile.mkdtemp(prefix="bzlogger-sim-"))
        config = self._dir / "bus.conf"
        config.write_text(bus_config(str(self._dir / "system_bus_socket")))
        self._process = await asyncio.create_subprocess_exec(
            executable, f"--config-file={config}", "--nofork", "--nopidfile",
            "--print-address=1",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        assert self._process.stdout is not None
        try:
            line = await asyncio.wait_for(self._process.stdout.readline(), 10)
        except TimeoutError:
            line = b""
        if not line:
            await self.stop()
            raise OperationalError("dbus-daemon did not start (no address printed)")
        self.address = line.decode().strip()
        return self.address

    async def stop(self) -> None:
        """Terminate the daemon and remove its socket directory."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def environment(self) -> dict[str, str]:
        """Environment for a child process that should use this bus as its system bus."""
        env = dict(os.environ)
        env[SYSTEM_BUS_ENV] = self.address
        return env


@contextlib.asynccontextmanager
async def private_bus() -> AsyncIterator[PrivateBus]:
    """``async with private_bus() as bus:`` a started :class:`PrivateBus`."""
    bus = PrivateBus()
    await bus.start()
    try:
        yield bus
    finally:
        await bus.stop()
