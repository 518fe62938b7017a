"""Data sources: registered by their owner."""

from __future__ import annotations

from litestar import Controller, get, post
from litestar.params import Parameter

from governance.bounds import Id, Offset, OptionalId
from governance.domain.review import ActorView
from governance.schemas import DataSourceCreate, DataSourcePublic, ProposalPublic
from governance.services import data_sources
from governance.services.context import Ctx


class DataSourceController(Controller):
    path = "/api/v1/data-sources"
    tags = ["data sources"]

    @get("/", sync_to_thread=True)
    def list_sources(
        self,
        ctx: Ctx,
        actor: ActorView,
        owner_id: OptionalId = None,
        limit: int = Parameter(default=100, ge=1, le=500),
        offset: Offset = 0,
    ) -> list[DataSourcePublic]:
        return data_sources.list_all(ctx, owner_id=owner_id, limit=limit, offset=offset)

    @post("/", sync_to_thread=True)
    def register(self, ctx: Ctx, actor: ActorView, data: DataSourceCreate) -> DataSourcePublic:
        """Register a data source you own: its node and the sha256 of its manifest."""
        return data_sources.register(ctx, data, actor)

    @get("/{source_id:int}", sync_to_thread=True)
    def get_source(self, ctx: Ctx, actor: ActorView, source_id: Id) -> DataSourcePublic:
        return data_sources.get(ctx, source_id)

    @get("/{source_id:int}/proposals", sync_to_thread=True)
    def proposals(self, ctx: Ctx, actor: ActorView, source_id: Id) -> list[ProposalPublic]:
        return data_sources.proposals_targeting(ctx, source_id)
