"""``bzlogger status``: the runtime state file rendered for an operator at a glance.

Pure: it formats a :class:`~bzlogger.daemon.state.StateReading`; ages ("3 s ago") were
computed by the daemon on its own (possibly accelerated) clock when it wrote the file.
"""

from __future__ import annotations

from typing import Any

from bzlogger.daemon.durations import span_text
from bzlogger.daemon.state import StateReading


def problems(reading: StateReading) -> list[str]:
    """Why the daemon is not fine (empty when it runs and is healthy)."""
    if not reading.process_alive:
        return ["the daemon is not running (its state file is left over); "
                "start it with 'systemctl start bzlogger'"]
    if not reading.live:
        return [f"the daemon has not updated its state for {reading.age_s:.0f} s: it is "
                "wedged; systemd's watchdog restarts it, or run 'systemctl restart bzlogger'"]
    data = reading.data
    found = []
    if data.get("phase") == "waiting-for-clock":
        found.append(f"not logging: {data.get('clock', {}).get('reason', 'clock not plausible')}")
    for reason in data.get("unhealthy", []):
        found.append(f"unhealthy: {reason}")
    return found


def render(reading: StateReading) -> list[str]:
    """Lines of text for a terminal."""
    d = reading.data
    lines = [_headline(reading)]
    adapter = d.get("adapter", {})
    lines.append(f"adapter:      {adapter.get('name', '?')}, {adapter.get('state', 'unknown')}")
    clock = d.get("clock", {})
    clock_line = clock.get("reason", clock.get("state", "unknown"))
    if clock.get("ntp_synchronized") is not None:
        clock_line += ", NTP " + ("synchronized" if clock["ntp_synchronized"] else "not synced")
    if clock.get("speed", 1.0) != 1.0:
        clock_line += f", simulated x{clock['speed']:g}"
    lines.append(f"clock:        {clock_line}")
    lines.append(f"scanning:     {_scanning(d.get('scanning', {}))}")
    lines.append(f"advertising:  {_advertising(d.get('advertising', {}))}")
    enc = d.get("encounters", {})
    today = enc.get("today")
    lines.append(f"encounters:   {'?' if today is None else today} today, "
                 f"{enc.get('open', 0)} open, "
                 f"{enc.get('pending', 0)} waiting to be stored")
    lines.append(f"store:        {_store(d.get('store', {}))}")
    lines.append(f"parts:        {_parts(d.get('parts', []))}")
    errors = d.get("errors", [])
    if errors:
        lines.append("last errors:")
        lines.extend(f"  {e.get('at', '?')}  {e.get('part', '?')}: {e.get('message', '')}"
                     for e in errors[-5:])
    else:
        lines.append("last errors:  none")
    lines.extend(f"PROBLEM: {p}" for p in problems(reading))
    return lines


def _headline(reading: StateReading) -> str:
    d = reading.data
    state = d.get("phase", "unknown")
    if not reading.live:
        state = "NOT RUNNING" if not reading.process_alive else "NOT RESPONDING"
    health = "healthy" if d.get("healthy") else "UNHEALTHY"
    return (f"daemon:       {state}, {health}; up since {d.get('started_at', '?')} "
            f"({_span(d.get('uptime_s', 0))}), pid {d.get('pid', '?')}; "
            f"state written {reading.age_s:.0f} s ago")


def _scanning(s: dict[str, Any]) -> str:
    if not s:
        return "unknown"
    active = "active" if s.get("active") else "NOT ACTIVE"
    last = s.get("last_seen_age_s")
    last_text = "none seen yet" if last is None else f"last {_span(last)} ago"
    text = (f"{', '.join(s.get('protocols', []))}: {active}, "
            f"{s.get('per_minute', 0):.1f} adv/min, {last_text}")
    if s.get("dropped_clock"):
        text += f", {s['dropped_clock']} dropped (clock)"
    if s.get("detail"):
        text += f" ({s['detail']})"
    return text


def _advertising(a: dict[str, Any]) -> str:
    if not a:
        return "unknown"
    protocols = ", ".join(a.get("protocols", [])) or "nothing configured"
    state = "active" if a.get("active") else "NOT ACTIVE"
    text = f"{protocols}: {state}"
    if a.get("next_rotation"):
        text += f", next rotation {a['next_rotation']}"
    if a.get("detail"):
        text += f" ({a['detail']})"
    return text


def _store(s: dict[str, Any]) -> str:
    if not s:
        return "unknown"
    size = s.get("size_bytes")
    size_text = "?" if size is None else f"{size / 1e6:.1f} MB"
    writable = "writable" if s.get("writable") else "NOT WRITABLE"
    return (f"{s.get('path', '?')}, {size_text}, oldest day {s.get('oldest_day') or 'none'}, "
            f"{writable}")


def _parts(parts: list[dict[str, Any]]) -> str:
    if not parts:
        return "none"
    if all(p.get("state") == "running" and not p.get("restarts") for p in parts):
        return f"all {len(parts)} running"
    return "; ".join(
        f"{p.get('name')} {p.get('state')}" + (f" ({p['restarts']} restarts)"
                                               if p.get("restarts") else "")
        for p in parts
    )


def _span(seconds: float) -> str:
    return span_text(float(seconds), day_decimals=1)
