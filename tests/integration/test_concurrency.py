"""Many clients vote and change votes at once on one proposal, against the real app served by uvicorn."""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlmodel import select

from governance.db.engine import read_session
from governance.db.models import CurrentVote, VoteRecord
from governance.domain.voting import VoteChoice, parse_vote, tally
from governance.schemas import ProposalCreate, ProposalPublic
from governance.services import proposals
from governance.services.context import Ctx
from tests.conftest import Person, add_person


def open_vote(ctx: Ctx, community: dict[str, Person], title: str) -> ProposalPublic:
    """A proposal that two reviewers sent to the member vote."""
    p = proposals.create(
        ctx,
        ProposalCreate(title=title, target={"kind": "category", "category": "spam"}, submit=True),
        community["ann"].actor,
    )
    for r in ("rev1", "rev2"):
        proposals.triage(ctx, p.id, community[r].actor, "approve", None)
    return p


def test_concurrent_votes_and_changes(ctx: Ctx, live_url: str, community: dict[str, Person]) -> None:
    voters = list(community.values()) + [add_person(ctx, f"voter{i}") for i in range(13)]
    p = open_vote(ctx, community, "Concurrent vote")

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


BAD_VOTES: list[tuple[str, dict[str, object]]] = [  # (proposal id in the path, body): each must fail alone
    ("2147483648", {"choice": "approve"}),  # beyond PostgreSQL's integer
    ("99999999999999999999999", {"choice": "approve"}),  # beyond SQLite's 64-bit integer
    ("{pid}", {"choice": "object", "reason": "bad\u0000reason"}),  # a NUL byte (PostgreSQL refuses it)
    ("{pid}", {"choice": "block", "reason": "x" * 5000}),  # longer than a reason may be
    ("{pid}", {"choice": "maybe"}),
    ("{pid}", {"choice": "approve", "reason": "\ud800"}),  # a lone surrogate, which no database encodes
]


def test_bad_votes_in_a_storm_fail_alone(ctx: Ctx, live_url: str, community: dict[str, Person]) -> None:
    """Votes are written in batches: a vote that cannot be stored is refused (4xx) before it joins one, and
    a batch that fails all the same is written again vote by vote, so every legitimate vote lands."""
    voters = list(community.values()) + [add_person(ctx, f"voter{i}") for i in range(13)]
    p = open_vote(ctx, community, "Storm with bad votes")

    def good(person: Person) -> list[int]:
        rng = random.Random(person.id)
        statuses = []
        with httpx.Client(base_url=live_url, headers=person.auth, timeout=60) as http:
            for _ in range(4):
                choice = rng.choice([c.value for c in VoteChoice])
                body = {"choice": choice, "reason": "because" if choice in ("object", "block") else ""}
                statuses.append(http.post(f"/api/v1/proposals/{p.id}/votes", json=body).status_code)
        return statuses

    def bad(person: Person) -> list[int]:
        statuses = []
        with httpx.Client(base_url=live_url, headers=person.auth, timeout=60) as http:
            for path_id, body in BAD_VOTES:
                url = f"/api/v1/proposals/{path_id.format(pid=p.id)}/votes"
                content = json.dumps(body).encode()  # the escapes (\u0000, \ud800) reach the server as sent
                headers = {"Content-Type": "application/json"}
                statuses.append(http.post(url, content=content, headers=headers).status_code)
        return statuses

    with ThreadPoolExecutor(max_workers=16) as pool:
        good_runs = [pool.submit(good, v) for v in voters]
        bad_runs = [pool.submit(bad, voters[i % len(voters)]) for i in range(2 * len(voters))]
        good_statuses = [s for f in good_runs for s in f.result()]
        bad_statuses = [s for f in bad_runs for s in f.result()]
    assert all(s == 200 for s in good_statuses), good_statuses
    assert all(400 <= s < 500 for s in bad_statuses), sorted(set(bad_statuses))
    with read_session(ctx.engine) as s:
        history = s.exec(select(VoteRecord).where(VoteRecord.proposal_id == p.id)).all()
        current = s.exec(select(CurrentVote).where(CurrentVote.proposal_id == p.id)).all()
    assert len(history) == 4 * len(voters)
    assert sorted(c.member_id for c in current) == sorted(v.id for v in voters)


def test_a_failing_batch_is_retried_vote_by_vote(
    ctx: Ctx, community: dict[str, Person], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should a vote get past the checks and fail the batch's transaction, it fails alone."""
    from governance.services import votes

    p = open_vote(ctx, community, "Isolation")
    monkeypatch.setattr(votes, "check_request", lambda r: parse_vote(r.choice, r.reason))  # checks skipped
    unstorable = 2**70 if ctx.engine.dialect.name == "sqlite" else 2**40
    requests = [votes.VoteRequest(p.id, community[h].actor, "approve") for h in ("ann", "bob", "cat")]
    requests.insert(1, votes.VoteRequest(unstorable, community["dan"].actor, "approve"))
    outcomes = votes.cast_isolated(ctx, requests)
    assert [o.vote is not None for o in outcomes] == [True, False, True, True]
    assert outcomes[1].error is not None
    assert proposals.get_tally(ctx, p.id).turnout == 3
