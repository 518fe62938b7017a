"""Proposal pages: the list with filters, the new-proposal form, the detail page with its timeline, tally,
discussion and exactly the actions the domain allows the viewer; one endpoint takes every action."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar import Controller, Request, get, post
from litestar.exceptions import NotFoundException
from litestar.response import Redirect, Template
from pydantic import ValidationError

from governance.bounds import Id, parse_id
from governance.domain.errors import InvalidInput, PermissionDenied
from governance.domain.metrics import COMPARATORS, known_metrics
from governance.domain.proposals import ProposalState, TargetKind, default_acceptance_tests, parse_target
from governance.domain.review import ActorView
from governance.schemas import ProposalCreate, ProposalUpdate
from governance.services import browse, comments, data_sources, measurability, proposals
from governance.services.context import Ctx
from governance.web import paging
from governance.web.ui import delegation_pages, nudge_pages, outcome_pages
from governance.web.ui.render import Form, field_errors, page, pydantic_errors, redirect
from unlearning.contract import DatasetFacts, cannot_measure, probe_test_id

TARGET_KINDS = [k.value for k in TargetKind]
PAGE_SIZE = 50  # proposals a list page shows
EXAMPLE_ROWS = 3
# the new-proposal form's fields that a link may prefill (``/proposals/new?target=category&category=3&...``)
PREFILLED = (
    "title",
    "category",
    "pattern",
    "rationale",
    "evidence",
    *(f"{part}_{i}" for i in range(1, EXAMPLE_ROWS + 1) for part in ("prompt", "completion")),
)
# the actions a person takes on this page, with the service call each one makes
ACTIONS: dict[str, Callable[[Ctx, int, ActorView, Form], Any]] = {
    "submit": lambda ctx, pid, a, f: proposals.submit(ctx, pid, a),
    "withdraw": lambda ctx, pid, a, f: proposals.withdraw(ctx, pid, a, f.get("reason") or None),
    "triage_approve": lambda ctx, pid, a, f: proposals.triage(ctx, pid, a, "approve", f.get("reason")),
    "triage_reject": lambda ctx, pid, a, f: proposals.triage(ctx, pid, a, "reject", f.get("reason")),
    "vote": lambda ctx, pid, a, f: proposals.vote(ctx, pid, a, f.get("choice"), f.get("reason")),
    "ratify": lambda ctx, pid, a, f: proposals.council(ctx, pid, a, "ratify", f.get("reason")),
    "veto": lambda ctx, pid, a, f: proposals.council(ctx, pid, a, "veto", f.get("reason")),
    "appeal": lambda ctx, pid, a, f: proposals.appeal(ctx, pid, a, f.get("reason")),
    "declare_conflict": lambda ctx, pid, a, f: proposals.declare_conflict(ctx, pid, a, f.get("reason")),
    "cancel": lambda ctx, pid, a, f: proposals.cancel(ctx, pid, a, f.get("reason")),
}
DONE = {
    "submit": "Submitted: reviewers will triage it.",
    "withdraw": "The proposal is withdrawn.",
    "triage_approve": "Your triage approval is recorded.",
    "triage_reject": "Your triage rejection is recorded; the appeal window is open.",
    "vote": "Your vote is recorded. You may change it until the deadline.",
    "ratify": "Your ratification is recorded.",
    "veto": "Your veto is recorded.",
    "appeal": "Your appeal goes to the council.",
    "declare_conflict": "Your conflict of interest is recorded: you are recused from reviewing it.",
    "cancel": "The proposal is cancelled.",
}


def metrics_for(kind: str, known: DatasetFacts | None = None) -> list[dict[str, Any]]:
    """Rows of the acceptance-test editor: every metric that applies to ``kind``, the defaults for the base
    model's task switched on; ``unmeasurable`` says why a row cannot be measured on this model and dataset."""
    known = known or DatasetFacts(target_kind=kind)
    defaults = {t.metric: t for t in default_acceptance_tests(TargetKind(kind), known.task)}
    rows = []
    for m in sorted(known_metrics().values(), key=lambda m: (m.name not in defaults, m.name)):
        if kind not in m.target_kinds:
            continue
        d = defaults.get(m.name)
        rows.append(
            {
                "name": m.name,
                "description": m.description,
                "use": d is not None,
                "comparator": d.comparator if d else "<=",
                "threshold": d.threshold if d else "",
                "relative": d.relative_to_reference if d else False,
                "unmeasurable": cannot_measure(m.name, known),
            }
        )
    return rows


def _tests_from_form(
    form: Form, kind: str, known: DatasetFacts | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, str]]:
    """(the tests to send, the editor rows to show again, errors by field). Every row keeps what the member
    typed, valid or not: a failed form never falls back to the defaults."""
    tests, rows, errors = [], [], {}
    for row in metrics_for(kind, known):
        name = row["name"]
        use = form.checked(f"test_{name}")
        row = {
            **row,
            "use": use,
            "comparator": form.get(f"cmp_{name}", "<="),
            "threshold": form.get(f"thr_{name}"),
            "relative": form.checked(f"rel_{name}"),
        }
        rows.append(row)
        if not use:
            continue
        if row["comparator"] not in COMPARATORS:
            errors[f"cmp_{name}"] = f"{name}: choose one of {', '.join(COMPARATORS)}"
        try:
            threshold = float(row["threshold"])
        except (TypeError, ValueError):
            errors[f"thr_{name}"] = f"{name}: the threshold must be a number, e.g. 0.05"
            continue
        if threshold != threshold or threshold in (float("inf"), float("-inf")):
            errors[f"thr_{name}"] = f"{name}: the threshold must be a finite number"
            continue
        tests.append(
            {
                "metric": name,
                "comparator": row["comparator"],
                "threshold": threshold,
                "relative_to_reference": row["relative"],
            }
        )
    if not tests and not errors:
        errors["acceptance_tests"] = "choose at least one acceptance test"
    return tests, rows, errors


def _draft_tests(ctx: Ctx, proposal_id: int, kind: str | None, tests: list[dict[str, Any]]) -> dict[str, Any]:
    """The acceptance-test editor of an unlearning draft: its rows as the draft has them, each marked when it
    cannot be measured on this model and dataset for the draft's target (nothing for an election)."""
    if kind not in TARGET_KINDS:
        return {}
    known = measurability.proposal_facts(ctx, proposal_id)
    voted = {str(t.get("metric")): t for t in tests}
    rows = []
    for row in metrics_for(kind, known):
        t = voted.get(row["name"])
        rows.append(
            {
                **row,
                "use": t is not None,
                "comparator": t["comparator"] if t else row["comparator"],
                "threshold": t["threshold"] if t else row["threshold"],
                "relative": bool(t.get("relative_to_reference")) if t else row["relative"],
            }
        )
    return {"kind": kind, "known": known, "tests": rows, "comparators": COMPARATORS}


def _target_from_form(form: Form, kind: str) -> dict[str, Any]:
    if kind == TargetKind.DATA_SOURCE.value:
        raw = form.get("data_source_id")
        return {"kind": kind, "data_source_id": parse_id(raw)}
    if kind == TargetKind.CATEGORY.value:
        return {"kind": kind, "category": form.get("category")}
    examples = []
    for i in range(1, EXAMPLE_ROWS + 1):
        prompt, completion = form.raw(f"prompt_{i}"), form.raw(f"completion_{i}")
        if prompt.strip() or completion.strip():
            examples.append({"prompt": prompt, "completion": completion})
    target: dict[str, Any] = {"kind": kind, "examples": examples}
    if form.get("pattern"):
        target["pattern"] = form.raw("pattern")
    return target


def _field_for(exc: InvalidInput, kind: str, tests: list[dict[str, Any]] | None = None) -> dict[str, str]:
    """Put a service error next to the input it is about (an acceptance test's next to its threshold)."""
    name = exc.field or "_form"
    for t in tests or []:
        if name.startswith("acceptance_tests") and str(t["metric"]) in exc.message:
            return {f"thr_{t['metric']}": exc.message}
    if name.startswith("target"):
        name = {
            "data_source": "data_source_id",
            "category": "category",
            "behaviour": "examples" if "pattern" not in name else "pattern",
        }[kind]
    elif name in ("metric", "acceptance_tests"):
        name = "acceptance_tests"
    return {name: exc.message}


#: an appeal hearing names its question and what each of the council's two answers does
#: (governance/domain/review.py, ``_council``): (question, the ratify button, the veto button)
HEARINGS: dict[str, tuple[str, str, str]] = {
    "rejected": (
        "An appeal of the triage rejection: should the members vote on it after all?",
        "Uphold the appeal: the member vote opens",
        "Dismiss the appeal: the rejection stands",
    ),
    "vetoed": (
        "An appeal of the council's veto: should the proposal be approved after all?",
        "Uphold the appeal: the proposal is approved",
        "Dismiss the appeal: the veto stands",
    ),
    "approved": (
        "An appeal of the approval: should the approval be overturned?",
        "Dismiss the appeal: the approval stands",
        "Uphold the appeal: the proposal is vetoed",
    ),
}


class ProposalPages(Controller):
    path = "/proposals"
    include_in_schema = False

    @get("/", sync_to_thread=True)
    def list_page(self, request: Request[Any, Any, Any], ctx: Ctx, actor: ActorView) -> Template:
        q = request.query_params
        state, target_kind, kind = (q.get(k) or "" for k in ("state", "target_kind", "kind"))
        mine = q.get("mine") in ("1", "on", "true")
        text = (q.get("q") or "").strip()
        offset = parse_id(q.get("offset") or "0") or 0  # list pages: PAGE_SIZE proposals a page
        filters = {"state": state, "target_kind": target_kind, "kind": kind, "mine": mine, "q": text}
        errors: dict[str, str] = {}
        try:
            rows = proposals.list_proposals(
                ctx,
                state=state or None,
                target_kind=target_kind or None,
                kind=kind or None,
                proposer_id=actor.member_id if mine else None,
                limit=PAGE_SIZE + 1,
                offset=offset,
                viewer_id=actor.member_id,
                q=text or None,
            )
        except InvalidInput as exc:
            rows, errors = [], field_errors(exc)
        kept: dict[str, object] = {**filters, "mine": "1" if mine else None}
        nav = paging.pages(
            "/proposals", kept, offset, PAGE_SIZE, min(len(rows), PAGE_SIZE), len(rows) > PAGE_SIZE
        )
        rows = rows[:PAGE_SIZE]
        return page(
            request,
            "proposals/list.html",
            status_code=422 if errors else 200,
            rows=rows,
            filters=filters,
            errors=errors,
            nav=nav,
            states=[s.value for s in ProposalState],
            target_kinds=TARGET_KINDS,
            names=browse.names(ctx, {p.proposer_id for p in rows}),
        )

    def _new_form(
        self,
        request: Request[Any, Any, Any],
        ctx: Ctx,
        actor: ActorView,
        kind: str,
        status_code: int = 200,
        **extra: Any,
    ) -> Template:
        sources = data_sources.list_all(ctx, limit=500)
        extra.setdefault("tests", metrics_for(kind, measurability.form_facts(ctx, kind)))
        return page(
            request,
            "proposals/new.html",
            status_code=status_code,
            kind=kind,
            target_kinds=TARGET_KINDS,
            my_sources=[d for d in sources if d.owner_id == actor.member_id],
            other_sources=[d for d in sources if d.owner_id != actor.member_id],
            categories=browse.known_categories(ctx),
            comparators=COMPARATORS,
            example_rows=EXAMPLE_ROWS,
            **extra,
        )

    @get("/new", sync_to_thread=True)
    def new_form(self, request: Request[Any, Any, Any], ctx: Ctx, actor: ActorView) -> Template:
        kind = request.query_params.get("target") or TargetKind.DATA_SOURCE.value
        if kind not in TARGET_KINDS:
            kind = TargetKind.DATA_SOURCE.value
        values = {"data_source_id": request.query_params.get("data_source_id") or ""}
        # prefilled from the query (a version page files a proposal from a failing group or probe in one click)
        values.update({k: v[:4000] for k in PREFILLED if (v := request.query_params.get(k))})
        if request.headers.get("hx-request") and request.query_params.get("part") == "tests":
            tests = metrics_for(kind, measurability.form_facts(ctx, kind))
            return page(request, "proposals/_tests.html", kind=kind, tests=tests, comparators=COMPARATORS)
        return self._new_form(request, ctx, actor, kind, values=values)

    @post("/new", sync_to_thread=True)
    def create(
        self, request: Request[Any, Any, Any], ctx: Ctx, actor: ActorView, form: Form
    ) -> Template | Redirect:
        kind = form.get("target_kind")
        if kind not in TARGET_KINDS:  # a forged kind is refused, not coerced into another
            kind = TargetKind.DATA_SOURCE.value
            return self._new_form(
                request,
                ctx,
                actor,
                kind,
                status_code=422,
                errors={"_form": f"unknown target kind {form.get('target_kind')!r}: choose one of the tabs"},
                values=form.values(),
            )
        # collect every problem at once: the tests, the target, then the rest of the form
        tests, rows, errors = _tests_from_form(form, kind, measurability.form_facts(ctx, kind))
        target = _target_from_form(form, kind) if form.get("data_source_id") or kind != "data_source" else {}
        try:
            parse_target(target or {"kind": kind})
        except InvalidInput as exc:
            errors.update(_field_for(exc, kind))
        try:
            data = ProposalCreate(
                title=form.get("title"),
                target=target,
                rationale=form.get("rationale"),
                evidence=form.get("evidence"),
                acceptance_tests=tests or None,
                secret_tally=form.checked("secret_tally"),
                submit=form.get("intent") == "submit",
            )
        except ValidationError as exc:
            errors.update(pydantic_errors(exc))
        if not errors:
            try:
                created = proposals.create(ctx, data, actor)
            except InvalidInput as exc:
                errors = _field_for(exc, kind, tests)
            else:
                what = "submitted" if created.state != ProposalState.DRAFT.value else "saved as a draft"
                return redirect(f"/proposals/{created.id}", flash=f"Proposal {created.id} is {what}.")
        return self._new_form(
            request, ctx, actor, kind, status_code=422, errors=errors, values=form.values(), tests=rows
        )

    def _detail(
        self,
        request: Request[Any, Any, Any],
        ctx: Ctx,
        actor: ActorView,
        proposal_id: Id,
        status_code: int = 200,
        **extra: Any,
    ) -> Template:
        p = proposals.get_detail(ctx, proposal_id, actor)
        from governance.web.ui.footprint_view import proposal_verdict  # the verdict box and its footprint

        extra = {**proposal_verdict(ctx, proposal_id, actor), **extra}
        hidden = bool(p.tally and p.tally.hidden)
        items = browse.timeline(ctx, proposal_id, hide_choices=hidden)
        talk = comments.list_for(ctx, proposal_id)
        source = None
        if p.target and p.target.get("data_source_id"):
            source = data_sources.get(ctx, int(p.target["data_source_id"]))
        ids: set[int | None] = {p.proposer_id, p.election_candidate_id, source.owner_id if source else None}
        ids.update(i.actor_id for i in items)
        ids.update(c.author_id for c in talk)
        ids.update(d.member_id for d in [*p.triage, *p.council])
        ids.update(p.conflicts)
        reasons = proposals.reasons_given(ctx, proposal_id)
        ids.update(v.member_id for v in reasons)
        for i in items:  # council decisions name their members: shown by handle
            for key in browse.MEMBER_KEYS:
                value = i.details.get(key)
                ids.update(value if isinstance(value, list) else [value] if isinstance(value, int) else [])
        return page(
            request,
            "proposals/detail.html",
            status_code=status_code,
            p=p,
            timeline=items,
            comments=talk,
            may_comment=comments.may_comment(p.state, actor),
            source=source,
            my_vote=browse.my_vote(ctx, proposal_id, actor.member_id),
            names=browse.names(ctx, ids),
            actions=set(p.allowed_actions),
            shown_actions=set(p.allowed_actions) & set(ACTIONS) | ({"edit"} & set(p.allowed_actions)),
            reasons=reasons,
            member_keys=browse.MEMBER_KEYS,
            recused=proposals.recusal_for(ctx, proposal_id, actor),
            hearing=HEARINGS.get(p.appeal_of or "") if p.state == "council_review" and p.appealed else None,
            **delegation_pages.poll_context(ctx, proposal_id, actor),
            **nudge_pages.context(ctx, p, actor),
            **outcome_pages.context(p),
            **extra,
        )

    @get("/{proposal_id:int}", sync_to_thread=True)
    def detail(
        self, request: Request[Any, Any, Any], ctx: Ctx, actor: ActorView, proposal_id: Id
    ) -> Template:
        return self._detail(request, ctx, actor, proposal_id)

    @get("/{proposal_id:int}/tally", sync_to_thread=True)
    def tally(self, request: Request[Any, Any, Any], ctx: Ctx, actor: ActorView, proposal_id: Id) -> Template:
        """The tally panel alone (htmx polls it while the vote is open)."""
        p = proposals.get_detail(ctx, proposal_id, actor)
        return page(request, "proposals/_tally.html", p=p)

    @post("/{proposal_id:int}/act/{action:str}", sync_to_thread=True)
    def act(
        self,
        request: Request[Any, Any, Any],
        ctx: Ctx,
        actor: ActorView,
        form: Form,
        proposal_id: Id,
        action: str,
    ) -> Template | Redirect:
        call = ACTIONS.get(action)
        if call is None:
            raise NotFoundException(f"there is no action {action!r}")
        try:
            result = call(ctx, proposal_id, actor, form)
        except InvalidInput as exc:  # shown next to the field of that action's form
            errors = {f"{action}.{exc.field or 'reason'}": exc.message}
            return self._detail(
                request,
                ctx,
                actor,
                proposal_id,
                422,
                errors=errors,
                values={f"{action}.{k}": v for k, v in form.values().items()},
            )
        flash = DONE[action]
        if action == "cancel" and getattr(result, "state", None) != "cancelled":
            flash = (
                "Your support for cancelling is recorded: a council majority cancels an approved proposal."
            )
        return redirect(f"/proposals/{proposal_id}", flash=flash)

    @post("/{proposal_id:int}/comments", sync_to_thread=True)
    def comment(
        self, request: Request[Any, Any, Any], ctx: Ctx, actor: ActorView, form: Form, proposal_id: Id
    ) -> Template | Redirect:
        try:
            comments.add(ctx, proposal_id, actor, form.raw("body"))
        except InvalidInput as exc:
            return self._detail(
                request,
                ctx,
                actor,
                proposal_id,
                422,
                errors={"comment.body": exc.message},
                values={"comment.body": form.raw("body")},
            )
        return redirect(f"/proposals/{proposal_id}#discussion", flash="Your comment is posted.")

    @get("/{proposal_id:int}/edit", sync_to_thread=True)
    def edit_form(
        self, request: Request[Any, Any, Any], ctx: Ctx, actor: ActorView, proposal_id: Id
    ) -> Template:
        p = proposals.get_detail(ctx, proposal_id, actor)
        if "edit" not in p.allowed_actions:
            raise PermissionDenied("only the proposer edits a proposal, and only while it is a draft")
        values = {"title": p.title, "rationale": p.rationale, "evidence": p.evidence}
        return page(
            request,
            "proposals/edit.html",
            p=p,
            values=values,
            secret=p.secret_tally,
            **_draft_tests(ctx, p.id, (p.target or {}).get("kind"), p.acceptance_tests),
        )

    @post("/{proposal_id:int}/edit", sync_to_thread=True)
    def edit(
        self, request: Request[Any, Any, Any], ctx: Ctx, actor: ActorView, form: Form, proposal_id: Id
    ) -> Template | Redirect:
        p = proposals.get_detail(ctx, proposal_id, actor)
        draft = _draft_tests(ctx, proposal_id, (p.target or {}).get("kind"), p.acceptance_tests)
        fields: dict[str, Any] = {}
        errors: dict[str, str] = {}
        if draft:  # an unlearning draft: its acceptance tests too (a probe's test is kept as it is)
            tests, draft["tests"], errors = _tests_from_form(form, draft["kind"], draft["known"])
            kept = [t for t in p.acceptance_tests if probe_test_id(str(t.get("metric"))) is not None]
            fields["acceptance_tests"] = tests + kept
        if not errors:
            try:
                data = ProposalUpdate(
                    title=form.get("title"),
                    rationale=form.get("rationale"),
                    evidence=form.get("evidence"),
                    secret_tally=form.checked("secret_tally"),
                    **fields,
                )
                proposals.update(ctx, proposal_id, data, actor)
            except ValidationError as exc:
                errors = pydantic_errors(exc)
            except InvalidInput as exc:
                errors = (
                    _field_for(exc, draft["kind"], fields["acceptance_tests"]) if draft else field_errors(exc)
                )
            else:
                return redirect(f"/proposals/{proposal_id}", flash="The draft is saved.")
        return page(
            request,
            "proposals/edit.html",
            status_code=422,
            p=p,
            values=form.values(),
            errors=errors,
            secret=form.checked("secret_tally"),
            **draft,
        )
