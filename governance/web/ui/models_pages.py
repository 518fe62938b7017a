"""Model versions: the registry as a lineage tree, and a version's page with its state, lineage, the
verification report (the per-test verdict table, and the report's HTML with its plots embedded), the release
gate's verdict with its reasons (an allow that rests on a council override says so: "allow (override)", with
who granted it, when and why), and the release and override actions for those the registry allows."""

from __future__ import annotations

from typing import Any

from litestar import Controller, MediaType, Request, Response, get, post
from litestar.response import Redirect, Template

from governance.bounds import VersionRef, parse_id
from governance.domain.errors import InvalidInput, NotFound
from governance.domain.registry import ModelState
from governance.domain.review import ActorView
from governance.domain.roles import Role
from governance.registry_schemas import ModelVersionPublic, OverridePublic
from governance.services import browse, gate, jobs, registry
from governance.services.context import Ctx
from governance.web.ui.render import Form, field_errors, page, redirect

MODEL_STATES = [s.value for s in ModelState]
RELEASABLE = {ModelState.CANDIDATE.value, ModelState.VERIFIED.value}


def may_release(actor: ActorView, state: str, verdict: str) -> bool:
    """``gate.release``'s rule: the council or an admin, a version not yet released or rejected, and the
    gate's allow."""
    return bool({Role.COUNCIL, Role.ADMIN} & actor.roles) and state in RELEASABLE and verdict == "allow"


def may_override(
    actor: ActorView, state: str, granted: OverridePublic | None, open_override: OverridePublic | None
) -> bool:
    """``gate.override``'s rule: a council member, a version not yet released or rejected, no override
    granted for these bytes yet, and not one this member already approved."""
    return (
        Role.COUNCIL in actor.roles
        and state in RELEASABLE
        and granted is None
        and (open_override is None or actor.member_id not in open_override.approvals)
    )


def lineage_tree(rows: list[ModelVersionPublic]) -> list[dict[str, Any]]:
    """The versions as a forest: ``{"v": version, "children": [...]}``, roots (and orphans) first, newest
    children first. Each version appears once."""
    by_version = {r.version: r for r in rows}
    children: dict[str | None, list[ModelVersionPublic]] = {}
    for r in rows:
        parent = r.parent_version if r.parent_version in by_version else None
        children.setdefault(parent, []).append(r)

    def build(r: ModelVersionPublic, seen: set[str]) -> dict[str, Any]:
        seen = seen | {r.version}
        kids = [c for c in children.get(r.version, []) if c.version not in seen]
        return {"v": r, "children": [build(c, seen) for c in kids]}

    roots = sorted(children.get(None, []), key=lambda r: r.created_at)
    return [build(r, set()) for r in roots]


class ModelPages(Controller):
    path = "/models"
    include_in_schema = False

    @get("/", sync_to_thread=True)
    def list_page(self, request: Request[Any, Any, Any], ctx: Ctx, actor: ActorView) -> Template:
        state = (request.query_params.get("state") or "").strip()
        errors: dict[str, str] = {}
        if state and state not in MODEL_STATES:
            errors["state"] = f"one of {', '.join(MODEL_STATES)}"
            state = ""
        raw_pid = (request.query_params.get("proposal_id") or "").strip()
        proposal_id = parse_id(raw_pid)
        rows = registry.list_versions(ctx, limit=500)
        filtered = bool(state or proposal_id)
        shown = [
            r
            for r in rows
            if (not state or r.state == state) and (proposal_id is None or r.proposal_id == proposal_id)
        ]
        return page(
            request,
            "models/list.html",
            status_code=422 if errors else 200,
            rows=shown,
            tree=[] if filtered else lineage_tree(rows),
            state=state,
            proposal_id=proposal_id,
            states=MODEL_STATES,
            errors=errors,
        )

    def _detail(
        self,
        request: Request[Any, Any, Any],
        ctx: Ctx,
        actor: ActorView,
        version: VersionRef,
        status_code: int = 200,
        **extra: Any,
    ) -> Template:
        m = registry.get_version(ctx, version)
        verdict, reasons, covered = gate.preview(ctx, version)
        children = [r for r in registry.list_versions(ctx, limit=500) if r.parent_version == version]
        job = None
        job_id = parse_id(m.job_id[4:]) if m.job_id and m.job_id.startswith("job-") else None
        if job_id is not None:
            try:
                job = jobs.get(ctx, job_id)
            except NotFound:
                job = None
        report = m.report or {}
        # the overrides of these exact bytes (an override is granted for a content hash); the newest first
        overrides = [o for o in gate.overrides_of(ctx, version) if o.content_hash == m.content_hash][::-1]
        granted = next((o for o in overrides if o.state == "granted"), None)
        open_override = next((o for o in overrides if o.state == "open"), None)
        by_override = gate.decided_by_override(verdict, reasons)
        from governance.services import ledger

        contribution = ledger.contribution_or_none(ctx, version)  # each node's share, for a trained version
        return page(
            request,
            "models/detail.html",
            status_code=status_code,
            m=m,
            report=report,
            tests=report.get("tests") or [],
            regressions=report.get("regressions") or [],
            verdict=verdict,
            reasons=reasons,
            covered=covered,
            children=children,
            job=job,
            may_release=may_release(actor, m.state, verdict),
            verdict_label=f"{verdict} (override)" if by_override else verdict,
            contribution=contribution,
            by_override=by_override,
            overrides=overrides,
            granted=granted,
            open_override=open_override,
            may_override=may_override(actor, m.state, granted, open_override),
            names=browse.names(ctx, {i for o in overrides for i in (o.requested_by, *o.approvals)}),
            **extra,
        )

    @get("/{version:str}", sync_to_thread=True)
    def detail(
        self, request: Request[Any, Any, Any], ctx: Ctx, actor: ActorView, version: VersionRef
    ) -> Template:
        return self._detail(request, ctx, actor, version)

    @get("/{version:str}/report", sync_to_thread=True, media_type=MediaType.HTML)
    def report(self, ctx: Ctx, actor: ActorView, version: VersionRef) -> Response[str]:
        """The verification report's own page (inline SVG plots, no scripts), embedded in the version's page."""
        from unlearning.api import report_html_page

        m = registry.get_version(ctx, version)
        if m.report is None:
            raise NotFound(f"model version {version} has no verification report yet")
        html = report_html_page(ctx.settings.artifact_dir, m.report)  # rendered when it was stored
        # shown in a sandboxed frame of this site only
        headers = {
            "Content-Security-Policy": (
                "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'"
            )
        }
        return Response(html, media_type=MediaType.HTML, headers={**headers, "X-Frame-Options": "SAMEORIGIN"})

    @post("/{version:str}/override", sync_to_thread=True)
    def override(
        self, request: Request[Any, Any, Any], ctx: Ctx, actor: ActorView, form: Form, version: VersionRef
    ) -> Template | Redirect:
        """A council member proposes, or seconds, the override of the gate for this version (a written
        reason; granted at a council majority)."""
        try:
            over = gate.override(ctx, actor, version, form.get("reason"))
        except InvalidInput as exc:
            return self._detail(
                request,
                ctx,
                actor,
                version,
                422,
                errors={f"override.{exc.field or 'reason'}": exc.message},
                values={"override.reason": form.get("reason")},
            )
        if over.state == "granted":
            flash = f"The council's override of the gate for {version} is granted: the verdict is allow (override)."
        else:
            flash = (
                f"Your approval of the override is recorded ({len(over.approvals)} of {over.council_size} "
                "council members): a majority grants it."
            )
        return redirect(f"/models/{version}", flash=flash)

    @post("/{version:str}/release", sync_to_thread=True)
    def release(
        self, request: Request[Any, Any, Any], ctx: Ctx, actor: ActorView, version: VersionRef
    ) -> Template | Redirect:
        try:
            gate.release(ctx, actor, version)
        except InvalidInput as exc:
            return self._detail(request, ctx, actor, version, 422, errors=field_errors(exc))
        return redirect(f"/models/{version}", flash=f"{version} is released.")
