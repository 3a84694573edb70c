"""From a published list's bytes to recorded exposures and one alert.

The steps, shared by ``bzlogger match`` and ``bzlogger lists fetch``:

1. :func:`load_list`: detect the format from the content (a zip is a GAEN export, a JSON
   object a Bluezone list), parse and validate it within :class:`Limits`, and check its
   signature. Any problem raises :class:`~bzlogger.errors.ListError` before the store is
   touched, so a refused file changes nothing.
2. :func:`match_lists`: the encounters of the lists' time span (read by the caller) are
   matched on every core (:mod:`bzlogger.lists.engine`).
3. :func:`record`: exposures are saved (the store keeps each once) and the lists marked
   as processed; :func:`alert` then reports the new ones once: a structured log event
   ``exposure_found`` and the optional ``[lists] alert_command``.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from bzlogger.config import ListSettings
from bzlogger.core import matching
from bzlogger.errors import ListError
from bzlogger.ids import bluezone, gaen
from bzlogger.lists import bluezone_list, engine, gaen_export, verify
from bzlogger.lists.bluezone_list import BluezoneEntry
from bzlogger.lists.gaen_export import ExportKey
from bzlogger.lists.limits import Limits
from bzlogger.logsetup import get_logger
from bzlogger.model import Encounter, Exposure, Protocol
from bzlogger.store import Store
from bzlogger.timefmt import iso

log = get_logger("lists")

#: Seconds the alert command may run.
ALERT_TIMEOUT_S = 30


@dataclass(frozen=True, slots=True)
class LoadedList:
    """A validated published list. ``keys`` are :class:`ExportKey` (GAEN, revoked keys
    left out) or :class:`BluezoneEntry`; ``revoked`` are the TEKs this export withdraws."""

    name: str
    protocol: Protocol
    keys: Sequence[ExportKey] | Sequence[BluezoneEntry]
    verified: bool
    digest: bytes
    revoked: frozenset[bytes] = field(default_factory=frozenset)

    @property
    def key_count(self) -> int:
        """Keys in the file, revoked ones included."""
        return len(self.keys) + len(self.revoked)

    def span(self) -> tuple[float, float]:
        """The times a sighting must fall in to match any key of this list."""
        if not self.keys:
            return (0.0, 0.0)
        if self.protocol is Protocol.GAEN:
            gaen_keys: Sequence[Any] = self.keys
            first = min(k.rolling_start for k in gaen_keys) * gaen.INTERVAL_SECONDS
            last = max(k.rolling_start + k.rolling_period for k in gaen_keys
                       ) * gaen.INTERVAL_SECONDS
            tolerance = matching.GAEN_TOLERANCE_S
        else:
            entries: Sequence[Any] = self.keys
            first = min(e.time_start for e in entries)
            last = max(e.time_end for e in entries) + bluezone.DAY_SECONDS // min(
                e.max_ids for e in entries)
            tolerance = matching.BLUEZONE_TOLERANCE_S
        return (float(first - tolerance), float(last + tolerance))


@dataclass(frozen=True, slots=True)
class Trust:
    """What signatures are checked with. ``verify`` False accepts unsigned GAEN exports
    (``--no-verify``); Bluezone lists are checked when a detached signature is given."""

    gaen_keys: Sequence[verify.TrustedKey] = ()
    bluezone_key: verify.PublicKey | None = None
    verify: bool = True


def trust_from(settings_gaen_keys: Sequence[Any], lists: ListSettings,
               verify_key: Path | None = None, no_verify: bool = False) -> Trust:
    """The keys of the configuration, or only ``verify_key`` when one is given."""
    if verify_key is not None:
        key = verify.load_public_key(verify_key)
        return Trust([verify.TrustedKey(key, source=str(verify_key))], key, not no_verify)
    gaen_keys = [] if no_verify else verify.trusted_keys(settings_gaen_keys)
    bz_key = (verify.load_public_key(lists.bluezone_verification_key)
              if lists.bluezone_verification_key else None)
    return Trust(gaen_keys, bz_key, not no_verify)


def detect_protocol(data: bytes, name: str) -> Protocol:
    """GAEN for a zip, Bluezone for a JSON object, judged from the bytes themselves."""
    head = data[:64]
    if gaen_export.is_export_zip(head):
        return Protocol.GAEN
    if bluezone_list.looks_like_json(head):
        return Protocol.BLUEZONE
    raise ListError(f"{name}: neither a GAEN export.zip nor a Bluezone JSON list")


def load_list(data: bytes, name: str, limits: Limits, trust: Trust,
              signature: bytes | None = None) -> LoadedList:
    """Parse, validate and verify one published list (see the module docstring)."""
    digest = hashlib.sha256(data).digest()
    if detect_protocol(data, name) is Protocol.GAEN:
        export = gaen_export.read_export(data, limits, name)
        verified = False
        if trust.verify:
            used = verify.verify_export(export, trust.gaen_keys, name)
            verified = True
            log.info("export verified", file=name, key_id=used.key_id or used.source)
        revoked = frozenset(k.key_data for k in (*export.keys, *export.revised_keys)
                            if k.revoked)
        keys = [k for k in export.keys if not k.revoked]
        return LoadedList(name, Protocol.GAEN, keys, verified, digest, revoked)
    entries = bluezone_list.read_list(data, limits, name)
    verified = False
    if signature is not None:
        if trust.bluezone_key is None:
            raise ListError(f"{name}: has a detached signature but no key to check it; set "
                            "[lists] bluezone_verification_key or pass --verify-key")
        verify.verify_detached(data, signature, trust.bluezone_key, name)
        verified = True
    return LoadedList(name, Protocol.BLUEZONE, entries, verified, digest)


def encounter_span(lists: Sequence[LoadedList]) -> tuple[float, float] | None:
    """The time span of stored encounters the lists can match (None: nothing to match)."""
    spans = [x.span() for x in lists if x.keys]
    if not spans:
        return None
    return (min(s[0] for s in spans), max(s[1] for s in spans))


def match_lists(lists: Sequence[LoadedList], encounters: Sequence[Encounter], *,
                workers: int | None = None,
                progress: Callable[[int], None] | None = None) -> list[Exposure]:
    """Exposures of every list against ``encounters``, one per encounter, time ordered."""
    found: dict[tuple[Protocol, bytes, float], Exposure] = {}
    gaen_matcher: matching.GaenMatcher | None = None
    bz_matcher: matching.BluezoneMatcher | None = None
    for loaded in lists:
        matcher: matching.GaenMatcher | matching.BluezoneMatcher
        if loaded.protocol is Protocol.GAEN:
            gaen_matcher = gaen_matcher or matching.GaenMatcher(encounters)
            matcher = gaen_matcher
            list_keys = [k.key_data for k in cast(Sequence[ExportKey], loaded.keys)]
        else:
            bz_matcher = bz_matcher or matching.BluezoneMatcher(encounters)
            matcher = bz_matcher
            list_keys = [e.daily_key for e in cast(Sequence[BluezoneEntry], loaded.keys)]
        hits = engine.run(matcher, loaded.keys, workers=workers, progress=progress)
        for exposure in matching.exposures(hits, matcher.encounters, list_keys):
            found.setdefault((exposure.protocol, exposure.identifier, exposure.first_seen),
                             exposure)
    return sorted(found.values(), key=lambda x: (x.first_seen, x.identifier))


def without_revoked(exposures: Sequence[Exposure], lists: Sequence[LoadedList]
                    ) -> list[Exposure]:
    """``exposures`` minus those produced by a key that one of ``lists`` revokes."""
    revoked = frozenset().union(*(x.revoked for x in lists))
    return [x for x in exposures if x.list_key not in revoked]


async def record(store: Store, lists: Sequence[LoadedList], exposures: Sequence[Exposure]
                 ) -> list[Exposure]:
    """Drop stored exposures of keys that ``lists`` revoke, save ``exposures`` and mark
    ``lists`` processed; returns the exposures new to the store (those to alert about)."""
    revoked = await store.revoke_exposures(frozenset().union(*(x.revoked for x in lists)))
    if revoked:
        log.warning("exposures_revoked", count=revoked)
    new = await store.save_exposures(exposures)
    for loaded in lists:
        await store.mark_list_processed(loaded.digest, loaded.name)
    return new


def exposure_row(exposure: Exposure) -> dict[str, Any]:
    """An exposure as the JSON object of ``bzlogger match --json``."""
    return {
        "protocol": str(exposure.protocol),
        "id": exposure.identifier.hex(),
        "list_key": exposure.list_key.hex(),
        "first_seen": iso(exposure.first_seen),
        "last_seen": iso(exposure.last_seen),
        "duration_s": round(exposure.duration_s, 1),
        "samples": exposure.samples,
        "rssi_max": exposure.rssi_max,
        "rssi_median": exposure.rssi_median,
        "attenuation_db": (None if exposure.attenuation_db is None
                           else round(exposure.attenuation_db, 1)),
        "risk": exposure.risk,
    }


def alert_payload(new: Sequence[Exposure]) -> dict[str, Any]:
    """What the alert command receives: times and closeness, no identifiers or keys."""
    return {
        "event": "exposure_found",
        "count": len(new),
        "exposures": [{k: v for k, v in exposure_row(x).items() if k not in ("id", "list_key")}
                      for x in new],
    }


def alert(new: Sequence[Exposure], lists: ListSettings) -> None:
    """Report new exposures once: the log event, then the configured command (JSON on
    its stdin; no shell; a failure is logged, never raised: the exposures are saved)."""
    if not new:
        return
    log.warning("exposure_found", count=len(new),
                protocols=sorted({str(x.protocol) for x in new}),
                first_seen=iso(min(x.first_seen for x in new)),
                last_seen=iso(max(x.last_seen for x in new)),
                max_risk=max(x.risk for x in new))
    if not lists.alert_command:
        return
    try:
        argv = shlex.split(lists.alert_command)
        result = subprocess.run(argv, input=json.dumps(alert_payload(new)).encode(),
                                capture_output=True, timeout=ALERT_TIMEOUT_S, check=False)
    except (OSError, ValueError, subprocess.TimeoutExpired) as error:
        log.error("alert command failed", command=lists.alert_command, error=str(error))
        return
    if result.returncode:
        log.error("alert command failed", command=lists.alert_command,
                  status=result.returncode,
                  stderr=result.stderr.decode(errors="replace").strip()[-500:])
    else:
        log.info("alert command run", command=lists.alert_command)
