"""A key revoked in a later export removes the matches an earlier run stored."""

from __future__ import annotations

import asyncio
import json

from bzlogger.lists import gaen_export
from bzlogger.lists.gaen_export import ExportKey
from bzlogger.model import Protocol
from tests.lists.conftest import Authority, Kiosk, fill_store, stored_exposures
from tests.lists.test_match_cli import DAY, INTERVAL, build_world, published


def test_later_revocation_deletes_stored_exposures(kiosk: Kiosk, authority: Authority) -> None:
    world = build_world()
    asyncio.run(fill_store(kiosk.settings, world.encounters))
    f0, export = published(kiosk, authority, world)
    first = kiosk.run("match", str(export), str(f0), "--json")
    assert first.exit_code == 0, first.output
    before = asyncio.run(stored_exposures(kiosk.settings))
    revoked_tek = world.gaen_positive[0]
    assert any(x.list_key == revoked_tek for x in before)

    withdrawal = kiosk.tmp / "withdrawal.zip"
    withdrawal.write_bytes(authority.export(
        [], revised=[ExportKey(revoked_tek, INTERVAL + 144, 144, 0, gaen_export.REVOKED)],
        start=DAY, end=DAY + 2 * 86400))
    second = kiosk.run("match", str(withdrawal), "--json")
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout)["exposures"] == []

    after = asyncio.run(stored_exposures(kiosk.settings))
    assert all(x.list_key != revoked_tek for x in after)
    assert len(after) == len(before) - sum(x.list_key == revoked_tek for x in before)
    assert any(x.protocol is Protocol.BLUEZONE for x in after)  # other keys' matches stay
