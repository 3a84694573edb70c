"""The list pipeline's pure parts: format detection, time spans, revocation, alerts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import structlog

from bzlogger.config import ListSettings
from bzlogger.errors import ListError
from bzlogger.lists import bluezone_list, gaen_export, pipeline
from bzlogger.lists.bluezone_list import BluezoneEntry
from bzlogger.lists.gaen_export import ExportKey
from bzlogger.lists.limits import Limits
from bzlogger.model import Exposure, Protocol

DAY = 1_796_083_200


def exposure(key: bytes, first: float = DAY + 100.0) -> Exposure:
    return Exposure(Protocol.GAEN, b"\x01" * 16, key, first, first + 300, 20, -50, -55.0,
                    47.0, 0.3)


def test_format_is_detected_from_content_not_name() -> None:
    zip_data = gaen_export.write_export([], start_timestamp=0, end_timestamp=0)
    json_data = b'\xef\xbb\xbf  {"data": []}'
    assert pipeline.detect_protocol(zip_data, "list.json") is Protocol.GAEN
    assert pipeline.detect_protocol(json_data, "export.zip") is Protocol.BLUEZONE
    with pytest.raises(ListError, match="neither"):
        pipeline.detect_protocol(b"<html>", "x")


def test_spans_include_the_clock_tolerances() -> None:
    trust = pipeline.Trust(verify=False)
    gaen_list = pipeline.load_list(
        gaen_export.write_export([ExportKey(b"k" * 16, DAY // 600, 144)], start_timestamp=0,
                                 end_timestamp=0), "g.zip", Limits(), trust)
    assert gaen_list.span() == (DAY - 7200, DAY + 86400 + 7200)
    bz_list = pipeline.load_list(bluezone_list.write_list(
        [BluezoneEntry(b"d" * 32, DAY, DAY + 86399)]).encode(), "b.json", Limits(), trust)
    assert bz_list.span() == (DAY - 600, DAY + 86399 + 900 + 600)
    assert pipeline.encounter_span([gaen_list, bz_list]) == (DAY - 7200, DAY + 86400 + 7200)


def test_revoked_keys_are_not_matched_and_drop_their_exposures() -> None:
    kept, revoked = b"a" * 16, b"r" * 16
    data = gaen_export.write_export(
        [ExportKey(kept, DAY // 600, 144),
         ExportKey(revoked, DAY // 600, 144, 0, gaen_export.REVOKED)],
        start_timestamp=0, end_timestamp=0)
    loaded = pipeline.load_list(data, "g.zip", Limits(), pipeline.Trust(verify=False))
    assert [k.key_data for k in loaded.keys] == [kept] and loaded.revoked == {revoked}
    assert loaded.key_count == 2
    assert pipeline.without_revoked([exposure(kept), exposure(revoked)], [loaded]) == [
        exposure(kept)]


def test_bluezone_signature_needs_a_key() -> None:
    data = bluezone_list.write_list([]).encode()
    with pytest.raises(ListError, match="no key to check it"):
        pipeline.load_list(data, "b.json", Limits(), pipeline.Trust(), signature=b"sig")


def test_alert_command_gets_json_without_identifiers(tmp_path: Path) -> None:
    out = tmp_path / "alert.json"
    script = tmp_path / "alert.py"
    script.write_text("import sys\nopen(sys.argv[1], 'w').write(sys.stdin.read())\n")
    settings = ListSettings(alert_command=f"{sys.executable} {script} {out}")
    with structlog.testing.capture_logs() as logs:
        pipeline.alert([exposure(b"k" * 16)], settings)
    payload = json.loads(out.read_text())
    assert payload["event"] == "exposure_found" and payload["count"] == 1
    assert set(payload["exposures"][0]) == {
        "protocol", "first_seen", "last_seen", "duration_s", "samples", "rssi_max",
        "rssi_median", "attenuation_db", "risk"}
    found = [e for e in logs if e["event"] == "exposure_found"]
    assert found and found[0]["count"] == 1 and "id" not in found[0]


def test_failing_or_hanging_alert_command_is_logged_not_raised(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "ALERT_TIMEOUT_S", 0.5)
    for command in (f"{sys.executable} -c 'import sys; sys.exit(3)'",
                    f"{sys.executable} -c 'import time; time.sleep(5)'",
                    str(tmp_path / "missing-command")):
        with structlog.testing.capture_logs() as logs:
            pipeline.alert([exposure(b"k" * 16)], ListSettings(alert_command=command))
        assert any(e["event"] == "alert command failed" for e in logs), command


def test_no_new_exposures_no_alert(tmp_path: Path) -> None:
    with structlog.testing.capture_logs() as logs:
        pipeline.alert([], ListSettings(alert_command=str(tmp_path / "never-run")))
    assert logs == []
