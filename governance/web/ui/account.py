"""The dashboard (what needs me now: proposals, running jobs, candidates awaiting release, unread
notifications), a member's own page (password, API tokens) and their in-app notifications."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.response import Redirect, Template

from governance.bounds import Id
from governance.domain.errors import InvalidInput
from governance.domain.jobs import FINAL_JOB_STATES, JobState
from governance.domain.registry import ModelState
from governance.domain.review import ActorView
from governance.services import auth, browse, events, gate, jobs, members, outcomes, registry, training
from governance.services.context import Ctx
from governance.web.ui import delegation_pages
from governance.web.ui.render import Form, field_errors, page, redirect, safe_next
from governance.web.ui.security import session_cookie


class AccountPages(Controller):
    path = "/"
    include_in_schema = False

    @get("/", sync_to_thread=True)
    def dashboard(self, request: Request[Any, Any, Any], ctx: Ctx, actor: ActorView) -> Template:
        assert actor.member_id is not None
        board = browse.dashboard(ctx, actor)
        ids: set[int | None] = set()
        for group in (board.triage, board.votes_to_cast, board.council, board.appeals, board.mine_open):
            ids.update(p.proposer_id for p in group)
        running = [j for j in jobs.list_jobs(ctx, limit=100) if JobState(j["state"]) not in FINAL_JOB_STATES]
        awaiting = [
            v
            for v in registry.list_versions(ctx, limit=200)
            if v.state in (ModelState.CANDIDATE.value, ModelState.VERIFIED.value)
        ][:20]
        verdicts = {v.version: gate.preview(ctx, v.version)[0] for v in awaiting}
        unread = events.list_notifications(ctx, actor.member_id, unread_only=True)
        return page(
            request,
            "dashboard.html",
            board=board,
            names=browse.names(ctx, ids),
            running_jobs=running,
            awaiting_release=awaiting,
            verdicts=verdicts,
            notifications=unread[:10],
            unread_count=len(unread),
            preparing=training.preparing(ctx),
            outcomes_due=outcomes.due(ctx, actor),
        )

    @get("/notifications", sync_to_thread=True)
    def notifications(self, request: Request[Any, Any, Any], ctx: Ctx, actor: ActorView) -> Template:
        assert actor.member_id is not None
        rows = events.list_notifications(ctx, actor.member_id)
        return page(request, "notifications.html", rows=rows, unread=sum(1 for n in rows if not n["read_at"]))

    @post("/notifications/{notification_id:int}/read", sync_to_thread=True)
    def mark_read(self, ctx: Ctx, actor: ActorView, form: Form, notification_id: Id) -> Redirect:
        assert actor.member_id is not None
        events.mark_read(ctx, actor.member_id, notification_id)
        return redirect(safe_next(form.get("next") or "/notifications"))

    @post("/notifications/read-all", sync_to_thread=True)
    def mark_all_read(self, ctx: Ctx, actor: ActorView, form: Form) -> Redirect:
        assert actor.member_id is not None
        unread = events.list_notifications(ctx, actor.member_id, unread_only=True)
        for n in unread:
            events.mark_read(ctx, actor.member_id, n["id"])
        return redirect(safe_next(form.get("next") or "/notifications"), flash=f"{len(unread)} marked read.")

    def _me(
        self,
        request: Request[Any, Any, Any],
        ctx: Ctx,
        actor: ActorView,
        status_code: int = 200,
        **extra: Any,
    ) -> Template:
        assert actor.member_id is not None
        me = members.get_member(ctx, actor.member_id)
        grants = browse.role_grants(ctx, [me.id]).get(me.id, [])
        tokens = members.list_tokens(ctx, me.id)
        from governance.services import ledger

        ledgers = ledger.member_ledgers(ctx, me.id)  # is each of your data sources in the released model
        return page(
            request,
            "me.html",
            status_code=status_code,
            member=me,
            grants=grants,
            tokens=tokens,
            ledgers=ledgers,
            **delegation_pages.me_context(ctx, actor),
            **extra,
        )

    @get("/me", sync_to_thread=True)
    def me(self, request: Request[Any, Any, Any], ctx: Ctx, actor: ActorView) -> Template:
        return self._me(request, ctx, actor)

    @post("/me/tokens", sync_to_thread=True)
    def create_token(
        self, request: Request[Any, Any, Any], ctx: Ctx, actor: ActorView, form: Form
    ) -> Template:
        assert actor.member_id is not None
        try:
            created = members.create_token(ctx, actor.member_id, form.get("name"), actor)
        except InvalidInput as exc:
            return self._me(request, ctx, actor, 422, errors=field_errors(exc, "name"), values=form.values())
        # the secret is in this response only; a reload shows the list without it
        return self._me(request, ctx, actor, 201, created=created)

    @post("/me/tokens/{token_id:int}/revoke", sync_to_thread=True)
    def revoke_token(self, ctx: Ctx, actor: ActorView, token_id: Id) -> Redirect:
        t = members.revoke_token(ctx, token_id, actor)
        return redirect("/me", flash=f"Token {t.name!r} ({t.prefix}…) is revoked.")

    @post("/me/password", sync_to_thread=True)
    def change_password(
        self, request: Request[Any, Any, Any], ctx: Ctx, actor: ActorView, form: Form
    ) -> Template | Redirect:
        assert actor.member_id is not None
        new, again = form.raw("new_password"), form.raw("new_password_again")
        if new != again:
            return self._me(
                request, ctx, actor, 422, errors={"new_password_again": "The two passwords differ."}
            )
        try:
            auth.check_password_rules(new, field="new_password")
            fp = auth.change_password(ctx, actor, form.raw("current_password"), new)
        except InvalidInput as exc:
            return self._me(request, ctx, actor, 422, errors=field_errors(exc, "new_password"))
        # every other session ended with the old password; this one continues with the new fingerprint
        cookie = session_cookie(request, auth.SignedIn(actor.member_id, fp))
        return redirect("/me", flash="Your password is changed.", cookies=[cookie])
