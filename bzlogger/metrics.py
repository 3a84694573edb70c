"""Prometheus metrics for a fleet of kiosks, through node-exporter's textfile collector.

The daemon keeps no network access, so it exposes no HTTP endpoint: it fills a
:class:`MetricsSnapshot` (plain numbers it already keeps for ``bzlogger status``) and
calls :func:`write_metrics` every few seconds to replace ``[daemon] metrics_textfile``
(a ``.prom`` file in node-exporter's ``--collector.textfile.directory``) atomically.
Rendering uses the official ``prometheus-client`` so names, types and escaping follow the
exposition format exactly.

Counters are totals since the daemon started (Prometheus handles the reset at a
restart). No metric carries an identifier or a MAC address.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bzlogger.model import Protocol
from bzlogger.timefmt import parse_iso

#: Clock states always exported (1 for the current one, 0 for the others), so that an
#: alert can test ``bzlogger_clock_state{state="ok"} == 0``.
CLOCK_STATES = ("ok", "waiting")


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """What the daemon knows about itself at ``now`` (Unix seconds, its clock).

    ``advertisements`` counts well-formed contact-tracing advertisements per protocol;
    ``noise`` counts advertisements of other BLE devices; ``malformed`` counts broken
    ones per reason (e.g. ``"gaen_length"``). ``last_advertisement_at`` is when the
    scanner last received *any* advertisement (noise included: it shows the radio
    hears), None if none since ``started_at``. ``advertising`` says per protocol whether
    the kiosk's own advertisement is registered with BlueZ.
    """

    now: float
    started_at: float
    advertisements: Mapping[str, int] = field(default_factory=dict)
    noise: int = 0
    malformed: Mapping[str, int] = field(default_factory=dict)
    encounters: int = 0
    matches: int = 0
    scanner_restarts: int = 0
    advertising: Mapping[str, bool] = field(default_factory=dict)
    last_advertisement_at: float | None = None
    store_bytes: int = 0
    clock_state: str = "ok"


def snapshot_from_daemon(state: Mapping[str, Any], scanner_counters: Mapping[str, int],
                         matches: int | None = None) -> MetricsSnapshot:
    """Build the snapshot from what the daemon already has: its state-file document
    (``Daemon.snapshot()``: times, advertising, encounters, store, clock) and the
    scanner's counters (``BleScanner.stats()``: ``seen.<kind>``, ``noise``,
    ``malformed.<reason>``, ``recovery.<action>``). ``matches`` defaults to the
    exposures the store holds (``bzlogger match`` and ``lists fetch`` save them there)."""
    if matches is None:
        matches = int(state.get("store", {}).get("exposures") or 0)
    now = parse_iso(state["now"])
    scanning = state.get("scanning", {})
    age = scanning.get("last_seen_age_s")
    advertising = state.get("advertising", {})
    active = bool(advertising.get("active"))
    store_bytes = state.get("store", {}).get("size_bytes")
    counters = scanner_counters
    return MetricsSnapshot(
        now=now,
        started_at=parse_iso(state["started_at"]),
        advertisements={
            "bluezone": counters.get("seen.bluezone_android", 0)
            + counters.get("seen.bluezone_ios", 0),
            "gaen": counters.get("seen.gaen", 0)},
        noise=counters.get("noise", 0),
        malformed={k.split(".", 1)[1]: v for k, v in counters.items()
                   if k.startswith("malformed.")},
        encounters=int(state.get("encounters", {}).get("closed_since_start") or 0),
        matches=matches,
        scanner_restarts=sum(v for k, v in counters.items() if k.startswith("recovery.")),
        advertising={p: active for p in advertising.get("protocols", [])},
        last_advertisement_at=None if age is None else now - float(age),
        store_bytes=int(store_bytes or 0),
        clock_state=str(state.get("clock", {}).get("state", "ok")),
    )


def seconds_since_last_advertisement(snapshot: MetricsSnapshot) -> float:
    """Seconds the scanner has heard nothing (since the start if it never heard)."""
    last = snapshot.last_advertisement_at
    return max(0.0, snapshot.now - (snapshot.started_at if last is None else last))


class SnapshotCollector(Collector):
    """A prometheus-client collector that reports one :class:`MetricsSnapshot`."""

    def __init__(self, snapshot: MetricsSnapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        s = self.snapshot
        adverts = CounterMetricFamily(
            "bzlogger_advertisements", "Contact-tracing advertisements received, by protocol.",
            labels=["protocol"])
        for protocol in sorted({*(str(p) for p in Protocol), *s.advertisements}):
            adverts.add_metric([protocol], s.advertisements.get(protocol, 0))
        yield adverts
        yield CounterMetricFamily("bzlogger_noise_advertisements",
                                  "Advertisements of other BLE devices (not contact tracing).",
                                  value=s.noise)
        malformed = CounterMetricFamily(
            "bzlogger_malformed_advertisements",
            "Contact-tracing advertisements that could not be parsed, by reason.",
            labels=["reason"])
        for reason, count in sorted(s.malformed.items()):
            malformed.add_metric([reason or "unknown"], count)
        if not s.malformed:
            malformed.add_metric(["none"], 0)
        yield malformed
        yield CounterMetricFamily("bzlogger_encounters", "Encounters recorded in the store.",
                                  value=s.encounters)
        yield CounterMetricFamily("bzlogger_matches",
                                  "Encounters matched against published infected lists.",
                                  value=s.matches)
        yield CounterMetricFamily("bzlogger_scanner_restarts",
                                  "Times the scanner was restarted (watchdog or error).",
                                  value=s.scanner_restarts)
        advertising = GaugeMetricFamily(
            "bzlogger_advertising", "1 when the kiosk's own advertisement is active.",
            labels=["protocol"])
        for protocol in sorted({*(str(p) for p in Protocol), *s.advertising}):
            advertising.add_metric([protocol], float(s.advertising.get(protocol, False)))
        yield advertising
        yield GaugeMetricFamily("bzlogger_seconds_since_last_advertisement",
                                "Seconds since the scanner received any advertisement.",
                                value=seconds_since_last_advertisement(s))
        yield GaugeMetricFamily("bzlogger_store_size_bytes",
                                "Size of the encrypted store on disk.", value=s.store_bytes)
        clock = GaugeMetricFamily("bzlogger_clock_state",
                                  "1 for the daemon's current clock state (ok: usable; "
                                  "waiting: implausible, nothing recorded).",
                                  labels=["state"])
        for state in sorted({*CLOCK_STATES, s.clock_state}):
            clock.add_metric([state], float(state == s.clock_state))
        yield clock
        yield GaugeMetricFamily("bzlogger_start_time_seconds",
                                "When the daemon started, Unix seconds.", value=s.started_at)


def render_metrics(snapshot: MetricsSnapshot) -> CollectorRegistry:
    """A registry holding exactly the snapshot's metrics."""
    if not all(math.isfinite(v) for v in (snapshot.now, snapshot.started_at)):
        raise ValueError("snapshot times must be finite")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot))
    return registry


def write_metrics(path: Path, snapshot: MetricsSnapshot) -> None:
    """Atomically replace the textfile ``path`` (must end in ``.prom``) with ``snapshot``."""
    if path.suffix != ".prom":
        raise ValueError(f"{path}: node-exporter only reads files ending in .prom")
    write_to_textfile(str(path), render_metrics(snapshot))
