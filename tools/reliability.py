"""The long reliability loops, with a summary table (``make reliability``).

Campaigns (each can be scaled down with --scale, or picked with --only):

- crash:    kill -9 of ``bzlogger run`` at random moments of heavy ingest (100 times);
- stack:    bluetoothd restart, dbus-daemon restart, adapter power cycle, silent
            scanner, InProgress and NotReady storms (20 times each, one daemon);
- resource: disk full (tmpfs, needs root), read-only filesystem, missing / corrupt /
            truncated / foreign store;
- adverts:  AD parser and scan path: mutation loop, hypothesis, atheris when installed;
- lists:    hostile Bluezone JSON and GAEN export.zip files;
- flood:    10,000 distinct random addresses per minute;
- soak:     an accelerated week of a busy entrance with retention.

Usage: python tools/reliability.py [--scale 0.1] [--only crash,stack] [--json FILE]
Exit status 0 when every fault was survived and nothing crashed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import itertools
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bzlogger.ble import ad  # noqa: E402
from tests.reliability import hostile, resources, soak, stack  # noqa: E402
from tests.reliability.common import CampaignResult  # noqa: E402

CAMPAIGNS = ("crash", "stack", "resource", "adverts", "lists", "flood", "soak")


def scaled(full: int, scale: float, least: int = 1) -> int:
    """``full`` times ``scale``, at least ``least``."""
    return max(least, round(full * scale))


def atheris_run(name: str, harness: str, seconds: int, seeds: list[bytes]) -> CampaignResult:
    """A coverage-guided harness (``tools/fuzz_*.py``) for ``seconds`` in a child process
    (atheris needs its own interpreter), starting from ``seeds``; a crash leaves a
    ``crash-*`` file and a non-zero exit."""
    result = CampaignResult(f"fuzz: {name} (atheris, {seconds} s)")
    if importlib.util.find_spec("atheris") is None:
        result.notes.append("atheris not installed (pip install atheris); skipped")
        return result
    workdir = Path(tempfile.mkdtemp(prefix="bzlogger-atheris-"))
    corpus = workdir / "corpus"
    corpus.mkdir()
    for number, seed in enumerate(seeds):
        (corpus / f"seed-{number}").write_bytes(seed)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / harness), str(corpus),
         f"-max_total_time={seconds}", f"-artifact_prefix={workdir}/", "-max_len=65536",
         "-print_final_stats=1"],
        cwd=ROOT, capture_output=True, text=True, check=False)
    coverage = ""
    for line in proc.stderr.splitlines():
        if line.startswith("stat::number_of_executed_units:"):
            result.inputs = int(line.split(":")[-1])
        if line.startswith("#") and " cov: " in line:
            coverage = line.split(" cov: ")[1].split()[0]
    if proc.returncode != 0:
        result.crashes += 1
        result.fail(f"atheris exit {proc.returncode} (inputs in {workdir}): "
                    f"{proc.stderr[-300:]}")
    result.notes.append(f"coverage {coverage} edges" if coverage else "")
    return result


def advert_seeds() -> list[bytes]:
    rng = random.Random(1)
    return [bytes([100]) + ad.encode(f) for f in hostile.seed_adverts(rng)]


def list_seeds() -> list[bytes]:
    rng = random.Random(2)
    items = hostile.hostile_lists(rng, hostile.Authority())
    return [data for _, data in itertools.islice(items, 40) if len(data) <= 65536]


def run(only: set[str], scale: float, workdir: Path, log: Callable[[str], None]
        ) -> list[CampaignResult]:
    results: list[CampaignResult] = []

    def step(name: str, produce: Callable[[], CampaignResult | list[CampaignResult]]) -> None:
        if name not in only:
            return
        log(f"== {name}")
        began = time.monotonic()
        produced = produce()
        rows = produced if isinstance(produced, list) else [produced]
        for row in rows:
            log(f"   {row.name}: {'ok' if row.ok else 'FAILED ' + '; '.join(row.failures)}")
        log(f"   ({time.monotonic() - began:.0f} s)")
        results.extend(rows)

    step("crash", lambda: asyncio.run(stack.crash_campaign(
        workdir, kills=scaled(100, scale, 3), log=log)))
    step("stack", lambda: asyncio.run(stack.stack_campaign(
        workdir, repeats=scaled(20, scale, 1), log=log)))
    step("resource", lambda: asyncio.run(resources.resource_campaign(workdir, log=log)))
    step("adverts", lambda: [
        hostile.run_in_loop(lambda: hostile.advert_fuzz(scaled(1_000_000, scale, 10_000))),
        hostile.run_in_loop(lambda: hostile.hypothesis_fuzz(scaled(5_000, scale, 300))),
        atheris_run("advertisements", "fuzz_adverts.py", scaled(300, scale, 20),
                    advert_seeds())])
    step("lists", lambda: [
        hostile.list_fuzz(scaled(50_000, scale, 500)),
        asyncio.run(hostile.match_refuses(workdir)),
        atheris_run("published lists", "fuzz_lists.py", scaled(300, scale, 20), list_seeds())])
    step("flood", lambda: hostile.run_in_loop(
        lambda: hostile.address_flood(scaled(40, scale, 3))))
    step("soak", lambda: asyncio.run(soak.soak_campaign(
        workdir, days=max(3, round(7 * scale)), speed=1000.0, log=log)))
    return results


def table(results: list[CampaignResult]) -> str:
    """The summary as a Markdown table."""
    lines = ["| campaign | faults injected | faults survived | data lost | inputs tried "
             "| crashes | notes |", "|---|---:|---:|---|---:|---:|---|"]
    for r in results:
        notes = "; ".join(r.notes + [f"FAILED: {f}" for f in r.failures])
        lines.append(f"| {r.name} | {r.injected or '-'} | {r.survived if r.injected else '-'} "
                     f"| {r.data_lost} | {r.inputs or '-'} | {r.crashes} | {notes} |")
    injected = sum(r.injected for r in results)
    survived = sum(r.survived for r in results)
    lines.append(f"| **total** | {injected} | {survived} | | "
                 f"{sum(r.inputs for r in results)} | {sum(r.crashes for r in results)} | |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply every count by this (0.1 for a quick run)")
    parser.add_argument("--only", default=",".join(CAMPAIGNS),
                        help=f"comma-separated campaigns out of {','.join(CAMPAIGNS)}")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--workdir", type=Path, help="keep the campaigns' files here")
    args = parser.parse_args()
    only = {c.strip() for c in args.only.split(",") if c.strip()}
    unknown = only - set(CAMPAIGNS)
    if unknown:
        parser.error(f"unknown campaign(s): {', '.join(sorted(unknown))}")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bzlogger-reliability-"))
    workdir.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    results = run(only, args.scale, workdir, lambda line: print(line, flush=True))
    print()
    print(table(results))
    print(f"\n{time.monotonic() - began:.0f} s; files in {workdir}")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1) + "\n")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
