"""The service's signing identities, from Settings: the audit log's origin line and its Ed25519 key, and the
verifier key (a second Ed25519 key, never the audit key) with which the verifying worker signs each
verification report (:mod:`governance.audit.report_signature`). Both are created on first use under data_dir
and published by the audit API (``/api/v1/audit/public-key`` and ``/api/v1/audit/verifier-key``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from governance.audit.checkpoint import (
    DEFAULT_ORIGIN,
    Checkpoint,
    SigningKey,
    VerifierKey,
    load_or_create_signing_key,
)


def audit_origin(settings: Any) -> str:
    """The origin line of this log's checkpoints (``Settings.audit_origin`` when set)."""
    origin = getattr(settings, "audit_origin", None)
    return str(origin) if origin else DEFAULT_ORIGIN


@lru_cache(maxsize=8)
def _cached_key(path: Path, name: str) -> SigningKey:
    return SigningKey(name, load_or_create_signing_key(path))


def signing_key(settings: Any) -> SigningKey:
    """The key at ``settings.signing_key_path`` (created on first use), named after the log's origin."""
    return _cached_key(Path(settings.signing_key_path).resolve(), audit_origin(settings))


def checkpoint_json(settings: Any, size: int, root: bytes) -> dict[str, Any]:
    """A signed checkpoint for the tree of ``size`` entries with ``root``, as the API returns it."""
    cp = Checkpoint(audit_origin(settings), size, root)
    return {
        "origin": cp.origin,
        "tree_size": cp.size,
        "root_hash": cp.root_hash.hex(),
        "checkpoint": signing_key(settings).sign(cp),
    }


VERIFIER_KEY_NAME = "commons.local/verifier"


def verifier_signing_key(settings: Any) -> SigningKey:
    """The verifier key at ``settings.verifier_key_path`` (created on first use): it signs verification reports.

    It is a different key (and file) from the audit key: a leaked audit key cannot forge a passing report."""
    path = Path(settings.verifier_key_path).resolve()
    if path == Path(settings.signing_key_path).resolve():
        raise ValueError("the verifier key must not be the audit signing key")
    return _cached_key(path, VERIFIER_KEY_NAME)


def trusted_verifier(settings: Any) -> VerifierKey:
    """The public half of :func:`verifier_signing_key`: the only key whose reports the registry accepts."""
    return verifier_signing_key(settings).verifier
