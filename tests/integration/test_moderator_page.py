"""The proposal page as a moderator reads it: an appeal hearing names its question and what each answer does,
the reasons members gave with their votes are shown, a recused reviewer is told why there are no buttons, a
consent withdrawal does not pretend a vote is coming, and council decisions name people by handle."""

from __future__ import annotations

import html
from typing import Any

from governance.schemas import DataSourceCreate, ProposalCreate
from governance.services import data_sources, proposals
from governance.services.context import Ctx
from tests.conftest import Person
from tests.integration.test_ui_pages import sign_in


def _file(ctx: Ctx, who: Person, title: str = "Forget cooking") -> int:
    return proposals.create(
        ctx,
        ProposalCreate(title=title, target={"kind": "category", "category": "cooking"}, submit=True),
        who.actor,
    ).id


def _page(client: Any, ctx: Ctx, who: Person, pid: int) -> str:
    sign_in(client, ctx, who.id, who.handle)
    r = client.get(f"/proposals/{pid}")
    assert r.status_code == 200, r.text
    return html.unescape(r.text)


def test_an_appeal_hearing_names_its_question_and_its_answers(
    ctx: Ctx, client: Any, community: dict[str, Person]
) -> None:
    people = community
    pid = _file(ctx, people["bob"])
    proposals.triage(ctx, pid, people["rev1"].actor, "reject", "out of scope")
    proposals.appeal(ctx, pid, people["bob"].actor, "cooking data was scraped")
    page = _page(client, ctx, people["coun1"], pid)
    assert "An appeal of the triage rejection" in page
    assert "Uphold the appeal: the member vote opens" in page
    assert "Dismiss the appeal: the rejection stands" in page
    assert ">Ratify<" not in page and ">Veto<" not in page
    # the ordinary council review keeps its plain buttons, and a decision names members by handle
    proposals.council(ctx, pid, people["coun1"].actor, "ratify", None)
    proposals.council(ctx, pid, people["coun2"].actor, "ratify", None)
    assert proposals.get_detail(ctx, pid).state == "voting"  # the appeal was upheld
    page = _page(client, ctx, people["ann"], pid)
    assert "@coun1" in page and "@coun2" in page
    assert f"ratify: [{people['coun1'].id}, {people['coun2'].id}]" not in page


def test_vote_reasons_are_shown_and_a_recused_reviewer_is_told_why(
    ctx: Ctx, client: Any, community: dict[str, Person]
) -> None:
    people = community
    pid = _file(ctx, people["rev3"], "Forget the recipes")
    for r in ("rev1", "rev2"):
        proposals.triage(ctx, pid, people[r].actor, "approve", None)
    proposals.vote(ctx, pid, people["ann"].actor, "object", "recipes are harmless")
    proposals.vote(ctx, pid, people["cat"].actor, "block", "this would erase my family's recipes")
    page = _page(client, ctx, people["coun1"], pid)
    assert "Reasons members gave with their votes" in page
    assert page.index("this would erase my family's recipes") < page.index(
        "recipes are harmless"
    )  # blocks first
    page = _page(client, ctx, people["rev3"], pid)
    assert (
        "You are recused from reviewing this proposal: the proposer may not review their own proposal" in page
    )


def test_a_consent_withdrawal_says_it_is_not_voted_on(
    ctx: Ctx, client: Any, community: dict[str, Person]
) -> None:
    src = data_sources.register(
        ctx, DataSourceCreate(name="diary", node_id="node-1", content_hash="b" * 64), community["cat"].actor
    )
    pid = proposals.create(
        ctx,
        ProposalCreate(
            title="Forget my diary",
            target={"kind": "data_source", "data_source_id": src.id},
            consent_withdrawal=True,
            submit=True,
        ),
        community["cat"].actor,
    ).id
    page = _page(client, ctx, community["cat"], pid)
    assert "Voting has not opened" not in page
    assert "A withdrawal of consent is not put to a vote" in page


def test_a_failed_form_keeps_every_value_and_names_the_metric(
    ctx: Ctx, client: Any, community: dict[str, Person]
) -> None:
    from governance.services import proposals as svc

    bob = community["bob"]
    token = sign_in(client, ctx, bob.id, bob.handle)
    form = {
        "target_kind": "category",
        "title": "Forget cooking",
        "category": "cooking",
        "csrf_token": token,
        "test_forget_accuracy_gap": "on",
        "thr_forget_accuracy_gap": "0.013",  # the threshold the member means to put to the vote
        "cmp_forget_accuracy_gap": "<=",
        "test_mia_auc": "on",
        "thr_mia_auc": "lots",
        "cmp_mia_auc": "<=",
    }
    r = client.post("/proposals/new", data=form)
    assert r.status_code == 422
    page = html.unescape(r.text)
    assert 'id="error-summary"' in page and "One thing to fix (nothing was saved)" in page
    assert 'href="#thr_mia_auc">mia_auc: the threshold must be a number' in page
    assert 'value="0.013"' in page and 'value="lots"' in page  # nothing falls back to the defaults
    assert svc.list_proposals(ctx, viewer_id=bob.id) == []
    # a forged target kind is refused, not coerced into another kind
    r = client.post("/proposals/new", data={**form, "target_kind": "everything", "thr_mia_auc": "0.6"})
    assert r.status_code == 422 and "unknown target kind 'everything'" in html.unescape(r.text)
    assert svc.list_proposals(ctx, viewer_id=bob.id) == []
    # Pydantic's wording becomes a sentence
    r = client.post("/proposals/new", data={**form, "title": "x", "thr_mia_auc": "0.6"})
    assert "the title needs at least 3 characters" in html.unescape(r.text)
