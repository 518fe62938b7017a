"""Signed verification reports: the verifying worker signs every report it produces with the service's
verifier key (Ed25519, distinct from the audit log's key), and the registry, the gate and the offline bundle
check accept a report only when that signature verifies. Pure apart from the key: no database, no network.

A signed report carries, beside its fields, ``"signature": {"verifier_key": <signed-note verifier key>,
"signature": <base64 Ed25519 signature>}``; the signature covers the canonical JSON (see
:mod:`governance.audit.canonical`) of the report without its ``signature`` field, prefixed by
:data:`CONTEXT` so that it can never be mistaken for a checkpoint signature.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any

from cryptography.exceptions import InvalidSignature

from governance.audit.canonical import EntryFormatError, canonical_dumps
from governance.audit.checkpoint import CheckpointError, SigningKey, VerifierKey

CONTEXT = b"commons verification report v1\n"
SIGNATURE = "signature"


class UntrustedReport(ValueError):
    """A report is unsigned, signed by another key, or altered after it was signed."""


def _message(report: dict[str, Any]) -> bytes:
    body = {k: v for k, v in report.items() if k != SIGNATURE}
    try:
        return CONTEXT + canonical_dumps(body)
    except EntryFormatError as exc:
        raise UntrustedReport(f"the report cannot be encoded canonically: {exc}") from None


def report_digest(report: dict[str, Any]) -> str:
    """SHA-256 of the signed part of ``report`` (what the audit log records, so a swapped report shows)."""
    return hashlib.sha256(_message(report)).hexdigest()


def sign_report(key: SigningKey, report: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``report`` signed with ``key`` (an earlier signature is replaced)."""
    signature = key.private_key.sign(_message(report))
    return {
        **{k: v for k, v in report.items() if k != SIGNATURE},
        SIGNATURE: {
            "verifier_key": key.verifier.encode(),
            "signature": base64.b64encode(signature).decode("ascii"),
        },
    }


def check_report(report: dict[str, Any], trusted: VerifierKey) -> None:
    """Raise :class:`UntrustedReport` unless ``report`` is signed by ``trusted`` and unaltered since."""
    sig = report.get(SIGNATURE)
    if not isinstance(sig, dict) or not sig.get("signature"):
        raise UntrustedReport("the report is not signed by a verifier")
    try:
        claimed = VerifierKey.parse(str(sig.get("verifier_key", "")))
        raw = base64.b64decode(str(sig["signature"]), validate=True)
    except (CheckpointError, binascii.Error, ValueError):
        raise UntrustedReport("the report's signature is malformed") from None
    if claimed.encode() != trusted.encode():
        raise UntrustedReport(
            f"the report is signed by {claimed.name}+{claimed.key_id.hex()}, not by this service's verifier "
            f"{trusted.name}+{trusted.key_id.hex()}"
        )
    try:
        trusted.public_key.verify(raw, _message(report))
    except InvalidSignature:
        raise UntrustedReport(
            "the report's signature does not verify: it was altered after signing"
        ) from None


def is_trusted(report: dict[str, Any], trusted: VerifierKey) -> bool:
    try:
        check_report(report, trusted)
    except UntrustedReport:
        return False
    return True
