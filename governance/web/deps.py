"""Dependencies the handlers take: the service context, the caller, a read session, the settings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from litestar import Request
from litestar.datastructures import State
from sqlmodel import Session

from governance.db.engine import read_session
from governance.domain.review import ActorView
from governance.services import members
from governance.services.context import Ctx
from governance.settings import Settings
from governance.web.errors import NotAuthenticated


def provide_ctx(state: State) -> Ctx:
    ctx: Ctx = state.ctx
    return ctx


def provide_settings(state: State) -> Settings:
    settings: Settings = state.ctx.settings
    return settings


def provide_session(state: State) -> Iterator[Session]:
    with read_session(state.ctx.engine) as s:
        yield s


def bearer_token(request: Request[object, object, State]) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def session_actor(request: Request[Any, Any, Any]) -> ActorView:
    """The member signed in through the UI (set by its session middleware), or 401."""
    actor = request.scope.get("commons_actor")
    if isinstance(actor, ActorView):
        return actor
    raise NotAuthenticated("authentication required: send 'Authorization: Bearer <API token>'")


def provide_actor(request: Request[object, object, State]) -> ActorView:
    ctx: Ctx = request.app.state.ctx
    token = bearer_token(request)
    if token is None:
        return session_actor(request)
    actor = members.authenticate(ctx, token)
    if actor is None:
        raise NotAuthenticated("the API token is unknown or revoked")
    return actor
