"""The outcome statement (issue 19, as Loomio's): when a decision closes, its author or a council member (the
reviewers, for a triage rejection that stood) writes what was decided, why and what happens next; it is kept
with its history, audited, notified to members, served by the API, the CLI and the proposal page (here in
chromium), and bad input changes nothing. On SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import func
from sqlmodel import select

from governance.audit import log as audit_log
from governance.cli import main
from governance.cli.common import ApiContext
from governance.client import CommonsClient
from governance.db.engine import read_session
from governance.db.models import Notification, WebhookDelivery
from governance.db.outcomes import OutcomeStatement
from governance.domain.clock import FixedClock
from governance.schemas import ProposalCreate
from governance.services import auth, events, outcomes, proposals
from governance.services.context import Ctx
from tests.conftest import PassTime, Person
from tests.integration.test_jobs import approved_proposal
from tests.integration.test_ui_browser import browser  # noqa: F401  (the chromium fixture)

STATEMENT = {
    "decided": "Spam is forgotten from the model.",
    "reasons": "Members approved it 6 to 0 and the council ratified.",
    "next_steps": "The unlearning job runs; the verified version is released next week.",
}


def _filed(ctx: Ctx, who: Person, title: str = "Forget the spam folder") -> int:
    p = proposals.create(
        ctx,
        ProposalCreate(title=title, target={"kind": "category", "category": "spam"}, submit=True),
        who.actor,
    )
    return p.id


def _rejected_at_triage(ctx: Ctx, community: dict[str, Person], pass_time: PassTime) -> int:
    pid = _filed(ctx, community["bob"])
    proposals.triage(ctx, pid, community["rev1"].actor, "reject", "out of scope for this community")
    pass_time(days=ctx.settings.appeal_days, seconds=1)  # the appeal window closes unappealed
    assert proposals.get_detail(ctx, pid).state == "rejected"
    return pid


def _saved(ctx: Ctx, pid: int) -> tuple[int, int, int, int]:
    """What a refused write must leave untouched: statements, audit entries, notifications, deliveries."""
    with read_session(ctx.engine) as s:
        rows = s.exec(select(func.count()).where(OutcomeStatement.proposal_id == pid)).one()
        audited = len(audit_log.entries_for_subject(s, f"proposal:{pid}"))
        notes = s.exec(select(func.count()).select_from(Notification)).one()
        sent = s.exec(select(func.count()).select_from(WebhookDelivery)).one()
        return int(rows), audited, int(notes), int(sent)


def _notes(ctx: Ctx, who: Person) -> list[str]:
    return [n["message"] for n in events.list_notifications(ctx, who.id) if n["kind"] == "outcome"]


def test_the_author_writes_it_a_council_member_revises_it_and_members_are_told(
    client: TestClient[Litestar], ctx: Ctx, clock: FixedClock, community: dict[str, Person]
) -> None:
    events.add_webhook(ctx, "https://hooks.example/outcome", ["proposal.outcome_written"])
    pid = approved_proposal(ctx, clock, community)
    bob, coun1, ann = community["bob"], community["coun1"], community["ann"]

    before = client.get(f"/api/v1/proposals/{pid}", headers=ann.auth).json()["outcome"]
    assert before["closed"] is True and before["statement"] is None and before["may_write"] is False
    assert before["expected_from"] == "its author @bob or a council member (@coun1, @coun2, @coun3)"
    assert sorted(before["writer_ids"]) == sorted(
        [bob.id, coun1.id, community["coun2"].id, community["coun3"].id]
    )
    assert client.get(f"/api/v1/proposals/{pid}/outcome", headers=bob.auth).json()["may_write"] is True

    due = {
        h: [d.proposal_id for d in outcomes.due(ctx, community[h].actor)]
        for h in ("bob", "coun2", "ann", "rev1")
    }
    assert due == {"bob": [pid], "coun2": [pid], "ann": [], "rev1": []}  # the dashboard's list

    r = client.post(f"/api/v1/proposals/{pid}/outcome", json=STATEMENT, headers=bob.auth)
    assert r.status_code == 201, r.text
    assert outcomes.due(ctx, coun1.actor) == []
    st = r.json()["statement"]
    assert st["version"] == 1 and st["author"] == "bob" and st["decision"] == "job_queued"
    assert st["decided"] == STATEMENT["decided"]
    detail = client.get(f"/api/v1/proposals/{pid}", headers=ann.auth).json()
    assert detail["outcome"]["statement"]["next_steps"] == STATEMENT["next_steps"]
    (note,) = _notes(ctx, ann)
    assert f"#{pid}" in note and "was written: Spam is forgotten from the model." in note
    assert _notes(ctx, bob) == []  # the writer is not notified of their own statement

    revised = {**STATEMENT, "next_steps": "The job failed once; a reviewer retries it on Monday."}
    r = client.put(f"/api/v1/proposals/{pid}/outcome", json=revised, headers=coun1.auth)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["statement"]["version"] == 2 and out["statement"]["author"] == "coun1"
    assert [h["next_steps"] for h in out["history"]] == [STATEMENT["next_steps"]]  # the first version is kept
    assert len(_notes(ctx, ann)) == 2 and len(_notes(ctx, bob)) == 1

    with read_session(ctx.engine) as s:
        written = [
            e
            for e in audit_log.entries_for_subject(s, f"proposal:{pid}")
            if e.action.startswith("proposal.outcome")
        ]
        deliveries = s.exec(select(WebhookDelivery.event)).all()
    assert [(e.action, e.actor, e.payload["version"]) for e in written] == [
        ("proposal.outcome_written", f"member:{bob.id}", 1),
        ("proposal.outcome_revised", f"member:{coun1.id}", 2),
    ]
    assert written[1].payload["next_steps"] == revised["next_steps"]
    assert list(deliveries) == ["proposal.outcome_written", "proposal.outcome_written"]


def test_bad_input_gets_a_clear_error_and_changes_nothing(
    client: TestClient[Litestar], ctx: Ctx, clock: FixedClock, community: dict[str, Person]
) -> None:
    bob = community["bob"]
    still_open = _filed(ctx, bob, "Still in triage")
    r = client.post(f"/api/v1/proposals/{still_open}/outcome", json=STATEMENT, headers=bob.auth)
    assert r.status_code == 409 and "still submitted" in r.json()["detail"]
    assert _saved(ctx, still_open)[0] == 0
    shown = client.get(f"/api/v1/proposals/{still_open}", headers=bob.auth).json()["outcome"]
    assert (shown["closed"], shown["statement"], shown["may_write"]) == (False, None, False)

    pid = approved_proposal(ctx, clock, community)
    url = f"/api/v1/proposals/{pid}/outcome"
    saved = _saved(ctx, pid)
    cases: list[tuple[Person, dict[str, Any], int, str]] = [
        (bob, {**STATEMENT, "decided": "   "}, 422, "write what was decided"),
        (bob, {**STATEMENT, "reasons": ""}, 422, "write why it was decided"),
        (bob, {k: v for k, v in STATEMENT.items() if k != "next_steps"}, 422, "write what happens next"),
        (bob, {**STATEMENT, "reasons": "x" * 4001}, 422, "longer than 4000 characters"),
        (community["ann"], STATEMENT, 403, "written by its author @bob or a council member"),
        (community["rev1"], STATEMENT, 403, "written by its author"),
    ]
    for who, body, status, message in cases:
        r = client.post(url, json=body, headers=who.auth)
        assert r.status_code == status, (body, r.text)
        assert message in r.json()["detail"], r.text
    assert client.post(url, json={**STATEMENT, "extra": "x"}, headers=bob.auth).status_code == 400
    assert client.post(url, json=STATEMENT).status_code == 401
    r = client.put(url, json=STATEMENT, headers=bob.auth)
    assert r.status_code == 409 and "no outcome statement yet" in r.json()["detail"]
    assert (
        client.post("/api/v1/proposals/999999/outcome", json=STATEMENT, headers=bob.auth).status_code == 404
    )
    assert _saved(ctx, pid) == saved

    assert client.post(url, json=STATEMENT, headers=bob.auth).status_code == 201
    saved = _saved(ctx, pid)
    r = client.post(url, json=STATEMENT, headers=community["coun2"].auth)
    assert r.status_code == 409 and "already (version 1); revise it" in r.json()["detail"]
    r = client.put(url, json=STATEMENT, headers=bob.auth)
    assert r.status_code == 422 and r.json()["detail"].startswith("the statement is unchanged")
    assert _saved(ctx, pid) == saved


def test_a_triage_rejection_is_explained_by_the_reviewers_and_a_withdrawal_by_its_author(
    client: TestClient[Litestar], ctx: Ctx, community: dict[str, Person], pass_time: PassTime
) -> None:
    pid = _rejected_at_triage(ctx, community, pass_time)
    url = f"/api/v1/proposals/{pid}/outcome"
    assert [d.proposal_id for d in outcomes.due(ctx, community["rev3"].actor)] == [pid]
    assert outcomes.due(ctx, community["coun1"].actor) == outcomes.due(ctx, community["bob"].actor) == []
    out = client.get(url, headers=community["rev2"].auth).json()
    assert out["expected_from"] == "a reviewer (@rev1, @rev2, @rev3)" and out["may_write"] is True
    for who in ("bob", "coun1"):
        r = client.post(url, json=STATEMENT, headers=community[who].auth)
        assert r.status_code == 403 and "written by a reviewer" in r.json()["detail"]
    assert client.post(url, json=STATEMENT, headers=community["rev2"].auth).status_code == 201

    gone = _filed(ctx, community["cat"], "Changed my mind")
    proposals.withdraw(ctx, gone, community["cat"].actor, "a better proposal follows")
    url = f"/api/v1/proposals/{gone}/outcome"
    assert client.post(url, json=STATEMENT, headers=community["rev1"].auth).status_code == 403
    assert client.post(url, json=STATEMENT, headers=community["cat"].auth).status_code == 201


def test_the_cli_writes_and_shows_it(
    client: TestClient[Litestar], ctx: Ctx, clock: FixedClock, community: dict[str, Person]
) -> None:
    pid = approved_proposal(ctx, clock, community)
    runner = CliRunner()
    as_bob = ApiContext(CommonsClient(client, community["bob"].token))
    r = runner.invoke(main, ["proposal", "show", str(pid)], obj=as_bob)
    assert r.exit_code == 0 and "outcome: not written yet; expected from its author @bob" in r.output
    args = ["proposal", "outcome", str(pid), "--decided", "Forgotten.", "--why", "Members agreed."]
    r = runner.invoke(main, [*args, "--next", ""], obj=as_bob)
    assert r.exit_code == 1 and "write what happens next" in r.output
    r = runner.invoke(main, [*args, "--next", "Release on Monday."], obj=as_bob)
    assert r.exit_code == 0 and f"proposal #{pid}: outcome statement version 1 saved" in r.output, r.output
    r = runner.invoke(main, [*args, "--next", "Release on Tuesday."], obj=as_bob)
    assert r.exit_code == 1 and "revise it" in r.output
    r = runner.invoke(main, [*args, "--next", "Release on Tuesday.", "--revise"], obj=as_bob)
    assert r.exit_code == 0 and "version 2 saved" in r.output
    r = runner.invoke(main, ["proposal", "show", str(pid)], obj=as_bob)
    assert "outcome (version 2 by @bob" in r.output and "revised 1 time(s)" in r.output
    assert "    next: Release on Tuesday." in r.output


# -- the proposal page, in chromium ----------------------------------------------------------------------------

PASSWORD = "a long enough password"


def _sign_in(chromium: Any, base: str, ctx: Ctx, who: Person) -> Any:
    auth.set_password(ctx, who.id, PASSWORD)
    page = chromium.new_context(base_url=base).new_page()
    page.set_default_timeout(15_000)
    page.goto("/login")
    page.get_by_label("Handle").fill(who.handle)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(base + "/")
    return page


@pytest.mark.browser
def test_the_page_shows_who_is_expected_then_the_statement_at_the_top(
    browser: Any,  # noqa: F811
    live_url: str,
    ctx: Ctx,
    clock: FixedClock,
    community: dict[str, Person],
) -> None:
    pid = approved_proposal(ctx, clock, community)
    ann = _sign_in(browser, live_url, ctx, community["ann"])
    ann.goto(f"/proposals/{pid}")
    awaiting = ann.locator("#outcome .awaiting")
    assert awaiting.inner_text() == (
        "No outcome statement yet: it is expected from its author @bob or a council member (@coun1, @coun2, @coun3)."
    )
    assert ann.locator("#outcome form").count() == 0  # a member who may not write it gets no form

    bob = _sign_in(browser, live_url, ctx, community["bob"])  # the dashboard lists what is due
    bob.get_by_role("region", name="Outcome statements to write").get_by_role("link").click()
    bob.wait_for_url(f"{live_url}/proposals/{pid}#outcome")
    # the statement comes before everything else on the page: right under the title
    first_h2 = bob.locator("main h2").first.inner_text()
    assert first_h2 == "Outcome"
    bob.get_by_label("What was decided").fill("Spam is forgotten.")
    bob.get_by_label("Why").fill("   ")
    bob.get_by_label("What happens next").fill("The verified version is released.")
    bob.get_by_role("button", name="Publish the outcome").click()
    assert bob.locator("#outcome-reasons-error").inner_text() == "write why it was decided"
    assert bob.get_by_label("What was decided").input_value() == "Spam is forgotten."  # the form keeps it
    assert _saved(ctx, pid)[0] == 0
    bob.get_by_label("Why").fill("Six members approved; the council ratified.")
    bob.get_by_role("button", name="Publish the outcome").click()
    bob.wait_for_url(f"{live_url}/proposals/{pid}#outcome")
    assert "The outcome statement is written; members are notified." in bob.content()
    section = bob.locator("#outcome")
    assert "Six members approved; the council ratified." in section.inner_text()
    assert "Written by @bob" in section.inner_text()

    ann.goto(f"/proposals/{pid}")
    assert "Spam is forgotten." in ann.locator("#outcome dl").inner_text()
    bob.goto("/")
    assert bob.get_by_role("region", name="Outcome statements to write").count() == 0
    assert ann.locator("#outcome .awaiting").count() == 0
    ann.goto("/notifications")
    assert f"The outcome statement of #{pid}" in ann.content()
    ann.context.close()
    bob.context.close()
