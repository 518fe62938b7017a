"""Delegation in the web UI: the section on a member's page (``/me``) and its own page (``/me/delegations``):
delegate your vote, revoke a delegation, see the votes you carry; the proposal page's delegation box."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.response import Redirect, Template
from pydantic import ValidationError

from governance.bounds import Id
from governance.delegation_schemas import DelegationCreate
from governance.domain.delegation import TOPIC_KINDS, ScopeKind
from governance.domain.errors import Conflict, InvalidInput
from governance.domain.review import ActorView
from governance.services import delegation
from governance.services.context import Ctx
from governance.web.ui.render import Form, field_errors, page, pydantic_errors, redirect, safe_next

SCOPES = [
    (ScopeKind.ALL.value, "everything"),
    (ScopeKind.TARGET_KIND.value, "a target kind"),
    (ScopeKind.CATEGORY.value, "a category"),
    (ScopeKind.TAG.value, "a tag"),
]


def me_context(ctx: Ctx, actor: ActorView) -> dict[str, Any]:
    """What the delegation section of ``/me`` shows (templates/delegation/_section.html)."""
    return {
        "delegation": delegation.list_for(ctx, actor),
        "carry": delegation.carrying(ctx, actor),
        "delegation_scopes": SCOPES,
        "topic_kinds": TOPIC_KINDS,
    }


def poll_context(ctx: Ctx, proposal_id: int, actor: ActorView) -> dict[str, Any]:
    """The proposal page's delegation box (templates/delegation/_poll.html)."""
    return {"poll_delegation": delegation.for_proposal(ctx, proposal_id, actor)}


class DelegationPages(Controller):
    path = "/me/delegations"
    include_in_schema = False

    def _page(
        self,
        request: Request[Any, Any, Any],
        ctx: Ctx,
        actor: ActorView,
        status_code: int = 200,
        **extra: Any,
    ) -> Template:
        return page(
            request, "delegation/manage.html", status_code=status_code, **me_context(ctx, actor), **extra
        )

    @get("/", sync_to_thread=True)
    def manage(self, request: Request[Any, Any, Any], ctx: Ctx, actor: ActorView) -> Template:
        return self._page(request, ctx, actor)

    @post("/", sync_to_thread=True)
    def create(
        self, request: Request[Any, Any, Any], ctx: Ctx, actor: ActorView, form: Form
    ) -> Template | Redirect:
        values = form.values()
        try:
            data = DelegationCreate(
                delegate=form.get("delegate") or None,
                scope=form.get("scope") or "all",
                scope_value=form.get("scope_value"),
            )
            d = delegation.create(ctx, actor, data)
        except ValidationError as exc:
            return self._page(request, ctx, actor, 422, errors=pydantic_errors(exc), values=values)
        except InvalidInput as exc:
            return self._page(request, ctx, actor, 422, errors=field_errors(exc, "delegate"), values=values)
        except Conflict as exc:  # a cycle, or a delegation for that scope already
            return self._page(request, ctx, actor, 409, errors={"delegate": exc.message}, values=values)
        flash = f"Your vote on {d.label} goes to @{d.delegate}, from the next poll that opens."
        return redirect(safe_next(form.get("next") or "/me/delegations"), flash=flash)

    @post("/{delegation_id:int}/revoke", sync_to_thread=True)
    def revoke(self, ctx: Ctx, actor: ActorView, form: Form, delegation_id: Id) -> Redirect:
        d = delegation.revoke(ctx, actor, delegation_id)
        back = "; your vote is yours again in open polls too" if d.open_polls_released else ""
        flash = f"Delegation to @{d.delegate} on {d.label} is revoked{back}."
        return redirect(safe_next(form.get("next") or "/me/delegations"), flash=flash)
