"""Community evaluation: members' evaluation probes and their triage, and a version's evaluation (the nodes'
A/B comparison against the released version, per node and per group, and the probes' outcomes)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, get, post
from litestar.params import Parameter, QueryParameter

from governance.bounds import Filter, Id, Offset, VersionRef
from governance.domain.probes import ProbeAction
from governance.domain.review import ActorView
from governance.evaluation_schemas import ProbeCreate, ProbeDecisionIn, ProbePublic
from governance.services import probes
from governance.services.context import Ctx


class ProbeController(Controller):
    path = "/api/v1/probes"
    tags = ["probes"]

    @get("/", sync_to_thread=True)
    def list_probes(
        self,
        ctx: Ctx,
        actor: ActorView,
        state_filter: Annotated[Filter, QueryParameter(name="state")] = None,
        limit: int = Parameter(default=100, ge=1, le=500),
        offset: Offset = 0,
    ) -> list[ProbePublic]:
        """Evaluation probes, oldest first (state: submitted (the triage queue), accepted, rejected)."""
        return probes.list_probes(ctx, state=state_filter, limit=limit, offset=offset)

    @post("/", sync_to_thread=True)
    def submit(self, ctx: Ctx, actor: ActorView, data: ProbeCreate) -> ProbePublic:
        """Submit a probe (any member); it runs on no candidate until a reviewer accepts it."""
        return probes.submit(ctx, actor, data)

    @get("/{probe_id:int}", sync_to_thread=True)
    def get_probe(self, ctx: Ctx, actor: ActorView, probe_id: Id) -> ProbePublic:
        return probes.get(ctx, probe_id)

    @post("/{probe_id:int}/accept", status_code=200, sync_to_thread=True)
    def accept(
        self, ctx: Ctx, actor: ActorView, probe_id: Id, data: ProbeDecisionIn | None = None
    ) -> ProbePublic:
        """A reviewer (not its author) accepts a submitted probe: it runs on every later candidate, and a failing
        probe blocks the release gate."""
        return probes.triage(ctx, actor, probe_id, ProbeAction.ACCEPT, data.reason if data else "")

    @post("/{probe_id:int}/reject", status_code=200, sync_to_thread=True)
    def reject(self, ctx: Ctx, actor: ActorView, probe_id: Id, data: ProbeDecisionIn) -> ProbePublic:
        """A reviewer (not its author) rejects a submitted probe, with a reason."""
        return probes.triage(ctx, actor, probe_id, ProbeAction.REJECT, data.reason)


class EvaluationController(Controller):
    path = "/api/v1/models"
    tags = ["models"]

    @get("/{version:str}/evaluation", sync_to_thread=True)
    def evaluation(self, ctx: Ctx, actor: ActorView, version: VersionRef) -> dict[str, Any]:
        """The community evaluation of a version (stored in its signed report): global, per-node and per-group
        figures of the candidate against the released version, the worst node and group, the disparity, and
        each accepted probe's outcome."""
        return probes.evaluation_of(ctx, version)
