"""The demo's checks against the scenario's ground truth: what the daemon logged, the
kiosk's own beacons, and ``bzlogger match`` on lists published for the positive
visitors. Used by ``tools/demo.py``."""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from bzlogger.ids import bluezone
from bzlogger.lists import bluezone_list, gaen_export
from bzlogger.timefmt import parse_iso

Say = Callable[[str], None]
RunCli = Callable[..., Any]

def summarise(truth: dict[str, Any], encounters: list[dict[str, Any]],
              exported: dict[str, Any], stop_at: float, speed: float, report_tick_s: float,
              say: Say) -> list[str]:
    """Print the comparison; returns the problems found."""
    problems: list[str] = []
    logged = {(e["protocol"], e["id"].lower()) for e in encounters}
    owner: dict[tuple[str, str], str] = {}
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for visitor in truth["visitors"]:
        for span in visitor["ids"]:
            owner[(span["protocol"], span["identifier"].lower())] = visitor["id"]
        if not visitor["ids"] or visitor["arrival"] >= stop_at - 120:
            continue  # only phones that had time to be seen before the stop
        group = visitor["id"].rsplit("-", 1)[0] if visitor["id"][-1].isdigit() else visitor["id"]
        groups[group].append(visitor)
    say(f"  {len(encounters)} encounters logged "
        f"({', '.join(f'{n} {p}' for p, n in Counter(e['protocol'] for e in encounters).items())})")
    say("  phones detected, by scenario group (a phone counts when at least one of its "
        "identifiers was logged):")
    for group, visitors in sorted(groups.items()):
        detected = [v for v in visitors
                    if any((s["protocol"], s["identifier"].lower()) in logged for s in v["ids"])]
        near = [v for v in visitors if v["near_spans"]]
        near_detected = [v for v in near if v in detected]
        note = f", within 2 m: {len(near_detected)}/{len(near)}" if near else ""
        say(f"    {group:<22} {visitors[0]['kind']:<17} {len(detected):>4}/{len(visitors):<4}"
            f"{note}")
    near_all = [v for vs in groups.values() for v in vs if v["near_spans"]
                and v["near_spans"][0][0] < stop_at - 120]
    near_missed = [v["id"] for v in near_all
                   if not any((s["protocol"], s["identifier"].lower()) in logged
                              for s in v["ids"])]
    say(f"  close contacts (a phone within 2 m): {len(near_all) - len(near_missed)}"
        f"/{len(near_all)} logged" + (f"; missed: {', '.join(near_missed[:8])}"
                                      if near_missed else ""))
    say(f"    (the simulator reports each phone at most every {report_tick_s:g} real s, i.e. "
        f"every {report_tick_s * speed:g} scenario s at this speed: a phone passing in a "
        "few seconds may give no usable sample; street phones are mostly too weak, by "
        "design)")
    if near_all and len(near_missed) > 0.5 * len(near_all):
        problems.append(f"{len(near_missed)} of {len(near_all)} close contacts not logged")
    logged_before_end = {(e["protocol"], e["id"].lower()) for e in encounters
                         if parse_iso(e["first_seen"]) < truth["end"]}
    phantoms = [key for key in logged_before_end if key not in owner]
    say(f"  identifiers logged that no simulated phone sent: {len(phantoms)}")
    if phantoms:
        problems.append(f"{len(phantoms)} phantom identifiers")

    # The kiosk's own beacons: heard by the phones, and all derived from the keys that
    # `bzlogger keys export` hands to a health authority.
    keys = {int(d["time_start"]): (bytes.fromhex(d["daily_key"]), int(d["max"]))
            for d in exported.get("data", [])}
    heard = truth.get("kiosk_heard", [])
    on_air = [b for advert in truth.get("kiosk_adverts", []) for b in advert["beacons"]
              if b["protocol"] == "bluezone"]
    derivable = 0
    for beacon in on_air:
        day = bluezone.utc_midnight(beacon["time"])
        if day in keys:
            key, max_ids = keys[day]
            slot = bluezone.slot_of(beacon["time"], max_ids)
            derivable += bluezone.id_at_slot(key, slot, max_ids).hex() == beacon["identifier"]
    gaen_on_air = sum(1 for advert in truth.get("kiosk_adverts", []) for b in advert["beacons"]
                      if b["protocol"] == "gaen")
    say(f"  the kiosk's own beacons: {len(on_air)} Bluezone and {gaen_on_air} GAEN identifiers "
        f"went on the air; {len(heard)} (phone, identifier) hearings by visitors")
    say(f"  Bluezone identifiers on the air that derive from the exported daily keys: "
        f"{derivable}/{len(on_air)}")
    if on_air and derivable != len(on_air):
        problems.append("own identifiers not covered by the exported keys")
    if not on_air:
        problems.append("the kiosk advertised nothing")
    if not encounters:
        problems.append("nothing was logged")
    return problems


def match_published_lists(cfg: Path, work: Path, truth: dict[str, Any],
                          encounters: list[dict[str, Any]], authority: ec.EllipticCurvePrivateKey,
                          authority_key_id: str, run_cli: RunCli, say: Say,
                          heading: Say) -> list[str]:
    """Publish the positive visitors' keys as an authority would, match, and compare."""
    heading("the health authority publishes the keys of visitors who tested positive")
    positive = [v for v in truth["visitors"] if v["positive"]]
    rng = random.Random(7)
    entries = [bluezone_list.BluezoneEntry(bytes.fromhex(d["daily_key"]), d["day_start"],
                                           d["day_start"] + bluezone.DAY_SECONDS - 1,
                                           v["keys"]["bluezone"]["max"])
               for v in positive if "bluezone" in v["keys"]
               for d in v["keys"]["bluezone"]["daily_keys"]]
    day = bluezone.utc_midnight(truth["start"])
    entries += [bluezone_list.BluezoneEntry(rng.randbytes(32), day, day + 86399)
                for _ in range(50)]  # people who never came to this office
    teks = [gaen_export.ExportKey(bytes.fromhex(k["tek"]), k["rolling_start_interval"],
                                  k["rolling_period"], 6, 1)
            for v in positive if "gaen" in v["keys"] for k in v["keys"]["gaen"]]
    teks += [gaen_export.ExportKey(rng.randbytes(16), day // 600, 144, 6, 1)
             for _ in range(50)]
    f0, export = work / "bluezone-f0.json", work / "export.zip"
    f0.write_text(bluezone_list.write_list(entries))
    signer = gaen_export.ExportSigner(authority, authority_key_id, "v1")
    export.write_bytes(gaen_export.write_export(
        teks, start_timestamp=int(truth["start"]), end_timestamp=int(truth["end"]),
        region="VN", signer=signer))
    say(f"  {len(positive)} of {len(truth['visitors'])} visitors test positive later; "
        f"published: {len(entries)} Bluezone daily keys ({f0.name}) and {len(teks)} GAEN "
        f"TEKs in a signed {export.name} (50 decoys each)")

    heading("bzlogger match bluezone-f0.json export.zip")
    table = run_cli(cfg, "match", str(f0), str(export), check=False)
    say(table.stdout.rstrip())
    if table.returncode:
        say(table.stderr.rstrip())
        return ["bzlogger match failed"]
    report = json.loads(run_cli(cfg, "match", str(f0), str(export), "--json").stdout)
    owner = {(s["protocol"], s["identifier"].lower()): v["id"]
             for v in truth["visitors"] for s in v["ids"]}
    logged = {(e["protocol"], e["id"].lower()) for e in encounters}
    expected = {owner[key] for key in logged if key in owner
                and any(v["id"] == owner[key] and v["positive"] for v in positive)}
    found = {owner.get((x["protocol"], x["id"].lower()), "?") for x in report["exposures"]}
    say("")
    verified = [f"{Path(x['file']).name}: {x['verified']}" for x in report["lists"]]
    say(f"  lists verified: {', '.join(verified)}")
    say(f"  positive visitors whose identifiers were logged: {len(expected)}; "
        f"found by bzlogger match: {len(found & expected)}; "
        f"false alarms: {len(found - expected)}")
    problems = []
    if found != expected:
        problems.append(f"match found {sorted(found)} instead of {sorted(expected)}")
    return problems
