"""Fixtures for published-list tests: a signing authority, signed exports, a store and a
config file pointing at both."""

from __future__ import annotations

import io
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bzlogger.cli import cli
from bzlogger.config import StoreSettings
from bzlogger.ids.schedule import DayKeys
from bzlogger.lists import gaen_export
from bzlogger.lists.gaen_export import ExportKey, Signature
from bzlogger.model import Encounter, Exposure
from bzlogger.store import Store
from bzlogger.store.keys import create_key_file

DATA = Path(__file__).parent / "data"
SAMPLE_ZIP = DATA / "testExport-2-records-1-of-1.zip"
SAMPLE_PEM = DATA / "public.pem"
KEY_ID, KEY_VERSION = "310", "v1"


@dataclass
class Authority:
    """A health authority's signing key (ECDSA P-256) and its public PEM file."""

    private: ec.EllipticCurvePrivateKey
    pem: Path

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data, ec.ECDSA(hashes.SHA256()))

    def export(self, keys: Sequence[ExportKey], *, start: int = 0, end: int = 0,
               key_id: str = KEY_ID, key_version: str = KEY_VERSION,
               revised: Sequence[ExportKey] = ()) -> bytes:
        """A signed export.zip of ``keys``."""
        unsigned = gaen_export.write_export(keys, start_timestamp=start, end_timestamp=end)
        signed_data = zipfile.ZipFile(io.BytesIO(unsigned)).read("export.bin")
        if revised:
            signed_data = _with_revised(signed_data, revised)
        signature = Signature(key_id, key_version, gaen_export.ECDSA_P256_SHA256,
                              self.sign(signed_data))
        return rezip(signed_data, gaen_export.signature_list([signature]))


def _with_revised(signed_data: bytes, revised: Sequence[ExportKey]) -> bytes:
    from bzlogger.lists import gaen_proto as pb

    message = pb.TemporaryExposureKeyExport.FromString(signed_data[16:])
    for key in revised:
        message.revised_keys.add(key_data=key.key_data,
                                 rolling_start_interval_number=key.rolling_start,
                                 rolling_period=key.rolling_period,
                                 report_type=key.report_type)
    return gaen_export.HEADER + message.SerializeToString()


def rezip(export_bin: bytes, export_sig: bytes | None) -> bytes:
    """An export.zip with exactly these members."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("export.bin", export_bin)
        if export_sig is not None:
            archive.writestr("export.sig", export_sig)
    return buffer.getvalue()


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    private = ec.generate_private_key(ec.SECP256R1())
    pem = tmp_path / "authority.pem"
    pem.write_bytes(private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return Authority(private, pem)


@pytest.fixture
def store_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StoreSettings:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    key_file = tmp_path / "etc" / "store.key"
    create_key_file(key_file)
    return StoreSettings(path=tmp_path / "data" / "bzlogger.db", key_file=key_file)



async def fill_store(settings: StoreSettings, encounters: list[Encounter],
                     own: Sequence[DayKeys] = ()) -> None:
    async with await Store.open(settings, create=True) as store:
        await store.add_encounters(encounters)
        for keys in own:
            await store.save_own_keys(keys)


async def stored_exposures(settings: StoreSettings) -> list[Exposure]:
    async with await Store.open(settings) as store:
        return await store.exposures()


@dataclass
class Kiosk:
    settings: StoreSettings
    config: Path
    alerts: Path
    tmp: Path

    def run(self, *args: str) -> Result:
        return CliRunner().invoke(cli, ["--config", str(self.config), *args])


@pytest.fixture
def kiosk(tmp_path: Path, store_settings: StoreSettings, authority: Authority) -> Kiosk:
    alerts = tmp_path / "alerts.jsonl"
    script = tmp_path / "alert.py"
    script.write_text("import sys\nopen(sys.argv[1], 'a').write(sys.stdin.read() + '\\n')\n")
    config = tmp_path / "bzlogger.toml"
    config.write_text(f"""
[store]
path = "{store_settings.path}"
key_file = "{store_settings.key_file}"

[gaen]
verification_keys = [{{ key_id = "310", key_version = "v1", pem = "{authority.pem}" }}]

[lists]
alert_command = "{sys.executable} {script} {alerts}"
""")
    return Kiosk(store_settings, config, alerts, tmp_path)
