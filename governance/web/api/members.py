"""Members, roles and API tokens."""

from __future__ import annotations

from litestar import Controller, delete, get, post, put
from litestar.params import Parameter

from governance.bounds import Filter, Id, Offset
from governance.domain.review import ActorView
from governance.schemas import MemberCreate, MemberPublic, RolesUpdate, TokenCreate, TokenCreated, TokenPublic
from governance.services import members
from governance.services.context import Ctx


class MemberController(Controller):
    path = "/api/v1/members"
    tags = ["members"]

    @get("/", sync_to_thread=True)
    def list_members(
        self,
        ctx: Ctx,
        actor: ActorView,
        role: Filter = None,
        limit: int = Parameter(default=100, ge=1, le=500),
        offset: Offset = 0,
    ) -> list[MemberPublic]:
        return members.list_members(ctx, role=role, limit=limit, offset=offset)

    @post("/", sync_to_thread=True)
    def add_member(self, ctx: Ctx, actor: ActorView, data: MemberCreate) -> MemberPublic:
        """Admins add members (and may give them roles)."""
        return members.add_member(ctx, data, actor)

    @get("/me", sync_to_thread=True)
    def me(self, ctx: Ctx, actor: ActorView) -> MemberPublic:
        assert actor.member_id is not None
        return members.get_member(ctx, actor.member_id)

    @get("/{member_id:int}", sync_to_thread=True)
    def get_member(self, ctx: Ctx, actor: ActorView, member_id: Id) -> MemberPublic:
        return members.get_member(ctx, member_id)

    @put("/{member_id:int}/roles", sync_to_thread=True)
    def set_roles(self, ctx: Ctx, actor: ActorView, member_id: Id, data: RolesUpdate) -> MemberPublic:
        """Admins assign roles by hand; elections grant reviewer and council roles through proposals."""
        return members.set_roles(ctx, member_id, data.roles, actor)

    @get("/me/tokens", sync_to_thread=True)
    def my_tokens(self, ctx: Ctx, actor: ActorView) -> list[TokenPublic]:
        assert actor.member_id is not None
        return members.list_tokens(ctx, actor.member_id)

    @post("/me/tokens", sync_to_thread=True)
    def create_my_token(self, ctx: Ctx, actor: ActorView, data: TokenCreate) -> TokenCreated:
        """A new API token; the secret is in the response once and never again."""
        assert actor.member_id is not None
        return members.create_token(ctx, actor.member_id, data.name, actor)

    @post("/{member_id:int}/tokens", sync_to_thread=True)
    def create_token(self, ctx: Ctx, actor: ActorView, member_id: Id, data: TokenCreate) -> TokenCreated:
        """Admins create tokens for others (e.g. a CI pipeline's account)."""
        return members.create_token(ctx, member_id, data.name, actor)

    @delete("/me/tokens/{token_id:int}", status_code=200, sync_to_thread=True)
    def revoke_token(self, ctx: Ctx, actor: ActorView, token_id: Id) -> TokenPublic:
        return members.revoke_token(ctx, token_id, actor)
