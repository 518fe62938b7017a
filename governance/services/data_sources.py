"""Data sources: registered by their owner, targeted by proposals, consent withdrawn by fast track."""

from __future__ import annotations

from sqlmodel import col, select

from governance.db.engine import read_session, write_session
from governance.db.models import DataSource, Proposal
from governance.domain.errors import Conflict, NotFound, PermissionDenied
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
    )


def register(ctx: Ctx, data: DataSourceCreate, actor: ActorView) -> DataSourcePublic:
    if actor.member_id is None:
        raise PermissionDenied("a data source is registered by its owner")
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
        )
        s.add(d)
        s.flush()
        record(
            s,
            at=ctx.clock.now(),
            actor=actor.member_id,
            action="data_source.registered",
            subject=f"data_source:{d.id}",
            payload={"name": d.name, "node_id": d.node_id, "content_hash": d.content_hash},
        )
        return public(d)


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
