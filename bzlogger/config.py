"""Typed, validated settings loaded from TOML (see ``shared/reference/interface.md``).

Each ``[section]`` is a frozen dataclass; every field has a default, so a missing file or
section is fine for commands that need none. An unknown key, a wrong type or an
impossible value raises :class:`~bzlogger.errors.ConfigError` naming the key and what is
expected. Add a setting by adding a field (with ``check=`` when not every value of the
type is allowed); the loader and the README's reference follow the dataclasses.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bzlogger.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/bzlogger/bzlogger.toml")
CONFIG_ENV = "BZLOGGER_CONFIG"
PROTOCOLS = ("bluezone", "gaen")

T = TypeVar("T")
Check = Callable[[Any], bool]


def setting(default: Any, expect: str = "", check: Check | None = None) -> Any:
    """A field with a default, a human description of valid values and a validity check."""
    meta = {"expect": expect, "check": check}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def _protocols(values: list[str]) -> bool:
    return all(v in PROTOCOLS for v in values) and len(set(values)) == len(values)


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """``[store]``: the encrypted SQLite store."""

    path: Path = setting(Path("/var/lib/bzlogger/bzlogger.db"))
    key_file: Path = setting(Path("/etc/bzlogger/store.key"))
    retention_days: int = setting(21, "a whole number of days from 1 to 365",
                                  lambda v: 1 <= v <= 365)
    flush_interval_s: float = setting(1.0, "seconds between 0.05 and 2",
                                      lambda v: 0.05 <= v <= 2.0)


@dataclass(frozen=True, slots=True)
class BleSettings:
    """``[ble]``: adapter, advertised and scanned protocols, radio calibration."""

    adapter: str = setting("hci0", "an adapter name such as hci0",
                           lambda v: v.startswith("hci") and v[3:].isdigit())
    advertise: list[str] = setting(["bluezone"], 'a list of "bluezone" and/or "gaen"', _protocols)
    scan: list[str] = setting(["bluezone", "gaen"], 'a list of "bluezone" and/or "gaen"',
                              _protocols)
    tx_power: int = setting(-8, "the kiosk's TX power in dBm, -40..20", lambda v: -40 <= v <= 20)
    bluezone_max: int = setting(96, "IDs per day, a divisor of 86400 (96 or 144)",
                                lambda v: v > 0 and 86400 % v == 0)
    watchdog_s: float = setting(90.0, "seconds without an advertisement before the scanner "
                                "is restarted, 10..3600", lambda v: 10 <= v <= 3600)
    gatt_connections: int = setting(1, "simultaneous GATT reads, 1..4", lambda v: 1 <= v <= 4)


@dataclass(frozen=True, slots=True)
class EncounterSettings:
    """``[encounters]``: how sightings become encounters (RSSI in dBm)."""

    min_rssi: int = setting(-90, "dBm, -127..0; weaker sightings are dropped",
                            lambda v: -127 <= v <= 0)
    rssi_offset: int = setting(0, "dB added to every RSSI to calibrate the kiosk's radio, -30..30",
                               lambda v: -30 <= v <= 30)
    close_rssi: int = setting(-65, "dBm, -127..0; stronger counts as close",
                              lambda v: -127 <= v <= 0)
    smoothing: int = setting(3, "samples in the running median, 1..15 (1 = off)",
                             lambda v: 1 <= v <= 15)
    gap_s: float = setting(120.0, "seconds of silence that end an encounter, 5..3600",
                           lambda v: 5 <= v <= 3600)


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """One public key that published GAEN exports may be signed with."""

    key_id: str = setting("", "the export's verification_key_id", bool)
    key_version: str = setting("", "the export's verification_key_version")
    pem: Path = setting(Path(), "a path to a PEM public key (ECDSA P-256)",
                        lambda v: str(v) not in ("", "."))


@dataclass(frozen=True, slots=True)
class GaenSettings:
    """``[gaen]``: keys that published GAEN exports must be signed with."""

    verification_keys: list[VerificationKey] = setting([])


@dataclass(frozen=True, slots=True)
class ListSource:
    """One place published lists come from."""

    url: str = setting("", "an https:// URL (http only for localhost) or a file path", bool)
    protocol: str = setting("", 'how to read it: "bluezone" or "gaen"', lambda v: v in PROTOCOLS)
    signature_url: str = setting("", "optional detached signature of a Bluezone list")


@dataclass(frozen=True, slots=True)
class ListSettings:
    """``[lists]``: where published infected lists come from and what to do on a match."""

    sources: list[ListSource] = setting([])
    bluezone_verification_key: Path | None = setting(None, "PEM key for detached Bluezone "
                                                     "list signatures")
    alert_command: str = setting("", "a command run once per new exposure (JSON on stdin)")
    max_file_bytes: int = setting(64 << 20, "bytes, 1 kB..1 GB",
                                  lambda v: 1024 <= v <= 1 << 30)


@dataclass(frozen=True, slots=True)
class DaemonSettings:
    """``[daemon]``: runtime files."""

    state_file: Path = setting(Path("/run/bzlogger/state.json"))
    metrics_textfile: Path | None = setting(None, "a node-exporter textfile path (.prom)")


@dataclass(frozen=True, slots=True)
class DoorSettings:
    """``[door]``: the local door-check display service."""

    listen: str = setting("127.0.0.1:8088", "HOST:PORT on loopback",
                          lambda v: ":" in v and v.rsplit(":", 1)[1].isdigit())
    rssi_threshold: int = setting(-60, "dBm, -127..0", lambda v: -127 <= v <= 0)
    hold_s: float = setting(2.0, "seconds a strong signal must last, 0..30",
                            lambda v: 0 <= v <= 30)
    release_s: float = setting(1.5, "seconds without a strong signal before the display "
                               "clears, 0.2..30", lambda v: 0.2 <= v <= 30)
    state_file: Path = setting(Path("/run/bzlogger/door.json"))


@dataclass(frozen=True, slots=True)
class Settings:
    """The whole configuration file."""

    store: StoreSettings = field(default_factory=StoreSettings)
    ble: BleSettings = field(default_factory=BleSettings)
    encounters: EncounterSettings = field(default_factory=EncounterSettings)
    gaen: GaenSettings = field(default_factory=GaenSettings)
    lists: ListSettings = field(default_factory=ListSettings)
    daemon: DaemonSettings = field(default_factory=DaemonSettings)
    door: DoorSettings = field(default_factory=DoorSettings)
    #: The file these settings were read from, None when none existed.
    source: Path | None = None


def config_path(explicit: str | os.PathLike[str] | None) -> Path:
    """``--config`` if given, else ``$BZLOGGER_CONFIG``, else the system default."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(CONFIG_ENV)
    return Path(env) if env else DEFAULT_CONFIG_PATH


def load(path: Path, *, required: bool = False) -> Settings:
    """Read and validate ``path``; a missing file gives the defaults unless ``required``."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if required:
            raise ConfigError(
                f"config file {path} does not exist; create it or pass --config"
            ) from None
        return Settings()
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from None
    settings = parse(data, base=path.parent)
    return dataclasses.replace(settings, source=path)


def parse(data: Mapping[str, Any], base: Path = Path()) -> Settings:
    """Build :class:`Settings` from parsed TOML; relative paths are taken from ``base``."""
    sections = {f.name for f in dataclasses.fields(Settings) if f.name != "source"}
    return _build(Settings, data, "", base, allowed=sections)


def _build(cls: type[T], data: Any, prefix: str, base: Path, allowed: set[str] | None = None
           ) -> T:
    where = prefix.rstrip(".") or "the top level"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    names = allowed if allowed is not None else set(fields)
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            known = ", ".join(sorted(names))
            raise ConfigError(f"unknown config key {prefix}{key} (known here: {known})")
        values[key] = _convert(hints[key], value, f"{prefix}{key}", fields[key], base)
    for name in names - values.keys():
        # A field whose default fails its own check must be given (e.g. a key's `pem`).
        fld = fields[name]
        check: Check | None = fld.metadata.get("check") if fld.metadata else None
        if check is not None and fld.default is not dataclasses.MISSING and not check(fld.default):
            raise ConfigError(f"config key {prefix}{name} is missing: expected "
                              f"{fld.metadata.get('expect') or _describe(hints[name])}")
    return cls(**values)


def _convert(hint: Any, value: Any, key: str, fld: dataclasses.Field[Any], base: Path) -> Any:
    expect = fld.metadata.get("expect") or _describe(hint)
    converted = _coerce(hint, value, key, base, expect)
    check: Check | None = fld.metadata.get("check")
    if check is not None and converted is not None and not check(converted):
        raise ConfigError(f"config key {key} = {value!r} is invalid: expected {expect}")
    return converted


def _coerce(hint: Any, value: Any, key: str, base: Path, expect: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return _coerce(inner[0], value, key, base, expect)
    wrong = ConfigError(f"config key {key} = {value!r} has the wrong type: expected {expect}")
    if origin is list:
        if not isinstance(value, list):
            raise wrong
        (item,) = typing.get_args(hint)
        if dataclasses.is_dataclass(item):
            return [_build(typing.cast(type[Any], item), v, f"{key}[{i}].", base)
                    for i, v in enumerate(value)]
        return [_coerce(item, v, f"{key}[{i}]", base, expect) for i, v in enumerate(value)]
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, f"{key}.", base)  # type: ignore[arg-type]
    if hint is Path:
        if not isinstance(value, str) or not value:
            raise wrong
        return base / Path(value).expanduser()
    if hint is bool:
        if not isinstance(value, bool):
            raise wrong
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise wrong
        return value
    raise wrong


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is list:
        return "a list"
    if origin in (types.UnionType, typing.Union):
        return _describe(next(a for a in typing.get_args(hint) if a is not type(None)))
    names = {int: "a whole number", float: "a number", str: "a string", bool: "true or false",
             Path: "a file path"}
    return names.get(hint, "a table")


def reference() -> str:
    """A Markdown description of every key, generated from the dataclasses (for the README)."""
    lines: list[str] = []
    for section in dataclasses.fields(Settings):
        if section.name == "source":
            continue
        cls = typing.get_type_hints(Settings)[section.name]
        lines.append(f"[{section.name}]  # {(cls.__doc__ or '').split(':', 1)[-1].strip()}")
        for f in dataclasses.fields(cls):
            default = (f.default if f.default is not dataclasses.MISSING
                       else f.default_factory())  # type: ignore[operator]
            expect = f.metadata.get("expect") or _describe(typing.get_type_hints(cls)[f.name])
            lines.append(f"{f.name} = {_toml(default)}  # {expect}")
        lines.append("")
    return "\n".join(lines)


def _toml(value: Any) -> str:
    if isinstance(value, Path):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if value is None:
        return '""  # unset'
    return repr(value)
