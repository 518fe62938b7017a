"""The outcome statement of a closed decision: read it, write it, revise it (governance.services.outcomes)."""

from __future__ import annotations

from litestar import Controller, get, post, put

from governance.bounds import Id
from governance.domain.review import ActorView
from governance.outcome_schemas import OutcomeIn, OutcomeStatus
from governance.services import outcomes
from governance.services.context import Ctx


class OutcomeController(Controller):
    path = "/api/v1/proposals"
    tags = ["proposals"]

    @get("/{proposal_id:int}/outcome", sync_to_thread=True)
    def outcome(self, ctx: Ctx, actor: ActorView, proposal_id: Id) -> OutcomeStatus:
        """The statement with its earlier versions, or who is expected to write it."""
        return outcomes.status(ctx, proposal_id, actor)

    @post("/{proposal_id:int}/outcome", status_code=201, sync_to_thread=True)
    def write(self, ctx: Ctx, actor: ActorView, proposal_id: Id, data: OutcomeIn) -> OutcomeStatus:
        """Write the outcome statement of a closed decision: `{decided, reasons, next_steps}` (each required).
        The author or a council member writes it (a reviewer, for a triage rejection that stood); 409 when one
        is written already (revise it with PUT) or the decision is still open."""
        return outcomes.write(
            ctx, proposal_id, actor, data.decided, data.reasons, data.next_steps, revise=False
        )

    @put("/{proposal_id:int}/outcome", sync_to_thread=True)
    def revise(self, ctx: Ctx, actor: ActorView, proposal_id: Id, data: OutcomeIn) -> OutcomeStatus:
        """Revise the statement (the earlier version is kept in its history); 409 when none is written yet."""
        return outcomes.write(
            ctx, proposal_id, actor, data.decided, data.reasons, data.next_steps, revise=True
        )
