"""``write_export(signer=...)`` writes what a key server publishes: SignatureInfo inside
export.bin, the signature over all of export.bin in export.sig; bzlogger verifies it."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile

from bzlogger.lists import gaen_export
from bzlogger.lists.gaen_export import ExportKey, ExportSigner
from tests.lists.conftest import KEY_ID, KEY_VERSION, Authority, Kiosk, fill_store
from tests.lists.test_match_cli import DAY, INTERVAL, build_world


def test_signed_export_names_its_key_and_verifies(kiosk: Kiosk, authority: Authority) -> None:
    world = build_world()
    asyncio.run(fill_store(kiosk.settings, world.encounters))
    signer = ExportSigner(authority.private, KEY_ID, KEY_VERSION)
    b, e = world.gaen_positive  # B visited on the second day, E on the first
    keys = [ExportKey(b, INTERVAL + 144, 144, 6, 1), ExportKey(e, INTERVAL, 144, 6, 1)]
    data = gaen_export.write_export(keys, start_timestamp=DAY, end_timestamp=DAY + 2 * 86400,
                                    signer=signer)
    export = gaen_export.read_export(data)
    assert [(s.key_id, s.key_version) for s in export.signatures] == [(KEY_ID, KEY_VERSION)]
    path = kiosk.tmp / "signed.zip"
    path.write_bytes(data)
    result = kiosk.run("match", str(path), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["lists"][0]["verified"] is True
    assert report["exposures"]

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        tampered_bin = bytearray(archive.read("export.bin"))
        sig = archive.read("export.sig")
    tampered_bin[-1] ^= 1
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("export.bin", bytes(tampered_bin))
        archive.writestr("export.sig", sig)
    path.write_bytes(buffer.getvalue())
    refused = kiosk.run("match", str(path))
    assert refused.exit_code == 1
    assert "verif" in refused.stderr
