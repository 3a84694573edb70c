"""``bzlogger lists fetch``: sources over HTTP (a local server) and files, GAEN index.txt,
the memory of processed files, detached Bluezone signatures, failures."""

from __future__ import annotations

import asyncio
import functools
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from bzlogger.config import ListSource
from bzlogger.errors import ListError
from bzlogger.lists import bluezone_list, fetch
from bzlogger.lists.gaen_export import ExportKey
from tests.lists.conftest import Authority, Kiosk, fill_store, stored_exposures
from tests.lists.test_match_cli import DAY, INTERVAL, build_world


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server over ``tmp_path/www``: (base URL, directory)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_Quiet, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_parse_index_resolves_like_google_servers() -> None:
    index = "https://cdn.example/exposureKeyExport-US/index.txt"
    text = ("exposureKeyExport-US/1-2-00001.zip\n\n# comment\n2-3-00001.zip\n"
            "https://other.example/x.zip\n")
    assert fetch.parse_index(text, index) == [
        "https://cdn.example/exposureKeyExport-US/1-2-00001.zip",
        "https://cdn.example/exposureKeyExport-US/2-3-00001.zip",
        "https://other.example/x.zip"]
    with pytest.raises(ListError, match=r"line 1: path '\.\./etc/passwd' leaves"):
        fetch.parse_index("../etc/passwd\n", index)


@pytest.mark.parametrize("url", ["http://example.com/f0.json", "ftp://example.com/x",
                                 "http://10.0.0.1/x"])
def test_only_https_or_localhost(url: str) -> None:
    with pytest.raises(ListError, match="https:// only"):
        fetch.check_url(url)


def test_download_limits(server: tuple[str, Path]) -> None:
    base, root = server
    (root / "big.json").write_bytes(b" " * 5000)
    assert len(fetch.fetch(f"{base}/big.json", 5000)) == 5000
    with pytest.raises(ListError, match="5000 bytes, more than the limit of 4000"):
        fetch.fetch(f"{base}/big.json", 4000)
    with pytest.raises(ListError, match="answered 404"):
        fetch.fetch(f"{base}/missing.json", 4000)


def _config(kiosk: Kiosk, sources: str, extra: str = "") -> None:
    text = kiosk.config.read_text().replace("[lists]\n", f"[lists]\n{extra}")
    kiosk.config.write_text(text + sources)


def test_fetch_index_and_signed_bluezone_list(kiosk: Kiosk, authority: Authority,
                                              server: tuple[str, Path], tmp_path: Path) -> None:
    base, root = server
    world = build_world()
    asyncio.run(fill_store(kiosk.settings, world.encounters))
    region = root / "exposureKeyExport-VN"
    region.mkdir()
    b, e = world.gaen_positive
    (region / "1-00001.zip").write_bytes(
        authority.export([ExportKey(b, INTERVAL + 144, 144)], start=DAY, end=DAY + 172800))
    (region / "index.txt").write_text("exposureKeyExport-VN/1-00001.zip\n")
    f0 = bluezone_list.write_list([bluezone_list.BluezoneEntry(
        world.bluezone_positive[0], DAY, DAY + 86399)]).encode()
    (root / "f0.json").write_bytes(f0)
    (root / "f0.json.sig").write_bytes(authority.sign(f0))
    _config(kiosk, f"""
[[lists.sources]]
url = "{base}/exposureKeyExport-VN/index.txt"
protocol = "gaen"

[[lists.sources]]
url = "{base}/f0.json"
protocol = "bluezone"
signature_url = "{base}/f0.json.sig"
""", extra=f'bluezone_verification_key = "{authority.pem}"\n')

    first = kiosk.run("lists", "fetch", "--json")
    assert first.exit_code == 0, first.output
    rows = json.loads(first.stdout)
    assert [(r["protocol"], r["verified"], r["status"]) for r in rows] == [
        ("gaen", True, "processed"), ("bluezone", True, "processed")]
    assert sum(r["new"] for r in rows) == len(world.expected)
    assert len(asyncio.run(stored_exposures(kiosk.settings))) == len(world.expected)
    assert len(kiosk.alerts.read_text().splitlines()) == 2  # one batch per list

    # Next run: the export is not downloaded again, the unchanged list not re-matched.
    (region / "index.txt").write_text("exposureKeyExport-VN/1-00001.zip\n"
                                      "exposureKeyExport-VN/2-00001.zip\n")
    (region / "2-00001.zip").write_bytes(
        authority.export([ExportKey(e, INTERVAL, 144)], start=DAY, end=DAY + 172800))
    second = kiosk.run("lists", "fetch", "--json")
    assert second.exit_code == 0, second.output
    assert [r["status"] for r in json.loads(second.stdout)] == [
        "already processed", "processed", "not modified"]
    assert len(kiosk.alerts.read_text().splitlines()) == 2

    # The Bluezone list republished with a new entry: downloaded, matched, and its
    # old exposures not alerted again.
    f0 = bluezone_list.write_list([bluezone_list.BluezoneEntry(k, DAY, DAY + 86399)
                                   for k in (world.bluezone_positive[0], b"n" * 32)]).encode()
    (root / "f0.json").write_bytes(f0)
    (root / "f0.json.sig").write_bytes(authority.sign(f0))
    third = kiosk.run("lists", "fetch", "--json")
    assert third.exit_code == 0, third.output
    rows = json.loads(third.stdout)
    assert [r["status"] for r in rows] == ["already processed", "already processed",
                                           "processed"]
    assert rows[2]["keys"] == 2 and rows[2]["new"] == 0
    assert len(kiosk.alerts.read_text().splitlines()) == 2


def test_bad_signature_fails_that_source_only(kiosk: Kiosk, authority: Authority,
                                              server: tuple[str, Path]) -> None:
    base, root = server
    world = build_world()
    asyncio.run(fill_store(kiosk.settings, world.encounters))
    f0 = bluezone_list.write_list([bluezone_list.BluezoneEntry(
        world.bluezone_positive[0], DAY, DAY + 86399)]).encode()
    (root / "f0.json").write_bytes(f0)
    other = ec.generate_private_key(ec.SECP256R1())
    (root / "f0.json.sig").write_bytes(other.sign(f0, ec.ECDSA(hashes.SHA256())))
    local = root / "local.json"
    local.write_bytes(bluezone_list.write_list([]).encode())
    _config(kiosk, f"""
[[lists.sources]]
url = "{base}/f0.json"
protocol = "bluezone"
signature_url = "{base}/f0.json.sig"

[[lists.sources]]
url = "{local}"
protocol = "bluezone"

[[lists.sources]]
url = "http://example.com/plain.json"
protocol = "bluezone"
""", extra=f'bluezone_verification_key = "{authority.pem}"\n')
    result = kiosk.run("lists", "fetch", "--json")
    assert result.exit_code == 1
    rows = json.loads(result.stdout)
    assert "detached signature does not verify" in rows[0]["status"]
    assert rows[1]["status"] == "processed"
    assert "https:// only" in rows[2]["status"]
    assert "2 list(s) could not be processed" in result.stderr
    assert asyncio.run(stored_exposures(kiosk.settings)) == []


def test_fetch_without_sources_is_an_error(kiosk: Kiosk) -> None:
    result = kiosk.run("lists", "fetch")
    assert result.exit_code == 1 and "no [lists] sources" in result.stderr


def test_local_index_lists_local_files(tmp_path: Path) -> None:
    region = tmp_path / "mirror" / "exposureKeyExport-VN"
    region.mkdir(parents=True)
    (region / "a.zip").write_bytes(b"PK\x03\x04")
    (region / "index.txt").write_text("exposureKeyExport-VN/a.zip\nb.zip\n")
    source = ListSource(url=str(region / "index.txt"), protocol="gaen")
    found = fetch.items(source, 1 << 20)
    assert [i.url for i in found] == [str(region / "a.zip"), str(region / "b.zip")]
    assert all(i.from_index for i in found)
    assert fetch.fetch(found[0].url, 100) == b"PK\x03\x04"
    with pytest.raises(ListError, match="cannot read"):
        fetch.fetch(found[1].url, 100)


def test_version_fingerprints(tmp_path: Path, server: tuple[str, Path]) -> None:
    base, root = server
    (root / "f0.json").write_text("{}")
    remote = fetch.version(f"{base}/f0.json")
    assert remote is not None and remote.startswith("http:") and remote.endswith(":2")
    assert fetch.version(f"{base}/missing.json") is None
    local = tmp_path / "list.json"
    local.write_text("{}")
    first = fetch.version(str(local))
    local.write_text('{"data": []}')
    assert first is not None and fetch.version(str(local)) != first
    assert fetch.version(str(tmp_path / "missing.json")) is None
