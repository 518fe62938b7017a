"""The governance core over the JSON API, end to end, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from governance.audit import log as audit_log
from governance.db.engine import read_session
from governance.domain.clock import FixedClock
from governance.services.context import Ctx
from tests.conftest import PassTime, Person, add_person

Client = TestClient[Litestar]


def ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


def register_source(client: Client, owner: Person, name: str = "recipes") -> dict[str, Any]:
    body = {
        "name": name,
        "node_id": f"node-{owner.handle}",
        "content_hash": hashlib.sha256(name.encode()).hexdigest(),
        "description": "family recipes",
    }
    return ok(client.post("/api/v1/data-sources", json=body, headers=owner.auth), 201)


def new_proposal(client: Client, who: Person, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": "Forget the recipes source",
        "target": {"kind": "category", "category": "cooking"},
        "rationale": "members asked",
        "submit": True,
    }
    body.update(extra)
    return ok(client.post("/api/v1/proposals", json=body, headers=who.auth), 201)


def to_voting(client: Client, p: dict[str, Any], people: dict[str, Person]) -> None:
    ok(
        client.post(
            f"/api/v1/proposals/{p['id']}/triage", json={"decision": "approve"}, headers=people["rev1"].auth
        )
    )
    r = ok(
        client.post(
            f"/api/v1/proposals/{p['id']}/triage", json={"decision": "approve"}, headers=people["rev2"].auth
        )
    )
    assert r["state"] == "voting"


def test_full_lifecycle_to_approved(
    client: Client,
    community: dict[str, Person],
    clock: FixedClock,
    ctx: Ctx,
    pass_time: PassTime,
) -> None:
    people = community
    src = register_source(client, people["ann"])
    p = new_proposal(client, people["bob"], target={"kind": "data_source", "data_source_id": src["id"]})
    assert p["state"] == "submitted"
    assert [t["metric"] for t in p["acceptance_tests"]] == [  # the calibrated defaults (issue 16)
        "mia_auc_gap_pvalue",
        "canary_exposure_pvalue",
        "retained_utility_drop",
        "relearn_recovery",
    ]
    ok(
        client.post(
            f"/api/v1/proposals/{p['id']}/triage", json={"decision": "approve"}, headers=people["rev1"].auth
        )
    )
    assert client.get(f"/api/v1/proposals/{p['id']}", headers=people["bob"].auth).json()["state"] == "triage"
    ok(
        client.post(
            f"/api/v1/proposals/{p['id']}/triage", json={"decision": "approve"}, headers=people["rev2"].auth
        )
    )
    detail = ok(client.get(f"/api/v1/proposals/{p['id']}", headers=people["ann"].auth))
    assert detail["state"] == "voting"
    assert detail["tally"]["electorate"] == len(people)
    assert "vote" in detail["allowed_actions"]

    # six of eleven vote (quorum 0.5); one changes their mind; support 5/6
    for h in ("ann", "cat", "dan", "rev3", "coun3"):
        ok(
            client.post(
                f"/api/v1/proposals/{p['id']}/votes", json={"choice": "approve"}, headers=people[h].auth
            )
        )
    ok(
        client.post(
            f"/api/v1/proposals/{p['id']}/votes",
            json={"choice": "object", "reason": "too broad"},
            headers=people["admin"].auth,
        )
    )
    ok(
        client.post(
            f"/api/v1/proposals/{p['id']}/votes", json={"choice": "abstain"}, headers=people["dan"].auth
        )
    )
    tally = ok(client.get(f"/api/v1/proposals/{p['id']}/tally", headers=people["ann"].auth))
    assert (tally["approve"], tally["object"], tally["abstain"], tally["turnout"]) == (4, 1, 1, 6)
    history = ok(client.get(f"/api/v1/proposals/{p['id']}/votes?history=true", headers=people["ann"].auth))
    assert len(history) == 7

    pass_time(days=7, seconds=1)
    detail = ok(client.get(f"/api/v1/proposals/{p['id']}", headers=people["ann"].auth))
    assert detail["state"] == "council_review"
    assert detail["vote_outcome"] == "passed"
    r = client.post(
        f"/api/v1/proposals/{p['id']}/votes", json={"choice": "approve"}, headers=people["bob"].auth
    )
    assert r.status_code == 409

    ok(
        client.post(
            f"/api/v1/proposals/{p['id']}/council", json={"decision": "ratify"}, headers=people["coun1"].auth
        )
    )
    r = ok(
        client.post(
            f"/api/v1/proposals/{p['id']}/council", json={"decision": "ratify"}, headers=people["coun2"].auth
        )
    )
    assert r["state"] == "appeal_window" and r["pending_outcome"] == "approved"
    pass_time(days=3, seconds=1)
    detail = ok(client.get(f"/api/v1/proposals/{p['id']}", headers=people["bob"].auth))
    assert detail["state"] == "job_queued"  # approval enqueues the unlearning job in the same transaction
    actions = [e["action"] for e in detail["history"]]
    assert actions[0] == "created" and actions[-2:] == ["close_appeal_window", "queue_job"]
    jobs = ok(client.get(f"/api/v1/jobs?proposal_id={p['id']}", headers=people["bob"].auth))
    assert len(jobs) == 1 and jobs[0]["state"] == "queued"
    assert jobs[0]["spec"]["target"] == {"kind": "data_source", "value": f"node-ann/{src['name']}"}
    assert jobs[0]["acceptance_tests"] == p["acceptance_tests"]
    assert {"submit", "triage_approve", "electorate_frozen", "close_vote", "tally", "ratify"} <= set(actions)

    # every stage is in the tamper-evident log too
    with read_session(ctx.engine) as s:
        logged = [e.action for e in audit_log.entries_for_subject(s, f"proposal:{p['id']}")]
    assert logged.count("proposal.vote_cast") == 6 and logged.count("proposal.vote_changed") == 1
    assert "proposal.close_appeal_window" in logged


def test_recusal_is_enforced_by_the_server(client: Client, community: dict[str, Person]) -> None:
    people = community
    src = register_source(client, people["rev3"], "rev3-notes")
    p = new_proposal(client, people["rev1"], target={"kind": "data_source", "data_source_id": src["id"]})
    for who in ("rev1", "rev3"):  # the proposer and the data source's owner
        r = client.post(
            f"/api/v1/proposals/{p['id']}/triage", json={"decision": "approve"}, headers=people[who].auth
        )
        assert r.status_code == 403 and "recused" in r.json()["detail"]
    ok(
        client.post(
            f"/api/v1/proposals/{p['id']}/conflicts",
            json={"reason": "I co-wrote it"},
            headers=people["rev2"].auth,
        )
    )
    r = client.post(
        f"/api/v1/proposals/{p['id']}/triage", json={"decision": "approve"}, headers=people["rev2"].auth
    )
    assert r.status_code == 403 and "conflict" in r.json()["detail"]
    r = client.post(
        f"/api/v1/proposals/{p['id']}/triage", json={"decision": "approve"}, headers=people["ann"].auth
    )
    assert r.status_code == 403 and "reviewers" in r.json()["detail"]


def test_consent_withdrawal_fast_track(client: Client, community: dict[str, Person]) -> None:
    people = community
    src = register_source(client, people["cat"], "cat-diary")
    r = client.post(
        "/api/v1/proposals",
        json={
            "title": "Forget my diary",
            "target": {"kind": "data_source", "data_source_id": src["id"]},
            "consent_withdrawal": True,
            "submit": True,
        },
        headers=people["bob"].auth,
    )
    assert r.status_code == 403  # only the owner may withdraw consent
    p = new_proposal(
        client,
        people["cat"],
        title="Forget my diary",
        target={"kind": "data_source", "data_source_id": src["id"]},
        consent_withdrawal=True,
    )
    assert ok(client.get(f"/api/v1/data-sources/{src['id']}", headers=people["cat"].auth))[
        "consent_state"
    ] == ("withdrawal_pending")
    r = ok(
        client.post(
            f"/api/v1/proposals/{p['id']}/triage", json={"decision": "approve"}, headers=people["rev1"].auth
        )
    )
    assert r["state"] == "job_queued"  # one reviewer confirms ownership; no vote, no council
    # pending until the unlearning is verified (tests/integration/test_job_failures.py follows it there)
    assert (
        ok(client.get(f"/api/v1/data-sources/{src['id']}", headers=people["cat"].auth))["consent_state"]
        == "withdrawal_pending"
    )


def test_election_grants_the_role(
    client: Client, community: dict[str, Person], clock: FixedClock, pass_time: PassTime
) -> None:
    people = community
    p = new_proposal(
        client,
        people["bob"],
        kind="election",
        title="Ann for reviewer",
        target=None,
        election={"role": "reviewer", "candidate_id": people["ann"].id},
    )
    r = client.post(
        f"/api/v1/proposals/{p['id']}/triage", json={"decision": "approve"}, headers=people["rev1"].auth
    )
    assert r.status_code == 200
    to_voting_second = client.post(
        f"/api/v1/proposals/{p['id']}/triage", json={"decision": "approve"}, headers=people["rev2"].auth
    )
    assert to_voting_second.json()["state"] == "voting"
    for h in ("ann", "bob", "cat", "dan", "rev1", "rev2"):
        ok(
            client.post(
                f"/api/v1/proposals/{p['id']}/votes", json={"choice": "approve"}, headers=people[h].auth
            )
        )
    pass_time(days=8)
    assert ok(client.get(f"/api/v1/proposals/{p['id']}", headers=people["ann"].auth))["state"] == "approved"
    me = ok(client.get("/api/v1/members/me", headers=people["ann"].auth))
    assert "reviewer" in me["roles"]


def test_electorate_is_frozen_and_secret_tally_hidden(
    client: Client, community: dict[str, Person], ctx: Ctx
) -> None:
    people = community
    p = new_proposal(client, people["bob"], secret_tally=True)
    to_voting(client, p, people)
    late = add_person(ctx, "latecomer")
    r = client.post(f"/api/v1/proposals/{p['id']}/votes", json={"choice": "approve"}, headers=late.auth)
    assert r.status_code == 403 and "electorate" in r.json()["detail"]
    ok(
        client.post(
            f"/api/v1/proposals/{p['id']}/votes", json={"choice": "approve"}, headers=people["ann"].auth
        )
    )
    t = ok(client.get(f"/api/v1/proposals/{p['id']}/tally", headers=people["ann"].auth))
    assert t["hidden"] and t["approve"] is None and t["turnout"] == 1
    assert client.get(f"/api/v1/proposals/{p['id']}/votes", headers=people["ann"].auth).status_code == 403


def test_block_goes_to_council_veto_appeal_and_final_word(
    client: Client,
    community: dict[str, Person],
    clock: FixedClock,
    pass_time: PassTime,
) -> None:
    people = community
    p = new_proposal(client, people["bob"])
    to_voting(client, p, people)
    ok(
        client.post(
            f"/api/v1/proposals/{p['id']}/votes",
            json={"choice": "block", "reason": "harms minorities"},
            headers=people["cat"].auth,
        )
    )
    pass_time(days=8)
    d = ok(client.get(f"/api/v1/proposals/{p['id']}", headers=people["bob"].auth))
    assert d["state"] == "council_review" and d["block_on_record"] and d["vote_outcome"] == "blocked"
    r = client.post(
        f"/api/v1/proposals/{p['id']}/council", json={"decision": "veto"}, headers=people["coun1"].auth
    )
    assert r.status_code == 422 and r.json()["field"] == "reason"
    for h in ("coun1", "coun2"):
        r = client.post(
            f"/api/v1/proposals/{p['id']}/council",
            json={"decision": "veto", "reason": "blocked"},
            headers=people[h].auth,
        )
    assert r.json()["state"] == "appeal_window" and r.json()["pending_outcome"] == "vetoed"
    r = client.post(f"/api/v1/proposals/{p['id']}/appeal", json={"reason": "x"}, headers=people["dan"].auth)
    assert r.status_code == 403
    r = ok(
        client.post(
            f"/api/v1/proposals/{p['id']}/appeal", json={"reason": "new facts"}, headers=people["bob"].auth
        )
    )
    assert r["state"] == "council_review" and r["appealed"]
    for h in ("coun1", "coun3"):
        r = client.post(
            f"/api/v1/proposals/{p['id']}/council", json={"decision": "ratify"}, headers=people[h].auth
        )
    assert r.json()["state"] == "job_queued"  # approved, and its job queued
    r = client.post(f"/api/v1/proposals/{p['id']}/withdraw", json={}, headers=people["bob"].auth)
    assert r.status_code == 409


def test_expiry_when_nobody_triages(
    client: Client, community: dict[str, Person], clock: FixedClock, pass_time: PassTime
) -> None:
    p = new_proposal(client, community["bob"])
    pass_time(days=7, seconds=1)
    assert ok(client.get(f"/api/v1/proposals/{p['id']}", headers=community["bob"].auth))["state"] == "expired"


def _proposal_count(client: Client, who: Person) -> int:
    return len(ok(client.get("/api/v1/proposals?limit=500", headers=who.auth)))


BAD_BODIES: list[tuple[Any, int, str]] = [
    ({"title": "x"}, 400, "title"),
    ({"title": "Valid title"}, 422, "target"),
    ({"title": "Valid title", "target": {"kind": "nonsense"}}, 422, "target.kind"),
    (
        {"title": "Valid title", "target": {"kind": "data_source", "data_source_id": 99999}},
        422,
        "target.data_source_id",
    ),
    ({"title": "Valid title", "target": {"kind": "data_source", "data_source_id": "1"}}, 422, "target"),
    ({"title": "Valid title", "target": {"kind": "behaviour"}}, 422, "target"),
    (
        {"title": "Valid title", "target": {"kind": "behaviour", "pattern": "(unclosed"}},
        422,
        "target.pattern",
    ),
    (
        {
            "title": "Valid title",
            "target": {"kind": "category", "category": "x"},
            "acceptance_tests": [{"metric": "nope", "comparator": "<=", "threshold": 1}],
        },
        422,
        "metric",
    ),
    (
        {
            "title": "Valid title",
            "target": {"kind": "category", "category": "x"},
            "acceptance_tests": [{"metric": "mia_auc", "comparator": "~", "threshold": 1}],
        },
        422,
        "acceptance_tests",
    ),
    (
        {
            "title": "Valid title",
            "target": {"kind": "category", "category": "x"},
            "acceptance_tests": [{"metric": "canary_exposure", "comparator": "<=", "threshold": "high"}],
        },
        422,
        "acceptance_tests",
    ),
    ({"title": "Valid title", "kind": "referendum"}, 422, "kind"),
    (
        {"title": "Valid title", "kind": "election", "election": {"role": "admin", "candidate_id": 1}},
        422,
        "election.role",
    ),
    ({"title": "Valid title", "unknown_field": 1, "target": {"kind": "category", "category": "x"}}, 400, ""),
    ("not json at all", 400, ""),
    ([1, 2, 3], 400, ""),
]


@pytest.mark.parametrize(("body", "status", "field"), BAD_BODIES)
def test_bad_input_is_refused_and_changes_nothing(
    client: Client, community: dict[str, Person], body: Any, status: int, field: str
) -> None:
    who = community["bob"]
    before = _proposal_count(client, who)
    if isinstance(body, str):
        r = client.post(
            "/api/v1/proposals", content=body, headers={**who.auth, "content-type": "application/json"}
        )
    else:
        r = client.post("/api/v1/proposals", json=body, headers=who.auth)
    assert r.status_code == status, r.text
    err = r.json()
    assert err["detail"] and err["status_code"] == status
    if field and status == 422:
        assert err["field"] == field
    if field and status == 400:
        assert field in err["detail"]
    assert _proposal_count(client, who) == before


def test_auth_and_not_found(client: Client, community: dict[str, Person]) -> None:
    assert client.get("/api/v1/proposals").status_code == 401
    r = client.get("/api/v1/proposals", headers={"Authorization": "Bearer cmn_forged"})
    assert r.status_code == 401 and "unknown or revoked" in r.json()["detail"]
    assert client.get("/api/v1/proposals/4242", headers=community["ann"].auth).status_code == 404
    assert client.get("/api/v1/proposals?state=bogus", headers=community["ann"].auth).status_code == 422
    assert client.get("/api/v1/proposals?limit=0", headers=community["ann"].auth).status_code == 400
    # tokens: revoke one and it stops working
    t = ok(
        client.post("/api/v1/members/me/tokens", json={"name": "laptop"}, headers=community["ann"].auth), 201
    )
    assert (
        client.get("/api/v1/members/me", headers={"Authorization": f"Bearer {t['token']}"}).status_code == 200
    )
    ok(client.delete(f"/api/v1/members/me/tokens/{t['id']}", headers=community["ann"].auth))
    assert (
        client.get("/api/v1/members/me", headers={"Authorization": f"Bearer {t['token']}"}).status_code == 401
    )
    listed = ok(client.get("/api/v1/members/me/tokens", headers=community["ann"].auth))
    assert all("token" not in row for row in listed)  # never shown again


def test_admin_only_member_management(client: Client, community: dict[str, Person]) -> None:
    body = {"handle": "newbie", "display_name": "Newbie"}
    assert client.post("/api/v1/members", json=body, headers=community["ann"].auth).status_code == 403
    m = ok(client.post("/api/v1/members", json=body, headers=community["admin"].auth), 201)
    assert m["roles"] == ["member"]
    r = client.post("/api/v1/members", json=body, headers=community["admin"].auth)
    assert r.status_code == 409
    r = client.put(
        f"/api/v1/members/{m['id']}/roles", json={"roles": ["wizard"]}, headers=community["admin"].auth
    )
    assert r.status_code == 422
    r = ok(
        client.put(
            f"/api/v1/members/{m['id']}/roles", json={"roles": ["council"]}, headers=community["admin"].auth
        )
    )
    assert r["roles"] == ["council", "member"]


def test_draft_edit_and_submit(client: Client, community: dict[str, Person]) -> None:
    bob = community["bob"]
    p = new_proposal(client, bob, submit=False)
    assert p["state"] == "draft"
    # a draft is its author's until submitted: nobody else lists or reads it
    ann, admin = community["ann"].auth, community["admin"].auth
    for who in (ann, admin):
        assert client.get(f"/api/v1/proposals/{p['id']}", headers=who).status_code == 404
        assert p["id"] not in [x["id"] for x in ok(client.get("/api/v1/proposals", headers=who))]
        assert ok(client.get("/api/v1/proposals?state=draft", headers=who)) == []
    assert ok(client.get(f"/api/v1/proposals/{p['id']}", headers=bob.auth))["title"] == p["title"]
    assert [x["id"] for x in ok(client.get("/api/v1/proposals?state=draft", headers=bob.auth))] == [p["id"]]
    r = client.patch(
        f"/api/v1/proposals/{p['id']}", json={"title": "Better title"}, headers=community["ann"].auth
    )
    assert r.status_code == 403
    tests = [{"metric": "forget_accuracy_gap", "comparator": "<=", "threshold": 0.02}]
    r = ok(
        client.patch(
            f"/api/v1/proposals/{p['id']}",
            json={"title": "Better title", "acceptance_tests": tests},
            headers=bob.auth,
        )
    )
    assert r["title"] == "Better title" and r["acceptance_tests"][0]["threshold"] == 0.02
    assert ok(client.post(f"/api/v1/proposals/{p['id']}/submit", headers=bob.auth))["state"] == "submitted"
    assert ok(client.get(f"/api/v1/proposals/{p['id']}", headers=ann))["state"] == "submitted"
    r = client.patch(f"/api/v1/proposals/{p['id']}", json={"title": "Too late"}, headers=bob.auth)
    assert r.status_code == 409


def test_openapi_schema_at_default_path(client: Client) -> None:
    schema = ok(client.get("/schema/openapi.json"))
    assert "/api/v1/proposals/{proposal_id}/votes" in schema["paths"]
