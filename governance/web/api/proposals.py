"""Proposals and every step of their review: triage, votes, council, appeals, conflicts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, patch, post
from litestar.params import Parameter, QueryParameter

from governance.bounds import MAX_FILTER, MAX_TEXT, NO_NUL, Filter, Id, Offset, OptionalId
from governance.domain.metrics import COMPARATORS, known_metrics
from governance.domain.proposals import TargetKind, default_acceptance_tests
from governance.domain.review import ActorView
from governance.schemas import (
    CouncilIn,
    ProposalCreate,
    ProposalDetail,
    ProposalPublic,
    ProposalUpdate,
    ReasonIn,
    TallyPublic,
    TriageIn,
    VotePublic,
)
from governance.services import measurability, proposals, votes
from governance.services.context import Ctx
from governance.web.deps import bearer_token, session_actor
from governance.web.paging import pages
from unlearning import contract


class VoteBody(msgspec.Struct, forbid_unknown_fields=True):
    choice: Annotated[str, msgspec.Meta(max_length=MAX_FILTER, pattern=NO_NUL)]
    reason: Annotated[str, msgspec.Meta(max_length=MAX_TEXT, pattern=NO_NUL)] = ""


class VoteOut(msgspec.Struct):
    proposal_id: int
    member_id: int
    choice: str
    reason: str | None
    cast_at: datetime


class ProposalController(Controller):
    path = "/api/v1/proposals"
    tags = ["proposals"]

    @get("/", sync_to_thread=True)
    def list_proposals(
        self,
        ctx: Ctx,
        actor: ActorView,
        state_filter: Annotated[Filter, QueryParameter(name="state")] = None,
        target_kind: Filter = None,
        kind: Filter = None,
        mine: bool = False,
        proposer_id: OptionalId = None,
        q: Filter = None,
        limit: int = Parameter(default=50, ge=1, le=500),
        offset: Offset = 0,
    ) -> Response[list[ProposalPublic]]:
        """Newest first, filtered by state, target kind, kind and proposer (``mine=true`` for yours); ``q``
        searches titles and rationales (case-insensitive substring). Pages by ``offset``/``limit``: the
        ``Link`` header gives the ``next`` and ``prev`` pages' URLs with the same filters."""
        rows = proposals.list_proposals(
            ctx,
            state=state_filter,
            target_kind=target_kind,
            kind=kind,
            proposer_id=actor.member_id if mine else proposer_id,
            limit=min(limit + 1, 500),
            offset=offset,
            viewer_id=actor.member_id,
            q=q,
        )
        more = len(rows) > limit or (limit == 500 and len(rows) == limit)
        filters: dict[str, object] = {"state": state_filter, "target_kind": target_kind, "kind": kind, "q": q}
        filters.update({"mine": "true" if mine else None, "proposer_id": proposer_id})
        links = pages(self.path, filters, offset, limit, min(len(rows), limit), more).link_header()
        return Response(rows[:limit], headers={"Link": links} if links else None)

    @post("/", sync_to_thread=True)
    def create(self, ctx: Ctx, actor: ActorView, data: ProposalCreate) -> ProposalPublic:
        """Table a proposal (a draft, or submitted at once with ``submit: true``)."""
        return proposals.create(ctx, data, actor)

    @get("/{proposal_id:int}", sync_to_thread=True)
    def detail(self, ctx: Ctx, actor: ActorView, proposal_id: Id) -> ProposalDetail:
        """Everything about a proposal: its full history, decisions, tally and what you may do now."""
        return proposals.get_detail(ctx, proposal_id, actor)

    @patch("/{proposal_id:int}", sync_to_thread=True)
    def edit(self, ctx: Ctx, actor: ActorView, proposal_id: Id, data: ProposalUpdate) -> ProposalPublic:
        """Edit a draft (proposer only)."""
        return proposals.update(ctx, proposal_id, data, actor)

    @post("/{proposal_id:int}/submit", status_code=200, sync_to_thread=True)
    def submit(self, ctx: Ctx, actor: ActorView, proposal_id: Id) -> ProposalPublic:
        return proposals.submit(ctx, proposal_id, actor)

    @post("/{proposal_id:int}/withdraw", status_code=200, sync_to_thread=True)
    def withdraw(
        self, ctx: Ctx, actor: ActorView, proposal_id: Id, data: ReasonIn | None = None
    ) -> ProposalPublic:
        return proposals.withdraw(ctx, proposal_id, actor, data.reason if data else None)

    @post("/{proposal_id:int}/triage", status_code=200, sync_to_thread=True)
    def triage(self, ctx: Ctx, actor: ActorView, proposal_id: Id, data: TriageIn) -> ProposalPublic:
        """A reviewer approves (enough approvals open the vote) or rejects with a reason (appealable)."""
        return proposals.triage(ctx, proposal_id, actor, data.decision, data.reason)

    @post("/{proposal_id:int}/votes", status_code=200)
    async def vote(
        self, request: Request[Any, Any, Any], ctx: Ctx, proposal_id: Id, data: VoteBody
    ) -> VoteOut:
        """Cast or change your vote until the deadline; the latest counts: `{choice: approve | object | abstain
        | block, reason}` (object and block need a reason)."""
        # the hottest endpoint: it runs on the event loop with msgspec bodies (no thread, no pydantic); the
        # token is resolved by the vote batcher together with the vote
        token = bearer_token(request)
        actor = None if token else session_actor(request)
        v = await votes.cast_async(
            ctx, votes.VoteRequest(proposal_id, actor, data.choice, data.reason, token)
        )
        return VoteOut(v.proposal_id, v.member_id, v.choice, v.reason, v.cast_at)

    @get("/{proposal_id:int}/votes", sync_to_thread=True)
    def votes(self, ctx: Ctx, actor: ActorView, proposal_id: Id, history: bool = False) -> list[VotePublic]:
        """Current votes, or with ``history=true`` every vote and change in order."""
        return proposals.list_votes(ctx, proposal_id, history)

    @get("/{proposal_id:int}/tally", sync_to_thread=True)
    def tally(self, ctx: Ctx, actor: ActorView, proposal_id: Id) -> TallyPublic:
        return proposals.get_tally(ctx, proposal_id)

    @post("/{proposal_id:int}/council", status_code=200, sync_to_thread=True)
    def council(self, ctx: Ctx, actor: ActorView, proposal_id: Id, data: CouncilIn) -> ProposalPublic:
        """A council member ratifies or vetoes (with a reason); a majority of the council decides."""
        return proposals.council(ctx, proposal_id, actor, data.decision, data.reason)

    @post("/{proposal_id:int}/appeal", status_code=200, sync_to_thread=True)
    def appeal(self, ctx: Ctx, actor: ActorView, proposal_id: Id, data: ReasonIn) -> ProposalPublic:
        """The proposer or a reviewer appeals a rejection or veto to the council, once."""
        return proposals.appeal(ctx, proposal_id, actor, data.reason)

    @post("/{proposal_id:int}/conflicts", status_code=200, sync_to_thread=True)
    def declare_conflict(self, ctx: Ctx, actor: ActorView, proposal_id: Id, data: ReasonIn) -> ProposalPublic:
        """Declare a conflict of interest: you are then excluded from reviewing this proposal."""
        return proposals.declare_conflict(ctx, proposal_id, actor, data.reason)

    @post("/{proposal_id:int}/cancel", status_code=200, sync_to_thread=True)
    def cancel(self, ctx: Ctx, actor: ActorView, proposal_id: Id, data: ReasonIn) -> ProposalPublic:
        """Emergency cancel by the council or an admin, with a reason."""
        return proposals.cancel(ctx, proposal_id, actor, data.reason)


class MetaController(Controller):
    path = "/api/v1"
    tags = ["meta"]

    @get("/health", sync_to_thread=False)
    def health(self) -> dict[str, str]:
        return {"status": "ok"}

    @get("/metrics", sync_to_thread=True)
    def metrics(self, ctx: Ctx) -> dict[str, Any]:
        """Metric names acceptance tests may use (with what each needs to be measured), comparators, each
        target kind's default tests, and the base model's task with the defaults a proposal on it starts
        from (only tests that can be measured on that task)."""
        task = measurability.form_facts(ctx, TargetKind.CATEGORY.value).task
        return {
            "task": task,
            "task_defaults": {
                k.value: [t.to_dict() for t in default_acceptance_tests(k, task)] for k in TargetKind
            },
            "metrics": [
                {
                    "name": m.name,
                    "description": m.description,
                    "target_kinds": sorted(m.target_kinds),
                    "needs": list(m.needs),
                }
                for m in sorted(known_metrics().values(), key=lambda m: m.name)
            ],
            "comparators": list(COMPARATORS),
            "defaults": {k.value: [t.to_dict() for t in default_acceptance_tests(k)] for k in TargetKind},
        }

    @get("/methods", sync_to_thread=False)
    def methods(self) -> dict[str, Any]:
        """Unlearning methods a job may use, with their settings (type, default, bounds), and the default."""
        return {
            "methods": [contract.METHOD_SPECS[name].to_dict() for name in contract.method_names()],
            "default": contract.DEFAULT_METHOD,
        }
