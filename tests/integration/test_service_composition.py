"""The composition root (governance/service.py): the background services of ``commons serve``, and the
deadline sweeper that closes what reads never close."""

from __future__ import annotations

from governance.domain.clock import FixedClock
from governance.jobs.sweeper import DeadlineSweeper
from governance.jobs.webhooks import Deliverer
from governance.jobs.worker import Worker
from governance.schemas import ProposalCreate
from governance.service import background_services
from governance.services import proposals
from governance.services.context import Ctx
from tests.conftest import Person


def test_serve_runs_a_sweeper_a_deliverer_and_an_embedded_worker(ctx: Ctx) -> None:
    kinds = [type(s) for s in background_services(ctx)]
    assert kinds == [DeadlineSweeper, Deliverer, Worker]
    ctx.settings.embedded_worker = False
    assert [type(s) for s in background_services(ctx)] == [DeadlineSweeper, Deliverer]


def test_the_sweeper_closes_a_vote_that_a_read_leaves_open(
    ctx: Ctx, clock: FixedClock, community: dict[str, Person]
) -> None:
    p = proposals.create(
        ctx,
        ProposalCreate(title="Forget spam", target={"kind": "category", "category": "spam"}, submit=True),
        community["bob"].actor,
    )
    for r in ("rev1", "rev2"):
        proposals.triage(ctx, p.id, community[r].actor, "approve", None)
    for h in ("ann", "cat", "dan", "bob", "rev3", "admin"):
        proposals.vote(ctx, p.id, community[h].actor, "approve", None)
    clock.advance(days=8)
    assert proposals.get_detail(ctx, p.id).state == "voting"  # reading changes nothing
    DeadlineSweeper(ctx).run_once()
    assert proposals.get_detail(ctx, p.id).state == "council_review"
