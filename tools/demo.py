"""``make demo``: the real daemon against the simulated BlueZ, start to finish.

1. creates a kiosk in a temporary directory (config, ``bzlogger init``: key + store);
2. starts ``bzlogger sim run`` with a busy scenario (a private dbus-daemon running a
   simulated bluetoothd with a crowd of phones, accelerated);
3. runs ``bzlogger run`` as a real process against it, printing progress;
4. shows ``bzlogger status``, stops the daemon with SIGTERM (timed), shows
   ``bzlogger encounters``;
5. compares what was logged with the scenario's ground truth and prints an honest
   summary (detected phones per group, close contacts, phantom identifiers, the
   kiosk's own beacons against its exported keys, the daemon's memory);
6. plays the health authority: publishes the keys of the visitors who later test
   positive (a Bluezone list and a signed GAEN export, with decoy keys), runs
   ``bzlogger match`` and checks that exactly the positive visitors who were logged
   are found; then prints the office manager's ``bzlogger report daily``.

Options: ``--speed``, ``--duration`` (scenario time to run), ``--scenario``, ``--keep``
(keep the temporary directory), ``--soak`` (a whole accelerated day of walk-ins instead
of the busy morning, to watch memory). Exit status 0 when the daemon behaved (started,
stayed healthy, exited 0 within 5 s of SIGTERM), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from demo_truth import match_published_lists, summarise  # noqa: E402

from bzlogger import RELEASE_EPOCH  # noqa: E402
from bzlogger.clock import ScaledClock  # noqa: E402
from bzlogger.sim.scenario import parse_duration  # noqa: E402
from bzlogger.timefmt import iso, parse_iso  # noqa: E402

BZ = [sys.executable, "-m", "bzlogger"]
#: The scenarios are set in August 2020 (the Bluezone era); the daemon refuses to log or
#: advertise with a clock earlier than its release date (a Raspberry Pi without RTC
#: boots with a wrong time), so the demo moves the scenario to a plausible day.
DEMO_START = "2026-12-07T07:00:00Z"
#: The simulator delivers at most one advertisement report per device every 0.25 real
#: seconds whatever the speed, so at 30x a phone is sampled every 7.5 scenario seconds:
#: a phone walking past in 20 s gives two or three samples, and a few are missed.
REPORT_TICK_S = 0.25
#: The demo's health authority signs its GAEN export with this key (made afresh each run).
AUTHORITY_KEY = ec.generate_private_key(ec.SECP256R1())
AUTHORITY_KEY_ID = "452"


def say(text: str = "") -> None:
    print(text, flush=True)


def heading(text: str) -> None:
    say()
    say(f"== {text} " + "=" * max(0, 74 - len(text)))


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def write_scenario(data: dict[str, Any], path: Path) -> None:
    """A scenario dict (tables of scalars, arrays of tables) back to TOML."""
    lines: list[str] = []
    for key, value in data.items():
        rows = value if isinstance(value, list) else [value]
        for row in rows:
            lines.append(f"[[{key}]]" if isinstance(value, list) else f"[{key}]")
            lines.extend(f"{k} = {toml_value(v)}" for k, v in row.items())
            lines.append("")
    path.write_text("\n".join(lines))


def soak_scenario() -> dict[str, Any]:
    """A whole day at the door: walk-ins all day, desk visits, street, noise."""
    def group(name: str, kind: str, count: int, profile: str, **extra: Any) -> dict[str, Any]:
        return {"name": name, "kind": kind, "count": count, "arrive": ["0m", "23h50m"],
                "profile": profile, **extra}

    return {
        "scenario": {"name": "soak_day", "description": "24 h of ordinary traffic",
                     "seed": 24, "start": DEMO_START, "duration": "24h"},
        "visitors": [
            group("walkin-android", "bluezone-android", 300, "walk_past"),
            group("walkin-ios", "bluezone-ios", 120, "walk_past", background=0.5),
            group("walkin-gaen", "gaen", 150, "walk_past"),
            group("desk-android", "bluezone-android", 40, "desk", stay=["5m", "25m"]),
            group("street", "gaen", 150, "street"),
            group("tracker", "tracker", 60, "walk_past"),
        ],
    }


def prepare(args: argparse.Namespace, work: Path) -> tuple[Path, Path, dict[str, Any]]:
    if args.soak:
        data = soak_scenario()
    else:
        data = tomllib.loads(Path(args.scenario).read_text())
        data["scenario"]["start"] = DEMO_START
    if args.duration:
        data["scenario"]["duration"] = args.duration
    scenario = work / "scenario.toml"
    write_scenario(data, scenario)
    authority_pem = work / "authority.pem"
    authority_pem.write_bytes(AUTHORITY_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    cfg = work / "bzlogger.toml"
    cfg.write_text(f"""# the demo kiosk (see systemd/bzlogger.toml.example for every key)
[store]
path = "{work / 'lib' / 'bzlogger.db'}"
key_file = "{work / 'etc' / 'store.key'}"
[ble]
advertise = ["bluezone", "gaen"]
scan = ["bluezone", "gaen"]
[daemon]
state_file = "{work / 'run' / 'state.json'}"
[door]
state_file = "{work / 'run' / 'door.json'}"
[gaen]
verification_keys = [
  {{ key_id = "{AUTHORITY_KEY_ID}", key_version = "v1", pem = "{authority_pem}" }},
]
""")
    (work / "run").mkdir()
    return scenario, cfg, data


def run_cli(cfg: Path, *args: str, env: dict[str, str] | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*BZ, "--config", str(cfg), *args], capture_output=True,
                            text=True, env=env, check=False, timeout=120)
    if check and result.returncode != 0:
        raise SystemExit(f"demo: `bzlogger {' '.join(args)}` failed "
                         f"({result.returncode}):\n{result.stderr}")
    return result


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def read_state(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default=str(ROOT / "tools/scenarios/busy_morning.toml"))
    parser.add_argument("--speed", type=float, default=30.0,
                        help="scenario seconds per real second (default 30)")
    parser.add_argument("--duration", default="1h",
                        help='scenario time to run, e.g. "1h", "3h30m" (default 1h)')
    parser.add_argument("--soak", action="store_true",
                        help="a whole day of walk-ins (use e.g. --duration 24h --speed 720)")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bzlogger-demo-"))
    try:
        return demo(args, work)
    finally:
        if args.keep:
            say(f"\n(working directory kept: {work})")
        else:
            shutil.rmtree(work, ignore_errors=True)


def demo(args: argparse.Namespace, work: Path) -> int:
    scenario_file, cfg, data = prepare(args, work)
    head = data["scenario"]
    duration = parse_duration(head["duration"])
    heading("bzlogger demo: the real daemon against a simulated BlueZ")
    say(f"scenario {head['name']!r}: {head.get('description', '')}")
    say(f"  {sum(int(v.get('count', 1)) for v in data['visitors'])} visitors, "
        f"{head['duration']} of scenario time from {head['start']} at {args.speed:g}x "
        f"(about {duration / args.speed:.0f} s real)")
    say(f"  (moved from 2020 to {DEMO_START[:10]}: the daemon neither logs nor advertises "
        f"with a clock before its release date {iso(RELEASE_EPOCH)[:10]})")

    heading("bzlogger init")
    say(run_cli(cfg, "init").stdout.strip() or "(created key and store)")

    heading("starting the simulated BlueZ and `bzlogger run`")
    sim_log = (work / "sim.log").open("w")
    truth_file = work / "truth.json"
    # --stay: the simulation outlives the scenario's end until told to stop, so that
    # the daemon is stopped against a live bluetoothd.
    sim = subprocess.Popen([*BZ, "sim", "run", "--scenario", str(scenario_file),
                            "--speed", str(args.speed), "--truth", str(truth_file), "--stay"],
                           stdout=subprocess.PIPE, stderr=sim_log, text=True)
    env = dict(os.environ)
    assert sim.stdout is not None
    for _ in range(2):
        line = sim.stdout.readline().strip()
        if not line.startswith("export "):
            sim.kill()
            raise SystemExit(f"demo: the simulator did not start:\n"
                             f"{(work / 'sim.log').read_text()}")
        name, _, value = line[len("export "):].partition("=")
        env[name] = value.strip("'")
        say(f"  {line}")
    clock = ScaledClock.parse(env["BZLOGGER_CLOCK"])
    daemon_log = (work / "daemon.log").open("w")
    daemon = subprocess.Popen([*BZ, "--config", str(cfg), "run"], env=env,
                              stdout=subprocess.DEVNULL, stderr=daemon_log)
    say(f"  daemon pid {daemon.pid}; logs in JSON lines (journald would store them as is)")

    state_path = work / "run" / "state.json"
    end = parse_iso(head["start"]) + duration
    # SIGTERM a few real seconds before the scenario's end (the ground truth stops there;
    # `bzlogger status` just before takes a second or two).
    stop_at = end - 5 * args.speed
    rss: list[int] = []
    unhealthy_seen: list[str] = []
    next_report = 0.0
    status_shown = False
    heading("running (progress from the daemon's state file every ~10 s)")
    while clock.now() < stop_at:
        if daemon.poll() is not None:
            say(f"demo: the daemon exited early with status {daemon.returncode}")
            break
        state = read_state(state_path)
        kib = rss_kib(daemon.pid)
        if kib and state:  # once it runs (the state file is written after start-up)
            rss.append(kib)
        if state and not state.get("healthy", True):
            unhealthy_seen.extend(state.get("unhealthy", []))
        if state and time.monotonic() >= next_report:
            next_report = time.monotonic() + 10
            s, a, e = state["scanning"], state["advertising"], state["encounters"]
            say(f"  {state['now']}  {state['phase']:<8} {s['per_minute']:7.0f} adv/min  "
                f"advertising {'yes' if a['active'] else 'NO '}  encounters today "
                f"{e['today'] if e['today'] is not None else '-':>4}  open {e['open']:>3}  "
                f"RSS {kib // 1024 if kib else '?'} MiB")
        if not status_shown and clock.now() >= parse_iso(head["start"]) + duration / 2:
            status_shown = True
            heading("bzlogger status (half way)")
            say(run_cli(cfg, "status", env=env, check=False).stdout.rstrip())
            heading("running")
        time.sleep(0.5)

    heading("bzlogger status (just before SIGTERM)")
    status = run_cli(cfg, "status", env=env, check=False)
    say(status.stdout.rstrip())
    if status.stderr.strip():
        say(status.stderr.rstrip())

    heading("SIGTERM")
    stop_started = time.monotonic()
    stopped_ok = False
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=15)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
    stop_s = time.monotonic() - stop_started
    stopped_ok = daemon.returncode == 0 and stop_s < 5.0
    say(f"  daemon exited with status {daemon.returncode} after {stop_s:.2f} s "
        f"({'ok' if stopped_ok else 'NOT OK'}: the contract is 0 within 5 s)")
    daemon_log.close()
    say(f"  bzlogger status now: {run_cli(cfg, 'status', check=False).stderr.strip()}")
    sim.send_signal(signal.SIGTERM)  # it writes the ground truth and exits
    try:
        sim.wait(timeout=60)
    except subprocess.TimeoutExpired:
        sim.kill()
        sim.wait()
    sim_log.close()

    heading("bzlogger encounters (the first 12 of them)")
    table = run_cli(cfg, "encounters").stdout.splitlines()
    say("\n".join(table[:13]))
    if len(table) > 13:
        say(f"  ... {len(table) - 13} more")
    encounters = json.loads(run_cli(cfg, "encounters", "--json").stdout)
    exported = json.loads(run_cli(cfg, "keys", "export", "--format", "bluezone").stdout)

    heading("compared with the scenario's ground truth")
    truth = json.loads(truth_file.read_text()) if truth_file.exists() else None
    if truth is None:
        say("  the simulator wrote no ground truth (see sim.log); nothing to compare")
        return 1
    problems = summarise(truth, encounters, exported, stop_at, args.speed, REPORT_TICK_S, say)
    say(f"  daemon memory (RSS): start {rss[0] // 1024 if rss else '?'} MiB, "
        f"peak {max(rss) // 1024 if rss else '?'} MiB, end {rss[-1] // 1024 if rss else '?'} "
        f"MiB over {len(rss)} samples")
    if unhealthy_seen:
        say(f"  the daemon reported itself unhealthy at times: {sorted(set(unhealthy_seen))}")
    problems += match_published_lists(cfg, work, truth, encounters, AUTHORITY_KEY,
                                      AUTHORITY_KEY_ID, run_cli, say, heading)
    heading("bzlogger report daily (what the office manager sends to the province)")
    report = run_cli(cfg, "report", "daily", "--day", head["start"][:10], "--tz", "UTC",
                     check=False)
    say(report.stdout.rstrip() or report.stderr.rstrip())
    if report.returncode:
        problems.append("report daily failed")
    ok = stopped_ok and not problems
    say()
    say("demo: OK" if ok else "demo: PROBLEMS: " + "; ".join(
        problems + ([] if stopped_ok else ["the daemon did not stop cleanly"])))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
