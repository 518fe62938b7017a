"""Offline check of a provenance bundle (governance/services/bundle.py): no database, no network.

Checks that the checkpoint is signed by the log's key (the bundle's, or a key you trust, which is better), that
every audit entry hashes to its leaf and is included in the signed tree, and that the bundle's claims agree
with the log: the verdict entry, the content hash it was decided on, the report's content hash and policy hash.
"""

from __future__ import annotations

from typing import Any

from governance.audit import merkle
from governance.audit.canonical import dumps_plain
from governance.audit.checkpoint import CheckpointError, VerifierKey, open_checkpoint


def verify_bundle(bundle: dict[str, Any], trusted_key: str | None = None) -> list[str]:
    """The problems found (an empty list means the bundle checks out)."""
    problems: list[str] = []
    audit = bundle.get("audit") or {}
    try:
        key = VerifierKey.parse(trusted_key or str(audit.get("verifier_key", "")))
        cp = open_checkpoint(str((audit.get("checkpoint") or {}).get("checkpoint", "")), key)
    except CheckpointError as exc:
        return [f"checkpoint: {exc}"]
    by_action: dict[str, list[dict[str, Any]]] = {}
    for e in audit.get("entries") or []:
        seq = int(e["seq"])
        leaf = merkle.leaf_hash(dumps_plain(e["entry"]))
        if leaf.hex() != e.get("leaf_hash"):
            problems.append(f"entry {seq}: does not hash to its leaf hash (altered)")
            continue
        proof = e.get("inclusion_proof") or {}
        hashes = [bytes.fromhex(h) for h in proof.get("hashes", [])]
        if int(proof.get("tree_size", -1)) != cp.size or not merkle.verify_inclusion(
            seq, cp.size, leaf, hashes, cp.root_hash
        ):
            problems.append(f"entry {seq}: not included in the signed tree of {cp.size} entries")
            continue
        by_action.setdefault(str(e["entry"].get("action")), []).append(e["entry"])
    after = (bundle.get("artifacts") or {}).get("after") or {}
    verdicts = by_action.get("release.verdict") or []
    if not verdicts:
        problems.append("no release.verdict entry in the bundle")
    else:
        last = verdicts[-1].get("payload") or {}
        claimed = (bundle.get("verdict") or {}).get("verdict")
        if last.get("verdict") != claimed:
            problems.append(
                f"the bundle says {claimed!r}, the audit log's last verdict says {last.get('verdict')!r}"
            )
        if last.get("content_hash") != after.get("content_hash"):
            problems.append("the logged verdict was decided on another content hash than the bundle's model")
    report = bundle.get("report") or None
    if report is not None:
        if report.get("candidate_hash") != after.get("content_hash"):
            problems.append("the verification report was computed on another model")
        logged = [(v.get("payload") or {}) for v in by_action.get("model.verification", [])]
        if not any(
            p.get("candidate_hash") == report.get("candidate_hash")
            and p.get("policy_hash") == report.get("policy_hash")
            for p in logged
        ):
            problems.append("the verification report is not in the audit log")
    return problems
