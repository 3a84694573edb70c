"""The daemon's runtime state: the document written to the state file (read by
``bzlogger status``, the door display and the metrics) and the one-line systemd status.
It holds no identifier and no time of any encounter."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bzlogger import __version__
from bzlogger.ble.advertiser import AdvertisingStatus
from bzlogger.ble.scanner import BleScanner
from bzlogger.daemon.supervisor import scrub
from bzlogger.timefmt import iso

if TYPE_CHECKING:
    from bzlogger.daemon.app import Daemon

#: Where systemd-timesyncd says the clock is synchronised (systemd >= 250).
TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")


class RateMeter:
    """Events per minute over the last minute of the daemon's clock, from counters."""

    def __init__(self, window_s: float = 60.0) -> None:
        self.window_s = window_s
        self._points: deque[tuple[float, int]] = deque()

    def update(self, mono: float, total: int) -> float:
        """Record the counter's ``total`` at ``mono``; returns the rate per minute."""
        self._points.append((mono, total))
        while len(self._points) > 2 and mono - self._points[1][0] >= self.window_s:
            self._points.popleft()
        first_mono, first_total = self._points[0]
        span = mono - first_mono
        return 0.0 if span <= 0 else (total - first_total) * 60.0 / span


class StateBuilder:
    """Builds the state document of a daemon; keeps the rate meters between calls."""

    def __init__(self) -> None:
        self._adverts_rate = RateMeter()
        self._sightings_rate = RateMeter()

    def build(self, daemon: Daemon) -> dict[str, Any]:
        """The state file's content (no identifiers, no time of any encounter)."""
        now = daemon.clock.now()
        mono = daemon.clock.monotonic()
        health = daemon.scanner.health()
        stats = daemon.scanner.stats()
        reasons = daemon.unhealthy()
        verdict = daemon.guard.verdict
        scanning = {
            "protocols": [p.value for p in daemon.scan_protocols],
            "active": daemon.scanner.scanning,
            "phase": health.phase,
            "detail": scrub(health.reason),
            "per_minute": round(self._adverts_rate.update(mono, stats.get("adverts", 0)), 1),
            "sightings_per_minute": round(self._sightings_rate.update(
                mono, daemon.aggregator.counters.sightings), 1),
            "last_seen_age_s": (None if health.last_advert_age_s is None
                                else round(health.last_advert_age_s)),
            "adverts": stats.get("adverts", 0),
            "dropped_queue": stats.get("dropped", 0),
            "dropped_clock": daemon.dropped_clock,
            "dropped_weak": daemon.aggregator.counters.dropped_weak,
        }
        if daemon.gatt is not None:
            gatt = daemon.gatt.stats()
            scanning["gatt_reads_ok"] = gatt.get("reads_ok", 0)
        advertising: dict[str, Any] = {"protocols": [p.value for p in daemon.advertise_protocols],
                                       "active": False}
        if daemon.advertiser is not None:
            adv = daemon.advertiser.state()
            advertising.update(
                active=adv.status is AdvertisingStatus.ACTIVE, status=adv.status.value,
                detail=(scrub(adv.error or "") or None) if verdict.usable
                else "withheld: clock not plausible",
                next_rotation=None if adv.next_rotation is None else iso(adv.next_rotation),
                registrations=adv.registrations, failures=adv.failures)
        store = daemon.store_stats
        return {
            "version": __version__,
            "phase": daemon.phase,
            "healthy": not reasons,
            "unhealthy": [scrub(r) for r in reasons],
            "warnings": [scrub(w) for w in daemon.warnings()],
            "now": iso(now),
            "started_at": iso(daemon.started_at),
            "uptime_s": round(now - daemon.started_at),
            "adapter": {"name": daemon.settings.ble.adapter,
                        "state": adapter_state(daemon.scanner)},
            "clock": {"state": verdict.state.value, "reason": verdict.reason,
                      "jumps": daemon.guard.jumps, "speed": daemon.clock.speed,
                      "ntp_synchronized": (TIMESYNC_FLAG.exists()
                                           if daemon.clock.speed == 1.0 else None)},
            "scanning": scanning,
            "advertising": advertising,
            "encounters": {"today": None if store is None else store.encounters_today,
                           "open": daemon.aggregator.open_count,
                           "pending": len(daemon.writer.pending),
                           "dropped_unwritten": daemon.writer.dropped,
                           "closed_since_start": daemon.aggregator.counters.encounters_closed},
            "store": {"path": str(daemon.settings.store.path),
                      "size_bytes": None if store is None else store.size_bytes,
                      "exposures": None if store is None else store.exposures,
                      "oldest_day": (None if store is None or store.oldest_day is None
                                     else iso(store.oldest_day)[:10]),
                      "encounters": None if store is None else store.encounters,
                      "retention_days": daemon.settings.store.retention_days,
                      "writable": daemon.writer.failing_since is None,
                      "last_write_age_s": round(time.monotonic() - daemon.writer.ok_real, 1)},
            "parts": [{"name": s.name, "state": s.state.value, "restarts": s.restarts,
                       "last_error": s.last_error} for s in daemon.supervisor.statuses()],
            "errors": [{"at": iso(e.at), "part": e.task, "message": e.message}
                       for e in daemon.supervisor.errors()],
            "reload": daemon.last_reload,
        }


def adapter_state(scanner: BleScanner) -> str:
    """The adapter as the status shows it, from the scanner's watch on BlueZ."""
    watch = scanner.watch
    if not watch.connected:
        return "no D-Bus connection"
    if watch.owner is None:
        return "bluetoothd not running"
    if not watch.adapter_present:
        return "not found"
    if watch.powered is None:
        return "unknown"
    return "powered" if watch.powered else "powered off"


def status_line(state: Mapping[str, Any]) -> str:
    """The one line systemd shows as ``Status:``."""
    if state["phase"] == "waiting-for-clock":
        return f"not logging: {state['clock']['reason']}"
    parts = []
    if state["unhealthy"]:
        parts.append("UNHEALTHY: " + "; ".join(state["unhealthy"]))
    scanning = state["scanning"]
    parts.append(f"scanning {scanning['per_minute']:.0f} adv/min" if scanning["active"]
                 else f"scanner {scanning['phase']}: {scanning['detail']}")
    advertising = state["advertising"]
    if advertising["protocols"]:
        what = "+".join(advertising["protocols"])
        parts.append(f"advertising {what}" if advertising["active"]
                     else f"NOT advertising {what}")
    today = state["encounters"]["today"]
    if today is not None:
        parts.append(f"{today} encounters today")
    return "; ".join(parts)
