"""Who has not voted yet, on a proposal's page (reviewers and admins, while the vote is open), and the
"Remind them" button (governance.services.nudges)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, post
from litestar.response import Redirect

from governance.bounds import Id
from governance.domain.review import ActorView
from governance.schemas import ProposalDetail
from governance.services import nudges
from governance.services.context import Ctx
from governance.web.ui.render import Form, redirect


def context(ctx: Ctx, p: ProposalDetail, actor: ActorView) -> dict[str, Any]:
    """templates/proposals/_not_voted.html: the list, for reviewers and admins on an open vote."""
    if p.state != "voting" or not nudges.may_see(actor):
        return {"not_voted": None}
    return {"not_voted": nudges.not_voted(ctx, p.id, actor)}


class NudgePages(Controller):
    path = "/proposals"
    include_in_schema = False

    @post("/{proposal_id:int}/remind", sync_to_thread=True)
    def remind(
        self, request: Request[Any, Any, Any], ctx: Ctx, actor: ActorView, form: Form, proposal_id: Id
    ) -> Redirect:
        sent = nudges.remind(ctx, proposal_id, actor)
        flash = (
            f"Reminded {sent} member(s) who have not voted yet."
            if sent
            else "Nobody to remind: everyone who has not voted was already reminded today."
        )
        return redirect(f"/proposals/{proposal_id}#h-not-voted", flash=flash)
