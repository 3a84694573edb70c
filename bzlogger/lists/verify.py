"""Signature checks of published lists, done before a single key is used.

GAEN: ``export.sig`` holds ECDSA P-256 signatures over SHA-256 of the whole ``export.bin``;
the public key is chosen by ``verification_key_id`` / ``verification_key_version`` among
``[gaen] verification_keys`` (or given explicitly with ``--verify-key``).

Bluezone lists have no signature in the original system; an authority that wants one
publishes a detached signature of the JSON bytes (ECDSA P-256/SHA-256 in DER, or
Ed25519), raw or base64, checked with ``[lists] bluezone_verification_key``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from bzlogger.config import VerificationKey
from bzlogger.errors import ListError
from bzlogger.lists.gaen_export import ECDSA_P256_SHA256, GaenExport

PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """A public key that published lists may be signed with; empty id/version match any
    signature (a key given on the command line)."""

    key: PublicKey
    key_id: str = ""
    key_version: str = ""
    source: str = ""


def load_public_key(path: Path) -> PublicKey:
    """A PEM public key (ECDSA P-256 or Ed25519) from ``path``."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as error:
        raise ListError(f"cannot read verification key {path}: {error.strerror}") from None
    except ValueError as error:
        raise ListError(f"{path} is not a PEM public key: {error}") from None
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ListError(f"{path}: an ECDSA key must be on P-256, not {key.curve.name}")
        return key
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    raise ListError(f"{path}: only ECDSA P-256 and Ed25519 public keys are supported")


def trusted_keys(configured: Sequence[VerificationKey]) -> list[TrustedKey]:
    """The ``[gaen] verification_keys``, loaded."""
    return [TrustedKey(load_public_key(k.pem), k.key_id, k.key_version, str(k.pem))
            for k in configured]


def verify_export(export: GaenExport, keys: Sequence[TrustedKey], name: str) -> TrustedKey:
    """The trusted key whose signature over ``export.bin`` verifies; :class:`ListError`
    saying why otherwise (no signature, unknown key, bad signature)."""
    if not export.signatures:
        raise ListError(f"{name}: the export has no export.sig signature; refusing it "
                        "(use --no-verify only for a file you trust)")
    if not keys:
        raise ListError(f"{name}: no verification key is configured; add it to [gaen] "
                        "verification_keys or pass --verify-key PEM")
    tried: list[str] = []
    for signature in export.signatures:
        label = f"key id {signature.key_id!r} version {signature.key_version!r}"
        if signature.algorithm and signature.algorithm != ECDSA_P256_SHA256:
            tried.append(f"{label}: unsupported algorithm {signature.algorithm}")
            continue
        candidates = [k for k in keys
                      if (not k.key_id or k.key_id == signature.key_id)
                      and (not k.key_version or k.key_version == signature.key_version)]
        if not candidates:
            tried.append(f"{label}: not among the configured verification keys")
            continue
        for key in candidates:
            if _valid(key.key, signature.signature, export.signed_data):
                return key
        tried.append(f"{label}: the signature does not verify (file altered or wrong key)")
    raise ListError(f"{name}: signature check failed; nothing imported ({'; '.join(tried)})")


def verify_detached(data: bytes, signature: bytes, key: PublicKey, name: str) -> None:
    """Check a detached signature of a Bluezone list (raw or base64); :class:`ListError`
    when it does not verify."""
    candidates = [signature]
    with contextlib.suppress(binascii.Error, ValueError):
        candidates.append(base64.b64decode(signature.strip(), validate=True))
    if not any(_valid(key, s, data) for s in candidates):
        raise ListError(f"{name}: the detached signature does not verify; nothing imported")


def _valid(key: PublicKey, signature: bytes, data: bytes) -> bool:
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        else:
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True
