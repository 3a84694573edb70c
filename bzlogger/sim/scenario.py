"""The scenario file format (TOML) and its expansion into visitors, deterministic
given the seed. See ``docs/simulator.md`` for the format and ``tools/scenarios/`` for
examples.
"""

from __future__ import annotations

import hashlib
import random
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path as FilePath
from typing import Any

from bzlogger.errors import OperationalError
from bzlogger.ids import bluezone
from bzlogger.sim import world
from bzlogger.sim.world import KIND_DEFAULTS, Kind, RadioModel, Visitor
from bzlogger.timefmt import parse_iso

PROFILES = ("walk_past", "queue", "desk", "street", "stationary")
FAULT_ACTIONS = ("restart_bluetoothd", "power_cycle", "inject_error", "silence_scanner",
                 "gatt_fault", "malformed")


class ScenarioError(OperationalError):
    """A scenario file that cannot be used; the message names the entry and the fix."""


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """A fault to trigger ``at`` seconds after the scenario start."""

    at: float
    action: str
    options: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Scenario:
    """A parsed scenario: visitors are expanded (fresh objects on every parse)."""

    name: str
    seed: int
    start: float
    duration: float
    radio: RadioModel
    kiosk_tx_power_1m: int
    max_ids: int
    visitors: tuple[Visitor, ...]
    faults: tuple[FaultSpec, ...]
    description: str = ""

    @property
    def end(self) -> float:
        """Unix time the scenario ends."""
        return self.start + self.duration


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_duration(value: Any, where: str = "duration") -> float:
    """Seconds from ``90``, ``"90s"``, ``"15m"``, ``"1h30m"`` or ``"100ms"``."""
    if isinstance(value, bool):
        raise ScenarioError(f"{where}: expected a duration, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ScenarioError(f"{where}: a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        parts = _DURATION.findall(text)
        if parts and "".join(n + u for n, u in parts) == text:
            scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
            return sum(float(n) * scale[u] for n, u in parts)
    raise ScenarioError(f"{where}: {value!r} is not a duration (use e.g. 90, \"15m\", \"1h30m\")")


def _pick_duration(value: Any, rng: random.Random, where: str) -> float:
    """A duration or a ``[min, max]`` range picked uniformly."""
    if isinstance(value, list):
        if len(value) != 2:
            raise ScenarioError(f"{where}: a range is [min, max]")
        low, high = parse_duration(value[0], where), parse_duration(value[1], where)
        if high < low:
            raise ScenarioError(f"{where}: range max is below min")
        return rng.uniform(low, high)
    return parse_duration(value, where)


def _pick_number(value: Any, rng: random.Random, where: str) -> float:
    if isinstance(value, list) and len(value) == 2 and all(
            isinstance(v, int | float) for v in value):
        return rng.uniform(float(value[0]), float(value[1]))
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise ScenarioError(f"{where}: expected a number or [min, max], got {value!r}")


def _chance(value: Any, rng: random.Random, where: str) -> bool:
    """``true``/``false`` or a probability in [0, 1]."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and 0.0 <= value <= 1.0:
        return rng.random() < value
    raise ScenarioError(f"{where}: expected true, false or a fraction in [0, 1]")


def load_scenario(path: str | FilePath) -> Scenario:
    """Read and expand a scenario file."""
    file = FilePath(path)
    try:
        data = tomllib.loads(file.read_text())
    except FileNotFoundError:
        raise ScenarioError(f"scenario file {file} not found") from None
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError(f"{file}: not valid TOML: {error}") from None
    return parse_scenario(data, default_name=file.stem)


def parse_scenario(data: dict[str, Any], default_name: str = "scenario") -> Scenario:
    """Expand a scenario given as the dict a TOML file parses to."""
    unknown = set(data) - {"scenario", "radio", "kiosk", "visitors", "faults"}
    if unknown:
        raise ScenarioError(f"unknown top-level table(s): {', '.join(sorted(unknown))}")
    head = data.get("scenario", {})
    seed = int(head.get("seed", 0))
    try:
        start = parse_iso(str(head.get("start", "2020-08-17T07:00:00Z")))
    except OperationalError as error:
        raise ScenarioError(f"scenario.start: {error}") from None
    duration = parse_duration(head.get("duration", "1h"), "scenario.duration")
    max_ids = int(head.get("max_ids", bluezone.DEFAULT_MAX))
    try:
        bluezone.validate_max(max_ids)
    except ValueError as error:
        raise ScenarioError(f"scenario.max_ids: {error}") from None
    radio_data = data.get("radio", {})
    radio = RadioModel(
        path_loss_exponent=float(radio_data.get("path_loss_exponent", 2.7)),
        shadowing_sigma_db=float(radio_data.get("shadowing_sigma", 4.0)),
        sensitivity_dbm=int(radio_data.get("sensitivity", -100)),
    )
    kiosk_tx = int(data.get("kiosk", {}).get("tx_power_1m", -59))
    rng = random.Random(seed)  # noqa: S311 (reproducible simulation, not crypto)
    visitors: list[Visitor] = []
    for index, entry in enumerate(data.get("visitors", [])):
        visitors.extend(_expand(entry, index, rng, seed, start, max_ids))
    visitors.sort(key=lambda v: (v.arrival, v.id))
    ids = [v.id for v in visitors]
    if len(set(ids)) != len(ids):
        raise ScenarioError("visitor names must be unique")
    faults = tuple(_fault(entry, i) for i, entry in enumerate(data.get("faults", [])))
    return Scenario(str(head.get("name", default_name)), seed, start, duration, radio,
                    kiosk_tx, max_ids, tuple(visitors), faults,
                    str(head.get("description", "")))


_VISITOR_KEYS = {"name", "kind", "count", "arrive", "profile", "stay", "wait", "distance",
                 "tx_power_1m", "interval", "positive", "background", "payload", "base_key",
                 "base_days_ago", "tek", "gaen_tx_power"}


def _expand(entry: dict[str, Any], index: int, rng: random.Random, seed: int, start: float,
            max_ids: int) -> list[Visitor]:
    where = f"visitors[{index}]"
    unknown = set(entry) - _VISITOR_KEYS
    if unknown:
        raise ScenarioError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    try:
        kind = Kind(entry.get("kind", ""))
    except ValueError:
        raise ScenarioError(
            f"{where}: kind must be one of {', '.join(k.value for k in Kind)}") from None
    count = int(entry.get("count", 1))
    name = str(entry.get("name", f"{kind.value}-{index}"))
    profile = str(entry.get("profile", "walk_past" if kind.is_phone else "stationary"))
    if profile not in PROFILES:
        raise ScenarioError(f"{where}: profile must be one of {', '.join(PROFILES)}")
    payload = entry.get("payload")
    if kind is Kind.MALFORMED and payload not in world.MALFORMED_PAYLOADS:
        raise ScenarioError(
            f"{where}: payload must be one of {', '.join(world.MALFORMED_PAYLOADS)}")
    if count > 1 and ("base_key" in entry or "tek" in entry):
        raise ScenarioError(f"{where}: base_key/tek can only be given for a single visitor")
    tx_default, interval_default = KIND_DEFAULTS[kind]
    result = []
    for n in range(count):
        vid = name if count == 1 else f"{name}-{n + 1}"
        arrival = start + _pick_duration(entry.get("arrive", 0), rng, f"{where}.arrive")
        path = _path(profile, entry, rng, where)
        vseed = hashlib.sha256(f"{seed}/{vid}".encode()).digest()
        visitor = Visitor(
            id=vid, kind=kind, arrival=arrival, path=path, seed=vseed,
            tx_power_1m=round(_pick_number(entry.get("tx_power_1m", tx_default), rng,
                                           f"{where}.tx_power_1m")),
            adv_interval_s=max(0.02, _pick_duration(entry.get("interval", interval_default),
                                                    rng, f"{where}.interval")),
            positive=_chance(entry.get("positive", False), rng, f"{where}.positive"),
            ios_background=kind is Kind.BLUEZONE_IOS and _chance(
                entry.get("background", 0.5), rng, f"{where}.background"),
            malformed=payload if kind is Kind.MALFORMED else None,
            max_ids=max_ids,
            gaen_tx_power=int(entry.get("gaen_tx_power", -8)),
        )
        if kind in (Kind.BLUEZONE_ANDROID, Kind.BLUEZONE_IOS):
            visitor.bluezone_base_key = _hex(entry.get("base_key"), 32, f"{where}.base_key") \
                or hashlib.sha256(vseed + b"bluezone").digest()
            days_ago = int(entry.get("base_days_ago", rng.randrange(0, 30)))
            visitor.bluezone_base_day = (bluezone.utc_midnight(arrival)
                                         - days_ago * bluezone.DAY_SECONDS)
        if kind is Kind.GAEN:
            tek = _hex(entry.get("tek"), 16, f"{where}.tek")
            if tek is not None:
                visitor.gaen_teks[bluezone.utc_midnight(arrival)] = tek
        result.append(visitor)
    return result


def _hex(value: Any, length: int, where: str) -> bytes | None:
    if value is None:
        return None
    try:
        raw = bytes.fromhex(str(value))
    except ValueError:
        raw = b""
    if len(raw) != length:
        raise ScenarioError(f"{where}: expected {length} bytes of hex")
    return raw


def _path(profile: str, entry: dict[str, Any], rng: random.Random, where: str) -> world.Path:
    if profile == "walk_past":
        return world.walk_past(rng)
    if profile == "queue":
        return world.queue(rng, _pick_duration(entry.get("wait", ["2m", "6m"]), rng,
                                               f"{where}.wait"))
    if profile == "desk":
        return world.desk(rng, _pick_duration(entry.get("stay", ["10m", "40m"]), rng,
                                              f"{where}.stay"))
    if profile == "street":
        return world.street(rng)
    return world.stationary(_pick_number(entry.get("distance", 4.0), rng, f"{where}.distance"),
                            _pick_duration(entry.get("stay", "1h"), rng, f"{where}.stay"))


def _fault(entry: dict[str, Any], index: int) -> FaultSpec:
    where = f"faults[{index}]"
    action = entry.get("action")
    if action not in FAULT_ACTIONS:
        raise ScenarioError(f"{where}: action must be one of {', '.join(FAULT_ACTIONS)}")
    at = parse_duration(entry.get("at", 0), f"{where}.at")
    options = {k: v for k, v in entry.items() if k not in ("at", "action")}
    return FaultSpec(at, str(action), options)
