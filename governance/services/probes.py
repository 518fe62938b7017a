"""Evaluation probes: members submit them, reviewers accept or reject them (audited, ``probe:<id>``), and the
job worker runs the accepted ones on every candidate it verifies afterwards (:func:`accepted_for_run`).

The rules are the domain's (:mod:`governance.domain.probes`); a probe's spec is validated by the library's
own checker (``unlearning.api.check_probe_spec``), so the service accepts only what the verifier can run.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from governance.db.engine import read_session, write_session
from governance.db.evaluation import EvaluationProbe
from governance.domain.errors import InvalidInput, NotFound, PermissionDenied
from governance.domain.probes import ProbeAction, ProbeState, decide
from governance.domain.review import ActorView
from governance.evaluation_schemas import ProbeCreate, ProbePublic
from governance.services import registry
from governance.services.audit import record
from governance.services.context import Ctx
from unlearning import contract

STATES = [s.value for s in ProbeState]


def subject(probe_id: int) -> str:
    return f"probe:{probe_id}"


def to_public(p: EvaluationProbe) -> ProbePublic:
    assert p.id is not None
    return ProbePublic(
        id=p.id,
        title=p.title,
        description=p.description,
        kind=p.kind,
        spec=p.spec,
        spec_hash=p.spec_hash,
        state=p.state,
        submitted_by=p.submitted_by,
        reviewed_by=p.reviewed_by,
        review_reason=p.review_reason,
        created_at=p.created_at,
        decided_at=p.decided_at,
    )


def check_spec(raw: Any) -> dict[str, Any]:
    """The probe spec, normalised by the library's checker; a malformed one is an InvalidInput (422)."""
    from unlearning.api import ProbeSpecError, check_probe_spec

    try:
        return check_probe_spec(raw)
    except ProbeSpecError as exc:
        raise InvalidInput(f"probe spec: {exc.message}", field="spec") from None


def submit(ctx: Ctx, actor: ActorView, data: ProbeCreate) -> ProbePublic:
    """A member submits a probe for triage; it runs on nothing until a reviewer accepts it."""
    if actor.member_id is None:
        raise PermissionDenied("only members submit evaluation probes")
    spec = check_spec(data.spec)
    now = ctx.clock.now()
    with write_session(ctx.engine) as s:
        p = EvaluationProbe(
            title=data.title,
            description=data.description,
            kind=str(spec["kind"]),
            spec=spec,
            spec_hash=contract.sha256_json(spec),
            state=ProbeState.SUBMITTED.value,
            submitted_by=actor.member_id,
            created_at=now,
        )
        s.add(p)
        s.flush()
        assert p.id is not None
        record(
            s,
            actor=actor.member_id,
            action="probe.submitted",
            subject=subject(p.id),
            payload={"title": p.title, "kind": p.kind, "spec_hash": p.spec_hash, "state": p.state},
            at=now,
        )
        return to_public(p)


def _row(s: Session, probe_id: int, lock: bool = False) -> EvaluationProbe:
    q = select(EvaluationProbe).where(EvaluationProbe.id == probe_id)
    if lock:
        q = q.with_for_update()
    p = s.exec(q).first()
    if p is None:
        raise NotFound(f"no evaluation probe {probe_id}")
    return p


def triage(ctx: Ctx, actor: ActorView, probe_id: int, action: ProbeAction, reason: str = "") -> ProbePublic:
    """A reviewer (not the submitter) accepts or rejects a submitted probe; audited. A rejection needs a
    reason, so that the member knows what to change."""
    reason = (reason or "").strip()
    if action is ProbeAction.REJECT and len(reason) < 3:
        raise InvalidInput("a rejection needs a reason (at least 3 characters)", field="reason")
    now = ctx.clock.now()
    with write_session(ctx.engine) as s:
        p = _row(s, probe_id, lock=True)
        new = decide(ProbeState(p.state), action, actor, p.submitted_by)
        p.state, p.reviewed_by, p.review_reason, p.decided_at = new.value, actor.member_id, reason, now
        s.add(p)
        record(
            s,
            actor=actor.member_id,
            action=f"probe.{new.value}",
            subject=subject(probe_id),
            payload={"title": p.title, "spec_hash": p.spec_hash, "state": new.value, "reason": reason},
            at=now,
        )
        return to_public(p)


def get(ctx: Ctx, probe_id: int) -> ProbePublic:
    with read_session(ctx.engine) as s:
        return to_public(_row(s, probe_id))


def list_probes(
    ctx: Ctx, *, state: str | None = None, limit: int = 100, offset: int = 0
) -> list[ProbePublic]:
    """Probes, oldest first (the triage queue is ``state=submitted``)."""
    if state is not None and state not in STATES:
        raise InvalidInput(f"state must be one of {', '.join(STATES)}", field="state")
    with read_session(ctx.engine) as s:
        q = select(EvaluationProbe)
        if state is not None:
            q = q.where(EvaluationProbe.state == state)
        q = q.order_by(col(EvaluationProbe.id)).offset(offset).limit(limit)
        return [to_public(p) for p in s.exec(q).all()]


def accepted_for_run(s: Session) -> list[dict[str, Any]]:
    """The accepted probes as the verifier runs them: ``{"id", "title", "spec", "spec_hash"}``."""
    q = select(EvaluationProbe).where(EvaluationProbe.state == ProbeState.ACCEPTED.value)
    return [
        {"id": p.id, "title": p.title, "spec": p.spec, "spec_hash": p.spec_hash}
        for p in s.exec(q.order_by(col(EvaluationProbe.id))).all()
    ]


def evaluation_of(ctx: Ctx, version: str) -> dict[str, Any]:
    """The community evaluation stored with ``version`` (in its latest signed verification report)."""
    with read_session(ctx.engine) as s:
        rep = registry.latest_report(s, registry.get_row(s, version))
        evaluation = (rep.report if rep is not None else {}).get("community_evaluation")
    if evaluation is None:
        raise NotFound(f"model version {version} has no community evaluation yet")
    return dict(evaluation)


def require_accepted(s: Session, tests: list[dict[str, Any]]) -> None:
    """Every probe that acceptance tests name (``probe_<id>``) exists and was accepted by a reviewer."""
    for t in tests:
        probe_id = contract.probe_test_id(str(t.get("metric", "")))
        if probe_id is None:
            continue
        p = s.get(EvaluationProbe, probe_id)
        if p is None or p.state != ProbeState.ACCEPTED.value:
            what = "does not exist" if p is None else f"is {p.state}, not accepted"
            raise InvalidInput(
                f"acceptance test {t['metric']}: evaluation probe {probe_id} {what}", field="acceptance_tests"
            )
