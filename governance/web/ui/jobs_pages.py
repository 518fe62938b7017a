"""Unlearning jobs: the list with a state filter, and a job's page with its live progress (htmx polls a small
fragment while the job runs; the JSON API's ``/api/v1/jobs/{id}/events`` streams the same as server-sent
events), attempts with their settings, cost, error, and the cancel (council, admin) and retry (reviewers)
actions when the job allows them. The services enforce who may do what; the page offers only that."""

from __future__ import annotations

import json
from typing import Any

from litestar import Controller, Request, get, post
from litestar.response import Redirect, Template

from governance.bounds import Id, parse_id
from governance.domain import job_progress
from governance.domain.errors import InvalidInput, NotFound
from governance.domain.jobs import FINAL_JOB_STATES, JobState, may_cancel, may_retry
from governance.domain.proposals import ProposalState
from governance.domain.review import ActorView
from governance.services import jobs, proposals
from governance.services.context import Ctx
from governance.web.ui.footprint_view import job_footprint
from governance.web.ui.render import Form, field_errors, page, redirect
from unlearning import contract

JOB_STATES = [s.value for s in JobState]
POLL_SECONDS = 2


def is_final(state: str) -> bool:
    return JobState(state) in FINAL_JOB_STATES


def job_actions(job: dict[str, Any], proposal_state: str | None, actor: ActorView) -> set[str]:
    """What the viewer may do with this job now (the domain's rules, which the services enforce)."""
    state = JobState(job["state"])
    out = set()
    if may_cancel(state, actor.roles):
        out.add("cancel")
    if may_retry(
        state,
        proposal_state == ProposalState.VERIFICATION_FAILED.value,
        actor.roles,
        proposal_state == ProposalState.JOB_FAILED.value,
    ):
        out.add("retry")
    return out


def progress_view(ctx: Ctx, job: dict[str, Any]) -> dict[str, Any]:
    """The job's progress record as the page shows it (governance.domain.job_progress): step of steps, phase,
    round of rounds, nodes done, time left, the metrics so far (identifiers left out), the outcome's words."""
    spec = job.get("spec") or {}
    with_reference = bool(ctx.settings.verify_with_reference and spec.get("target"))
    facts = job_progress.progress_facts(
        job.get("progress"), kind=spec.get("kind"), with_reference=with_reference, now=ctx.clock.now()
    )
    return {**facts, "outcome": job_progress.outcome(job["state"], job_progress.verdict_of(job))}


def cost_view(cost: dict[str, Any] | None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the scalar figures, the per-round rows) of a job's cost record."""
    cost = cost or {}
    rounds = [r for r in cost.get("rounds") or [] if isinstance(r, dict)]
    return {k: v for k, v in cost.items() if k != "rounds" and not isinstance(v, dict | list)}, rounds


class JobPages(Controller):
    path = "/jobs"
    include_in_schema = False

    @get("/", sync_to_thread=True)
    def list_page(self, request: Request[Any, Any, Any], ctx: Ctx, actor: ActorView) -> Template:
        state = (request.query_params.get("state") or "").strip()
        raw_pid = (request.query_params.get("proposal_id") or "").strip()
        proposal_id = parse_id(raw_pid)
        errors: dict[str, str] = {}
        try:
            rows = jobs.list_jobs(ctx, state=state or None, proposal_id=proposal_id, limit=200, viewer=actor)
        except InvalidInput as exc:
            rows, errors = [], field_errors(exc)
        return page(
            request,
            "jobs/list.html",
            status_code=422 if errors else 200,
            rows=rows,
            state=state,
            proposal_id=proposal_id,
            states=JOB_STATES,
            errors=errors,
        )

    def _detail(
        self,
        request: Request[Any, Any, Any],
        ctx: Ctx,
        actor: ActorView,
        job_id: Id,
        status_code: int = 200,
        **extra: Any,
    ) -> Template:
        job = jobs.get(ctx, job_id, actor)
        proposal = None
        if job["proposal_id"] is not None:
            try:
                proposal = proposals.get_detail(ctx, job["proposal_id"], actor)
            except NotFound:
                proposal = None
        scalars, rounds = cost_view(job["cost"])
        actions = job_actions(job, proposal.state if proposal else None, actor)
        report = job.get("report") or {}
        return page(
            request,
            "jobs/detail.html",
            status_code=status_code,
            job=job,
            proposal=proposal,
            progress=progress_view(ctx, job),
            final=is_final(job["state"]),
            cost=scalars,
            cost_rounds=rounds,
            fp=job_footprint(job),
            tests=report.get("tests") or [],
            summary=report.get("summary"),
            actions=actions,
            methods=contract.method_names() if "retry" in actions else [],
            poll=POLL_SECONDS,
            **extra,
        )

    @get("/{job_id:int}", sync_to_thread=True)
    def detail(self, request: Request[Any, Any, Any], ctx: Ctx, actor: ActorView, job_id: Id) -> Template:
        return self._detail(request, ctx, actor, job_id)

    @get("/{job_id:int}/progress", sync_to_thread=True)
    def progress(self, request: Request[Any, Any, Any], ctx: Ctx, actor: ActorView, job_id: Id) -> Template:
        """The live part of the job's page alone (htmx polls it until the job is final). When the job became
        final since the page was drawn (``?was=<state>``), htmx reloads the whole page: its actions change."""
        job = jobs.get(ctx, job_id, actor)
        final = is_final(job["state"])
        was = request.query_params.get("was")
        response = page(
            request,
            "jobs/_progress.html",
            job=job,
            progress=progress_view(ctx, job),
            final=final,
            poll=POLL_SECONDS,
        )
        if request.headers.get("hx-request") and final and was and was != job["state"]:
            response.headers["HX-Refresh"] = "true"
        return response

    @post("/{job_id:int}/cancel", sync_to_thread=True)
    def cancel(
        self, request: Request[Any, Any, Any], ctx: Ctx, actor: ActorView, form: Form, job_id: Id
    ) -> Template | Redirect:
        try:
            done = jobs.request_cancel(ctx, job_id, actor, form.get("reason"))
        except InvalidInput as exc:
            return self._detail(
                request,
                ctx,
                actor,
                job_id,
                422,
                errors={f"cancel.{exc.field or 'reason'}": exc.message},
                values={f"cancel.{k}": v for k, v in form.values().items()},
            )
        if done.get("cancellation") == "supported":
            flash = (
                "Your support for cancelling is recorded: a council majority cancels an approved proposal."
            )
        else:
            flash = "Cancellation requested: the job stops at its next round boundary."
        return redirect(f"/jobs/{job_id}", flash=flash)

    @post("/{job_id:int}/retry", sync_to_thread=True)
    def retry(
        self, request: Request[Any, Any, Any], ctx: Ctx, actor: ActorView, form: Form, job_id: Id
    ) -> Template | Redirect:
        errors: dict[str, str] = {}
        config: dict[str, Any] | None = None
        raw = form.raw("method_config").strip()
        if raw:
            try:
                config = json.loads(raw)
            except ValueError as exc:
                errors["retry.method_config"] = f"not valid JSON: {exc}"
            else:
                if not isinstance(config, dict):
                    errors["retry.method_config"] = 'a JSON object, e.g. {"repair_rounds": 5}'
        method = form.get("method") or None
        if not errors:
            try:  # the service validates the method and its settings (the contract's rules)
                jobs.retry(ctx, job_id, actor, config, method)
            except InvalidInput as exc:
                errors[f"retry.{exc.field or 'method_config'}"] = exc.message
            else:
                return redirect(f"/jobs/{job_id}", flash="The job is queued again with these settings.")
        return self._detail(
            request,
            ctx,
            actor,
            job_id,
            422,
            errors=errors,
            values={f"retry.{k}": v for k, v in form.values().items()},
        )
