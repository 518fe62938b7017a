"""Offline check of a provenance bundle (governance/services/bundle.py): no database, no network.

Checks that the checkpoint is signed by the log's key (the bundle's, or a key you trust, which is better), that
every audit entry hashes to its leaf and is included in the signed tree, and that the bundle's claims agree
with the log: the verdict entry, the content hash it was decided on, the report's content hash and policy hash;
that the report is signed by the verifier key the log recorded when the report was accepted (and is the very
report the log recorded: its digest); and that a council override the log records is shown as one.
:func:`override_of` tells the caller to report such a bundle as an override, never as a plain allow.
"""

from __future__ import annotations

from typing import Any

from governance.audit import merkle
from governance.audit.canonical import dumps_plain
from governance.audit.checkpoint import CheckpointError, VerifierKey, open_checkpoint
from governance.audit.report_signature import UntrustedReport, check_report, report_digest


def verify_bundle(
    bundle: dict[str, Any], trusted_key: str | None = None, trusted_verifier: str | None = None
) -> list[str]:
    """The problems found (an empty list means the bundle checks out). ``trusted_key`` is the audit log's
    verifier key you trust; ``trusted_verifier`` the report verifier's (default: the one the log recorded)."""
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
        problems += _report_signature(report, logged, trusted_verifier)
    elif (bundle.get("verdict") or {}).get("verdict") == "allow" and not override_of(bundle):
        problems.append("the bundle says allow without a verification report or a council override")
    problems += _overrides(bundle, by_action, verdicts)
    return problems


def _report_signature(
    report: dict[str, Any], logged: list[dict[str, Any]], trusted_verifier: str | None
) -> list[str]:
    """The report must be the one the log recorded (same digest) and be signed by the verifier key the log
    recorded for it (or by ``trusted_verifier``, when given)."""
    try:
        digest = report_digest(report)
    except UntrustedReport as exc:
        return [f"the verification report: {exc}"]
    match = [p for p in logged if p.get("report_digest") == digest]
    if not match:
        return ["the verification report differs from the one the audit log recorded (swapped or altered)"]
    key_text = trusted_verifier or str(match[-1].get("verifier_key") or "")
    try:
        check_report(report, VerifierKey.parse(key_text))
    except (UntrustedReport, CheckpointError) as exc:
        return [f"the verification report is not signed by the service's verifier: {exc}"]
    return []


def _overrides(
    bundle: dict[str, Any], by_action: dict[str, list[dict[str, Any]]], verdicts: list[dict[str, Any]]
) -> list[str]:
    content_hash = ((bundle.get("artifacts") or {}).get("after") or {}).get("content_hash")
    granted = [
        (e.get("payload") or {})
        for e in by_action.get("model.override.granted", [])
        if (e.get("payload") or {}).get("content_hash") == content_hash
    ]
    last = (verdicts[-1].get("payload") or {}) if verdicts else {}
    shown = override_of(bundle)
    problems = []
    if last.get("override_id") is not None and shown is None:
        problems.append("the audit log's verdict was a council override, the bundle hides it")
    if granted and last.get("override_id") is None and last.get("verdict") != "allow":
        problems.append("the audit log records a granted council override the verdict does not show")
    if shown is not None and last.get("override_id") != shown.get("id"):
        problems.append("the bundle shows an override the audit log's verdict does not name")
    listed = {o.get("id") for o in bundle.get("overrides") or [] if o.get("state") == "granted"}
    for g in granted:
        if g.get("override_id") not in listed:
            problems.append(
                f"council override {g.get('override_id')} is in the audit log but not in the bundle"
            )
    return problems


def override_of(bundle: dict[str, Any]) -> dict[str, Any] | None:
    """The council override the bundle's verdict rests on, or None for a verdict that stands on its own."""
    over = (bundle.get("verdict") or {}).get("override")
    return over if isinstance(over, dict) else None
