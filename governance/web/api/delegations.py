"""Delegation: delegate your vote, revoke it, see what you give and what you carry; a proposal's tags and its
poll's delegation as you see it."""

from __future__ import annotations

from litestar import Controller, get, post, put

from governance.bounds import Id
from governance.delegation_schemas import (
    CarryPublic,
    DelegationCreate,
    DelegationPublic,
    DelegationsPublic,
    PollDelegationPublic,
    TagsIn,
)
from governance.domain.review import ActorView
from governance.services import delegation
from governance.services.context import Ctx


class DelegationController(Controller):
    path = "/api/v1"
    tags = ["delegation"]

    @post("/delegations", sync_to_thread=True)
    def create(self, ctx: Ctx, actor: ActorView, data: DelegationCreate) -> DelegationPublic:
        """Delegate your vote to another member, for everything (`scope: all`) or for a target kind, a
        category or a tag. Refused (409) when you already delegate that scope or when it would make a cycle."""
        return delegation.create(ctx, actor, data)

    @get("/delegations", sync_to_thread=True)
    def list_delegations(self, ctx: Ctx, actor: ActorView, revoked: bool = False) -> DelegationsPublic:
        """Your delegations (``revoked=true``: the revoked ones too) and the active ones made to you."""
        return delegation.list_for(ctx, actor, revoked)

    @post("/delegations/{delegation_id:int}/revoke", status_code=200, sync_to_thread=True)
    def revoke(self, ctx: Ctx, actor: ActorView, delegation_id: Id) -> DelegationPublic:
        """Revoke one of your delegations: it no longer counts, in open polls either."""
        return delegation.revoke(ctx, actor, delegation_id)

    @get("/delegations/carried", sync_to_thread=True)
    def carried(self, ctx: Ctx, actor: ActorView) -> CarryPublic:
        """The votes you carry: the delegations made to you and, per open poll, how many votes you cast for
        others (or would, by voting). Never what a delegator chose."""
        return delegation.carrying(ctx, actor)

    @get("/proposals/{proposal_id:int}/delegation", sync_to_thread=True)
    def poll(self, ctx: Ctx, actor: ActorView, proposal_id: Id) -> PollDelegationPublic:
        """Delegation in this proposal's poll, as you see it: the delegations that count, the votes you carry,
        whom your vote goes to unless you vote, and the proposal's tags."""
        return delegation.for_proposal(ctx, proposal_id, actor)

    @put("/proposals/{proposal_id:int}/tags", sync_to_thread=True)
    def set_tags(self, ctx: Ctx, actor: ActorView, proposal_id: Id, data: TagsIn) -> list[str]:
        """The proposer sets the proposal's tags until its vote opens (tag-scoped delegations follow them)."""
        return delegation.set_tags(ctx, proposal_id, actor, data.tags)
