"""The audit browser: entries with filters, one entry with its inclusion proof (verified in the page by
static/audit-verify.js, and on the server), links to the export and the signed checkpoint. Public, like the
audit API: anyone may check the log."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.response import Template

from governance.bounds import Seq, parse_id
from governance.services import browse
from governance.services.context import Ctx
from governance.web.ui.render import page


class AuditPages(Controller):
    path = "/audit"
    include_in_schema = False

    @get("/", sync_to_thread=True)
    def list_page(self, request: Request[Any, Any, Any], ctx: Ctx) -> Template:
        q = request.query_params
        filters = {
            k: (q.get(k) or "").strip() for k in ("q", "action", "actor", "subject", "before", "after")
        }
        errors: dict[str, str] = {}
        before = after = None
        if filters["before"]:
            if filters["before"] == "0":
                before = 0
            elif (before := parse_id(filters["before"])) is None:
                errors["before"] = "a sequence number (0, 1, 2, …)"
        if filters["after"] and (after := parse_id(filters["after"])) is None and filters["after"] != "0":
            errors["after"] = "a sequence number (0, 1, 2, …)"  # the audit text filter's pages
        elif filters["after"] == "0":
            after = 0
        if len(filters["q"]) > 200:
            errors["q"] = "at most 200 characters"
        result = browse.audit_search(
            ctx,
            action=filters["action"] or None,
            actor=filters["actor"] or None,
            subject=filters["subject"] or None,
            before=before,
            text=filters["q"][:200] or None,
            after=after,
        )
        return page(
            request,
            "audit/list.html",
            status_code=422 if errors else 200,
            result=result,
            filters=filters,
            errors=errors,
        )

    @get("/{seq:int}", sync_to_thread=True)
    def entry(self, request: Request[Any, Any, Any], ctx: Ctx, seq: Seq) -> Template:
        return page(request, "audit/entry.html", e=browse.audit_entry(ctx, seq))
