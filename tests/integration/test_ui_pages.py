"""The web UI in-process (Litestar's TestClient), on SQLite and PostgreSQL: every page renders with an empty
database and with a populated community (with jobs, model versions, a verification report, notifications),
forms show errors next to their fields, the server refuses what the domain does not allow (403 page), forms
without a valid CSRF token are refused, sign-in is rate-limited."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.testing import TestClient

from governance.audit.keys import trusted_verifier
from governance.db.engine import write_session
from governance.db.models import Job, Notification, Proposal
from governance.domain.clock import FixedClock
from governance.registry_schemas import ModelVersionCreate
from governance.schemas import DataSourceCreate, MemberCreate, ProposalCreate
from governance.services import (
    auth,
    comments,
    data_sources,
    events,
    gate,
    jobs,
    lifecycle,
    members,
    proposals,
    registry,
)
from governance.services.context import Ctx
from governance.web.app import create_app
from governance.web.ui import PAGES
from tests.conftest import Person
from tests.trust import signed, store_version

PASSWORD = "a long enough password"
HASH = "ab" * 32
# GET routes that answer a fragment or a document of their own rather than a page with an <h1>
FRAGMENT_MARKERS = ('id="tally"', 'id="progress"', "<title>Verification of")
TESTS = [
    {"metric": "forget_accuracy_gap", "comparator": "<=", "threshold": 0.05, "relative_to_reference": False},
    {
        "metric": "retained_utility_drop",
        "comparator": "<=",
        "threshold": 0.05,
        "relative_to_reference": False,
    },
]


def _ui_get_paths() -> list[str]:
    """Every GET page of the UI, read from its controllers (a new page is tested without editing this)."""
    paths = set()
    for controller in PAGES:
        for value in vars(controller).values():
            if isinstance(value, HTTPRouteHandler) and "GET" in value.http_methods:
                for p in value.paths:
                    paths.add((controller.path.rstrip("/") + p).rstrip("/") or "/")
    return sorted(paths)


UI_PATHS = _ui_get_paths()


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def sign_in(client: TestClient[Litestar], ctx: Ctx, member_id: int, handle: str) -> str:
    """Sign in through the form; returns the CSRF token the browser's forms carry in the new session."""
    auth.set_password(ctx, member_id, PASSWORD)
    client.cookies.clear()
    token = csrf_of(client.get("/login").text)
    r = client.post(
        "/login",
        data={"handle": handle, "password": PASSWORD, "csrf_token": token, "next": "/"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    return csrf_of(client.get("/me").text)  # the token is bound to the session: a new one after signing in


def error_of(html: str, field: str) -> str | None:
    found = re.search(rf'<p class="error" id="{re.escape(field)}-error">(.*?)</p>', html, re.S)
    return found.group(1).strip() if found else None


def populate(ctx: Ctx, people: dict[str, Person], clock: FixedClock) -> dict[str, int]:
    """Data sources and proposals in several states, with votes, comments and an election."""
    ann, bob = people["ann"], people["bob"]
    ds = data_sources.register(
        ctx, DataSourceCreate(name="ann-forum", node_id="node-1", content_hash=HASH), ann.actor
    )
    draft = proposals.create(
        ctx,
        ProposalCreate(title="Admin's draft", target={"kind": "category", "category": "cooking"}),
        people["admin"].actor,
    )
    election = proposals.create(
        ctx,
        ProposalCreate(
            kind="election",
            title="Elect dan",
            election={"role": "reviewer", "candidate_id": people["dan"].id},
        ),
        people["cat"].actor,
    )
    proposals.submit(ctx, election.id, people["cat"].actor)
    for r in ("rev1", "rev2"):
        proposals.triage(ctx, election.id, people[r].actor, "approve", None)
    for name in ("ann", "bob", "cat", "dan", "rev1", "rev2"):
        proposals.vote(ctx, election.id, people[name].actor, "approve", None)
    clock.advance(days=8)
    lifecycle.sweep(ctx)  # the election closes and passes: dan is a reviewer by election
    behaviour = proposals.create(
        ctx,
        ProposalCreate(
            title="Stop completing the canary",
            target={"kind": "behaviour", "examples": [{"prompt": "The secret is", "completion": "1234"}]},
            submit=True,
        ),
        people["cat"].actor,
    )
    voting = proposals.create(
        ctx,
        ProposalCreate(
            title="Forget ann-forum",
            target={"kind": "data_source", "data_source_id": ds.id},
            secret_tally=True,
            submit=True,
        ),
        bob.actor,
    )
    for r in ("rev1", "rev2"):
        proposals.triage(ctx, voting.id, people[r].actor, "approve", None)
    proposals.vote(ctx, voting.id, ann.actor, "object", "it is my data, but fine")
    note = comments.add(ctx, voting.id, ann.actor, "I would rather withdraw consent myself.")
    return {
        "proposal_id": voting.id,
        "comment_id": note.id,
        "draft_id": draft.id,
        "behaviour_id": behaviour.id,
        "election_id": election.id,
        "source_id": ds.id,
        **populate_jobs(ctx, people),
    }


STORED: dict[str, tuple[str, str]] = {}  # name -> (version, content hash) of a real stored version


def h(name: str) -> str:
    return STORED[name][1] if name in STORED else hashlib.sha256(name.encode()).hexdigest()


def mv(name: str) -> str:
    return STORED[name][0] if name in STORED else "mv-" + h(name)[:20]


def report(name: str, passed: bool) -> dict[str, Any]:
    """A verification report as unlearning.verification writes it (tests, no metrics or plots)."""
    from unlearning.verification.spec import policy_hash

    return {
        "candidate_version": mv(name),
        "candidate_hash": h(name),
        "policy_hash": policy_hash(TESTS),
        "config_hash": h("config"),
        "seed": 0,
        "precision": "fp32",
        "libraries": {"torch": "2"},
        "passed": passed,
        "summary": "PASS: 2 acceptance test(s) passed" if passed else "FAIL: forget_accuracy_gap (fail)",
        "tests": [
            {
                **t,
                "status": "pass" if passed else "fail",
                "measured": 0.01 if passed else 0.3,
                "reason": f"{t['metric']} = {0.01 if passed else 0.3} vs {t['threshold']}",
            }
            for t in TESTS
        ],
        "regressions": [],
        "metrics": {},
        "target": {"kind": "category", "value": "7"},
    }


def populate_jobs(ctx: Ctx, people: dict[str, Person]) -> dict[str, Any]:
    """A released base version; a verified proposal whose job succeeded (its version verified, the gate
    allows it); a failed job whose verification failed; a running job with progress; notifications."""
    STORED["job"] = store_version(ctx, "job")  # the gate re-hashes a version's bytes at every verdict
    now = ctx.clock.now()
    pids = []
    for title, state in (("Forget digit 7", "verified"), ("Forget digit 3", "verification_failed")):
        p = proposals.create(
            ctx,
            ProposalCreate(
                title=title, target={"kind": "category", "category": title[-1]}, acceptance_tests=TESTS
            ),
            people["bob"].actor,
        )
        pids.append(p.id)
        with write_session(ctx.engine) as s:
            row = s.get(Proposal, p.id)
            assert row is not None
            row.state = state
            s.add(row)
    running_pid = proposals.create(
        ctx,
        ProposalCreate(title="Forget digit 1", target={"kind": "category", "category": "1"}),
        people["bob"].actor,
    ).id
    with write_session(ctx.engine) as s:  # approved, and its job is running
        row = s.get(Proposal, running_pid)
        assert row is not None
        row.state = "unlearning"
        s.add(row)
    spec = {
        "kind": "unlearn",
        "base_version": mv("base"),
        "method": "gradient_ascent_ewc",
        "method_config": {},
    }
    with write_session(ctx.engine) as s:
        registry.register(
            s,
            ModelVersionCreate(version=mv("base"), content_hash=h("base"), task="digits", kind="train"),
            actor=None,
            now=now,
        )
        base = registry.get_row(s, mv("base"))
        base.state, base.released_at = "released", now
        s.add(base)
        ok = Job(
            proposal_id=pids[0],
            state="succeeded",
            spec={**spec, "target": {"kind": "category", "value": "7"}},
            acceptance_tests=TESTS,
            attempt=1,
            model_version=mv("job"),
            result={"model_version": mv("job"), "content_hash": h("job"), "parent_version": mv("base")},
            report=signed(ctx, report("job", passed=True)),  # as the verifying worker signs it
            cost={"wall_s": 2.5, "optimizer_steps": 373, "rounds": [{"phase": "ascent", "round": 1}]},
            progress={
                "phase": "evaluate",
                "round": 1,
                "total_rounds": 1,
                "metrics": {"forget-accuracy": 0.0},
            },
            created_at=now,
            finished_at=now,
        )
        failed = Job(
            proposal_id=pids[1],
            state="failed",
            spec={**spec, "target": {"kind": "category", "value": "3"}},
            acceptance_tests=TESTS,
            attempt=3,
            max_attempts=3,
            error="node unreachable",
            created_at=now,
        )
        running = Job(
            proposal_id=running_pid,
            state="running",
            spec={**spec, "target": {"kind": "category", "value": "1"}},
            acceptance_tests=TESTS,
            attempt=1,
            lease_owner="test-worker",
            progress={"phase": "ascent", "round": 2, "total_rounds": 5, "metrics": {"forget-loss": 1.5}},
            created_at=now,
        )
        s.add_all([ok, failed, running])
        s.flush()
        # what the worker does when the job records its result
        registry.register_from_job(s, ok, now, trusted_verifier(ctx.settings))
        s.add(
            Notification(
                member_id=people["admin"].id,
                kind="job",
                message="Job for proposal 'Forget digit 7' succeeded.",
                proposal_id=pids[0],
                dedupe_key="ui-test",
                created_at=now,
            )
        )
        ids = {"job_id": ok.id, "failed_job_id": failed.id, "running_job_id": running.id}
    return {**ids, "version": mv("job"), "verified_proposal_id": pids[0]}


def _fill(path: str, ids: dict[str, Any]) -> str:
    return (
        path.replace(
            "{proposal_id:int}", str(ids["draft_id"] if path.endswith("/edit") else ids["proposal_id"])
        )
        .replace("{source_id:int}", str(ids["source_id"]))
        .replace("{seq:int}", "1")
        .replace("{job_id:int}", str(ids["job_id"]))
        .replace("{comment_id:int}", str(ids.get("comment_id", 1)))
        .replace("{version:str}", str(ids["version"]))
    )


def test_ui_routes_are_known() -> None:
    assert {
        "/",
        "/login",
        "/me",
        "/proposals",
        "/proposals/new",
        "/proposals/{proposal_id:int}",
        "/audit",
        "/jobs",
        "/jobs/{job_id:int}",
        "/jobs/{job_id:int}/progress",
        "/models",
        "/models/{version:str}",
        "/models/{version:str}/report",
        "/notifications",
    } <= set(UI_PATHS)


@pytest.mark.parametrize("path", UI_PATHS)
def test_every_page_renders_with_an_empty_database(client: TestClient[Litestar], ctx: Ctx, path: str) -> None:
    admin = members.add_member(ctx, MemberCreate(handle="admin", display_name="Admin", roles=["admin"]))
    sign_in(client, ctx, admin.id, "admin")
    r = client.get(
        _fill(path, {"proposal_id": 1, "draft_id": 1, "source_id": 1, "job_id": 1, "version": mv("none")})
    )
    assert r.headers["content-type"].startswith("text/html")
    if "{" in path:  # nothing to show yet: a readable not-found page (the audit log holds entry 1 already)
        assert r.status_code in (200, 404), r.text
    else:
        assert r.status_code == 200, r.text
    assert "<h1" in r.text and "Internal Server Error" not in r.text


@pytest.mark.parametrize("path", UI_PATHS)
def test_every_page_renders_with_a_community(
    client: TestClient[Litestar], ctx: Ctx, community: dict[str, Person], clock: FixedClock, path: str
) -> None:
    ids = populate(ctx, community, clock)
    sign_in(client, ctx, community["admin"].id, "admin")
    r = client.get(_fill(path, ids))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert "<h1" in r.text or any(marker in r.text for marker in FRAGMENT_MARKERS)
    assert "Internal Server Error" not in r.text


def test_pages_show_the_community(
    client: TestClient[Litestar], ctx: Ctx, community: dict[str, Person], clock: FixedClock
) -> None:
    ids = populate(ctx, community, clock)
    sign_in(client, ctx, community["ann"].id, "ann")
    page = client.get(f"/proposals/{ids['proposal_id']}").text
    assert "The tally is secret until the vote closes" in page  # hidden while the secret vote is open
    assert "I would rather withdraw consent myself." in page  # the discussion
    assert "You voted <strong>object</strong>" in page  # own vote, even on a secret tally
    assert "audit entry" in page and "triage approve" in page  # the timeline links to the audit log
    members_page = client.get("/members").text
    assert f"elected · #{ids['election_id']}" in members_page  # a role granted by election is marked
    results = client.get("/elections").text
    assert "Results" in results and "6 / 0 / 0 / 0" in results
    assert "ann-forum" in client.get("/data-sources").text
    listing = client.get("/proposals", params={"target_kind": "behaviour"}).text
    assert "Stop completing the canary" in listing and "Forget ann-forum" not in listing


def test_anonymous_visitors_are_sent_to_sign_in_but_may_read_the_audit_log(
    client: TestClient[Litestar],
) -> None:
    r = client.get("/proposals", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/proposals"
    assert client.get("/audit").status_code == 200
    assert client.get("/login").status_code == 200


def test_sign_in_errors_rate_limit_and_sign_out(
    client: TestClient[Litestar], ctx: Ctx, clock: FixedClock
) -> None:
    m = members.add_member(ctx, MemberCreate(handle="zoe", display_name="Zoe"))
    auth.set_password(ctx, m.id, PASSWORD)
    token = csrf_of(client.get("/login").text)
    r = client.post("/login", data={"handle": "", "password": "", "csrf_token": token})
    assert r.status_code == 422 and error_of(r.text, "handle") == "Enter your handle."
    for _ in range(5):
        r = client.post("/login", data={"handle": "zoe", "password": "wrong password", "csrf_token": token})
        assert r.status_code == 401 and "do not match" in r.text
    r = client.post("/login", data={"handle": "zoe", "password": PASSWORD, "csrf_token": token})
    assert r.status_code == 429 and "Too many failed attempts" in r.text  # even the right password waits
    # the failures are rows: a restarted service (a new app over the same database) still refuses
    with TestClient(create_app(ctx=ctx)) as restarted:
        fresh = csrf_of(restarted.get("/login").text)
        r = restarted.post("/login", data={"handle": "zoe", "password": PASSWORD, "csrf_token": fresh})
        assert r.status_code == 429
    clock.advance(minutes=16)  # the window has passed
    r = client.post(
        "/login", data={"handle": "zoe", "password": PASSWORD, "csrf_token": token}, follow_redirects=False
    )
    assert r.status_code == 303
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert client.get("/me").status_code == 200
    r = client.post("/logout", data={"csrf_token": token})  # a token from before signing in: refused
    assert r.status_code == 403
    token = csrf_of(client.get("/me").text)
    client.post("/logout", data={"csrf_token": token})
    assert client.get("/me", follow_redirects=False).status_code == 303


def test_sign_out_ends_the_session_on_the_server(client: TestClient[Litestar], ctx: Ctx) -> None:
    m = members.add_member(ctx, MemberCreate(handle="zoe", display_name="Zoe"))
    token = sign_in(client, ctx, m.id, "zoe")
    copied = {k: client.cookies[k] for k in ("commons_session", "commons_csrf")}
    client.post("/logout", data={"csrf_token": token})
    with TestClient(client.app) as thief:  # a copy of the cookie, taken before the sign-out
        thief.cookies.update(copied)
        assert thief.get("/me", follow_redirects=False).status_code == 303
        assert thief.get("/api/v1/members/me").status_code == 401


def test_sign_in_limits_per_address_and_overall(ctx: Ctx, clock: FixedClock) -> None:
    limiter = auth.LoginLimiter(ctx, per_handle=3, per_address=5, overall=8)
    now = clock.now()
    for i in range(5):  # one address trying many handles
        limiter.failed(f"h{i}", "10.0.0.1", now)
    assert limiter.retry_after("someone-else", "10.0.0.1", now) is not None
    assert limiter.retry_after("someone-else", "10.0.0.2", now) is None
    for i in range(3):  # many addresses, few tries each: the overall limit
        limiter.failed(f"x{i}", f"10.0.1.{i}", now)
    assert limiter.retry_after("fresh", "10.0.2.1", now) is not None
    clock.advance(minutes=16)
    assert limiter.retry_after("fresh", "10.0.2.1", clock.now()) is None


def test_a_new_password_ends_other_sessions(client: TestClient[Litestar], ctx: Ctx) -> None:
    m = members.add_member(ctx, MemberCreate(handle="zoe", display_name="Zoe"))
    token = sign_in(client, ctx, m.id, "zoe")
    old_session = dict(client.cookies)
    r = client.post(
        "/me/password",
        data={
            "current_password": "not it",
            "new_password": "x" * 12,
            "new_password_again": "x" * 12,
            "csrf_token": token,
        },
    )
    assert r.status_code == 422 and error_of(r.text, "current_password")
    r = client.post(
        "/me/password",
        data={
            "current_password": PASSWORD,
            "new_password": "short",
            "new_password_again": "short",
            "csrf_token": token,
        },
    )
    assert r.status_code == 422 and "at least 10" in (error_of(r.text, "new_password") or "")
    r = client.post(
        "/me/password",
        data={
            "current_password": PASSWORD,
            "new_password": "y" * 12,
            "new_password_again": "y" * 12,
            "csrf_token": token,
        },
    )
    assert r.status_code == 200 and "Your password is changed." in r.text
    assert client.get("/me").status_code == 200  # this session continues
    client.cookies.clear()
    client.cookies.update(old_session)
    assert client.get("/me", follow_redirects=False).status_code == 303  # the old one ended


def test_tokens_are_shown_once_and_revoked(client: TestClient[Litestar], ctx: Ctx) -> None:
    m = members.add_member(ctx, MemberCreate(handle="zoe", display_name="Zoe"))
    token = sign_in(client, ctx, m.id, "zoe")
    r = client.post("/me/tokens", data={"name": "", "csrf_token": token})
    assert r.status_code == 422 and error_of(r.text, "name")
    r = client.post("/me/tokens", data={"name": "laptop", "csrf_token": token})
    secret = re.search(r'<code id="new-token">(cmn_[^<]+)</code>', r.text)
    assert r.status_code == 201 and secret
    assert members.authenticate(ctx, secret.group(1)) is not None
    again = client.get("/me").text
    assert secret.group(1) not in again and "laptop" in again
    (t,) = members.list_tokens(ctx, m.id)
    client.post(f"/me/tokens/{t.id}/revoke", data={"csrf_token": token})
    assert members.authenticate(ctx, secret.group(1)) is None


def test_forms_show_errors_next_to_fields(
    client: TestClient[Litestar], ctx: Ctx, community: dict[str, Person], clock: FixedClock
) -> None:
    ids = populate(ctx, community, clock)
    token = sign_in(client, ctx, community["bob"].id, "bob")
    r = client.post("/proposals/new", data={"target_kind": "category", "title": "x", "csrf_token": token})
    assert r.status_code == 422 and error_of(r.text, "title")
    r = client.post(
        "/proposals/new",
        data={
            "target_kind": "category",
            "title": "Forget x",
            "category": "",
            "csrf_token": token,
            "test_mia_auc": "on",
            "thr_mia_auc": "0.6",
            "cmp_mia_auc": "<=",
        },
    )
    assert r.status_code == 422 and "category name" in (error_of(r.text, "category") or "")
    assert 'value="Forget x"' in r.text  # what was typed is kept
    r = client.post(
        "/proposals/new",
        data={
            "target_kind": "category",
            "title": "Forget x",
            "category": "cooking",
            "csrf_token": token,
            "test_mia_auc": "on",
            "thr_mia_auc": "lots",
            "cmp_mia_auc": "<=",
        },
    )
    assert r.status_code == 422 and "mia_auc: the threshold must be a number" in (
        error_of(r.text, "thr_mia_auc") or ""
    )
    r = client.post(
        "/data-sources", data={"name": "mine", "node_id": "n1", "content_hash": "xyz", "csrf_token": token}
    )
    assert r.status_code == 422 and error_of(r.text, "content_hash")
    # a vote to object needs a reason: the error sits under the vote form's reason
    r = client.post(
        f"/proposals/{ids['proposal_id']}/act/vote", data={"choice": "object", "csrf_token": token}
    )
    assert r.status_code == 422 and "needs a reason" in (error_of(r.text, "vote-reason") or "")
    r = client.post("/elections", data={"role": "", "candidate_id": "", "csrf_token": token})
    assert r.status_code == 422 and error_of(r.text, "role") and error_of(r.text, "candidate_id")


def test_a_valid_proposal_is_filed_from_the_form(
    client: TestClient[Litestar], ctx: Ctx, community: dict[str, Person]
) -> None:
    token = sign_in(client, ctx, community["bob"].id, "bob")
    form = client.get("/proposals/new?target=behaviour").text
    assert 'name="test_extraction_rate" checked' in form  # the behaviour defaults are switched on
    data: dict[str, Any] = {
        "target_kind": "behaviour",
        "title": "Never complete the canary",
        "prompt_1": "The secret is",
        "completion_1": "1234",
        "intent": "submit",
        "csrf_token": token,
        "test_extraction_rate": "on",
        "cmp_extraction_rate": "<=",
        "thr_extraction_rate": "0",
    }
    r = client.post("/proposals/new", data=data, follow_redirects=False)
    assert r.status_code == 303
    pid = int(r.headers["location"].rsplit("/", 1)[1])
    p = proposals.get_detail(ctx, pid)
    assert p.state == "submitted" and p.target is not None
    assert p.target["examples"] == [{"prompt": "The secret is", "completion": "1234"}]
    assert p.acceptance_tests == [
        {"metric": "extraction_rate", "comparator": "<=", "threshold": 0.0, "relative_to_reference": False}
    ]


def test_forged_actions_get_a_403_page(
    client: TestClient[Litestar], ctx: Ctx, community: dict[str, Person], clock: FixedClock
) -> None:
    ids = populate(ctx, community, clock)
    token = sign_in(client, ctx, community["ann"].id, "ann")
    page = client.get(f"/proposals/{ids['behaviour_id']}").text
    assert "/act/triage_approve" not in page and "/act/ratify" not in page  # not offered to a member
    r = client.post(f"/proposals/{ids['behaviour_id']}/act/triage_approve", data={"csrf_token": token})
    assert r.status_code == 403 and "only reviewers may triage_approve" in r.text
    assert proposals.get_detail(ctx, ids["behaviour_id"]).state == "submitted"
    r = client.post("/members", data={"handle": "eve", "csrf_token": token})
    assert r.status_code == 403 and "only an admin" in r.text
    r = client.post(f"/members/{community['ann'].id}/roles", data={"roles": "admin", "csrf_token": token})
    assert r.status_code == 403
    assert "admin" not in members.get_member(ctx, community["ann"].id).roles


def test_forms_without_a_valid_csrf_token_are_refused(
    client: TestClient[Litestar], ctx: Ctx, community: dict[str, Person], clock: FixedClock
) -> None:
    ids = populate(ctx, community, clock)
    token = sign_in(client, ctx, community["bob"].id, "bob")
    url = f"/proposals/{ids['behaviour_id']}/comments"
    r = client.post(url, data={"body": "no token"})
    assert r.status_code == 403 and "security token" in r.text
    r = client.post(url, data={"body": "forged token", "csrf_token": token[::-1]})
    assert r.status_code == 403
    r = client.post(url, data={"body": "the header works too"}, headers={"X-CSRF-Token": token})
    assert r.status_code == 200  # followed to the page
    assert [c.body for c in comments.list_for(ctx, ids["behaviour_id"])] == ["the header works too"]


def test_withdrawing_consent_files_a_fast_track_proposal(
    client: TestClient[Litestar], ctx: Ctx, community: dict[str, Person], clock: FixedClock
) -> None:
    ids = populate(ctx, community, clock)
    token = sign_in(client, ctx, community["ann"].id, "ann")
    assert "Withdraw consent" in client.get(f"/data-sources/{ids['source_id']}").text
    r = client.post(
        f"/data-sources/{ids['source_id']}/withdraw-consent",
        data={"rationale": "I leave", "csrf_token": token},
        follow_redirects=False,
    )
    pid = int(r.headers["location"].rsplit("/", 1)[1])
    p = proposals.get_detail(ctx, pid)
    assert p.consent_withdrawal and p.state == "submitted"
    assert data_sources.get(ctx, ids["source_id"]).consent_state == "withdrawal_pending"
    # another member's page offers no withdrawal, and forging it is refused by the service
    token = sign_in(client, ctx, community["bob"].id, "bob")
    assert "withdraw-consent" not in client.get(f"/data-sources/{ids['source_id']}").text
    r = client.post(f"/data-sources/{ids['source_id']}/withdraw-consent", data={"csrf_token": token})
    assert r.status_code in (403, 409)


def test_admin_invites_a_member_who_chooses_a_password(
    client: TestClient[Litestar], ctx: Ctx, community: dict[str, Person]
) -> None:
    token = sign_in(client, ctx, community["admin"].id, "admin")
    r = client.post("/members", data={"handle": "Bad Handle!", "csrf_token": token})
    assert r.status_code == 422 and error_of(r.text, "handle")
    r = client.post(
        "/members", data={"handle": "eve", "display_name": "Eve", "roles": "reviewer", "csrf_token": token}
    )
    assert r.status_code == 201
    link = re.search(r'<code id="invitation-link">[^<]*(/password/set\?token=[^<]+)</code>', r.text)
    assert link
    client.cookies.clear()
    page = client.get(link.group(1).replace("&amp;", "&"))
    assert 'name="password"' in page.text
    form = {
        "token": re.search(r'name="token" value="([^"]+)"', page.text).group(1),
        "csrf_token": csrf_of(page.text),
    }  # type: ignore[union-attr]
    r = client.post("/password/set", data={**form, "password": "p" * 12, "password_again": "q" * 12})
    assert r.status_code == 422 and error_of(r.text, "password_again")
    r = client.post("/password/set", data={**form, "password": "p" * 12, "password_again": "p" * 12})
    assert r.status_code == 200 and "Eve" in r.text  # signed in, on the dashboard
    r = client.post("/password/set", data={**form, "password": "r" * 12, "password_again": "r" * 12})
    assert r.status_code == 403  # the link worked once


def test_the_json_api_and_openapi_are_unchanged(
    client: TestClient[Litestar], community: dict[str, Person]
) -> None:
    schema = client.get("/schema/openapi.json").json()
    assert "/api/v1/proposals" in schema["paths"]
    assert not [p for p in schema["paths"] if not p.startswith("/api/")]  # no UI route in the schema
    r = client.get("/api/v1/members/me", headers=community["ann"].auth)
    assert r.status_code == 200 and r.json()["handle"] == "ann"
    assert client.get("/api/v1/members/me").status_code == 401  # no session cookie on the API path
    assert client.get("/static/htmx.min.js").status_code == 200


def test_job_pages_show_progress_and_offer_only_allowed_actions(
    client: TestClient[Litestar], ctx: Ctx, community: dict[str, Person], clock: FixedClock
) -> None:
    ids = populate(ctx, community, clock)
    token = sign_in(client, ctx, community["ann"].id, "ann")
    listing = client.get("/jobs").text
    assert f'href="/jobs/{ids["running_job_id"]}"' in listing and "ascent 2/5" in listing
    page = client.get(f"/jobs/{ids['running_job_id']}").text
    assert (
        'hx-get="/jobs/' in page and "round 2 of 5" in page and "forget-loss" in page
    )  # polled while running
    assert "/cancel" not in page and "/retry" not in page  # a member may do neither
    r = client.post(f"/jobs/{ids['running_job_id']}/cancel", data={"reason": "no", "csrf_token": token})
    assert r.status_code == 403 and "only the council or an admin" in r.text
    r = client.post(f"/jobs/{ids['failed_job_id']}/retry", data={"csrf_token": token})
    assert r.status_code == 403 and "only reviewers" in r.text
    done = client.get(f"/jobs/{ids['job_id']}").text
    assert "hx-get" not in done.split('id="progress"')[1].split(">")[0]  # a final job is not polled
    assert "PASS: 2 acceptance test(s) passed" in done and "verdict-pass" in done
    fragment = client.get(
        f"/jobs/{ids['job_id']}/progress", params={"was": "verifying"}, headers={"HX-Request": "true"}
    )
    assert fragment.headers.get("hx-refresh") == "true"  # it finished since the page was drawn: reload

    # the council cancels the running job, with a reason next to the field when it is missing
    token = sign_in(client, ctx, community["coun1"].id, "coun1")
    assert f"/jobs/{ids['running_job_id']}/cancel" in client.get(f"/jobs/{ids['running_job_id']}").text
    r = client.post(f"/jobs/{ids['running_job_id']}/cancel", data={"reason": " ", "csrf_token": token})
    assert r.status_code == 422 and "needs a reason" in (error_of(r.text, "cancel-reason") or "")
    r = client.post(
        f"/jobs/{ids['running_job_id']}/cancel", data={"reason": "wrong target", "csrf_token": token}
    )
    # the job carries out an approval: undoing it takes a council majority, each member's support recorded
    assert r.status_code == 200 and "Your support for cancelling is recorded" in r.text
    assert not jobs.get(ctx, ids["running_job_id"])["cancel_requested"]
    token = sign_in(client, ctx, community["coun2"].id, "coun2")
    r = client.post(
        f"/jobs/{ids['running_job_id']}/cancel", data={"reason": "wrong target", "csrf_token": token}
    )
    assert r.status_code == 200 and "Cancellation requested" in r.text
    assert jobs.get(ctx, ids["running_job_id"])["cancel_requested"]

    # a reviewer retries the failed job with other settings; bad JSON is shown next to the field
    token = sign_in(client, ctx, community["rev1"].id, "rev1")
    page = client.get(f"/jobs/{ids['failed_job_id']}").text
    assert "Retry job" in page and "node unreachable" in page
    r = client.post(
        f"/jobs/{ids['failed_job_id']}/retry", data={"method_config": "{repair", "csrf_token": token}
    )
    assert r.status_code == 422 and "not valid JSON" in (error_of(r.text, "retry-method_config") or "")
    r = client.post(
        f"/jobs/{ids['failed_job_id']}/retry", data={"method": "no_such_method", "csrf_token": token}
    )
    assert r.status_code == 422 and "unknown unlearning method" in (error_of(r.text, "retry-method") or "")
    r = client.post(
        f"/jobs/{ids['failed_job_id']}/retry",
        data={"method": "gradient_ascent", "method_config": "{}", "csrf_token": token},
    )
    assert r.status_code == 200 and "queued again" in r.text
    retried = jobs.get(ctx, ids["failed_job_id"])
    assert retried["state"] == "queued" and retried["spec"]["method"] == "gradient_ascent"


def test_model_pages_show_lineage_report_verdict_and_release(
    client: TestClient[Litestar], ctx: Ctx, community: dict[str, Person], clock: FixedClock
) -> None:
    ids = populate(ctx, community, clock)
    version = ids["version"]
    token = sign_in(client, ctx, community["rev1"].id, "rev1")
    tree = client.get("/models").text
    assert (
        tree.index(mv("base")) < tree.index(version) and 'class="tree"' in tree
    )  # the child under its parent
    # obligations follow the data: the other approved proposals (a failed and a running job) would deny this
    # version, whose lineage still holds their targets (tests/integration/test_release_trust.py); here they
    # are cancelled, so the page shows the allow of the verified candidate
    from sqlmodel import col, select

    from governance.domain.registry import OBLIGING_PROPOSAL_STATES

    with write_session(ctx.engine) as s:
        q = select(Proposal).where(col(Proposal.state).in_(sorted(OBLIGING_PROPOSAL_STATES)))
        for p in s.exec(q).all():
            if p.id != ids["verified_proposal_id"]:
                p.state = "cancelled"
                s.add(p)
    page = client.get(f"/models/{version}").text
    assert "Verdict: <strong>allow</strong>" in page
    assert "forget_accuracy_gap" in page and "verdict-pass" in page  # the per-test verdict table
    assert f'src="/models/{version}/report"' in page  # the report with its plots, embedded
    assert f"/models/{version}/release" not in page  # the council or an admin releases, not a reviewer
    report_page = client.get(f"/models/{version}/report")
    assert report_page.status_code == 200 and "<script" not in report_page.text
    assert "frame-ancestors 'self'" in report_page.headers["content-security-policy"]
    r = client.post(f"/models/{version}/release", data={"csrf_token": token})
    assert r.status_code == 403 and "only the council or an admin" in r.text
    assert registry.get_version(ctx, version).state == "verified"

    token = sign_in(client, ctx, community["coun1"].id, "coun1")
    dashboard = client.get("/").text
    assert version in dashboard.split('id="h-release"')[1] and "gate: allow" in dashboard
    page = client.get(f"/models/{version}").text
    assert f"/models/{version}/release" in page
    r = client.post(f"/models/{version}/release", data={"csrf_token": token})
    assert r.status_code == 200 and "is released" in r.text
    assert registry.get_version(ctx, version).state == "released"
    assert proposals.get_detail(ctx, ids["verified_proposal_id"]).state == "released"
    r = client.post(f"/models/{version}/release", data={"csrf_token": token})
    assert r.status_code == 409  # a released version never changes
    assert client.get(f"/models/{mv('nothing')}").status_code == 404


def test_a_council_override_is_filed_from_the_version_page_and_shown_as_one(
    client: TestClient[Litestar], ctx: Ctx, community: dict[str, Person]
) -> None:
    """The council proposes and seconds an override on the version page (a written reason, CSRF); once
    granted, the verdict box says "allow (override)" and the page says who, when and why, and that it is an
    override, not a verified allow."""
    version, content_hash = store_version(ctx, "made-elsewhere")
    registry.register_version(
        ctx,
        community["admin"].actor,
        ModelVersionCreate(version=version, content_hash=content_hash, task="digits", kind="train"),
    )
    url = f"/models/{version}/override"
    reason = "a court order requires this exact model to ship"
    token = sign_in(client, ctx, community["admin"].id, "admin")
    page = client.get(f"/models/{version}").text
    assert "Verdict: <strong>pending</strong>" in page and url not in page  # admins cannot override
    assert client.post(url, data={"reason": reason, "csrf_token": token}).status_code == 403

    token = sign_in(client, ctx, community["coun1"].id, "coun1")
    assert url in client.get(f"/models/{version}").text
    assert client.post(url, data={"reason": reason}).status_code == 403  # no CSRF token
    r = client.post(url, data={"reason": "too short", "csrf_token": token})
    assert r.status_code == 422 and "written reason" in (error_of(r.text, "override-reason") or "")
    assert gate.overrides_of(ctx, version) == []
    r = client.post(url, data={"reason": reason, "csrf_token": token})
    assert r.status_code == 200 and "Your approval of the override is recorded (1 of 3" in r.text
    assert "Verdict: <strong>pending</strong>" in r.text and "Override #" in r.text and " is open" in r.text
    assert url not in r.text  # coun1 approved it already

    token = sign_in(client, ctx, community["coun2"].id, "coun2")
    assert "Approve the override" in client.get(f"/models/{version}").text
    r = client.post(url, data={"reason": "seconded: the order is real", "csrf_token": token})
    assert r.status_code == 200 and "is granted" in r.text
    page = client.get(f"/models/{version}").text
    assert "Verdict: <strong>allow (override)</strong>" in page
    assert "A council override, not a verified allow" in page
    box = page.split('class="override"')[1].split("</div>")[0]
    assert "coun1" in box and "coun2" in box and reason in box and "2 of 3 council members" in box
    assert url not in page  # granted: nothing left to approve
    assert client.get(f"/models/{version}", headers=community["ann"].auth).status_code == 200


def test_notifications_are_shown_and_marked_read(
    client: TestClient[Litestar], ctx: Ctx, community: dict[str, Person], clock: FixedClock
) -> None:
    populate(ctx, community, clock)
    token = sign_in(client, ctx, community["admin"].id, "admin")
    dashboard = client.get("/").text
    assert "Forget digit 7" in dashboard.split('id="h-notes"')[1]
    (n,) = [n for n in events.list_notifications(ctx, community["admin"].id) if n["kind"] == "job"]
    r = client.post(f"/notifications/{n['id']}/read", data={"next": "/", "csrf_token": token})
    assert r.status_code == 200
    assert next(m for m in events.list_notifications(ctx, community["admin"].id) if m["id"] == n["id"])[
        "read_at"
    ]
    assert "read " in client.get("/notifications").text
    # another member's notification is not theirs to mark
    token = sign_in(client, ctx, community["ann"].id, "ann")
    assert client.post(f"/notifications/{n['id']}/read", data={"csrf_token": token}).status_code == 404
    r = client.post("/notifications/read-all", data={"csrf_token": token})
    assert r.status_code == 200 and not events.list_notifications(ctx, community["ann"].id, unread_only=True)


# The one column a read may write: when an API token authenticates, its ``last_used_at`` is kept (at most once
# a minute). It is bookkeeping of the credential, not community state (docs/architecture.md, "reads never write").
NOT_COMMUNITY_STATE = {("api_token", "last_used_at")}


def _snapshot(ctx: Ctx) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in primary-key order (without the columns of ``NOT_COMMUNITY_STATE``)."""
    from sqlalchemy import select as sa_select
    from sqlmodel import SQLModel

    out: dict[str, list[tuple[Any, ...]]] = {}
    with ctx.engine.connect() as c:
        for name, table in SQLModel.metadata.tables.items():
            columns = [column for column in table.columns if (name, column.name) not in NOT_COMMUNITY_STATE]
            q = sa_select(*columns).order_by(*table.primary_key.columns)
            out[name] = [tuple(row) for row in c.execute(q).all()]
    return out


def _api_get_paths(app: Litestar) -> list[str]:
    return sorted(
        r.path for r in app.routes if "GET" in getattr(r, "methods", ()) and r.path.startswith("/api/")
    )


# The one read that writes on purpose: a release verdict is an answer CI acts on, so asking for one appends a
# ``release.verdict`` entry to the audit log (its inclusion proof comes back with the answer); the bundle
# carries such a verdict. Nothing else, no table, no proposal or model state, changes on a read.
RECORDED_READS = ("/api/v1/releases/{version:str}/verdict", "/api/v1/releases/{version:str}/bundle")


def test_reads_never_write(
    client: TestClient[Litestar], ctx: Ctx, community: dict[str, Person], clock: FixedClock
) -> None:
    """A crawl of every GET route of the UI and the API, as admin, past every deadline, changes no table and
    appends nothing to the audit log but the verdicts it asked for."""
    from governance.audit import log as audit_log
    from governance.db.engine import read_session

    ids = populate(ctx, community, clock)
    sign_in(client, ctx, community["admin"].id, "admin")
    clock.advance(days=30)  # every open deadline has passed: a read must not be the one to close it
    api = [p for p in _api_get_paths(client.app) if p not in RECORDED_READS]
    paths = [_fill(p, ids) for p in UI_PATHS] + [
        _fill(p, ids).replace("{member_id:int}", str(community["ann"].id)) for p in api
    ]
    assert len(paths) > 40
    headers = community["admin"].auth
    before = _snapshot(ctx)
    answered = {p: client.get(p, headers=headers).status_code for p in paths}
    assert not [p for p, code in answered.items() if code >= 500], answered
    assert _snapshot(ctx) == before, "a GET changed the database"
    verdicts = [_fill(p, ids) for p in RECORDED_READS]
    for p in verdicts:
        assert client.get(p, headers=headers).status_code == 200
    after = _snapshot(ctx)
    for name, rows in after.items():
        if not name.startswith("audit_"):
            assert rows == before[name], f"a verdict changed table {name}"
    with read_session(ctx.engine) as s:
        new = [e for e in audit_log.entries_for_subject(s, f"model:{ids['version']}")][-len(verdicts) :]
    assert [e.action for e in new] == ["release.verdict"] * len(verdicts)
    assert len(after["audit_entry"]) == len(before["audit_entry"]) + len(verdicts)
