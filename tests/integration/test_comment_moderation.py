"""The moderator's day, on SQLite and PostgreSQL: replies under their parent, edits with their history, the
author's soft deletion (its text erased, also from the audit log's stored values), reports that land in the
reviewers' queue until a reviewer hides the comment with a reason or dismisses them; every change an audit
entry, every bad request refused with a clear error and nothing changed. Services first, then the UI."""

from __future__ import annotations

import re
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient
from sqlmodel import col, select

from governance.audit import log as audit_log
from governance.audit.models import AuditEntryRow
from governance.db.comments import (
    MAX_COMMENT,
    MAX_MODERATION_REASON,
    ProposalComment,
    ProposalCommentReport,
    ProposalCommentRevision,
)
from governance.db.engine import read_session
from governance.domain.errors import Conflict, InvalidInput, InvalidTransition, NotFound, PermissionDenied
from governance.schemas import ProposalCreate
from governance.services import browse, comments, proposals
from governance.services.context import Ctx
from tests.conftest import Person
from tests.integration.test_ui_browser import Session, browser  # noqa: F401  (a module-scoped fixture)
from tests.integration.test_ui_pages import error_of, sign_in


def _proposal(ctx: Ctx, who: Person, title: str) -> int:
    p = proposals.create(
        ctx,
        ProposalCreate(title=title, target={"kind": "category", "category": "cooking"}, submit=True),
        who.actor,
    )
    return p.id


def _state(ctx: Ctx) -> dict[str, Any]:
    """Everything a comment action may change: the comment tables and the audit log's length."""
    with read_session(ctx.engine) as s:
        return {
            "comments": [
                c.model_dump() for c in s.exec(select(ProposalComment).order_by(col(ProposalComment.id)))
            ],
            "revisions": [r.model_dump() for r in s.exec(select(ProposalCommentRevision))],
            "reports": [r.model_dump() for r in s.exec(select(ProposalCommentReport))],
            "audit": len(s.exec(select(AuditEntryRow.seq)).all()),
        }


def _refused(ctx: Ctx, error: type[Exception], match: str, call: Any, *args: Any) -> None:
    before = _state(ctx)
    with pytest.raises(error, match=match):
        call(ctx, *args)
    assert _state(ctx) == before, "a refused request changed something"


def _actions(ctx: Ctx, pid: int) -> list[str]:
    with read_session(ctx.engine) as s:
        return [e.action for e in audit_log.entries_for_subject(s, f"proposal:{pid}")]


def test_replies_join_their_thread_and_stay_in_their_proposal(ctx: Ctx, community: dict[str, Person]) -> None:
    ann, bob, cat = community["ann"], community["bob"], community["cat"]
    pid = _proposal(ctx, cat, "Forget the cooking forum")
    other = _proposal(ctx, cat, "Forget the gardening forum")
    top = comments.add(ctx, pid, ann.actor, "Is the forum's consent on file?")
    elsewhere = comments.add(ctx, other, ann.actor, "Another discussion")
    reply = comments.add(ctx, pid, bob.actor, "  It is, since May.  ", parent_id=top.id)
    assert reply.parent_id == top.id and reply.body == "It is, since May."
    deeper = comments.add(ctx, pid, cat.actor, "Thanks", parent_id=reply.id)  # one level: joins the thread
    assert deeper.parent_id == top.id
    assert [(c.id, c.parent_id) for c in comments.list_for(ctx, pid)] == [
        (top.id, None),
        (reply.id, top.id),
        (deeper.id, top.id),
    ]
    _refused(
        ctx,
        NotFound,
        f"proposal {pid} has no comment {elsewhere.id}",
        comments.add,
        pid,
        bob.actor,
        "x",
        elsewhere.id,
    )
    _refused(ctx, NotFound, "has no comment 999999", comments.add, pid, bob.actor, "x", 999999)
    _refused(ctx, InvalidInput, "cannot be empty", comments.add, pid, bob.actor, "   ", top.id)
    _refused(
        ctx,
        InvalidInput,
        f"at most {MAX_COMMENT}",
        comments.add,
        pid,
        bob.actor,
        "x" * (MAX_COMMENT + 1),
        top.id,
    )
    with read_session(ctx.engine) as s:
        added = [
            e.payload
            for e in audit_log.entries_for_subject(s, f"proposal:{pid}")
            if e.action == "proposal.comment_added"
        ]
    assert added == [
        {"comment": top.id},
        {"comment": reply.id, "reply_to": top.id},
        {"comment": deeper.id, "reply_to": top.id},
    ]


def test_the_author_edits_while_the_discussion_is_open_and_the_history_is_kept(
    ctx: Ctx, community: dict[str, Person]
) -> None:
    ann, bob, cat = community["ann"], community["bob"], community["cat"]
    pid = _proposal(ctx, cat, "Forget the cooking forum")
    c = comments.add(ctx, pid, ann.actor, "first words")
    edited = comments.edit(ctx, pid, c.id, ann.actor, "second words")
    comments.edit(ctx, pid, c.id, ann.actor, "third words")
    assert edited.edited_at is not None and edited.revisions == 1
    t = comments.thread(ctx, pid, c.id, ann.actor)
    assert t.comment.body == "third words" and t.comment.revisions == 2
    assert [r.body for r in t.history] == ["first words", "second words"]
    assert t.history[0].written_at == c.created_at and t.can_edit and t.can_delete and not t.can_report
    assert not comments.thread(ctx, pid, c.id, bob.actor).can_edit

    _refused(ctx, PermissionDenied, "only its author edits", comments.edit, pid, c.id, bob.actor, "mine now")
    _refused(ctx, InvalidInput, "cannot be empty", comments.edit, pid, c.id, ann.actor, " \n ")
    _refused(
        ctx,
        InvalidInput,
        f"at most {MAX_COMMENT}",
        comments.edit,
        pid,
        c.id,
        ann.actor,
        "y" * (MAX_COMMENT + 1),
    )
    _refused(ctx, InvalidInput, "unchanged", comments.edit, pid, c.id, ann.actor, "third words ")
    _refused(ctx, NotFound, "has no comment 424242", comments.edit, pid, 424242, ann.actor, "new")
    other = _proposal(ctx, cat, "Forget the gardening forum")
    _refused(
        ctx, NotFound, f"proposal {other} has no comment {c.id}", comments.edit, other, c.id, ann.actor, "new"
    )
    proposals.withdraw(ctx, pid, cat.actor, "filed too early")
    _refused(
        ctx, InvalidTransition, "discussion is closed", comments.edit, pid, c.id, ann.actor, "late words"
    )
    assert _actions(ctx, pid).count("proposal.comment_edited") == 2


def test_the_author_deletes_softly_and_the_text_is_erased_everywhere(
    ctx: Ctx, community: dict[str, Person]
) -> None:
    ann, bob, cat = community["ann"], community["bob"], community["cat"]
    pid = _proposal(ctx, cat, "Forget the cooking forum")
    c = comments.add(ctx, pid, ann.actor, "my phone number is 555-0199")
    comments.edit(ctx, pid, c.id, ann.actor, "my phone number is 555-0100")
    reply = comments.add(ctx, pid, bob.actor, "you should not post that", parent_id=c.id)
    comments.report(ctx, pid, c.id, bob.actor, "personal data")
    _refused(ctx, PermissionDenied, "only its author deletes", comments.delete, pid, c.id, bob.actor)

    gone = comments.delete(ctx, pid, c.id, ann.actor)
    assert gone.status == "deleted" and gone.body == ""
    listed = {x.id: x for x in comments.list_for(ctx, pid)}
    assert listed[c.id].status == "deleted" and listed[c.id].body == ""
    assert listed[reply.id].body == "you should not post that"  # the replies keep their place
    with read_session(ctx.engine) as s:
        assert s.get(ProposalComment, c.id).body == ""  # type: ignore[union-attr]
        assert [r.body for r in s.exec(select(ProposalCommentRevision))] == [""]
        (rep,) = s.exec(select(ProposalCommentReport)).all()
        assert rep.resolution == "deleted" and rep.resolved_at is not None  # out of the reviewers' queue
        entries = audit_log.entries_for_subject(s, f"proposal:{pid}")
        bodies = [e for e in entries if e.action in ("proposal.comment_added", "proposal.comment_edited")]
        mine = [e for e in bodies if e.payload["comment"] == c.id]
        assert len(mine) == 2 and all("body" in e.sensitive for e in mine)  # the commitments stay
        assert all(audit_log.sensitive_values(s, e.seq) == {"body": None} for e in mine)
        theirs = [e for e in bodies if e.payload["comment"] == reply.id]
        assert audit_log.sensitive_values(s, theirs[0].seq) == {"body": "you should not post that"}
    assert "proposal.comment_deleted" in _actions(ctx, pid)
    assert _actions(ctx, pid).count(audit_log.ERASE_ACTION) == 2
    assert comments.reported(ctx, community["rev1"].actor) == []
    t = comments.thread(ctx, pid, c.id, ann.actor)
    assert t.history == [] and not t.can_edit and not t.can_delete and not t.can_reply
    _refused(ctx, InvalidTransition, "already deleted", comments.delete, pid, c.id, ann.actor)
    _refused(
        ctx, InvalidTransition, "is deleted; it takes no replies", comments.add, pid, bob.actor, "hm", c.id
    )


def test_reports_wait_in_the_reviewers_queue_until_hidden_or_dismissed(
    ctx: Ctx, community: dict[str, Person]
) -> None:
    ann, bob, cat, rev1 = community["ann"], community["bob"], community["cat"], community["rev1"]
    pid = _proposal(ctx, cat, "Forget the cooking forum")
    rude = comments.add(ctx, pid, ann.actor, "you are all fools")
    fine = comments.add(ctx, pid, ann.actor, "I disagree with the rationale")
    own = comments.add(ctx, pid, rev1.actor, "Reviewers: see the policy")

    _refused(ctx, InvalidInput, "the reason cannot be empty", comments.report, pid, rude.id, bob.actor, "  ")
    _refused(
        ctx,
        InvalidInput,
        f"at most {MAX_MODERATION_REASON}",
        comments.report,
        pid,
        rude.id,
        bob.actor,
        "r" * 501,
    )
    _refused(ctx, PermissionDenied, "your own comment", comments.report, pid, rude.id, ann.actor, "oops")
    _refused(ctx, NotFound, "no proposal 987654", comments.report, 987654, rude.id, bob.actor, "insult")
    r1 = comments.report(ctx, pid, rude.id, bob.actor, "an insult")
    comments.report(ctx, pid, rude.id, cat.actor, "insulting")
    comments.report(ctx, pid, fine.id, cat.actor, "off topic")
    _refused(ctx, Conflict, "already reported", comments.report, pid, rude.id, bob.actor, "again")
    assert r1.reporter == "bob" and r1.resolved_at is None

    assert comments.reported(ctx, bob.actor) == []  # the queue is the reviewers'
    queue = browse.dashboard(ctx, rev1.actor).reported_comments
    assert [(q.comment.id, q.author, [r.reporter for r in q.reports]) for q in queue] == [
        (rude.id, "ann", ["bob", "cat"]),
        (fine.id, "ann", ["cat"]),
    ]
    assert (
        queue[0].comment.body == "you are all fools" and queue[0].proposal_title == "Forget the cooking forum"
    )
    assert browse.dashboard(ctx, bob.actor).reported_comments == []
    assert comments.list_for(ctx, pid)[0].open_reports == 2

    _refused(ctx, PermissionDenied, "only a reviewer", comments.hide, pid, rude.id, bob.actor, "rude")
    _refused(ctx, InvalidInput, "the reason cannot be empty", comments.hide, pid, rude.id, rev1.actor, "")
    _refused(ctx, InvalidInput, "at most", comments.hide, pid, rude.id, rev1.actor, "h" * 501)
    _refused(ctx, NotFound, "has no comment 31337", comments.hide, pid, 31337, rev1.actor, "rude")
    comments.report(ctx, pid, own.id, bob.actor, "self-promotion")
    _refused(ctx, PermissionDenied, "their own comment", comments.hide, pid, own.id, rev1.actor, "mine")
    _refused(ctx, PermissionDenied, "their own comment", comments.dismiss, pid, own.id, rev1.actor, None)

    hidden = comments.hide(ctx, pid, rude.id, rev1.actor, "insults members (rule 2)")
    assert (
        hidden.status == "hidden" and hidden.body == "" and hidden.hidden_reason == "insults members (rule 2)"
    )
    shown = {c.id: c for c in comments.list_for(ctx, pid)}[rude.id]
    assert shown.body == "" and shown.status == "hidden" and shown.open_reports == 0
    assert comments.thread(ctx, pid, rude.id, bob.actor).history == []
    _refused(
        ctx, InvalidTransition, "already hidden", comments.hide, pid, rude.id, community["rev2"].actor, "x"
    )
    _refused(
        ctx,
        InvalidTransition,
        "nothing to report",
        comments.report,
        pid,
        rude.id,
        community["dan"].actor,
        "x",
    )
    _refused(ctx, InvalidTransition, "it cannot be edited", comments.edit, pid, rude.id, ann.actor, "sorry")

    assert comments.dismiss(ctx, pid, fine.id, rev1.actor, "disagreement is not abuse") != []
    assert comments.list_for(ctx, pid)[1].status == "shown"
    _refused(ctx, InvalidTransition, "no open report", comments.dismiss, pid, fine.id, rev1.actor, None)
    assert [q.comment.id for q in comments.reported(ctx, rev1.actor)] == [own.id]  # rev2 may decide that one
    comments.dismiss(ctx, pid, own.id, community["rev2"].actor)
    assert comments.reported(ctx, rev1.actor) == []
    with read_session(ctx.engine) as s:
        rows = s.exec(select(ProposalCommentReport).order_by(col(ProposalCommentReport.id))).all()
        assert [(r.resolution, r.resolved_by) for r in rows] == [
            ("hidden", rev1.id),
            ("hidden", rev1.id),
            ("dismissed", rev1.id),
            ("dismissed", community["rev2"].id),
        ]
        entries = audit_log.entries_for_subject(s, f"proposal:{pid}")
        (hide_entry,) = [e for e in entries if e.action == "proposal.comment_hidden"]
        assert (
            hide_entry.payload["reason"] == "insults members (rule 2)"
            and hide_entry.actor == f"member:{rev1.id}"
        )
        reported = [e for e in entries if e.action == "proposal.comment_reported"]
        assert len(reported) == 4 and all(
            "reason" in e.sensitive and "reason" not in e.payload for e in reported
        )
    assert _actions(ctx, pid).count("proposal.comment_reports_dismissed") == 2


def test_a_draft_discussion_is_its_authors_only(ctx: Ctx, community: dict[str, Person]) -> None:
    ann, rev1 = community["ann"], community["rev1"]
    draft = proposals.create(
        ctx, ProposalCreate(title="Not yet", target={"kind": "category", "category": "cooking"}), ann.actor
    )
    note = comments.add(ctx, draft.id, ann.actor, "note to self")
    _refused(ctx, NotFound, f"no proposal {draft.id}", comments.report, draft.id, note.id, rev1.actor, "x")
    _refused(ctx, NotFound, f"no proposal {draft.id}", comments.hide, draft.id, note.id, rev1.actor, "x")
    with pytest.raises(NotFound):
        comments.thread(ctx, draft.id, note.id, rev1.actor)


# -- the UI ----------------------------------------------------------------------------------------------------


def _post(client: TestClient[Litestar], url: str, token: str, **data: str) -> Any:
    return client.post(url, data={**data, "csrf_token": token}, follow_redirects=False)


def _discussion(html: str) -> str:
    found = re.search(r'<section id="discussion".*?</section>', html, re.S)
    assert found, "no discussion section"
    return found.group(0)


def test_the_moderators_day_in_the_ui(
    client: TestClient[Litestar], ctx: Ctx, community: dict[str, Person]
) -> None:
    ann, bob, rev1 = community["ann"], community["bob"], community["rev1"]
    pid = _proposal(ctx, community["cat"], "Forget the cooking forum")
    other = _proposal(ctx, community["cat"], "Forget the gardening forum")
    base = f"/proposals/{pid}/comments"

    token = sign_in(client, ctx, ann.id, "ann")
    assert _post(client, base, token, body="The consent form is missing").status_code == 303
    (c,) = comments.list_for(ctx, pid)
    r = _post(client, f"{base}/{c.id}/edit", token, body="The consent form is missing (page 3)")
    assert r.status_code == 303 and r.headers["location"] == f"{base}/{c.id}"
    r = _post(client, f"{base}/{c.id}/edit", token, body="  ")
    assert r.status_code == 422 and error_of(r.text, "edit-body") == "a comment cannot be empty"
    page = client.get(f"{base}/{c.id}").text
    assert "Earlier versions" in page and "The consent form is missing</p>" in page
    assert 'id="report"' not in page  # not one's own

    token = sign_in(client, ctx, bob.id, "bob")
    html = _discussion(client.get(f"/proposals/{pid}").text)
    assert "edited" in html and f"{base}/{c.id}#history" in html and f"{base}/{c.id}#report" in html
    r = _post(client, f"{base}/{c.id}/reply", token, body="Found it on page 4")
    assert r.status_code == 303
    reply = comments.list_for(ctx, pid)[-1]
    assert r.headers["location"] == f"/proposals/{pid}#comment-{reply.id}" and reply.parent_id == c.id
    html = _discussion(client.get(f"/proposals/{pid}").text)
    assert re.search(rf'<div class="replies">\s*<article class="comment reply" id="comment-{reply.id}"', html)
    r = _post(client, f"{base}/{c.id}/report", token, reason="")
    assert r.status_code == 422 and error_of(r.text, "report-reason") == "the reason cannot be empty"
    assert _post(client, f"{base}/{c.id}/report", token, reason="Insults the proposer").status_code == 303
    r = _post(client, f"{base}/{c.id}/report", token, reason="again")
    assert r.status_code == 409 and "already reported" in (error_of(r.text, "report-reason") or "")
    before = _state(ctx)
    assert _post(client, f"{base}/{c.id}/edit", token, body="bob was here").status_code == 403
    assert _post(client, f"{base}/{c.id}/delete", token).status_code == 403
    assert _post(client, f"{base}/{c.id}/hide", token, reason="no").status_code == 403
    assert _post(client, f"/proposals/{other}/comments/{c.id}/report", token, reason="x").status_code == 404
    assert _post(client, f"{base}/99999/report", token, reason="x").status_code == 404
    assert _post(client, f"{base}/{c.id}/shout", token).status_code == 404
    assert client.get(f"/proposals/{other}/comments/{c.id}").status_code == 404
    assert _state(ctx) == before

    token = sign_in(client, ctx, rev1.id, "rev1")
    board = client.get("/").text
    assert (
        "Reported comments" in board
        and f"{base}/{c.id}#moderate" in board
        and "Insults the proposer" in board
    )
    page = client.get(f"{base}/{c.id}").text
    assert "@bob" in page and "Hide comment" in page and "Dismiss reports" in page
    r = _post(client, f"{base}/{c.id}/hide", token, reason="")
    assert r.status_code == 422 and error_of(r.text, "hide-reason") == "the reason cannot be empty"
    assert _post(client, f"{base}/{c.id}/hide", token, reason="Personal attack (rule 2)").status_code == 303
    html = _discussion(client.get(f"/proposals/{pid}").text)
    assert "hidden by a reviewer: Personal attack (rule 2)" in html and "page 3" not in html
    assert "Found it on page 4" in html
    assert "No reported comment awaits a reviewer." in client.get("/").text
    timeline = client.get(f"/proposals/{pid}").text
    assert "Comment hidden" in timeline or "comment hidden" in timeline.lower()

    token = sign_in(client, ctx, bob.id, "bob")
    assert _post(client, f"{base}/{reply.id}/delete", token).status_code == 303
    html = _discussion(client.get(f"/proposals/{pid}").text)
    assert "deleted by its author" in html and "Found it on page 4" not in html


@pytest.mark.browser
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_report_reply_and_hide_in_a_browser(
    browser: Any,  # noqa: F811  (the chromium fixture of test_ui_browser)
    live_url: str,
    ctx: Ctx,
    community: dict[str, Person],
) -> None:
    from playwright.sync_api import expect

    pid = _proposal(ctx, community["cat"], "Forget the cooking forum")
    c = comments.add(ctx, pid, community["ann"].actor, "you are all fools")
    bob = Session(browser, live_url, ctx, community["bob"])
    page = bob.page
    page.goto(f"/proposals/{pid}")
    page.get_by_role("link", name=f"Report comment {c.id}").click()
    page.get_by_role("button", name="Send report").click()
    expect(page.locator("#report-reason-error")).to_contain_text("the reason cannot be empty")
    page.get_by_label("Why should reviewers look at it?").fill("An insult")
    page.get_by_role("button", name="Send report").click()
    expect(page.locator(".flash")).to_contain_text("sent to the reviewers")
    page.goto(f"/proposals/{pid}")
    page.get_by_role("link", name=f"Reply to comment {c.id}").click()
    page.get_by_label("Your reply").fill("Please keep it civil")
    page.get_by_role("button", name="Post reply").click()
    expect(page.locator("#discussion .replies")).to_contain_text("Please keep it civil")
    bob.close()

    rev = Session(browser, live_url, ctx, community["rev1"])
    queue = rev.page.get_by_role("region", name="Reported comments")
    expect(queue).to_contain_text("An insult")
    queue.get_by_role("link", name=re.compile(rf"Comment {c.id}\b.*moderate it")).click()
    rev.page.get_by_label("Hide it: the reason is shown in place of its text").fill("Personal attack")
    rev.page.get_by_role("button", name="Hide comment").click()
    expect(rev.page.locator(".flash")).to_contain_text("The comment is hidden")
    rev.page.goto(f"/proposals/{pid}")
    expect(rev.page.locator(f"#comment-{c.id}")).to_contain_text("hidden by a reviewer: Personal attack")
    expect(rev.page.locator("#discussion")).not_to_contain_text("you are all fools")
    rev.close()
