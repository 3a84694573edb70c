"""The door display service over plain HTTP (the browser test is test_browser.py)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bzlogger.core.door import DoorState
from bzlogger.door.live import write_door_state
from bzlogger.door.server import DoorServer, door_view, parse_listen

ABSENT = DoorState(False, 0, (), 3, "2026-12-07", 1.0)
PRESENT = DoorState(True, 1, ("gaen",), 4, "2026-12-07", 2.0)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[DoorServer, int, Path]]:
    state_file = tmp_path / "door.json"
    door = DoorServer(state_file, poll_s=0.02)
    server = await door.start("127.0.0.1", 0)
    watcher = asyncio.create_task(door.watch())
    try:
        yield door, server.sockets[0].getsockname()[1], state_file
    finally:
        watcher.cancel()
        server.close()
        await server.wait_closed()


async def request(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), timeout=5)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


async def get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    return await request(port, f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())


async def test_page_is_bilingual_and_locked_down(served: tuple[DoorServer, int, Path]) -> None:
    _, port, _ = served
    status, headers, body = await get(port, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    page = body.decode()
    for text in ("Đã phát hiện ứng dụng", "App detected", "Không thấy ứng dụng",
                 "No app detected", "Hôm nay / Today"):
        assert text in page
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "'sha256-" in csp and "unsafe-inline" not in csp


async def test_state_follows_the_file(served: tuple[DoorServer, int, Path]) -> None:
    _, port, state_file = served
    status, _, body = await get(port, "/state")
    assert status == 200 and json.loads(body)["status"] == "waiting"
    write_door_state(state_file, PRESENT)
    await asyncio.sleep(0.2)
    view = json.loads((await get(port, "/state"))[2])
    assert view == {"status": "present", "phones": 1, "protocols": ["gaen"],
                    "count_today": 4, "day": "2026-12-07"}


async def test_events_stream_each_change(served: tuple[DoorServer, int, Path]) -> None:
    _, port, state_file = served
    write_door_state(state_file, ABSENT)
    await asyncio.sleep(0.1)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert b"text/event-stream" in head

    async def next_view() -> dict[str, object]:
        while True:
            line = await asyncio.wait_for(reader.readline(), 5)
            if line.startswith(b"data: "):
                return dict(json.loads(line[6:]))

    assert (await next_view())["status"] == "absent"
    write_door_state(state_file, PRESENT)
    assert (await next_view())["status"] == "present"
    write_door_state(state_file, ABSENT)
    assert (await next_view())["count_today"] == 3
    writer.close()


async def test_stale_and_corrupt_files_say_not_scanning(
        served: tuple[DoorServer, int, Path]) -> None:
    door, _, state_file = served
    write_door_state(state_file, PRESENT)
    os.utime(state_file, (1.0, 1.0))  # not rewritten for decades
    await asyncio.sleep(0.1)
    assert door.view["status"] == "stale" and door.view["phones"] == 0
    state_file.write_text("{broken")
    await asyncio.sleep(0.1)
    assert door.view["status"] == "stale"


@pytest.mark.parametrize(("raw", "expected"), [
    (b"POST / HTTP/1.1\r\n\r\n", 405),
    (b"GET /nope HTTP/1.1\r\n\r\n", 404),
    (b"garbage\r\n\r\n", 400),
    (b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\n\r\n", 400),
    (b"GET /healthz HTTP/1.0\r\n\r\n", 200),
])
async def test_bad_requests(served: tuple[DoorServer, int, Path], raw: bytes,
                            expected: int) -> None:
    _, port, _ = served
    assert (await request(port, raw))[0] == expected


def test_view_of_a_fresh_state_and_of_no_file() -> None:
    from bzlogger.door.live import LiveDoorState

    assert door_view(None, 5)["status"] == "waiting"
    assert door_view(LiveDoorState(PRESENT, 4.9), 5)["status"] == "present"
    assert door_view(LiveDoorState(PRESENT, 5.1), 5)["protocols"] == []


@pytest.mark.parametrize("listen", ["127.0.0.1:8088", "localhost:1", "[::1]:8088",
                                    "127.0.0.2:0"])
def test_loopback_addresses_are_accepted(listen: str) -> None:
    assert parse_listen(listen)[1] == int(listen.rsplit(":", 1)[1])


@pytest.mark.parametrize("listen", ["0.0.0.0:8088", "192.168.1.5:80", "example.org:80",
                                    "127.0.0.1", "127.0.0.1:99999"])
def test_other_addresses_are_refused(listen: str) -> None:
    with pytest.raises(ValueError, match=r"loopback|HOST:PORT"):
        parse_listen(listen)
