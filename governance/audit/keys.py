"""The service's signing identity: the log's origin line and its Ed25519 key, from Settings."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from governance.audit.checkpoint import DEFAULT_ORIGIN, Checkpoint, SigningKey, load_or_create_signing_key


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
