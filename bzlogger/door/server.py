"""The door-check display service: one full-screen page and a stream of its states.

A small HTTP/1.1 server on loopback (asyncio streams, standard library only: it serves
four fixed routes to one local browser, which does not justify a web framework):

- ``GET /``: the page (Vietnamese + English, large text), which opens ``/events``;
- ``GET /events``: server-sent events, one ``state`` event per change of what the page
  shows (and the current one on connect), a comment every 15 s to keep it open;
- ``GET /state``: the current view as JSON (for scripts and checks);
- ``GET /healthz``: ``ok``.

It only reads the live door-state file that the daemon writes (``bzlogger.door.live``),
polling it every ``poll_s`` (0.1 s by default, so the page follows the daemon within a
fraction of a second). It never sees an identifier, the store or the bus.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import ipaddress
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from bzlogger.door.live import DoorStateError, LiveDoorState, read_door_state
from bzlogger.logsetup import get_logger

#: Seconds after which a door-state file that was not rewritten means "not scanning".
DEFAULT_STALE_S = 5.0
KEEPALIVE_S = 15.0
MAX_CLIENTS = 32
_MAX_LINE = 8192
_MAX_HEADERS = 64


def door_view(live: LiveDoorState | None, stale_s: float) -> dict[str, Any]:
    """What the page shows, from the live state (None: no file yet).

    ``status`` is ``present``, ``absent``, ``stale`` (the daemon stopped writing) or
    ``waiting`` (it never wrote).
    """
    if live is None:
        return {"status": "waiting", "phones": 0, "protocols": [], "count_today": None,
                "day": None}
    state = live.state
    status = "stale" if live.age_s > stale_s else "present" if state.present else "absent"
    fresh = status in ("present", "absent")
    return {"status": status, "phones": state.phones if fresh else 0,
            "protocols": list(state.protocols) if fresh else [],
            "count_today": state.count_today, "day": state.day}


def parse_listen(listen: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[::1]:8088`` for IPv6) and insist on a loopback host."""
    host, _, port_text = listen.rpartition(":")
    host = host.strip("[]")
    if not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{listen!r} is not HOST:PORT")
    if host != "localhost":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(f"{host} is not a loopback address; the door display is only "
                             "served to the kiosk's own browser (use 127.0.0.1)")
    return host, int(port_text)


def _load_page() -> tuple[bytes, str]:
    """The page and a Content-Security-Policy that allows exactly its inline code."""
    page = resources.files("bzlogger.door").joinpath("page.html").read_text("utf-8")

    def hashes(tag: str) -> str:
        found = re.findall(rf"<{tag}>(.*?)</{tag}>", page, flags=re.S)
        return " ".join(
            f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'"
            for b in found)

    csp = (f"default-src 'none'; connect-src 'self'; script-src {hashes('script')}; "
           f"style-src {hashes('style')}; base-uri 'none'; form-action 'none'; "
           "frame-ancestors 'none'")
    return page.encode("utf-8"), csp


@dataclass(slots=True)
class DoorServer:
    """Serves the page for the door-state file ``state_file``.

    ``wall_time`` is the real clock used for the file's age (injectable for tests).
    """

    state_file: Path
    poll_s: float = 0.1
    stale_s: float = DEFAULT_STALE_S
    wall_time: Callable[[], float] = time.time
    _view: dict[str, Any] = field(default_factory=dict, init=False)
    _clients: set[asyncio.Queue[dict[str, Any]]] = field(default_factory=set, init=False)
    _page: bytes = b""
    _csp: str = ""
    _warned: str = field(default="", init=False)

    def __post_init__(self) -> None:
        self._page, self._csp = _load_page()
        self._view = self._read()

    @property
    def view(self) -> dict[str, Any]:
        """The view most recently read from the file."""
        return self._view

    def _read(self) -> dict[str, Any]:
        try:
            live = read_door_state(self.state_file, self.wall_time())
        except (DoorStateError, OSError) as error:
            if str(error) != self._warned:  # once per distinct problem, not every poll
                self._warned = str(error)
                get_logger("door").warning("door_state_unreadable", path=str(self.state_file),
                            error=str(error))
            return door_view(None, self.stale_s) | {"status": "stale"}
        self._warned = ""
        return door_view(live, self.stale_s)

    async def watch(self) -> None:
        """Poll the file forever and push every change of the view to the clients."""
        while True:
            view = self._read()
            if view != self._view:
                self._view = view
                for queue in self._clients:
                    if queue.full():  # a slow client only needs the latest view
                        queue.get_nowait()
                    queue.put_nowait(view)
            await asyncio.sleep(self.poll_s)

    async def start(self, host: str, port: int) -> asyncio.Server:
        """Listen on ``host:port`` (port 0 picks a free one)."""
        return await asyncio.start_server(self._handle, host, port, limit=_MAX_LINE)

    async def serve(self, host: str, port: int, ready: Callable[[str], None] | None = None
                    ) -> None:
        """Listen and poll until cancelled; ``ready`` gets the URL once listening."""
        server = await self.start(host, port)
        bound_host, bound_port = server.sockets[0].getsockname()[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        url = f"http://{shown}:{bound_port}/"
        get_logger("door").info("door_listening", url=url, state_file=str(self.state_file))
        if ready is not None:
            ready(url)
        async with server:
            await self.watch()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                      ) -> None:
        try:
            method, target = await asyncio.wait_for(_read_request(reader), timeout=10)
            path = target.split("?", 1)[0]
            if method != "GET":
                await _respond(writer, 405, "text/plain", b"only GET\n", {"Allow": "GET"})
            elif path == "/":
                await _respond(writer, 200, "text/html; charset=utf-8", self._page,
                               {"Content-Security-Policy": self._csp})
            elif path == "/state":
                await _respond(writer, 200, "application/json",
                               json.dumps(self._view).encode())
            elif path == "/healthz":
                await _respond(writer, 200, "text/plain", b"ok\n")
            elif path == "/events":
                await self._events(writer)
            else:
                await _respond(writer, 404, "text/plain", b"not found\n")
        except (_BadRequestError, TimeoutError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError, ValueError):
            with contextlib.suppress(ConnectionError):
                await _respond(writer, 400, "text/plain", b"bad request\n")
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _events(self, writer: asyncio.StreamWriter) -> None:
        if len(self._clients) >= MAX_CLIENTS:
            await _respond(writer, 503, "text/plain", b"too many clients\n")
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Cache-Control: no-store\r\nConnection: close\r\n\r\nretry: 1000\n\n")
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1)
        queue.put_nowait(self._view)
        self._clients.add(queue)
        try:
            while True:
                try:
                    view = await asyncio.wait_for(queue.get(), timeout=KEEPALIVE_S)
                except TimeoutError:
                    writer.write(b": keepalive\n\n")
                else:
                    writer.write(b"event: state\ndata: " + json.dumps(view).encode() + b"\n\n")
                await writer.drain()
        finally:
            self._clients.discard(queue)


class _BadRequestError(Exception):
    """The request line or headers are not HTTP/1.x or too long."""


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str]:
    """The method and target of one request; its headers are read and ignored."""
    line = await reader.readuntil(b"\n")
    parts = line.decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _BadRequestError
    for _ in range(_MAX_HEADERS):
        if (await reader.readuntil(b"\n")) in (b"\r\n", b"\n"):
            return parts[0], parts[1]
    raise _BadRequestError


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            503: "Service Unavailable"}


async def _respond(writer: asyncio.StreamWriter, status: int, content_type: str, body: bytes,
                   extra: dict[str, str] | None = None) -> None:
    headers = {"Content-Type": content_type, "Content-Length": str(len(body)),
               "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
               "Connection": "close", **(extra or {})}
    head = f"HTTP/1.1 {status} {_REASONS[status]}\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    writer.write(head.encode("latin-1") + body)
    await writer.drain()
