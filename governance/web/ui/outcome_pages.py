"""The outcome statement on a proposal's page: shown at the top once the decision closes, or who is expected to
write it; the form to write or revise it (governance.services.outcomes)."""

from __future__ import annotations

from typing import Any, cast

from litestar import Controller, Request, post
from litestar.response import Redirect, Template

from governance.bounds import Id
from governance.domain.errors import InvalidInput
from governance.domain.review import ActorView
from governance.schemas import ProposalDetail
from governance.services import outcomes
from governance.services.context import Ctx
from governance.web.ui.render import Form, redirect

FIELDS = ("decided", "reasons", "next_steps")


def context(p: ProposalDetail) -> dict[str, Any]:
    """templates/proposals/_outcome.html reads ``outcome`` (the API's detail carries it)."""
    return {"outcome": p.outcome}


class OutcomePages(Controller):
    path = "/proposals"
    include_in_schema = False

    @post("/{proposal_id:int}/outcome", sync_to_thread=True)
    def write(
        self, request: Request[Any, Any, Any], ctx: Ctx, actor: ActorView, form: Form, proposal_id: Id
    ) -> Template | Redirect:
        revise = form.get("revise") == "1"
        parts = {name: form.raw(name) for name in FIELDS}
        try:
            outcomes.write(ctx, proposal_id, actor, **parts, revise=revise)
        except InvalidInput as exc:  # shown next to its field; the form keeps what was typed
            from governance.web.ui.proposals import ProposalPages

            return ProposalPages._detail(
                cast(Any, self),  # _detail renders the page and reads nothing of its controller
                request,
                ctx,
                actor,
                proposal_id,
                422,
                errors={f"outcome.{exc.field or 'decided'}": exc.message},
                values={f"outcome.{k}": v for k, v in parts.items()},
            )
        flash = (
            "The outcome statement is revised; members are notified."
            if revise
            else ("The outcome statement is written; members are notified.")
        )
        return redirect(f"/proposals/{proposal_id}#outcome", flash=flash)
