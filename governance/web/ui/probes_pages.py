"""Evaluation probes in the UI: the list (the reviewers' triage queue first, then accepted and rejected probes),
the form a member submits one with, and the reviewers' accept / reject buttons. The probes' outcomes on a
candidate are on its version page (templates/models/_evaluation.html)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.response import Redirect, Template
from pydantic import ValidationError

from governance.bounds import Id
from governance.domain.errors import InvalidInput
from governance.domain.probes import ProbeAction
from governance.domain.review import ActorView
from governance.domain.roles import Role
from governance.evaluation_schemas import ProbeCreate
from governance.services import browse, probes
from governance.services.context import Ctx
from governance.web.ui.render import Form, field_errors, page, pydantic_errors, redirect


def spec_from_form(form: Form) -> dict[str, Any]:
    """A probe spec from the form's lines: ``prompt => forbidden completion`` (forbidden) or
    ``prompt A | prompt B | completion`` (paired, with a threshold); the library's checker judges the rest."""
    kind = form.get("kind")
    lines = [line.strip() for line in form.raw("lines").splitlines() if line.strip()]
    if kind == "forbidden":
        prompts: dict[str, list[str]] = {}
        for i, line in enumerate(lines, 1):
            prompt, sep, completion = line.partition("=>")
            if not sep or not completion.strip():
                raise InvalidInput(f"line {i}: write it as: prompt => forbidden completion", field="lines")
            prompts.setdefault(prompt.rstrip(" ") if prompt.strip() else "", []).append(completion.strip())
        return {"kind": "forbidden", "prompts": [{"prompt": p, "forbidden": f} for p, f in prompts.items()]}
    if kind == "paired":
        pairs = []
        for i, line in enumerate(lines, 1):
            parts = [p.strip() for p in line.split("|")]
            if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
                raise InvalidInput(f"line {i}: write it as: prompt A | prompt B | completion", field="lines")
            pair = {"a": parts[0], "b": parts[1]}
            if len(parts) == 3 and parts[2]:
                pair["completion"] = " " + parts[2]
            pairs.append(pair)
        try:
            threshold = float(form.get("threshold"))
        except ValueError:
            raise InvalidInput("a number of nats per token, e.g. 0.5", field="threshold") from None
        return {"kind": "paired", "pairs": pairs, "threshold": threshold}
    raise InvalidInput("choose forbidden completions or paired prompts", field="kind")


class ProbePages(Controller):
    path = "/probes"
    include_in_schema = False

    def _list(
        self,
        request: Request[Any, Any, Any],
        ctx: Ctx,
        actor: ActorView,
        status_code: int = 200,
        **extra: Any,
    ) -> Template:
        rows = probes.list_probes(ctx, limit=500)
        by_state = {s: [p for p in rows if p.state == s] for s in probes.STATES}
        ids = [*(p.submitted_by for p in rows), *(p.reviewed_by for p in rows)]
        extra.setdefault("values", {"kind": "forbidden", "threshold": "0.5"})
        return page(
            request,
            "probes/list.html",
            status_code=status_code,
            queue=by_state["submitted"],
            accepted=by_state["accepted"],
            rejected=by_state["rejected"],
            reviewer=Role.REVIEWER in actor.roles,
            names=browse.names(ctx, list[int | None](ids)),
            **extra,
        )

    @get("/", sync_to_thread=True)
    def list_page(self, request: Request[Any, Any, Any], ctx: Ctx, actor: ActorView) -> Template:
        return self._list(request, ctx, actor)

    @post("/", sync_to_thread=True)
    def submit(
        self, request: Request[Any, Any, Any], ctx: Ctx, actor: ActorView, form: Form
    ) -> Template | Redirect:
        errors: dict[str, str] = {}
        try:
            spec = spec_from_form(form)
            created = probes.submit(
                ctx,
                actor,
                ProbeCreate(title=form.get("title"), description=form.get("description"), spec=spec),
            )
        except ValidationError as exc:
            errors = pydantic_errors(exc)
        except InvalidInput as exc:
            errors = field_errors(exc, "lines")
            if exc.field == "spec":
                errors = {"lines": exc.message}
        else:
            return redirect(
                f"/probes#probe-{created.id}",
                flash=f"Probe #{created.id} is submitted: a reviewer accepts or rejects it.",
            )
        return self._list(request, ctx, actor, 422, errors=errors, values=form.values())

    @post("/{probe_id:int}/{decision:str}", sync_to_thread=True)
    def triage(
        self,
        request: Request[Any, Any, Any],
        ctx: Ctx,
        actor: ActorView,
        form: Form,
        probe_id: Id,
        decision: str,
    ) -> Template | Redirect:
        if decision not in ("accept", "reject"):
            return self._list(request, ctx, actor, 404, errors={"_form": f"no action {decision!r}"})
        try:
            p = probes.triage(ctx, actor, probe_id, ProbeAction(decision), form.get("reason"))
        except InvalidInput as exc:
            return self._list(
                request,
                ctx,
                actor,
                422,
                errors={f"reason-{probe_id}": exc.message},
                values={f"reason-{probe_id}": form.get("reason")},
            )
        return redirect(f"/probes#probe-{p.id}", flash=f"Probe #{p.id} is {p.state}.")
