"""Downloading published lists from the configured ``[lists] sources``.

A source is a local file or an ``https://`` URL (``http://`` only for localhost, for
tests and local mirrors). GAEN servers publish an ``index.txt`` with one export path per
line: a source whose URL ends in ``.txt`` is read as such an index, and each listed
export is fetched once (its URL is remembered in the store as processed). A line that is
a full URL is used as is; otherwise it is taken relative to the directory of the index,
or to its parent when the line starts with that directory's name (Google's servers list
``<region>/<file>.zip`` next to ``<region>/index.txt``).

A list republished at one URL (a Bluezone list) is probed first with :func:`version`
(a HEAD request), so that an unchanged list is not downloaded again.

Every download is bounded: a declared ``Content-Length`` over the limit is refused
before reading, and the body is read in chunks up to the limit.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bzlogger.config import ListSource
from bzlogger.errors import ListError
from bzlogger.lists.limits import read_bounded, read_stream

#: Seconds to wait for a server.
TIMEOUT_S = 30
#: An index is a short text file.
MAX_INDEX_BYTES = 1 << 20
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
_USER_AGENT = "bzlogger-lists-fetch"


@dataclass(frozen=True, slots=True)
class Item:
    """One list file to fetch: ``url`` (or path) and its detached signature, if any;
    ``from_index`` for an export listed in a GAEN ``index.txt``."""

    url: str
    protocol: str
    signature_url: str = ""
    from_index: bool = False

    @property
    def memory_key(self) -> bytes:
        """What the store remembers for an export listed in an index (exports are
        immutable once published, so their URL identifies their content)."""
        return hashlib.sha256(b"url\0" + self.url.encode()).digest()

    def version_key(self, version: str) -> bytes:
        """What the store remembers for one version (see :func:`version`) of a list
        that is republished at the same URL."""
        return hashlib.sha256(b"version\0" + self.url.encode() + b"\0" + version.encode()
                              ).digest()


def is_remote(url: str) -> bool:
    """Whether ``url`` names an HTTP(S) resource rather than a local file."""
    return urllib.parse.urlsplit(url).scheme in ("http", "https")


def check_url(url: str) -> None:
    """Refuse anything but HTTPS (and plain HTTP to localhost)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and parts.hostname in _LOCAL_HOSTS:
        return
    raise ListError(f"{url}: lists are fetched over https:// only (http:// only for "
                    "localhost)")


def fetch(url: str, limit: int) -> bytes:
    """The bytes at ``url`` (HTTP(S) or a local path), at most ``limit`` of them."""
    if not is_remote(url):
        path = url.removeprefix("file://")
        return read_bounded(Path(path), limit)
    check_url(url)
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310
            final = response.geturl()
            if final != url:
                check_url(final)  # a redirect must not downgrade to plain HTTP
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > limit:
                raise ListError(f"{url}: {declared} bytes, more than the limit of {limit} "
                                "bytes ([lists] max_file_bytes)")
            return read_stream(response, limit, url)
    except urllib.error.HTTPError as error:
        raise ListError(f"{url}: the server answered {error.code} {error.reason}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ListError(f"{url}: cannot download: {reason}") from None


def version(url: str) -> str | None:
    """A cheap fingerprint of the current version of ``url`` without downloading it:
    ETag or Last-Modified and Content-Length from a HEAD request, or a local file's
    modification time and size. None when the server tells nothing usable (then the
    list is downloaded and recognised by its content hash)."""
    if not is_remote(url):
        try:
            stat = Path(url.removeprefix("file://")).stat()
        except OSError:
            return None
        return f"file:{stat.st_mtime_ns}:{stat.st_size}"
    check_url(url)
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        url, method="HEAD", headers={"User-Agent": _USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310
            headers = response.headers
    except (urllib.error.URLError, TimeoutError, OSError):
        return None
    tag = headers.get("ETag") or headers.get("Last-Modified")
    if not tag:
        return None
    return f"http:{tag}:{headers.get('Content-Length', '')}"


def parse_index(text: str, index_url: str) -> list[str]:
    """The export URLs listed in an ``index.txt`` (see the module docstring)."""
    base = index_url.rsplit("/", 1)[0] + "/"
    directory = base.rstrip("/").rsplit("/", 1)[-1]
    urls: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if is_remote(line):
            urls.append(line)
            continue
        if ".." in line.split("/") or line.startswith("/"):
            raise ListError(f"{index_url}: line {number}: path {line!r} leaves the index's "
                            "directory")
        if directory and line.startswith(directory + "/"):
            urls.append(base.rstrip("/").rsplit("/", 1)[0] + "/" + line)
        else:
            urls.append(base + line)
    return urls


def items(source: ListSource, limit: int) -> list[Item]:
    """The files of one source: the exports of a GAEN index, or the source itself."""
    if source.protocol == "gaen" and source.url.endswith(".txt"):
        data = fetch(source.url, min(limit, MAX_INDEX_BYTES))
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ListError(f"{source.url}: the index is not UTF-8 text") from None
        return [Item(url, "gaen", from_index=True) for url in parse_index(text, source.url)]
    return [Item(source.url, source.protocol, source.signature_url)]
