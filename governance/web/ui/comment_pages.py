"""A comment's page (``/proposals/{id}/comments/{comment_id}``): the comment, its replies and its history, and
the forms the viewer may use: reply, edit, delete (its author), report (any other member), hide or dismiss the
reports (a reviewer). The reviewers' queue of reported comments is on the dashboard."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar import Controller, Request, get, post
from litestar.exceptions import NotFoundException
from litestar.response import Redirect, Template

from governance.bounds import Id
from governance.domain.errors import Conflict, InvalidInput
from governance.domain.review import ActorView
from governance.services import browse, comments
from governance.services.context import Ctx
from governance.web.ui.render import Form, page, redirect

# what each form does (the service call), and the message shown after it
ACTIONS: dict[str, Callable[[Ctx, int, int, ActorView, Form], Any]] = {
    "reply": lambda ctx, pid, cid, a, f: comments.add(ctx, pid, a, f.raw("body"), parent_id=cid),
    "edit": lambda ctx, pid, cid, a, f: comments.edit(ctx, pid, cid, a, f.raw("body")),
    "delete": lambda ctx, pid, cid, a, f: comments.delete(ctx, pid, cid, a),
    "report": lambda ctx, pid, cid, a, f: comments.report(ctx, pid, cid, a, f.raw("reason")),
    "hide": lambda ctx, pid, cid, a, f: comments.hide(ctx, pid, cid, a, f.raw("reason")),
    "dismiss": lambda ctx, pid, cid, a, f: comments.dismiss(ctx, pid, cid, a, f.raw("reason")),
}
DONE = {
    "reply": "Your reply is posted.",
    "edit": "Your comment is updated; its earlier text is kept in its history.",
    "delete": "Your comment is deleted.",
    "report": "Your report is sent to the reviewers.",
    "hide": "The comment is hidden; its reports are closed.",
    "dismiss": "The reports on this comment are dismissed.",
}
# where each form's field error is shown (the form's one text field)
FIELDS = {"reply": "body", "edit": "body", "report": "reason", "hide": "reason", "dismiss": "reason"}


class CommentPages(Controller):
    path = "/proposals/{proposal_id:int}/comments/{comment_id:int}"
    include_in_schema = False

    def _page(
        self,
        request: Request[Any, Any, Any],
        ctx: Ctx,
        actor: ActorView,
        proposal_id: int,
        comment_id: int,
        status_code: int = 200,
        **extra: Any,
    ) -> Template:
        t = comments.thread(ctx, proposal_id, comment_id, actor)
        ids: set[int | None] = {t.comment.author_id, *(r.author_id for r in t.replies)}
        return page(
            request,
            "comments/thread.html",
            status_code=status_code,
            t=t,
            c=t.comment,
            proposal_id=proposal_id,
            names=browse.names(ctx, ids),
            **extra,
        )

    @get("/", sync_to_thread=True)
    def show(
        self, request: Request[Any, Any, Any], ctx: Ctx, actor: ActorView, proposal_id: Id, comment_id: Id
    ) -> Template:
        return self._page(request, ctx, actor, proposal_id, comment_id)

    @post("/{action:str}", sync_to_thread=True)
    def act(
        self,
        request: Request[Any, Any, Any],
        ctx: Ctx,
        actor: ActorView,
        form: Form,
        proposal_id: Id,
        comment_id: Id,
        action: str,
    ) -> Template | Redirect:
        call = ACTIONS.get(action)
        if call is None:
            raise NotFoundException(f"there is no comment action {action!r}")
        try:
            result = call(ctx, proposal_id, comment_id, actor, form)
        except (InvalidInput, Conflict) as exc:  # shown on the form that was sent; nothing changed
            name = exc.field if isinstance(exc, InvalidInput) and exc.field else FIELDS.get(action, "form")
            return self._page(
                request,
                ctx,
                actor,
                proposal_id,
                comment_id,
                422 if isinstance(exc, InvalidInput) else 409,
                errors={f"{action}.{name}": exc.message},
                values={f"{action}.{k}": v for k, v in form.values().items()},
            )
        if action == "reply":
            return redirect(f"/proposals/{proposal_id}#comment-{result.id}", flash=DONE[action])
        return redirect(f"/proposals/{proposal_id}/comments/{comment_id}", flash=DONE[action])
