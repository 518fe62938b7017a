"""The contribution ledger (docs/ledger.md): whose data is in which model version, and what each node's data
brought to a training job.

- :func:`record_training` stores what a trained version's job trained on (its data sources) and each node's
  contribution (the job's ``contribution`` section, GTG-Shapley, unlearning/contribution.py), with a
  ``model.trained`` audit entry, in the transaction that registers the version from the artifact store.
- :func:`data_source_ledger` answers "is my data in the released model?" for a data source: every version's
  holding of it, derived from the registry's parent chain and those records (governance/domain/ledger.py),
  the versions that unlearned it and their reports, the released versions that still hold it, and the audit
  entries behind each step with inclusion proofs against one signed checkpoint.
- :func:`contribution_of`, :func:`contribution_rows` and :func:`contribution_csv` are the contributions, per
  version and as open data.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from governance.audit import log as audit_log
from governance.audit.keys import checkpoint_json
from governance.db.engine import read_session
from governance.db.ledger import TrainingRecord
from governance.db.models import DataSource, Proposal
from governance.db.registry import ModelVersionRow
from governance.domain import ledger as rules
from governance.domain.errors import NotFound
from governance.ledger_schemas import (
    ContributionRow,
    DataSourceLedger,
    LedgerUnlearning,
    LedgerVersion,
    ModelContribution,
)
from governance.schemas import DataSourcePublic
from governance.services import registry
from governance.services.audit import entry
from governance.services.context import Ctx
from unlearning.contract import CONTRIBUTION_COLUMNS, sha256_json

MAX_PROOFS = 200  # audit entries proved in one answer (the newest steps first)
PROVED_ACTIONS = (
    "model.registered",
    "model.trained",
    "model.verification",
    "model.released",
    "model.rejected",
)


# ---------------------------------------------------------------- recording (in the registration's session)


def record_training(
    s: Session, row: ModelVersionRow, manifest: dict[str, Any], now: datetime
) -> TrainingRecord | None:
    """Record a trained version's sources and contribution from its stored manifest (``training.sources``,
    ``metrics.contribution``) with a ``model.trained`` audit entry; None for a version that is not a training
    job's. Idempotent: a version is recorded once."""
    if row.kind != "train":
        return None
    existing = s.get(TrainingRecord, row.version)
    if existing is not None:
        return existing
    training = manifest.get("training") or {}
    raw_sources = training.get("sources")
    sources = (
        [
            {
                "name": str(x["name"]),
                "sha256": str(x.get("sha256", "")),
                "partition": int(x.get("partition", -1)),
            }
            for x in raw_sources
            if isinstance(x, dict) and x.get("name")
        ]
        if isinstance(raw_sources, list)
        else None
    )
    contribution = (manifest.get("metrics") or {}).get("contribution")
    if not isinstance(contribution, dict) or not isinstance(contribution.get("nodes"), list):
        contribution = None
    payload: dict[str, Any] = {
        "job_id": row.job_id,
        "content_hash": row.content_hash,
        "sources": sources,
        "contribution": None,
    }
    if contribution is not None:
        payload["contribution"] = {
            "method": contribution.get("method"),
            "utility": contribution.get("utility"),
            "total_improvement": contribution.get("total_improvement"),
            "scores": {str(n.get("node")): n.get("score") for n in contribution["nodes"]},
            "digest": sha256_json(contribution),
        }
    (written,) = audit_log.append_many(
        s,
        [
            entry(
                actor=None,
                action="model.trained",
                subject=registry.subject(row.version),
                payload=payload,
                at=now,
            )
        ],
    )
    rec = TrainingRecord(
        model_version=row.version,
        job_id=row.job_id,
        sources=sources,
        contribution=contribution,
        audit_seq=written.seq,
        created_at=now,
    )
    s.add(rec)
    s.flush()
    return rec


# ---------------------------------------------------------------- reading


def _source_public(d: DataSource) -> DataSourcePublic:
    assert d.id is not None
    return DataSourcePublic(
        id=d.id,
        owner_id=d.owner_id,
        name=d.name,
        node_id=d.node_id,
        content_hash=d.content_hash,
        description=d.description,
        consent_state=d.consent_state,
        created_at=d.created_at,
    )


def _unlearned(s: Session, row: ModelVersionRow, names: dict[int, str]) -> frozenset[str]:
    """The data source(s) an unlearning version unlearned (its target, or its proposal's data source)."""
    out: set[str] = set()
    target = (row.details or {}).get("target") or {}
    if isinstance(target, dict) and target.get("kind") == "data_source" and target.get("value"):
        out.add(str(target["value"]))
    if row.proposal_id is not None:
        p = s.get(Proposal, row.proposal_id)
        if p is not None and p.data_source_id is not None and p.data_source_id in names:
            out.add(names[p.data_source_id])
    return frozenset(out)


def _facts(
    s: Session,
) -> tuple[list[ModelVersionRow], dict[str, rules.VersionFacts], dict[str, TrainingRecord]]:
    rows = list(
        s.exec(
            select(ModelVersionRow).order_by(
                col(ModelVersionRow.created_at).desc(), col(ModelVersionRow.version)
            )
        ).all()
    )
    records = {r.model_version: r for r in s.exec(select(TrainingRecord)).all()}
    names = {d.id: rules.federation_name(d.node_id, d.name) for d in s.exec(select(DataSource)).all() if d.id}
    facts = {}
    for row in rows:
        rec = records.get(row.version)
        trained = None
        if rec is not None and rec.sources is not None:
            trained = frozenset(str(x["name"]) for x in rec.sources)
        facts[row.version] = rules.VersionFacts(
            version=row.version,
            parent=row.parent_version,
            kind=row.kind,
            state=row.state,
            trained=trained,
            unlearned=_unlearned(s, row, names) if row.kind == "unlearn" else frozenset(),
        )
    return rows, facts, records


def _rows_of(
    version: str, rec: TrainingRecord, only_partitions: set[int] | None = None
) -> list[ContributionRow]:
    c = rec.contribution or {}
    total = float(c.get("total_improvement") or 0.0)
    out = []
    for n in c.get("nodes", []):
        if only_partitions is not None and int(n.get("partition", -1)) not in only_partitions:
            continue
        share = n.get("share")
        out.append(
            ContributionRow(
                model_version=version,
                job_id=rec.job_id,
                method=str(c.get("method", "")),
                utility=str(c.get("utility", "")),
                partition=int(n.get("partition", -1)),
                node=str(n.get("node", "")),
                sources=" ".join(str(x) for x in n.get("sources", [])),
                score=float(n.get("score", 0.0)),
                share=float(share) if share is not None else None,
                rounds=int(n.get("rounds", 0)),
                total_improvement=total,
            )
        )
    return out


def data_source_ledger(ctx: Ctx, data_source_id: int, *, proofs: bool = True) -> DataSourceLedger:
    """Is data source ``data_source_id`` in the released model? See the module docstring (``proofs=False``:
    without the audit proofs, for pages that only show the answer)."""
    with read_session(ctx.engine) as s:
        ds = s.get(DataSource, data_source_id)
        if ds is None:
            raise NotFound(f"no data source {data_source_id}")
        name = rules.federation_name(ds.node_id, ds.name)
        rows, facts, records = _facts(s)
        held = rules.holdings(facts, name)
        by_version = {r.version: r for r in rows}
        released = registry.latest_released_version(s)

        def view(row: ModelVersionRow) -> LedgerVersion:
            h = held[row.version]
            return LedgerVersion(
                version=row.version,
                parent_version=row.parent_version,
                kind=row.kind,
                state=row.state,
                holds=h.status,
                since=h.since,
                job_id=row.job_id,
                proposal_id=row.proposal_id,
                created_at=row.created_at,
                released_at=row.released_at,
            )

        trained_in = [
            view(r)
            for r in rows
            if facts[r.version].trained is not None and name in (facts[r.version].trained or ())
        ]
        unlearned_by = []
        for r in rows:
            if name not in facts[r.version].unlearned:
                continue
            rep = registry.latest_report(s, r)
            unlearned_by.append(
                LedgerUnlearning(
                    version=r.version,
                    state=r.state,
                    proposal_id=r.proposal_id,
                    report_id=rep.id if rep is not None else None,
                    passed=rep.passed if rep is not None else None,
                    summary=rep.summary if rep is not None else None,
                    policy_hash=rep.policy_hash if rep is not None else None,
                    report_url=f"/api/v1/models/{r.version}/report.html" if rep is not None else None,
                )
            )
        released_rows = [r for r in rows if r.state == "released"]
        containing = [r.version for r in released_rows if held[r.version].status == rules.CONTAINS]
        without = [r.version for r in released_rows if held[r.version].status in (rules.NEVER, rules.REMOVED)]
        answer = rules.answer(held.get(released) if released else None)
        explanation = _explain(answer, released, held.get(released) if released else None, ds.consent_state)

        partitions: dict[str, set[int]] = {}
        for v, rec in records.items():
            for x in rec.sources or []:
                if x.get("name") == name:
                    partitions.setdefault(v, set()).add(int(x.get("partition", -1)))
        contributions = [
            row
            for v, parts in partitions.items()
            if records[v].contribution
            for row in _rows_of(v, records[v], parts)
        ]

        # the audit entries behind each step: the source's registration, then the released version's lineage
        # and every version that trained on or unlearned the source (newest first), each with its proof
        chain: list[str] = []
        if released:
            chain = [released, *[a.version for a in registry.lineage(s, by_version[released])]]
        wanted = list(
            dict.fromkeys([*chain, *[v.version for v in trained_in], *[u.version for u in unlearned_by]])
        )
        found = list(audit_log.entries_for_subject(s, f"data_source:{ds.id}"))
        for v in wanted:
            found += [
                e for e in audit_log.entries_for_subject(s, registry.subject(v)) if e.action in PROVED_ACTIONS
            ]
        found = sorted({e.seq: e for e in found}.values(), key=lambda e: e.seq)[-MAX_PROOFS:]
        if not proofs:
            found = []
        head = audit_log.tree_head(s)
        proved = [
            {**e.to_json(), "inclusion_proof": audit_log.inclusion_proof(s, e.seq, head.size).to_json()}
            for e in found
        ]
        checkpoint = checkpoint_json(ctx.settings, head.size, head.root_hash)
        return DataSourceLedger(
            data_source=_source_public(ds),
            federation_name=name,
            answer=answer,
            explanation=explanation,
            released_version=released,
            trained_in=trained_in,
            unlearned_by=unlearned_by,
            released_containing=containing,
            released_without=without,
            versions=[view(r) for r in rows],
            contributions=contributions,
            proofs=proved,
            checkpoint=checkpoint,
        )


def _explain(answer: str, released: str | None, holding: rules.Holding | None, consent: str) -> str:
    if released is None or holding is None:
        return "No model version has been released yet."
    if holding.status == rules.CONTAINS:
        return (
            f"The released version {released} holds this data: version {holding.since} was trained on it, and "
            "no version on the released version's lineage unlearned it."
            + (
                " Consent is withdrawn: the unlearning is under way or pending."
                if consent != "granted"
                else ""
            )
        )
    if holding.status == rules.REMOVED:
        return (
            f"The released version {released} does not hold this data: version {holding.since} unlearned it."
        )
    if holding.status == rules.NEVER:
        return f"The released version {released} does not hold this data: no version of its lineage trained on it."
    return (
        f"Unknown: a version on the lineage of {released} did not record the data sources its training used, or "
        "its parent is not in the registry."
    )


def contribution_of(ctx: Ctx, version: str) -> ModelContribution:
    """The contribution section of a trained version (404 when it has none)."""
    with read_session(ctx.engine) as s:
        registry.get_row(s, version)
        rec = s.get(TrainingRecord, version)
        if rec is None or not rec.contribution:
            raise NotFound(
                f"model version {version} has no contribution record (only training jobs measure one)"
            )
        c = rec.contribution
        return ModelContribution(
            model_version=version,
            job_id=rec.job_id,
            method=str(c.get("method", "")),
            utility=str(c.get("utility", "")),
            initial_utility=c.get("initial_utility"),
            final_utility=c.get("final_utility"),
            total_improvement=float(c.get("total_improvement") or 0.0),
            sum_of_scores=float(c.get("sum_of_scores") or 0.0),
            residual=float(c.get("residual") or 0.0),
            nodes=_rows_of(version, rec),
            rounds=list(c.get("rounds", [])),
            cost=dict(c.get("cost", {})),
            settings=dict(c.get("settings", {})),
            audit_seq=rec.audit_seq,
        )


def contribution_rows(ctx: Ctx, model_version: str | None = None) -> list[ContributionRow]:
    """Every node's contribution to every training job the registry holds (oldest first), or one version's."""
    with read_session(ctx.engine) as s:
        q = select(TrainingRecord).order_by(col(TrainingRecord.created_at), col(TrainingRecord.model_version))
        if model_version is not None:
            q = q.where(TrainingRecord.model_version == model_version)
        return [
            row for rec in s.exec(q).all() if rec.contribution for row in _rows_of(rec.model_version, rec)
        ]


def contribution_csv(ctx: Ctx, model_version: str | None = None) -> str:
    """:func:`contribution_rows` as CSV (RFC 4180, a header row, the columns of CONTRIBUTION_COLUMNS)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(CONTRIBUTION_COLUMNS)
    for row in contribution_rows(ctx, model_version):
        d = row.model_dump()
        w.writerow(
            [
                "" if d[c] is None else (repr(d[c]) if isinstance(d[c], float) else d[c])
                for c in CONTRIBUTION_COLUMNS
            ]
        )
    return out.getvalue()


def member_ledgers(ctx: Ctx, member_id: int) -> list[DataSourceLedger]:
    """The ledger of each data source ``member_id`` owns (their page)."""
    with read_session(ctx.engine) as s:
        ids = [
            d.id
            for d in s.exec(
                select(DataSource).where(DataSource.owner_id == member_id).order_by(col(DataSource.id))
            ).all()
        ]
    return [data_source_ledger(ctx, i, proofs=False) for i in ids if i is not None]


def contribution_or_none(ctx: Ctx, version: str) -> ModelContribution | None:
    """:func:`contribution_of`, or None for a version without one (the version page)."""
    try:
        return contribution_of(ctx, version)
    except NotFound:
        return None
