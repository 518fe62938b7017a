"""Data sources (register, who targets them, withdraw consent), elections, members and roles (admin)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.response import Redirect, Template
from pydantic import ValidationError

from governance.bounds import Id, parse_id
from governance.domain.errors import InvalidInput, PermissionDenied
from governance.domain.proposals import TERMINAL_STATES, ProposalState
from governance.domain.review import ActorView
from governance.domain.roles import ELECTED_ROLES, Role
from governance.schemas import DataSourceCreate, MemberCreate, ProposalCreate
from governance.services import browse, data_sources, members, proposals
from governance.services.context import Ctx
from governance.web.ui.render import Form, field_errors, page, pydantic_errors, redirect
from governance.web.ui.security import invitation_token


class DataSourcePages(Controller):
    path = "/data-sources"
    include_in_schema = False

    def _list(
        self,
        request: Request[Any, Any, Any],
        ctx: Ctx,
        actor: ActorView,
        status_code: int = 200,
        **extra: Any,
    ) -> Template:
        rows = data_sources.list_all(ctx, limit=500)
        return page(
            request,
            "data_sources/list.html",
            status_code=status_code,
            rows=rows,
            names=browse.names(ctx, {d.owner_id for d in rows}),
            **extra,
        )

    @get("/", sync_to_thread=True)
    def list_page(self, request: Request[Any, Any, Any], ctx: Ctx, actor: ActorView) -> Template:
        return self._list(request, ctx, actor)

    @post("/", sync_to_thread=True)
    def register(
        self, request: Request[Any, Any, Any], ctx: Ctx, actor: ActorView, form: Form
    ) -> Template | Redirect:
        try:
            data = DataSourceCreate(
                name=form.get("name"),
                node_id=form.get("node_id"),
                content_hash=form.get("content_hash").lower(),
                description=form.get("description"),
            )
            created = data_sources.register(ctx, data, actor)
        except ValidationError as exc:
            errors = pydantic_errors(exc)
        except InvalidInput as exc:
            errors = field_errors(exc, "name")
        else:
            return redirect(
                f"/data-sources/{created.id}", flash=f"Data source {created.name!r} is registered."
            )
        return self._list(request, ctx, actor, 422, errors=errors, values=form.values())

    def _detail(
        self,
        request: Request[Any, Any, Any],
        ctx: Ctx,
        actor: ActorView,
        source_id: Id,
        status_code: int = 200,
        **extra: Any,
    ) -> Template:
        d = data_sources.get(ctx, source_id)
        targeting = data_sources.proposals_targeting(ctx, source_id)
        from governance.services import ledger

        source_ledger = ledger.data_source_ledger(ctx, source_id, proofs=False)
        return page(
            request,
            "data_sources/detail.html",
            status_code=status_code,
            d=d,
            proposals=targeting,
            names=browse.names(ctx, {d.owner_id, *(p.proposer_id for p in targeting)}),
            may_withdraw=d.owner_id == actor.member_id and d.consent_state == "granted",
            ledger=source_ledger,
            **extra,
        )

    @get("/{source_id:int}", sync_to_thread=True)
    def detail(self, request: Request[Any, Any, Any], ctx: Ctx, actor: ActorView, source_id: Id) -> Template:
        return self._detail(request, ctx, actor, source_id)

    @post("/{source_id:int}/withdraw-consent", sync_to_thread=True)
    def withdraw_consent(
        self, request: Request[Any, Any, Any], ctx: Ctx, actor: ActorView, form: Form, source_id: Id
    ) -> Template | Redirect:
        """The owner files a fast-track proposal: a reviewer confirms ownership, there is no member vote."""
        d = data_sources.get(ctx, source_id)
        try:
            p = proposals.create(
                ctx,
                ProposalCreate(
                    title=f"Withdraw consent for {d.name}"[:200],
                    target={"kind": "data_source", "data_source_id": source_id},
                    rationale=form.get("rationale"),
                    consent_withdrawal=True,
                    submit=True,
                ),
                actor,
            )
        except ValidationError as exc:
            return self._detail(request, ctx, actor, source_id, 422, errors=pydantic_errors(exc))
        except InvalidInput as exc:
            return self._detail(request, ctx, actor, source_id, 422, errors=field_errors(exc, "rationale"))
        return redirect(
            f"/proposals/{p.id}",
            flash="Consent withdrawal filed: a reviewer confirms your ownership, then the data is unlearned.",
        )


class ElectionPages(Controller):
    path = "/elections"
    include_in_schema = False

    def _list(
        self,
        request: Request[Any, Any, Any],
        ctx: Ctx,
        actor: ActorView,
        status_code: int = 200,
        **extra: Any,
    ) -> Template:
        rows = proposals.list_proposals(ctx, kind="election", limit=500)
        everyone = members.list_members(ctx, limit=500)
        voting = [p for p in rows if p.state == ProposalState.VOTING.value]
        pending = [
            p
            for p in rows
            if p.state != ProposalState.VOTING.value
            and p.state not in TERMINAL_STATES
            and p.state != ProposalState.APPROVED.value
        ]
        closed = [p for p in rows if p.state in TERMINAL_STATES or p.state == ProposalState.APPROVED.value]
        tallies = {p.id: proposals.get_tally(ctx, p.id) for p in closed if p.vote_outcome is not None}
        ids: set[int | None] = {p.election_candidate_id for p in rows} | {p.proposer_id for p in rows}
        return page(
            request,
            "elections.html",
            status_code=status_code,
            voting=voting,
            pending=pending,
            closed=closed,
            tallies=tallies,
            my_votes={p.id: browse.my_vote(ctx, p.id, actor.member_id) for p in voting},
            members=[m for m in everyone if m.active],
            roles=sorted(r.value for r in ELECTED_ROLES),
            names=browse.names(ctx, ids),
            **extra,
        )

    @get("/", sync_to_thread=True)
    def list_page(self, request: Request[Any, Any, Any], ctx: Ctx, actor: ActorView) -> Template:
        return self._list(request, ctx, actor)

    @post("/", sync_to_thread=True)
    def nominate(
        self, request: Request[Any, Any, Any], ctx: Ctx, actor: ActorView, form: Form
    ) -> Template | Redirect:
        role, candidate = form.get("role"), parse_id(form.get("candidate_id"))
        errors: dict[str, str] = {}
        if role not in {r.value for r in ELECTED_ROLES}:
            errors["role"] = "Choose the reviewer or council role."
        if candidate is None:
            errors["candidate_id"] = "Choose a candidate."
        if not errors and candidate is not None:
            try:
                handle = members.get_member(ctx, candidate).handle
                p = proposals.create(
                    ctx,
                    ProposalCreate(
                        kind="election",
                        title=f"Elect {handle} as {role}",
                        election={"role": role, "candidate_id": candidate},
                        rationale=form.get("rationale"),
                        secret_tally=form.checked("secret_tally"),
                        submit=True,
                    ),
                    actor,
                )
            except ValidationError as exc:
                errors = pydantic_errors(exc)
            except InvalidInput as exc:
                errors = {"candidate_id" if "candidate" in (exc.field or "") else "role": exc.message}
            else:
                return redirect(f"/proposals/{p.id}", flash="The nomination is submitted for triage.")
        return self._list(request, ctx, actor, 422, errors=errors, values=form.values())


class MemberPages(Controller):
    path = "/members"
    include_in_schema = False

    def _list(
        self,
        request: Request[Any, Any, Any],
        ctx: Ctx,
        actor: ActorView,
        status_code: int = 200,
        **extra: Any,
    ) -> Template:
        everyone = members.list_members(ctx, limit=500)
        grants = browse.role_grants(ctx, [m.id for m in everyone])
        granted_by = {g.granted_by for gs in grants.values() for g in gs}
        return page(
            request,
            "members.html",
            status_code=status_code,
            members=everyone,
            grants=grants,
            names=browse.names(ctx, {*(m.id for m in everyone), *granted_by}),
            all_roles=[r.value for r in Role],
            is_admin=Role.ADMIN in actor.roles,
            **extra,
        )

    @get("/", sync_to_thread=True)
    def list_page(self, request: Request[Any, Any, Any], ctx: Ctx, actor: ActorView) -> Template:
        return self._list(request, ctx, actor)

    @post("/", sync_to_thread=True)
    def add(self, request: Request[Any, Any, Any], ctx: Ctx, actor: ActorView, form: Form) -> Template:
        """An admin adds (invites) a member; the page shows their invitation link once."""
        if Role.ADMIN not in actor.roles:
            raise PermissionDenied("only an admin may manage members and roles")
        try:
            data = MemberCreate(
                handle=form.get("handle").lower(),
                display_name=form.get("display_name") or form.get("handle"),
                email=form.get("email") or None,
                roles=[r for r in form.getall("roles") if r],
            )
            m = members.add_member(ctx, data, actor)
        except ValidationError as exc:
            return self._list(request, ctx, actor, 422, errors=pydantic_errors(exc), values=form.values())
        except InvalidInput as exc:
            return self._list(
                request, ctx, actor, 422, errors=field_errors(exc, "handle"), values=form.values()
            )
        link = str(request.base_url).rstrip("/") + "/password/set?token=" + invitation_token(ctx, m.id)
        return self._list(request, ctx, actor, 201, invited=m, invitation=link)

    @post("/{member_id:int}/roles", sync_to_thread=True)
    def set_roles(
        self, request: Request[Any, Any, Any], ctx: Ctx, actor: ActorView, form: Form, member_id: Id
    ) -> Template | Redirect:
        try:
            m = members.set_roles(ctx, member_id, form.getall("roles"), actor)
        except InvalidInput as exc:
            return self._list(request, ctx, actor, 422, errors={f"roles.{member_id}": exc.message})
        return redirect("/members", flash=f"{m.handle}'s roles: {', '.join(m.roles)}.")

    @post("/{member_id:int}/invitation", sync_to_thread=True)
    def invitation(
        self, request: Request[Any, Any, Any], ctx: Ctx, actor: ActorView, member_id: Id
    ) -> Template:
        """A fresh link with which the member chooses a (new) password; it works once."""
        if Role.ADMIN not in actor.roles:
            raise PermissionDenied("only an admin may invite members")
        m = members.get_member(ctx, member_id)
        link = str(request.base_url).rstrip("/") + "/password/set?token=" + invitation_token(ctx, m.id)
        return self._list(request, ctx, actor, 201, invited=m, invitation=link)
