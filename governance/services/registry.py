"""Model registry use cases: register model versions with their lineage, record verification reports, release
and reject. Every change is audited in its own transaction (``model:<version>`` is the audit subject).

In-session functions (``register``, ``record_report``, ``register_from_job``) let the job orchestration
register a version and its report inside its own transactions (a job's model enters the registry in the very
transaction that records the job's result, so reads never need to "adopt" anything); the ``ctx`` functions
are the API's. Releasing is the gate's (:mod:`governance.services.gate`): a release is a verdict.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from governance.audit.checkpoint import VerifierKey
from governance.audit.keys import trusted_verifier
from governance.audit.report_signature import UntrustedReport, check_report, report_digest
from governance.db.engine import read_session, write_session
from governance.db.models import Job, Proposal
from governance.db.registry import ModelVersionRow, VerificationReportRow
from governance.domain.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from governance.domain.registry import ModelAction, ModelState, transition
from governance.domain.review import ActorView
from governance.domain.roles import Role
from governance.registry_schemas import (
    ModelVersionCreate,
    ModelVersionDetail,
    ModelVersionPublic,
    VerificationPublic,
)
from governance.services.audit import record
from governance.services.context import Ctx

REPORT_KEYS = ("candidate_hash", "policy_hash", "config_hash", "seed", "precision", "libraries", "passed")


class UntrustedReportError(PermissionDenied):
    """A report that the service's verifier did not sign (or that was altered since): refused, whoever posts it."""


def subject(version: str) -> str:
    return f"model:{version}"


def _require_operator(actor: ActorView) -> None:
    if not actor.is_system and Role.ADMIN not in actor.roles:
        raise PermissionDenied("only an admin (or the job worker) changes the model registry")


# ---------------------------------------------------------------- in-session building blocks


def get_row(s: Session, version: str, lock: bool = False) -> ModelVersionRow:
    q = select(ModelVersionRow).where(ModelVersionRow.version == version)
    if lock:
        q = q.with_for_update()
    row = s.exec(q).first()
    if row is None:
        raise NotFound(f"no model version {version} in the registry")
    return row


def register(
    s: Session,
    data: ModelVersionCreate,
    *,
    actor: int | None,
    now: datetime,
    details: dict[str, Any] | None = None,
) -> ModelVersionRow:
    """Register a version (idempotent for the same content hash; a different hash under the same id is refused)."""
    existing = s.get(ModelVersionRow, data.version)
    if existing is not None:
        if existing.content_hash != data.content_hash:
            raise Conflict(f"model version {data.version} is registered with another content hash")
        return existing
    if data.proposal_id is not None and s.get(Proposal, data.proposal_id) is None:
        raise InvalidInput(f"no proposal {data.proposal_id}", field="proposal_id")
    row = ModelVersionRow(
        **data.model_dump(),
        state=ModelState.CANDIDATE.value,
        registered_by=actor,
        details=details or {},
        created_at=now,
        updated_at=now,
    )
    s.add(row)
    s.flush()
    record(
        s,
        actor=actor,
        action="model.registered",
        subject=subject(data.version),
        payload={**data.model_dump(), "state": row.state},
        at=now,
    )
    return row


def record_report(
    s: Session,
    version: str,
    report: dict[str, Any],
    *,
    actor: int | None,
    now: datetime,
    trusted: VerifierKey,
) -> VerificationReportRow:
    """Store a verification report for ``version`` and move it to verified / failed.

    A report is accepted only when the service's verifier signed it (``trusted``: the verifying worker signs
    every report it produces; a hand-written or foreign-signed report is refused, whoever posts it), and only
    for the exact model it was computed on: its ``candidate_hash`` must equal the version's content hash (and
    its ``candidate_version`` the version id)."""
    try:
        check_report(report, trusted)
    except UntrustedReport as exc:
        raise UntrustedReportError(f"report refused: {exc}") from None
    row = get_row(s, version, lock=True)
    missing = [k for k in REPORT_KEYS if k not in report]
    if missing:
        raise InvalidInput(f"the report lacks {', '.join(missing)}", field="report")
    if report.get("candidate_version") not in (None, version) or report["candidate_hash"] != row.content_hash:
        raise Conflict(
            f"the report was computed on another model (content hash {str(report['candidate_hash'])[:12]}), "
            f"not on {version} ({row.content_hash[:12]})"
        )
    passed = bool(report["passed"])
    new_state = transition(
        ModelState(row.state), ModelAction.RECORD_PASS if passed else ModelAction.RECORD_FAIL
    )
    rep = VerificationReportRow(
        model_version=version,
        candidate_hash=str(report["candidate_hash"]),
        policy_hash=str(report["policy_hash"]),
        config_hash=str(report["config_hash"]),
        seed=int(report["seed"]),
        precision=str(report["precision"]),
        libraries=dict(report["libraries"]),
        passed=passed,
        summary=str(report.get("summary", ""))[:4000],
        report=report,
        created_at=now,
    )
    s.add(rep)
    row.state, row.updated_at = new_state.value, now
    s.add(row)
    s.flush()
    record(
        s,
        actor=actor,
        action="model.verification",
        subject=subject(version),
        payload={
            "report_id": rep.id,
            **{k: report[k] for k in REPORT_KEYS},
            "report_digest": report_digest(report),
            "verifier_key": trusted.encode(),
            "summary": rep.summary,
            "state": new_state.value,
        },
        at=now,
    )
    return rep


def register_from_job(s: Session, job: Job, now: datetime, trusted: VerifierKey) -> ModelVersionRow | None:
    """Register a job's model version (and its report, when the job has one and the service's verifier
    signed it: ``trusted``); None when it has no model."""
    result = job.result or {}
    version = job.model_version
    if not version or not result.get("content_hash"):
        return None
    row = s.get(ModelVersionRow, version)
    if row is None:
        row = register(
            s,
            ModelVersionCreate(
                version=version,
                content_hash=str(result["content_hash"]),
                parent_version=result.get("parent_version"),
                task=str(result.get("task") or job.spec.get("task") or "unknown"),
                kind="unlearn" if job.kind == "unlearn" else "train",
                proposal_id=job.proposal_id,
                job_id=f"job-{job.id}",
            ),
            actor=None,
            now=now,
            details={
                "job": job.id,
                "target": (job.spec or {}).get("target"),
                "reference_version": ((job.report or {}).get("models") or {}).get("reference", {})
                and ((job.report or {}).get("models") or {})["reference"].get("version"),
            },
        )
    if job.report and not _has_report(s, version, job.report):
        # a report for another model, or one the verifier did not sign, is never attached
        with contextlib.suppress(Conflict, InvalidInput, UntrustedReportError):
            record_report(s, version, job.report, actor=None, now=now, trusted=trusted)
    return row


def _has_report(s: Session, version: str, report: dict[str, Any]) -> bool:
    """Whether this very report (same signature) is already recorded for ``version``."""
    q = select(VerificationReportRow.report).where(
        VerificationReportRow.model_version == version,
        VerificationReportRow.candidate_hash == str(report.get("candidate_hash")),
    )
    return any(r.get("signature") == report.get("signature") for r in s.exec(q).all())


def latest_report(
    s: Session, row: ModelVersionRow, policy_hash: str | None = None
) -> VerificationReportRow | None:
    """The newest report computed on this exact model (content hash) and, when given, this policy."""
    q = select(VerificationReportRow).where(
        VerificationReportRow.model_version == row.version,
        VerificationReportRow.candidate_hash == row.content_hash,
    )
    if policy_hash is not None:
        q = q.where(VerificationReportRow.policy_hash == policy_hash)
    return s.exec(q.order_by(col(VerificationReportRow.id).desc())).first()


def lineage(s: Session, row: ModelVersionRow, limit: int = 1000) -> list[ModelVersionRow]:
    """The registered ancestors of ``row``, parent first."""
    return _chain(s, row.parent_version, limit, seen={row.version})


def _chain(
    s: Session, start: str | None, limit: int = 1000, seen: set[str] | None = None
) -> list[ModelVersionRow]:
    out: list[ModelVersionRow] = []
    seen = set(seen or ())
    version = start
    while version and version not in seen and len(out) < limit:
        p = s.get(ModelVersionRow, version)
        if p is None:
            break
        out.append(p)
        seen.add(p.version)
        version = p.parent_version
    return out


def _owed(rows: list[ModelVersionRow]) -> list[ModelVersionRow]:
    return [
        a
        for a in rows
        if a.kind == "unlearn" and a.proposal_id is not None and a.state == ModelState.RELEASED.value
    ]


def obligations(s: Session, row: ModelVersionRow) -> list[ModelVersionRow]:
    """Earlier approved-and-released unlearnings of the lineage (the regression suite of ``row``)."""
    return _owed(lineage(s, row))


def regression_checks(s: Session, version: str) -> list[dict[str, Any]]:
    """The regression checks a verification of the registered ``version`` must include."""
    return regression_checks_from(s, get_row(s, version).parent_version)


def regression_checks_from(s: Session, base_version: str | None) -> list[dict[str, Any]]:
    """The regression checks of a model derived from ``base_version`` (inclusive), as
    ``unlearning.verification.RegressionCheck`` fields: what the orchestration puts in ``VerifySpec.regressions``
    before the new version is even registered."""
    out = []
    for a in _owed(_chain(s, base_version)):
        p = s.get(Proposal, a.proposal_id)
        if p is None or a.parent_version is None:
            continue
        out.append(
            {
                "label": f"proposal {p.id}",
                "proposal_id": p.id,
                "target": (a.details or {}).get("target") or {},
                "tests": list(p.acceptance_tests),
                "original_version": a.parent_version,
                "reference_version": (a.details or {}).get("reference_version"),
            }
        )
    return out


def known_versions(ctx: Ctx) -> set[str]:
    """Every version the registry has a row for (whatever its state): nothing of these is ever deleted."""
    with read_session(ctx.engine) as s:
        return set(s.exec(select(ModelVersionRow.version)).all())


def latest_released_version(s: Session) -> str | None:
    q = (
        select(ModelVersionRow.version)
        .where(ModelVersionRow.state == ModelState.RELEASED.value)
        .order_by(col(ModelVersionRow.released_at).desc(), col(ModelVersionRow.created_at).desc())
    )
    return s.exec(q).first()


# ---------------------------------------------------------------- reading


def _verification_public(r: VerificationReportRow) -> VerificationPublic:
    assert r.id is not None
    return VerificationPublic(
        id=r.id,
        candidate_hash=r.candidate_hash,
        policy_hash=r.policy_hash,
        config_hash=r.config_hash,
        seed=r.seed,
        precision=r.precision,
        libraries=r.libraries,
        passed=r.passed,
        summary=r.summary,
        created_at=r.created_at,
    )


def to_public(s: Session, row: ModelVersionRow) -> ModelVersionPublic:
    rep = latest_report(s, row)
    return ModelVersionPublic(
        version=row.version,
        content_hash=row.content_hash,
        parent_version=row.parent_version,
        task=row.task,
        kind=row.kind,
        proposal_id=row.proposal_id,
        job_id=row.job_id,
        state=row.state,
        created_at=row.created_at,
        updated_at=row.updated_at,
        released_at=row.released_at,
        verification=_verification_public(rep) if rep is not None else None,
    )


def list_versions(
    ctx: Ctx, *, state: str | None = None, proposal_id: int | None = None, limit: int = 100, offset: int = 0
) -> list[ModelVersionPublic]:
    with read_session(ctx.engine) as s:
        q = select(ModelVersionRow)
        if state is not None:
            q = q.where(ModelVersionRow.state == state)
        if proposal_id is not None:
            q = q.where(ModelVersionRow.proposal_id == proposal_id)
        q = (
            q.order_by(col(ModelVersionRow.created_at).desc(), col(ModelVersionRow.version))
            .offset(offset)
            .limit(limit)
        )
        return [to_public(s, r) for r in s.exec(q).all()]


def get_version(ctx: Ctx, version: str) -> ModelVersionDetail:
    with read_session(ctx.engine) as s:
        row = get_row(s, version)
        rep = latest_report(s, row)
        return ModelVersionDetail(
            **to_public(s, row).model_dump(),
            lineage=[a.version for a in lineage(s, row)],
            report=rep.report if rep is not None else None,
        )


def report_of(ctx: Ctx, version: str) -> dict[str, Any]:
    with read_session(ctx.engine) as s:
        rep = latest_report(s, get_row(s, version))
        if rep is None:
            raise NotFound(f"model version {version} has no verification report yet")
        return rep.report


# ---------------------------------------------------------------- changing


def register_version(ctx: Ctx, actor: ActorView, data: ModelVersionCreate) -> ModelVersionPublic:
    _require_operator(actor)
    with write_session(ctx.engine) as s:
        row = register(s, data, actor=actor.member_id, now=ctx.clock.now())
        return to_public(s, row)


def attach_report(ctx: Ctx, actor: ActorView, version: str, report: dict[str, Any]) -> ModelVersionPublic:
    _require_operator(actor)
    with write_session(ctx.engine) as s:
        record_report(
            s,
            version,
            report,
            actor=actor.member_id,
            now=ctx.clock.now(),
            trusted=trusted_verifier(ctx.settings),
        )
        return to_public(s, get_row(s, version))


def reject(ctx: Ctx, actor: ActorView, version: str, reason: str) -> ModelVersionPublic:
    _require_operator(actor)
    now = ctx.clock.now()
    with write_session(ctx.engine) as s:
        row = get_row(s, version, lock=True)
        row.state = transition(ModelState(row.state), ModelAction.REJECT).value
        row.updated_at = now
        s.add(row)
        record(
            s,
            actor=actor.member_id,
            action="model.rejected",
            subject=subject(version),
            payload={"reason": reason},
            at=now,
        )
        return to_public(s, row)
