"""Many clients vote and change votes at once on one proposal, against the real app served by uvicorn."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import httpx
from sqlmodel import select

from governance.db.engine import read_session
from governance.db.models import CurrentVote, VoteRecord
from governance.domain.voting import VoteChoice, tally
from governance.schemas import ProposalCreate
from governance.services import proposals
from governance.services.context import Ctx
from tests.conftest import Person, add_person


def test_concurrent_votes_and_changes(ctx: Ctx, live_url: str, community: dict[str, Person]) -> None:
    voters = list(community.values()) + [add_person(ctx, f"voter{i}") for i in range(13)]
    p = proposals.create(
        ctx,
        ProposalCreate(title="Concurrent vote", target={"kind": "category", "category": "spam"}, submit=True),
        community["ann"].actor,
    )
    for r in ("rev1", "rev2"):
        proposals.triage(ctx, p.id, community[r].actor, "approve", None)

    choices = [c.value for c in VoteChoice]

    def run(person: Person) -> list[int]:
        rng = random.Random(person.id)
        statuses = []
        with httpx.Client(base_url=live_url, headers=person.auth, timeout=60) as http:
            for _ in range(4):
                choice = rng.choice(choices)
                body = {"choice": choice, "reason": "because" if choice in ("object", "block") else ""}
                statuses.append(http.post(f"/api/v1/proposals/{p.id}/votes", json=body).status_code)
        return statuses

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(run, voters))
    assert all(s == 200 for statuses in results for s in statuses), results

    with read_session(ctx.engine) as s:
        current = s.exec(select(CurrentVote).where(CurrentVote.proposal_id == p.id)).all()
        history = s.exec(
            select(VoteRecord).where(VoteRecord.proposal_id == p.id).order_by(VoteRecord.id)
        ).all()
    assert len(history) == 4 * len(voters)
    assert sorted(c.member_id for c in current) == sorted(v.id for v in voters)  # exactly one each
    latest: dict[int, str] = {}
    for rec in history:  # recount from the append-only history: the latest vote of each member counts
        latest[rec.member_id] = rec.choice
    assert {c.member_id: c.choice for c in current} == latest
    recount = tally((VoteChoice(c) for c in latest.values()), len(voters), ctx.policy.voting)
    served = proposals.get_tally(ctx, p.id)
    assert (served.approve, served.object, served.abstain, served.block) == (
        recount.approve,
        recount.object,
        recount.abstain,
        recount.block,
    )
