"""The release gate: may model version X be released? allow / deny / pending, with the reasons, the proposals
the version covers, each acceptance test's result, the regression results, the latest signed audit checkpoint
and inclusion proofs of the verdict's audit entries. Every verdict is itself recorded in the audit log.

Releasing lives here too (:func:`release`): a version is released only on an allow verdict, its proposal
moves to released in the same transaction (a release that would leave them disagreeing is refused), and its
files are signed in the OpenSSF Model Signing format (:mod:`governance.release_signing`).

The decision is the domain's (:func:`governance.domain.registry.decide_verdict`); this module gathers the
facts: the version's row, its bytes in the artifact store (re-hashed at every verdict), the newest report
computed on this exact model (content hash) under the policy its proposal's members voted on (policy hash)
and whether the service's verifier signed it, the regression obligations of its lineage, the approved
proposals whose target its lineage still holds, and a council override (:func:`override`).

A version made outside the service is verified by the service's own worker first (:func:`queue_verification`
queues a ``verify`` job; the worker, not the caller, produces and signs the report).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlmodel import Session, col, select

from governance.audit import log as audit_log
from governance.audit.keys import checkpoint_json, trusted_verifier
from governance.audit.report_signature import UntrustedReport, check_report, report_digest
from governance.db.engine import read_session, write_session
from governance.db.models import Job, Member, MemberRole, Proposal
from governance.db.registry import ModelVersionRow, ReleaseOverride, VerificationReportRow
from governance.domain.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from governance.domain.jobs import JobState
from governance.domain.proposals import Action, ProposalState
from governance.domain.registry import (
    OBLIGING_PROPOSAL_STATES,
    ModelAction,
    ModelState,
    Obligation,
    Override,
    ReportFacts,
    VersionFacts,
    decide_verdict,
    transition,
)
from governance.domain.review import ActorView
from governance.domain.roles import Role
from governance.registry_schemas import (
    ModelVersionCreate,
    ModelVersionPublic,
    OverridePublic,
    ProposalCovered,
    VerdictPublic,
)
from governance.services import events, ledger, lifecycle, registry
from governance.services.audit import record
from governance.services.context import Ctx
from governance.services.job_queue import job_event
from unlearning import contract

MAX_PROOFS = 20


def policy_hash(tests: list[dict[str, Any]]) -> str:
    """The hash of the acceptance tests a proposal's members voted on, as reports carry it (the contract's)."""
    return contract.policy_hash(tests)


def sync_metric_names() -> None:
    """Nothing left to do: the service reads the one metric catalogue, :data:`unlearning.contract.METRICS`."""


def store_problem(ctx: Ctx, row: ModelVersionRow) -> str | None:
    """None when the version's bytes are in the artifact store and match its manifest and registered content
    hash (every file re-hashed now); otherwise what is wrong."""
    from unlearning.api import ArtifactIntegrityError, ArtifactNotFound, stored_version

    try:
        stored = stored_version(ctx.settings.artifact_dir, row.version)
    except ArtifactNotFound:
        return f"the bytes of {row.version} are not in the artifact store"
    except ArtifactIntegrityError as exc:
        return f"the stored bytes of {row.version} no longer match their hashes: {exc}"
    if stored.content_hash != row.content_hash:
        return f"the stored {row.version} has another content hash than the registered one"
    return None


def _proposal_task(s: Session, p: Proposal) -> str | None:
    """The task a proposal's unlearning works on (its job's base version's), when known."""
    job = s.exec(select(Job).where(Job.proposal_id == p.id).order_by(col(Job.id).desc())).first()
    base = (job.spec or {}).get("base_version") if job is not None else None
    row = s.get(ModelVersionRow, base) if base else None
    return row.task if row is not None else None


def unforgotten(s: Session, row: ModelVersionRow) -> list[Proposal]:
    """Approved proposals whose target ``row``'s lineage still holds: obligations follow the data. A proposal
    is forgotten by a version when the version, or one of its ancestors, is a verified (or released)
    unlearning made for it; its own candidates are judged by their reports instead."""
    chain = [row, *registry.lineage(s, row)]
    done = {
        a.proposal_id
        for a in chain
        if a.kind == "unlearn"
        and a.proposal_id is not None
        and a.state in (ModelState.VERIFIED.value, ModelState.RELEASED.value)
    }
    out = []
    for p in s.exec(
        select(Proposal)
        .where(col(Proposal.state).in_(sorted(OBLIGING_PROPOSAL_STATES)))
        .order_by(col(Proposal.id))
    ).all():
        if p.id == row.proposal_id or p.id in done:
            continue
        task = _proposal_task(s, p)
        if task is None or task == row.task:
            out.append(p)
    return out


def granted_override(s: Session, row: ModelVersionRow) -> ReleaseOverride | None:
    q = (
        select(ReleaseOverride)
        .where(
            ReleaseOverride.model_version == row.version,
            ReleaseOverride.content_hash == row.content_hash,
            ReleaseOverride.state == "granted",
        )
        .order_by(col(ReleaseOverride.id).desc())
    )
    return s.exec(q).first()


def _facts(
    s: Session, ctx: Ctx, row: ModelVersionRow
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
    owed = []
    for p in unforgotten(s, row):
        assert p.id is not None
        owed.append(Obligation(p.id, f"proposal {p.id}"))
        covered.append(ProposalCovered(id=p.id, title=p.title, state=p.state, role="unforgotten"))
    rep = report_row(s, row, expected)
    report = None
    if rep is not None:
        body = rep.report
        problem = ""
        try:
            check_report(body, trusted_verifier(ctx.settings))
        except UntrustedReport as exc:
            problem = str(exc)
        report = ReportFacts(
            trusted=not problem,
            trust_problem=problem,
            candidate_hash=rep.candidate_hash,
            policy_hash=rep.policy_hash,
            passed=rep.passed,
            tests=list(body.get("tests") or []),
            regressions=list(body.get("regressions") or []),
            summary=rep.summary,
            probes=list((body.get("community_evaluation") or {}).get("probes") or []),
        )
    facts = VersionFacts(
        version=row.version,
        content_hash=row.content_hash,
        state=ModelState(row.state),
        proposal_id=row.proposal_id,
        proposal_state=proposal_state,
        expected_policy_hash=expected,
        obligations=tuple(obligations),
        store_problem=store_problem(ctx, row),
        unforgotten=tuple(owed),
        override=_override_facts(s, row),
    )
    return facts, report, covered


def _override_facts(s: Session, row: ModelVersionRow) -> Override | None:
    o = granted_override(s, row)
    if o is None or o.id is None:
        return None
    return Override(o.id, o.reason, len(o.approvals), o.council_size)


def report_row(s: Session, row: ModelVersionRow, expected_policy: str | None) -> VerificationReportRow | None:
    """The newest report on this exact model under the expected policy; failing that, under any policy (so the
    verdict can say that re-verification is needed). Reports on other content hashes are never considered."""
    if expected_policy is not None:
        rep = registry.latest_report(s, row, expected_policy)
        if rep is not None:
            return rep
    return registry.latest_report(s, row)


def decide(s: Session, ctx: Ctx, row: ModelVersionRow) -> tuple[str, list[str]]:
    facts, report, _ = _facts(s, ctx, row)
    verdict, reasons = decide_verdict(facts, report)
    return verdict.value, reasons


def verdict(ctx: Ctx, version: str, actor: ActorView | None = None) -> VerdictPublic:
    """Decide, record the verdict in the audit log, and return it with a checkpoint and inclusion proofs."""
    now = ctx.clock.now()
    with write_session(ctx.engine) as s:
        row = registry.get_row(s, version)
        facts, report, covered = _facts(s, ctx, row)
        decision, reasons = decide_verdict(facts, report)
        rep = report_row(s, row, facts.expected_policy_hash)
        body = rep.report if rep is not None else {}
        over = _override_public(s, row) if facts.override is not None else None
        if over is not None and not decided_by_override(decision.value, reasons):
            over = None  # the verdict allowed on its own (or denied): the override did not decide it
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
                "report_digest": _digest(body) if rep is not None else None,
                "policy_hash": key["policy_hash"],
                "override_id": over["id"] if over is not None else None,
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
        override=over,
    )


def _digest(report: dict[str, Any]) -> str | None:
    try:
        return report_digest(report)
    except UntrustedReport:
        return None


def _override_public(s: Session, row: ModelVersionRow) -> dict[str, Any] | None:
    o = granted_override(s, row)
    if o is None:
        return None
    return {
        "id": o.id,
        "reason": o.reason,
        "approvals": list(o.approvals),
        "council_size": o.council_size,
        "granted_at": o.granted_at.isoformat() if o.granted_at else None,
    }


def decided_by_override(verdict: str, reasons: list[str]) -> bool:
    """Whether an allow rests on a council override, not on a passing report (``decide_verdict`` names the
    override in its first reason then)."""
    return verdict == "allow" and bool(reasons) and reasons[0].startswith("council override")


def preview(ctx: Ctx, version: str) -> tuple[str, list[str], list[ProposalCovered]]:
    """The verdict as it stands, with its reasons and the proposals covered, without recording it in the audit
    log (the web UI's model page shows it on every view; :func:`verdict` is the recorded answer CI asks for)."""
    with read_session(ctx.engine) as s:
        facts, report, covered = _facts(s, ctx, registry.get_row(s, version))
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
        overridden = granted_override(s, row) is not None
        transition(ModelState(row.state), ModelAction.RELEASE)  # raises for rejected and released versions
        verdict, reasons = decide(s, ctx, row)
        if verdict != "allow":
            raise Conflict(f"release of {version} refused: the gate says {verdict}: {'; '.join(reasons)}")
        proposal_state = _state_of(s, row.proposal_id) if row.proposal_id is not None else None
        if proposal_state not in (None, ProposalState.VERIFIED.value, ProposalState.RELEASED.value):
            # not even an override: the proposal's state and its model's release state never disagree
            raise Conflict(f"release of {version} refused: its proposal is {proposal_state}")
        from governance.release_signing import sign_model_dir
        from unlearning.api import stored_version

        signature = sign_model_dir(ctx.settings, stored_version(ctx.settings.artifact_dir, version).path)
        row.details = {**(row.details or {}), "model_signature": signature}
        row.state, row.released_at, row.updated_at = ModelState.RELEASED.value, now, now
        s.add(row)
        record(
            s,
            actor=actor.member_id,
            action="model.released",
            subject=registry.subject(version),
            payload={
                "content_hash": row.content_hash,
                "reasons": reasons,
                "override": overridden,
                "model_signature_sha256": hashlib.sha256(
                    json.dumps(signature["signature"], sort_keys=True).encode()
                ).hexdigest(),
            },
            at=now,
        )
        if proposal_state == ProposalState.VERIFIED.value:  # the proposal moves in this very transaction
            assert row.proposal_id is not None
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
    """Register a trained base version from the artifact store (operators and ``commons demo``). It is not
    released here: like every version it needs a report signed by the service's verifier first
    (:func:`governance.jobs.worker.verify_and_release_base` verifies and releases it)."""
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
        ledger.record_training(s, row, manifest, ctx.clock.now())  # what it trained on, each node's share
        return registry.to_public(s, row)


# ---------------------------------------------------------------- a version made outside: the worker verifies it


def queue_verification(ctx: Ctx, actor: ActorView, version: str) -> dict[str, Any]:
    """Queue a ``verify`` job for a registered version (an admin or the council): the job worker verifies the
    stored version against its lineage's obligations and signs the report; the caller supplies nothing that
    the gate reads."""
    if not actor.is_system and not ({Role.COUNCIL, Role.ADMIN} & actor.roles):
        raise PermissionDenied("only the council or an admin asks for a verification")
    now = ctx.clock.now()
    with write_session(ctx.engine) as s:
        row = registry.get_row(s, version)
        problem = store_problem(ctx, row)
        if problem is not None:
            raise Conflict(problem)
        spec = {"kind": "verify", "verify_version": version, "base_version": row.parent_version}
        job = Job(
            proposal_id=None,
            kind="verify",
            state=JobState.QUEUED.value,
            spec=spec,
            acceptance_tests=[],
            max_attempts=ctx.settings.job_max_attempts,
            model_version=version,
            created_at=now,
        )
        s.add(job)
        s.flush()
        job_event(s, job, "job.queued", now, {"spec": spec, "requested_by": actor.member_id})
        return {"job_id": job.id, "version": version, "state": job.state}


# ---------------------------------------------------------------- the council's override


def _council(s: Session) -> set[int]:
    return set(
        s.exec(
            select(MemberRole.member_id)
            .join(Member, col(Member.id) == MemberRole.member_id)
            .where(MemberRole.role == Role.COUNCIL.value, col(Member.active).is_(True))
        ).all()
    )


def _override_out(o: ReleaseOverride) -> OverridePublic:
    assert o.id is not None
    return OverridePublic(
        id=o.id,
        version=o.model_version,
        content_hash=o.content_hash,
        reason=o.reason,
        requested_by=o.requested_by,
        approvals=list(o.approvals),
        council_size=o.council_size,
        state=o.state,
        created_at=o.created_at,
        granted_at=o.granted_at,
    )


OVERRIDE_REASON_MIN, OVERRIDE_REASON_MAX = 10, 4000  # OverrideIn's bounds: the UI's form is checked here


def override(ctx: Ctx, actor: ActorView, version: str, reason: str) -> OverridePublic:
    """A council member proposes (with a written reason) or seconds the override of the gate for this exact
    model; it is granted once a majority of the active council approved it. Admins cannot override, nor can
    the worker; each step is audited, and every later verdict and bundle shows the override as one."""
    if actor.member_id is None or Role.COUNCIL not in actor.roles:
        raise PermissionDenied("only council members override the release gate")
    reason = reason.strip()
    if not OVERRIDE_REASON_MIN <= len(reason) <= OVERRIDE_REASON_MAX:
        raise InvalidInput(
            f"an override needs a written reason of {OVERRIDE_REASON_MIN} to {OVERRIDE_REASON_MAX} characters",
            field="reason",
        )
    now = ctx.clock.now()
    with write_session(ctx.engine) as s:
        row = registry.get_row(s, version, lock=True)
        if row.state in (ModelState.RELEASED.value, ModelState.REJECTED.value):
            raise Conflict(f"model version {version} is {row.state}: nothing to override")
        problem = store_problem(ctx, row)
        if problem is not None:
            raise Conflict(f"no override for bytes the store does not hold: {problem}")
        q = select(ReleaseOverride).where(
            ReleaseOverride.model_version == version,
            ReleaseOverride.content_hash == row.content_hash,
        )
        o = s.exec(q.order_by(col(ReleaseOverride.id).desc())).first()
        council = _council(s)
        if o is None:
            o = ReleaseOverride(
                model_version=version,
                content_hash=row.content_hash,
                reason=reason,
                requested_by=actor.member_id,
                approvals=[actor.member_id],
                council_size=len(council),
                created_at=now,
            )
        elif actor.member_id in o.approvals:
            raise Conflict("you already approved this override")
        else:
            o.approvals = [*o.approvals, actor.member_id]
        o.council_size = len(council)
        granted = o.state != "granted" and 2 * len(set(o.approvals) & council) > len(council)
        if granted:
            o.state, o.granted_at = "granted", now
        s.add(o)
        s.flush()
        record(
            s,
            actor=actor.member_id,
            action="model.override.granted" if granted else "model.override.approved",
            subject=registry.subject(version),
            payload={
                "override_id": o.id,
                "content_hash": row.content_hash,
                "reason": o.reason,
                "comment": reason,
                "approvals": list(o.approvals),
                "council_size": o.council_size,
            },
            at=now,
        )
        return _override_out(o)


def overrides_of(ctx: Ctx, version: str) -> list[OverridePublic]:
    with read_session(ctx.engine) as s:
        registry.get_row(s, version)
        q = select(ReleaseOverride).where(ReleaseOverride.model_version == version)
        return [_override_out(o) for o in s.exec(q.order_by(col(ReleaseOverride.id))).all()]
