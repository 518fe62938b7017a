"""Data sources: registered by their owner, targeted by proposals, consent withdrawn by fast track."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from governance.db.engine import read_session, write_session
from governance.db.models import DataSource, Proposal
from governance.domain.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from governance.domain.review import ActorView
from governance.schemas import DataSourceCreate, DataSourcePublic, ProposalPublic
from governance.services.audit import record
from governance.services.context import Ctx
from governance.services.proposals import to_public


def public(d: DataSource) -> DataSourcePublic:
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
        protected_count=d.protected_count,
        protected_sha256=d.protected_sha256,
    )


def check_against_dataset(ctx: Ctx, data: DataSourceCreate) -> None:
    """Where the service has the federation's dataset manifest (COMMONS_DATASET_DIR, default
    COMMONS_DATA_DIR/dataset), a data source is one of its node files: its sha256 must be the file's and its
    node and name the file's (``alice/notes.jsonl`` is ``notes`` on node ``alice``), else a job could never
    find it. Without a manifest (nodes hold the data and the service has none) nothing can be checked."""
    from unlearning.api import dataset_sources

    dataset = ctx.settings.effective_dataset_dir
    try:
        sources = dataset_sources(dataset)
    except (OSError, ValueError, KeyError, TypeError):
        raise InvalidInput(
            f"the federation's dataset manifest in {dataset} cannot be read: the operator must fix it"
        ) from None
    if sources is None:
        return
    same = [s for s in sources if s["sha256"] == data.content_hash]
    if not same:
        listed = ", ".join(s["name"] for s in sources[:8]) + (", ..." if len(sources) > 8 else "")
        ex = next((s for s in sources if s["node"] == data.node_id), sources[0]) if sources else None
        example = (
            f" (e.g. `commons data-source register {ex['name'].partition('/')[2]} DATASET/{ex['file']} "
            f"--node {ex['node']}`)"
            if ex
            else ""
        )
        raise InvalidInput(
            f"sha256 {data.content_hash[:12]}... matches no data source file of the federation's dataset "
            f"(its sources: {listed or 'none'}): register the source file your node holds, as `commons model "
            f"init` wrote it{example}, not a folder or your original file",
            "content_hash",
        )
    wanted = {data.name, f"{data.node_id}/{data.name}"}
    if not any(s["node"] == data.node_id and s["name"] in wanted for s in same):
        s = same[0]
        short = s["name"].partition("/")[2]
        raise InvalidInput(
            f"that sha256 is the dataset's data source {s['name']} ({s['file']}): register it as {short!r} "
            f"on node {s['node']!r}, not as {data.name!r} on {data.node_id!r}",
            "name",
        )


def register(ctx: Ctx, data: DataSourceCreate, actor: ActorView) -> DataSourcePublic:
    if actor.member_id is None:
        raise PermissionDenied("a data source is registered by its owner")
    check_against_dataset(ctx, data)
    with write_session(ctx.engine) as s:
        clash = s.exec(
            select(DataSource.id).where(DataSource.owner_id == actor.member_id, DataSource.name == data.name)
        ).first()
        if clash is not None:
            raise Conflict(f"you already registered a data source named {data.name!r}")
        d = DataSource(
            owner_id=actor.member_id,
            name=data.name,
            node_id=data.node_id,
            content_hash=data.content_hash,
            description=data.description,
            created_at=ctx.clock.now(),
            protected_count=data.protected_count,
            protected_sha256=data.protected_sha256,
        )
        s.add(d)
        s.flush()
        payload: dict[str, Any] = {"name": d.name, "node_id": d.node_id, "content_hash": d.content_hash}
        if d.protected_sha256 is not None:  # the commitment only: the strings and the salt stay on the node
            payload["protected"] = {"count": d.protected_count, "sha256": d.protected_sha256}
        record(
            s,
            at=ctx.clock.now(),
            actor=actor.member_id,
            action="data_source.registered",
            subject=f"data_source:{d.id}",
            payload=payload,
        )
        return public(d)


def protected_commitment(s: Session, proposal_id: int | None) -> dict[str, Any] | None:
    """The commitment to its owner's protected strings ({"count", "sha256"}) of the data source a proposal
    targets, for its verification to check against what the node reports; None when none was registered."""
    p = s.get(Proposal, proposal_id) if proposal_id is not None else None
    d = s.get(DataSource, p.data_source_id) if p is not None and p.data_source_id is not None else None
    if d is None or d.protected_sha256 is None:
        return None
    return {"count": d.protected_count, "sha256": d.protected_sha256}


def get(ctx: Ctx, data_source_id: int) -> DataSourcePublic:
    with read_session(ctx.engine) as s:
        d = s.get(DataSource, data_source_id)
        if d is None:
            raise NotFound(f"no data source {data_source_id}")
        return public(d)


def list_all(
    ctx: Ctx, owner_id: int | None = None, limit: int = 100, offset: int = 0
) -> list[DataSourcePublic]:
    with read_session(ctx.engine) as s:
        q = select(DataSource).order_by(col(DataSource.id)).limit(limit).offset(offset)
        if owner_id is not None:
            q = q.where(DataSource.owner_id == owner_id)
        return [public(d) for d in s.exec(q).all()]


def proposals_targeting(ctx: Ctx, data_source_id: int) -> list[ProposalPublic]:
    with read_session(ctx.engine) as s:
        if s.get(DataSource, data_source_id) is None:
            raise NotFound(f"no data source {data_source_id}")
        rows = s.exec(
            select(Proposal).where(Proposal.data_source_id == data_source_id).order_by(col(Proposal.id))
        ).all()
        return [to_public(p) for p in rows]
