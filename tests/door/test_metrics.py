"""The Prometheus textfile: written from a snapshot, then scraped (parsed) as Prometheus
would read it."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bzlogger.metrics import MetricsSnapshot, write_metrics

SNAPSHOT = MetricsSnapshot(
    now=1_796_630_400.0, started_at=1_796_626_800.0,
    advertisements={"bluezone": 1200, "gaen": 340}, noise=5000,
    malformed={"gaen_length": 3, "bluezone_length": 1}, encounters=57, matches=2,
    scanner_restarts=1, advertising={"bluezone": True, "gaen": False},
    last_advertisement_at=1_796_630_395.5, store_bytes=1_048_576, clock_state="ok")


def scrape(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_every_metric_is_scraped_with_its_value(tmp_path: Path) -> None:
    path = tmp_path / "bzlogger.prom"
    write_metrics(path, SNAPSHOT)
    got = scrape(path)
    expected = {
        ("bzlogger_advertisements_total", (("protocol", "bluezone"),)): 1200,
        ("bzlogger_advertisements_total", (("protocol", "gaen"),)): 340,
        ("bzlogger_noise_advertisements_total", ()): 5000,
        ("bzlogger_malformed_advertisements_total", (("reason", "gaen_length"),)): 3,
        ("bzlogger_malformed_advertisements_total", (("reason", "bluezone_length"),)): 1,
        ("bzlogger_encounters_total", ()): 57,
        ("bzlogger_matches_total", ()): 2,
        ("bzlogger_scanner_restarts_total", ()): 1,
        ("bzlogger_advertising", (("protocol", "bluezone"),)): 1,
        ("bzlogger_advertising", (("protocol", "gaen"),)): 0,
        ("bzlogger_seconds_since_last_advertisement", ()): 4.5,
        ("bzlogger_store_size_bytes", ()): 1_048_576,
        ("bzlogger_clock_state", (("state", "ok"),)): 1,
        ("bzlogger_clock_state", (("state", "waiting"),)): 0,
        ("bzlogger_start_time_seconds", ()): 1_796_626_800.0,
    }
    assert got == expected
    types = {f.name: f.type for f in text_string_to_metric_families(path.read_text())}
    assert types["bzlogger_advertisements"] == "counter"
    assert types["bzlogger_advertising"] == "gauge"
    assert [p.name for p in tmp_path.iterdir()] == ["bzlogger.prom"]  # no temporary left


def test_a_deaf_kiosk_reports_time_since_start(tmp_path: Path) -> None:
    path = tmp_path / "bzlogger.prom"
    deaf = MetricsSnapshot(now=1000.0, started_at=400.0, clock_state="waiting")
    write_metrics(path, deaf)
    got = scrape(path)
    assert got[("bzlogger_seconds_since_last_advertisement", ())] == 600
    assert got[("bzlogger_advertisements_total", (("protocol", "gaen"),))] == 0
    assert got[("bzlogger_clock_state", (("state", "waiting"),))] == 1
    assert got[("bzlogger_clock_state", (("state", "ok"),))] == 0


def test_rewrites_replace_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bzlogger.prom"
    write_metrics(path, SNAPSHOT)
    write_metrics(path, MetricsSnapshot(now=1.0, started_at=0.0, encounters=58))
    assert scrape(path)[("bzlogger_encounters_total", ())] == 58


def test_the_textfile_collector_needs_a_prom_suffix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.prom"):
        write_metrics(tmp_path / "bzlogger.txt", SNAPSHOT)


def test_snapshot_from_the_daemon_state_and_scanner_counters(tmp_path: Path) -> None:
    from bzlogger.metrics import snapshot_from_daemon

    state = {
        "now": "2026-12-07T08:00:00Z", "started_at": "2026-12-07T07:00:00Z",
        "scanning": {"last_seen_age_s": 3, "adverts": 9000},
        "advertising": {"protocols": ["bluezone"], "active": True},
        "encounters": {"closed_since_start": 41, "today": 57},
        "store": {"size_bytes": 4096},
        "clock": {"state": "ok"},
    }
    counters = {"adverts": 9000, "seen.bluezone_android": 700, "seen.bluezone_ios": 50,
                "seen.gaen": 120, "noise": 8000, "malformed.gaen_length": 2,
                "recovery.restart_scan": 1, "recovery.power_cycle": 1, "sightings.gaen": 120}
    snapshot = snapshot_from_daemon(state, counters, matches=1)
    path = tmp_path / "bzlogger.prom"
    write_metrics(path, snapshot)
    got = scrape(path)
    assert got[("bzlogger_advertisements_total", (("protocol", "bluezone"),))] == 750
    assert got[("bzlogger_advertisements_total", (("protocol", "gaen"),))] == 120
    assert got[("bzlogger_noise_advertisements_total", ())] == 8000
    assert got[("bzlogger_malformed_advertisements_total", (("reason", "gaen_length"),))] == 2
    assert got[("bzlogger_scanner_restarts_total", ())] == 2
    assert got[("bzlogger_encounters_total", ())] == 41
    assert got[("bzlogger_matches_total", ())] == 1
    assert got[("bzlogger_advertising", (("protocol", "bluezone"),))] == 1
    assert got[("bzlogger_advertising", (("protocol", "gaen"),))] == 0
    assert got[("bzlogger_seconds_since_last_advertisement", ())] == 3
    assert got[("bzlogger_store_size_bytes", ())] == 4096


def test_matches_default_to_the_exposures_in_the_store(tmp_path: Path) -> None:
    from bzlogger.metrics import snapshot_from_daemon

    state = {"now": "2026-12-07T08:00:00Z", "started_at": "2026-12-07T07:00:00Z",
             "store": {"size_bytes": 4096, "exposures": 3}}
    path = tmp_path / "bzlogger.prom"
    write_metrics(path, snapshot_from_daemon(state, {}))
    assert scrape(path)[("bzlogger_matches_total", ())] == 3
