"""The moderator's day (issue 19): a job's progress and outcome read plainly; proposals and the audit log can
be searched and paged; reviewers see who has not voted yet and remind them; rationales render links safely."""

from __future__ import annotations

import json
import re
import threading
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from governance.domain.clock import FixedClock
from governance.domain.errors import InvalidInput, InvalidTransition, PermissionDenied
from governance.jobs.worker import Worker
from governance.schemas import ProposalCreate
from governance.services import browse, events, jobs, nudges, proposals
from governance.services.context import Ctx
from governance.web.ui import proposals as ui_proposals
from governance.web.ui.markup import render_markdown
from tests.conftest import Person
from tests.integration.test_jobs import approved_proposal, fake_result, verifier
from tests.integration.test_ui_pages import sign_in
from unlearning import JobResult, ProgressEvent


def three_phase_runner(ctx: Ctx, claim: jobs.Claim, progress: Any, cancel: threading.Event) -> JobResult:
    progress(ProgressEvent("x", "info", 1, 1, {"nodes": 3.0}, 3))
    for r in (1, 2, 3):  # the nodes' replies carry their partition ids: a mean of them is no measurement
        progress(ProgressEvent("x", "ascent", r, 4, {"forget_loss": 2.5 + r, "partition-id": 1.0098}, 3))
    progress(ProgressEvent("x", "repair", 1, 1, {"retain_loss": 1.25, "node-id": 7.0}, 2))
    return fake_result(claim)


def test_a_jobs_progress_and_outcome_read_plainly(
    client: TestClient[Litestar], ctx: Ctx, clock: FixedClock, community: dict[str, Person]
) -> None:
    pid = approved_proposal(ctx, clock, community)
    (job,) = jobs.list_jobs(ctx, proposal_id=pid)
    Worker(ctx, "w1", runner=three_phase_runner, verifier=verifier(False)).run_once()
    done = jobs.get(ctx, job["id"])
    assert done["state"] == "succeeded" and done["progress"]["nodes_done"] == 2
    assert done["progress"]["nodes_total"] == 3 and done["progress"]["phase"] == "repair"

    sign_in(client, ctx, community["rev1"].id, "rev1")
    html = client.get(f"/jobs/{job['id']}").text
    assert "finished · verification failed" in html and ">succeeded<" not in html
    assert "partition-id" not in html and "node-id" not in html  # identifiers are not metrics
    assert "retain_loss" in html
    assert "1 of 3: unlearning" in html  # overall step of steps
    assert "2 of 3 node(s) answered" in html
    assert "round 1 of 1" not in html and "<progress" not in html  # a one-round phase has no bar


def test_a_running_phase_shows_round_of_rounds_nodes_and_time_left(
    client: TestClient[Litestar], ctx: Ctx, clock: FixedClock, community: dict[str, Person]
) -> None:
    pid = approved_proposal(ctx, clock, community)
    (job,) = jobs.list_jobs(ctx, proposal_id=pid)
    pages: list[str] = []
    sign_in(client, ctx, community["rev1"].id, "rev1")

    class Peek(Worker):  # the runner reads what the worker's heartbeat would store
        def _work(self, claim: jobs.Claim, live: Any) -> None:
            self.live = live
            super()._work(claim, live)

    def runner(ctx: Ctx, claim: jobs.Claim, progress: Any, cancel: threading.Event) -> JobResult:
        progress(ProgressEvent("x", "info", 1, 1, {"nodes": 3.0}, 3))
        progress(ProgressEvent("x", "ascent", 1, 4, {"forget_loss": 3.0}, 3))
        clock.advance(seconds=30)
        progress(ProgressEvent("x", "ascent", 2, 4, {"forget_loss": 4.0}, 3))
        jobs.heartbeat(ctx, claim.job_id, "w1", w.live.progress)
        pages.append(client.get(f"/jobs/{claim.job_id}/progress").text)
        return fake_result(claim)

    w = Peek(ctx, "w1", runner=runner, verifier=verifier(True))
    w.run_once()
    (page,) = pages
    assert "round 2 of 4" in page and "3 of 3 node(s) answered" in page and "<progress" in page
    assert "about 30 s left in this phase" in page  # 30 s for 2 rounds since the phase began: 2 more left
    assert "finished · verification passed" in client.get(f"/jobs/{job['id']}").text


# --- lists: search and pages -----------------------------------------------------------------------------


def _file(ctx: Ctx, who: Person, title: str, rationale: str = "", submit: bool = True) -> int:
    p = proposals.create(
        ctx,
        ProposalCreate(
            title=title, rationale=rationale, target={"kind": "category", "category": "spam"}, submit=submit
        ),
        who.actor,
    )
    return p.id


def test_proposals_are_searched_by_title_and_rationale(ctx: Ctx, community: dict[str, Person]) -> None:
    a = _file(ctx, community["ann"], "Forget the SPAM folder")
    b = _file(ctx, community["bob"], "Another one", rationale="It leaks Spam-like phrases")
    _file(ctx, community["cat"], "Unrelated", rationale="nothing here")
    draft = _file(ctx, community["dan"], "spam draft", submit=False)
    _file(ctx, community["cat"], "100% sure", rationale="a literal percent")
    found = [p.id for p in proposals.list_proposals(ctx, q="spam", viewer_id=community["ann"].id)]
    assert found == [b, a]  # newest first; another member's draft stays private
    assert draft in [p.id for p in proposals.list_proposals(ctx, q="SPAM", viewer_id=community["dan"].id)]
    assert [p.title for p in proposals.list_proposals(ctx, q="0%")] == ["100% sure"]  # % is no wildcard
    assert proposals.list_proposals(ctx, q="_") == []
    with pytest.raises(InvalidInput):
        proposals.list_proposals(ctx, q="x" * 201)


def test_the_api_pages_proposals_with_next_and_previous_links(
    client: TestClient[Litestar], ctx: Ctx, community: dict[str, Person]
) -> None:
    ids = [_file(ctx, community["ann"], f"Spam {i}") for i in range(5)]
    _file(ctx, community["ann"], "Other")
    auth = community["bob"].auth
    r = client.get("/api/v1/proposals", params={"q": "spam", "limit": 2}, headers=auth)
    assert r.status_code == 200 and [p["id"] for p in r.json()] == ids[::-1][:2]
    assert 'rel="next"' in r.headers["link"] and 'rel="prev"' not in r.headers["link"]
    seen = [p["id"] for p in r.json()]
    while 'rel="next"' in r.headers.get("link", ""):
        nxt = r.headers["link"].split(">")[0].lstrip("<")
        assert "q=spam" in nxt
        r = client.get(nxt, headers=auth)
        seen += [p["id"] for p in r.json()]
    assert seen == ids[::-1] and 'rel="prev"' in r.headers["link"]
    assert client.get("/api/v1/proposals", params={"q": "x" * 300}, headers=auth).status_code == 400


def test_the_proposals_page_searches_and_pages(
    client: TestClient[Litestar], ctx: Ctx, community: dict[str, Person], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ui_proposals, "PAGE_SIZE", 2)
    for i in range(3):
        _file(ctx, community["ann"], f"Canary {i}", rationale="remove it")
    _file(ctx, community["ann"], "Other thing")
    sign_in(client, ctx, community["rev1"].id, "rev1")
    html = client.get("/proposals", params={"q": "CANARY"}).text
    assert "Canary 2" in html and "Canary 1" in html and "Canary 0" not in html and "Other thing" not in html
    nxt = re.search(r'<a href="([^"]+)" rel="next">', html)
    assert nxt is not None and "q=CANARY" in nxt.group(1).replace("&amp;", "&")
    page2 = client.get(nxt.group(1).replace("&amp;", "&")).text
    assert (
        "Canary 0" in page2
        and "Canary 2" not in page2
        and 'rel="prev"' in page2
        and 'rel="next"' not in page2
    )
    bad = client.get("/proposals", params={"q": "x" * 201})
    assert bad.status_code == 422 and "at most 200 characters" in bad.text


def test_the_audit_log_is_searched_and_paged(
    client: TestClient[Litestar], ctx: Ctx, community: dict[str, Person]
) -> None:
    ids = [_file(ctx, community["ann"], f"Audit me {i}") for i in range(3)]
    first = browse.audit_search(ctx, subject=f"proposal:{ids[0]}")
    assert first.rows and all(r.subject == f"proposal:{ids[0]}" for r in first.rows)
    hits = browse.audit_search(ctx, text=f"PROPOSAL:{ids[1]}")
    assert hits.rows and all(f"proposal:{ids[1]}" in json.dumps(r.payload) + r.subject for r in hits.rows)
    everything = browse.audit_search(ctx, limit=200).rows
    p1 = browse.audit_search(ctx, limit=2)
    assert [r.seq for r in p1.rows] == [r.seq for r in everything[:2]] and p1.newer_after is None
    p2 = browse.audit_search(ctx, limit=2, before=p1.next_before)
    assert [r.seq for r in p2.rows] == [r.seq for r in everything[2:4]] and p2.newer_after == p2.rows[0].seq
    back = browse.audit_search(ctx, limit=2, after=p2.newer_after)
    assert [r.seq for r in back.rows] == [r.seq for r in p1.rows]
    html = client.get("/audit", params={"q": f"proposal:{ids[2]}"}).text
    assert f'href="/audit?subject=proposal:{ids[2]}"' in html and f"proposal:{ids[0]}<" not in html
    assert client.get("/audit", params={"after": "x"}).status_code == 422


# --- who has not voted yet ---------------------------------------------------------------------------------


def _voting(ctx: Ctx, people: dict[str, Person], title: str = "Remind us") -> int:
    pid = _file(ctx, people["ann"], title)
    for r in ("rev1", "rev2"):
        proposals.triage(ctx, pid, people[r].actor, "approve", None)
    assert proposals.get_detail(ctx, pid).state == "voting"
    return pid


def test_reviewers_see_who_has_not_voted_and_remind_them_once_a_day(
    ctx: Ctx, clock: FixedClock, community: dict[str, Person]
) -> None:
    pid = _voting(ctx, community)
    for h in ("ann", "bob", "rev3"):
        proposals.vote(ctx, pid, community[h].actor, "approve", None)
    rev = community["rev1"].actor
    silent = {n.handle for n in nudges.not_voted(ctx, pid, rev)}
    assert silent == set(community) - {"ann", "bob", "rev3"}
    with pytest.raises(PermissionDenied):
        nudges.not_voted(ctx, pid, community["dan"].actor)
    with pytest.raises(PermissionDenied):
        nudges.remind(ctx, pid, community["dan"].actor)
    assert nudges.remind(ctx, pid, rev) == len(silent)
    dan = events.list_notifications(ctx, community["dan"].id)
    assert any(n["kind"] == "vote_reminder" and f"#{pid}" in n["message"] for n in dan)
    assert not any(n["kind"] == "vote_reminder" for n in events.list_notifications(ctx, community["ann"].id))
    assert nudges.remind(ctx, pid, community["rev2"].actor) == 0  # the same day: nobody twice
    entries = browse.audit_search(ctx, action="proposal.voters_reminded").rows
    assert len(entries) == 1 and entries[0].actor == f"member:{community['rev1'].id}"
    assert sorted(entries[0].payload["members"]) == sorted(community[h].id for h in silent)
    clock.advance(days=1)
    proposals.vote(ctx, pid, community["dan"].actor, "abstain", None)
    assert nudges.remind(ctx, pid, rev) == len(silent) - 1  # the next day, those still silent
    other = _file(ctx, community["bob"], "Not open")
    with pytest.raises(InvalidTransition):
        nudges.remind(ctx, other, rev)


def test_the_not_voted_list_on_the_page_and_the_api(
    client: TestClient[Litestar], ctx: Ctx, community: dict[str, Person]
) -> None:
    pid = _voting(ctx, community)
    proposals.vote(ctx, pid, community["ann"].actor, "approve", None)
    r = client.get(f"/api/v1/proposals/{pid}/not-voted", headers=community["rev1"].auth)
    assert r.status_code == 200 and "ann" not in {n["handle"] for n in r.json()} and len(r.json()) == 10
    assert client.get(f"/api/v1/proposals/{pid}/not-voted", headers=community["dan"].auth).status_code == 403
    r = client.post(f"/api/v1/proposals/{pid}/remind", headers=community["rev1"].auth)
    assert r.status_code == 200 and r.json() == {"reminded": 10}
    assert client.post(f"/api/v1/proposals/{pid}/remind", headers=community["dan"].auth).status_code == 403
    token = sign_in(client, ctx, community["rev2"].id, "rev2")
    html = client.get(f"/proposals/{pid}").text
    assert "Not voted yet (10)" in html and "@dan" in html and "Remind them" in html
    r = client.post(f"/proposals/{pid}/remind", data={"csrf_token": token}, follow_redirects=True)
    assert r.status_code == 200 and "already reminded today" in r.text
    sign_in(client, ctx, community["dan"].id, "dan")
    assert "Not voted yet" not in client.get(f"/proposals/{pid}").text  # members do not see the list


# --- Markdown in rationales and evidence ------------------------------------------------------------------


def test_markdown_renders_safe_links_only() -> None:
    html = str(
        render_markdown(
            "A **bold** claim <script>alert(1)</script> <img src=x onerror=alert(1)>\n\n"
            "See https://example.org/a_b?c=1. Also [docs](http://docs.example/x) and [bad](javascript:alert(1))"
            " and [data](data:text/html,hi) and <ftp://files.example/>"
        )
    )
    assert "<strong>bold</strong>" in html and "<script" not in html and "<img" not in html
    assert "&lt;script&gt;" in html  # written HTML shows as text
    assert (
        '<a href="https://example.org/a_b?c=1" rel="nofollow noopener">https://example.org/a_b?c=1</a>.'
        in html
    )
    assert '<a href="http://docs.example/x" rel="nofollow noopener">docs</a>' in html
    assert "javascript:" not in html.split("[bad]")[0] and 'href="javascript' not in html
    assert 'href="data:' not in html and 'href="ftp:' not in html
    assert html.count("<p>") == 2


def test_a_proposals_rationale_and_evidence_render_links(
    client: TestClient[Litestar], ctx: Ctx, community: dict[str, Person]
) -> None:
    pid = proposals.create(
        ctx,
        ProposalCreate(
            title="Linked",
            rationale="Reported in https://forum.example/t/42 <b>loud</b>",
            evidence="[the log](https://logs.example/1) and [x](javascript:alert(1))",
            target={"kind": "category", "category": "spam"},
            submit=True,
        ),
        community["ann"].actor,
    ).id
    sign_in(client, ctx, community["bob"].id, "bob")
    html = client.get(f"/proposals/{pid}").text
    assert '<a href="https://forum.example/t/42" rel="nofollow noopener">' in html
    assert '<a href="https://logs.example/1" rel="nofollow noopener">the log</a>' in html
    assert "&lt;b&gt;loud&lt;/b&gt;" in html and 'href="javascript' not in html
