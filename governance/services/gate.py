"""The release gate: may model version X be released? allow / deny / pending, with the reasons, the proposals
the version covers, each acceptance test's result, the regression results, the latest signed audit checkpoint
and inclusion proofs of the verdict's audit entries. Every verdict is itself recorded in the audit log.

Releasing lives here too (:func:`release`): a version is released only on an allow verdict, and its proposal
moves to released in the same transaction.

The decision is the domain's (:func:`governance.domain.registry.decide_verdict`); this module gathers the
facts: the version's row, the newest report computed on this exact model (content hash) under the policy
its proposal's members voted on (policy hash), and the regression obligations of its lineage.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from governance.audit import log as audit_log
from governance.audit.keys import checkpoint_json
from governance.db.engine import read_session, write_session
from governance.db.models import Proposal
from governance.db.registry import ModelVersionRow, VerificationReportRow
from governance.domain.errors import Conflict, NotFound, PermissionDenied
from governance.domain.proposals import Action, ProposalState
from governance.domain.registry import (
    ModelAction,
    ModelState,
    Obligation,
    ReportFacts,
    VersionFacts,
    decide_verdict,
    transition,
)
from governance.domain.review import SYSTEM, ActorView
from governance.domain.roles import Role
from governance.registry_schemas import ModelVersionCreate, ModelVersionPublic, ProposalCovered, VerdictPublic
from governance.services import events, lifecycle, registry
from governance.services.audit import record
from governance.services.context import Ctx
from unlearning import contract

MAX_PROOFS = 20


def policy_hash(tests: list[dict[str, Any]]) -> str:
    """The hash of the acceptance tests a proposal's members voted on, as reports carry it (the contract's)."""
    return contract.policy_hash(tests)


def sync_metric_names() -> None:
    """Nothing left to do: the service reads the one metric catalogue, :data:`unlearning.contract.METRICS`."""


def _facts(
    s: Session, row: ModelVersionRow
) -> tuple[VersionFacts, ReportFacts | None, list[ProposalCovered]]:
    covered: list[ProposalCovered] = []
    expected: str | None = None
    proposal_state: str | None = None
    if row.proposal_id is not None:
        p = s.get(Proposal, row.proposal_id)
        if p is not None:
            assert p.id is not None
            expected = policy_hash(list(p.acceptance_tests))
            proposal_state = p.state
            covered.append(ProposalCovered(id=p.id, title=p.title, state=p.state, role="produced"))
    obligations = []
    for a in registry.obligations(s, row):
        p = s.get(Proposal, a.proposal_id)
        if p is None or p.id is None:
            continue
        obligations.append(Obligation(p.id, f"proposal {p.id}"))
        covered.append(ProposalCovered(id=p.id, title=p.title, state=p.state, role="regression"))
    rep = report_row(s, row, expected)
    report = None
    if rep is not None:
        body = rep.report
        report = ReportFacts(
            candidate_hash=rep.candidate_hash,
            policy_hash=rep.policy_hash,
            passed=rep.passed,
            tests=list(body.get("tests") or []),
            regressions=list(body.get("regressions") or []),
            summary=rep.summary,
        )
    facts = VersionFacts(
        version=row.version,
        content_hash=row.content_hash,
        state=ModelState(row.state),
        proposal_id=row.proposal_id,
        proposal_state=proposal_state,
        expected_policy_hash=expected,
        obligations=tuple(obligations),
    )
    return facts, report, covered


def report_row(s: Session, row: ModelVersionRow, expected_policy: str | None) -> VerificationReportRow | None:
    """The newest report on this exact model under the expected policy; failing that, under any policy (so the
    verdict can say that re-verification is needed). Reports on other content hashes are never considered."""
    if expected_policy is not None:
        rep = registry.latest_report(s, row, expected_policy)
        if rep is not None:
            return rep
    return registry.latest_report(s, row)


def decide(s: Session, row: ModelVersionRow) -> tuple[str, list[str]]:
    facts, report, _ = _facts(s, row)
    verdict, reasons = decide_verdict(facts, report)
    return verdict.value, reasons


def verdict(ctx: Ctx, version: str, actor: ActorView | None = None) -> VerdictPublic:
    """Decide, record the verdict in the audit log, and return it with a checkpoint and inclusion proofs."""
    now = ctx.clock.now()
    with write_session(ctx.engine) as s:
        row = registry.get_row(s, version)
        facts, report, covered = _facts(s, row)
        decision, reasons = decide_verdict(facts, report)
        rep = report_row(s, row, facts.expected_policy_hash)
        body = rep.report if rep is not None else {}
        key = {
            k: body.get(k)
            for k in ("candidate_hash", "policy_hash", "config_hash", "seed", "precision", "libraries")
        }
        record(
            s,
            actor=actor.member_id if actor is not None else None,
            action="release.verdict",
            subject=registry.subject(version),
            payload={
                "verdict": decision.value,
                "reasons": reasons,
                "content_hash": row.content_hash,
                "report_id": rep.id if rep is not None else None,
                "policy_hash": key["policy_hash"],
                "proposals": [c.id for c in covered],
            },
            at=now,
        )
        state = row.state
        content_hash = row.content_hash
    with read_session(ctx.engine) as s:
        entries = audit_log.entries_for_subject(s, registry.subject(version))[-MAX_PROOFS:]
        head = audit_log.tree_head(s)
        proofs = [
            {**e.to_json(), "inclusion_proof": audit_log.inclusion_proof(s, e.seq, head.size).to_json()}
            for e in entries
        ]
        checkpoint = checkpoint_json(ctx.settings, head.size, head.root_hash)
    mine = [e for e in entries if e.action == "release.verdict"]
    return VerdictPublic(
        version=version,
        content_hash=content_hash,
        verdict=decision.value,
        reasons=reasons,
        state=state,
        proposals=covered,
        tests=list(body.get("tests") or []),
        regressions=list(body.get("regressions") or []),
        report_key=key if rep is not None else None,
        decided_at=now,
        audit_seq=mine[-1].seq if mine else -1,
        checkpoint=checkpoint,
        proofs=proofs,
        report_url=f"/api/v1/models/{version}/report.html" if rep is not None else None,
    )


def preview(ctx: Ctx, version: str) -> tuple[str, list[str], list[ProposalCovered]]:
    """The verdict as it stands, with its reasons and the proposals covered, without recording it in the audit
    log (the web UI's model page shows it on every view; :func:`verdict` is the recorded answer CI asks for)."""
    with read_session(ctx.engine) as s:
        facts, report, covered = _facts(s, registry.get_row(s, version))
    decision, reasons = decide_verdict(facts, report)
    return decision.value, reasons, covered


# ---------------------------------------------------------------- releasing: a release is an allow verdict


def release(ctx: Ctx, actor: ActorView, version: str) -> ModelVersionPublic:
    """Release a verified version (the council or an admin); refused unless the gate's verdict is allow. The
    proposal that produced it moves to released in the same transaction, so the two never disagree."""
    if not actor.is_system and not ({Role.COUNCIL, Role.ADMIN} & actor.roles):
        raise PermissionDenied("only the council or an admin releases a model version")
    now = ctx.clock.now()
    with write_session(ctx.engine) as s:
        row = registry.get_row(s, version, lock=True)
        transition(ModelState(row.state), ModelAction.RELEASE)  # raises for a candidate, failed, rejected...
        verdict, reasons = decide(s, row)
        if verdict != "allow":
            raise Conflict(f"release of {version} refused: the gate says {verdict}: {'; '.join(reasons)}")
        row.state, row.released_at, row.updated_at = ModelState.RELEASED.value, now, now
        s.add(row)
        record(
            s,
            actor=actor.member_id,
            action="model.released",
            subject=registry.subject(version),
            payload={"content_hash": row.content_hash, "reasons": reasons},
            at=now,
        )
        if row.proposal_id is not None and _state_of(s, row.proposal_id) == ProposalState.VERIFIED.value:
            lifecycle.advance(s, ctx, row.proposal_id, actor, Action.RELEASE, now)
        events.emit(
            s,
            "release",
            {"version": row.version, "content_hash": row.content_hash, "proposal_id": row.proposal_id},
            now,
        )
        return registry.to_public(s, row)


def _state_of(s: Session, proposal_id: int) -> str | None:
    p = s.get(Proposal, proposal_id)
    return p.state if p is not None else None


def register_base_version(ctx: Ctx, version: str, parent: str | None = None) -> ModelVersionPublic:
    """Register a trained base version from the artifact store and release it (operators and ``commons demo``):
    a version that serves no proposal and whose lineage forgot nothing has no unlearning obligation."""
    from unlearning.api import ArtifactIntegrityError, ArtifactNotFound, stored_version

    try:  # the bytes are re-hashed: only a version whose files match its manifest enters the registry
        manifest = stored_version(ctx.settings.artifact_dir, version).manifest
    except ArtifactNotFound:
        raise NotFound(
            f"model version {version} is not in the artifact store {ctx.settings.artifact_dir}"
        ) from None
    except ArtifactIntegrityError as exc:
        raise Conflict(str(exc)) from None
    kind = str((manifest.get("training") or {}).get("kind") or "train")
    data = ModelVersionCreate(
        version=version,
        content_hash=str(manifest["content_hash"]),
        parent_version=parent if parent is not None else manifest.get("parent"),
        task=str(manifest.get("task", "unknown")),
        kind=kind if kind in ("init", "train", "unlearn") else "train",
        job_id=manifest.get("job_id"),
    )
    with write_session(ctx.engine) as s:
        row = registry.register(s, data, actor=None, now=ctx.clock.now(), details={"base": True})
        if row.state == ModelState.RELEASED.value:
            return registry.to_public(s, row)
    return release(ctx, SYSTEM, version)
