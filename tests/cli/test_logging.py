"""structlog: JSON lines with ISO UTC timestamps off a terminal; identifiers redacted."""

from __future__ import annotations

import json

import pytest

from bzlogger import logsetup


def test_json_lines_with_iso_utc_timestamps(capsys: pytest.CaptureFixture[str]) -> None:
    logsetup.configure(0, json_lines=True)
    log = logsetup.get_logger("test")
    log.info("scanner_started", adapter="hci0")
    log.debug("not shown at verbosity 0")
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert event["event"] == "scanner_started"
    assert event["component"] == "test"
    assert event["level"] == "info"
    assert event["timestamp"].endswith("Z")


def test_verbose_shows_debug(capsys: pytest.CaptureFixture[str]) -> None:
    logsetup.configure(1, json_lines=True)
    logsetup.get_logger("test").debug("detail", n=1)
    assert json.loads(capsys.readouterr().err)["level"] == "debug"


def test_redact_keeps_two_bytes_only() -> None:
    assert logsetup.redact(bytes.fromhex("9c2d6bdf8b5c4c69767bc60c")) == "9c2d…"
    assert logsetup.redact("AA:BB:CC:DD:EE:FF") == "aabb…"
