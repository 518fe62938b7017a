"""Who has not voted yet on an open vote, and reminding them (reviewers and admins; governance.services.nudges)."""

from __future__ import annotations

import msgspec
from litestar import Controller, get, post

from governance.bounds import Id
from governance.domain.review import ActorView
from governance.services import nudges
from governance.services.context import Ctx


class NotVotedOut(msgspec.Struct):
    member_id: int
    handle: str


class RemindedOut(msgspec.Struct):
    reminded: int  # members notified now (those already reminded today are skipped)


class NudgeController(Controller):
    path = "/api/v1/proposals"
    tags = ["proposals"]

    @get("/{proposal_id:int}/not-voted", sync_to_thread=True)
    def not_voted(self, ctx: Ctx, actor: ActorView, proposal_id: Id) -> list[NotVotedOut]:
        """The electors of an open vote who have not voted yet, by handle (reviewers and admins)."""
        return [NotVotedOut(n.member_id, n.handle) for n in nudges.not_voted(ctx, proposal_id, actor)]

    @post("/{proposal_id:int}/remind", status_code=200, sync_to_thread=True)
    def remind(self, ctx: Ctx, actor: ActorView, proposal_id: Id) -> RemindedOut:
        """Notify the electors who have not voted yet (each at most once a day per proposal); audited."""
        return RemindedOut(nudges.remind(ctx, proposal_id, actor))
