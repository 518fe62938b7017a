"""Test helpers for the release gate's trust: real stored versions (the gate re-hashes a version's bytes at
every verdict) and reports signed by the test service's verifier key through the worker's own code path
(:func:`governance.jobs.worker.sign_verification`), since the registry refuses any other report."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from governance.services.context import Ctx


def _canonical(d: dict[str, Any]) -> bytes:
    return json.dumps(d, sort_keys=True, separators=(",", ":")).encode()


def store_version(
    ctx: Ctx, name: str, task: str = "digits", parent: str | None = None, job_id: str | None = None
) -> tuple[str, str]:
    """Write a small stored version (the artifact store's layout: files, manifest) named after ``name``, as
    the job ``job_id`` writes it (default ``test-<name>``); returns (version id, content hash). The same name
    gives the same version."""
    from unlearning.artifacts import CONFIG, MANIFEST, WEIGHTS

    files_body = {
        WEIGHTS: f"weights of {name}".encode(),
        CONFIG: json.dumps({"task": task, "model_config": {"name": name}}).encode(),
    }
    files = {n: hashlib.sha256(b).hexdigest() for n, b in sorted(files_body.items())}
    manifest: dict[str, Any] = {
        "format": 1,
        "task": task,
        "files": files,
        "content_hash": hashlib.sha256(_canonical(files)).hexdigest(),
        "seed": 0,
        "parent": parent,
        "job_id": job_id or f"test-{name}",
        "created_at": "2026-01-01T00:00:00+00:00",
        "libraries": {},
        "training": {},
        "metrics": {},
    }
    version = "mv-" + hashlib.sha256(_canonical(manifest)).hexdigest()[:20]
    path = ctx.settings.artifact_dir / "versions" / version
    if not (path / MANIFEST).exists():
        path.mkdir(parents=True, exist_ok=True)
        for n, b in files_body.items():
            (path / n).write_bytes(b)
        (path / MANIFEST).write_text(json.dumps({**manifest, "version": version}, indent=2, sort_keys=True))
    return version, str(manifest["content_hash"])


def signed(ctx: Ctx, report: dict[str, Any]) -> dict[str, Any]:
    """``report`` signed as the verifying worker signs it."""
    from governance.jobs.worker import sign_verification

    return sign_verification(ctx, report)


def foreign_signed(report: dict[str, Any]) -> dict[str, Any]:
    """``report`` signed by a key that is not the service's verifier."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from governance.audit.checkpoint import SigningKey
    from governance.audit.report_signature import sign_report

    return sign_report(SigningKey("commons.local/verifier", Ed25519PrivateKey.generate()), report)
