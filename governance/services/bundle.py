"""The provenance bundle of a model version: everything needed to check, offline, why it was (or may be)
released: the proposal with its tally, triage and council decisions and history, the job's config and cost, the
artifact hashes before and after, the verification report, a fresh release verdict, and the audit entries of
the version and its proposals with inclusion proofs against one signed checkpoint (checked by
:func:`governance.bundle_verify.verify_bundle`, or ``commons release verify-bundle FILE``). It also carries
the verifier's public key (the report is signed with it), the council overrides of the version, and, once
released, the version's OpenSSF Model Signing signature with its public key (``model_signature``).
"""

from __future__ import annotations

from typing import Any

from sqlmodel import col, select

from governance.audit import log as audit_log
from governance.audit.keys import audit_origin, checkpoint_json, signing_key, trusted_verifier
from governance.db.engine import read_session
from governance.db.models import Job
from governance.db.registry import ModelVersionRow
from governance.domain.review import ActorView
from governance.services import gate, proposals, registry
from governance.services.context import Ctx

BUNDLE_FORMAT = "commons-provenance-bundle/1"


def build(ctx: Ctx, version: str, actor: ActorView | None = None) -> dict[str, Any]:
    verdict = gate.verdict(ctx, version, actor)  # recorded in the audit log like every verdict
    detail = registry.get_version(ctx, version)
    subjects = [registry.subject(version)]
    covered = []
    for p in verdict.proposals:
        d = proposals.get_detail(ctx, p.id, actor)
        covered.append({**d.model_dump(mode="json", exclude={"allowed_actions"}), "role": p.role})
        subjects.append(f"proposal:{p.id}")
    with read_session(ctx.engine) as s:
        job = s.exec(select(Job).where(Job.model_version == version).order_by(col(Job.id).desc())).first()
        parent = s.get(ModelVersionRow, detail.parent_version) if detail.parent_version else None
        row = s.get(ModelVersionRow, version)
        model_signature = (row.details or {}).get("model_signature") if row is not None else None
        head = audit_log.tree_head(s)
        entries = []
        for subj in subjects:
            for e in audit_log.entries_for_subject(s, subj):
                entries.append(
                    {
                        **e.to_json(),
                        "inclusion_proof": audit_log.inclusion_proof(s, e.seq, head.size).to_json(),
                    }
                )
        checkpoint = checkpoint_json(ctx.settings, head.size, head.root_hash)
    entries.sort(key=lambda e: int(e["seq"]))
    return {
        "format": BUNDLE_FORMAT,
        "version": detail.model_dump(mode="json"),
        "artifacts": {
            "before": {
                "version": detail.parent_version,
                "content_hash": parent.content_hash if parent is not None else None,
            },
            "after": {"version": version, "content_hash": detail.content_hash},
        },
        "proposals": covered,
        "job": (
            {
                "id": job.id,
                "spec": job.spec,
                "acceptance_tests": job.acceptance_tests,
                "cost": job.cost,
                "result": job.result,
            }
            if job is not None
            else None
        ),
        "report": detail.report,
        "report_verifier_key": trusted_verifier(ctx.settings).encode(),
        "overrides": [o.model_dump(mode="json") for o in gate.overrides_of(ctx, version)],
        "model_signature": model_signature,
        "verdict": verdict.model_dump(mode="json", exclude={"proofs", "checkpoint"}),
        "audit": {
            "origin": audit_origin(ctx.settings),
            "verifier_key": signing_key(ctx.settings).verifier.encode(),
            "checkpoint": checkpoint,
            "entries": entries,
        },
    }
