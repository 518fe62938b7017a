"""Delegation end to end, on SQLite and PostgreSQL: transitive chains, cycles refused, a direct vote overrides,
revocation during a poll, recusal of a delegate, a hidden tally the delegate cannot read through what they
carry, and a recount of the exported log that equals the live tally with direct and delegated weight apart."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from litestar import Litestar
from litestar.testing import TestClient

from governance.audit.recount import recount
from governance.audit.verify import verify_export
from governance.cli import main
from governance.services.context import Ctx
from tests.conftest import PassTime, Person
from tests.integration.test_api_governance import new_proposal, ok, register_source, to_voting
from tests.integration.test_ui_pages import sign_in
from tests.integration.test_vote_secrecy import LEAK

Client = TestClient[Litestar]
CHOICES = ("approve", "object", "abstain", "block")


def delegate(client: Client, who: Person, to: Person, scope: str = "all", value: str = "") -> dict[str, Any]:
    body = {"delegate": to.handle, "scope": scope, "scope_value": value}
    return ok(client.post("/api/v1/delegations", json=body, headers=who.auth), 201)


def vote(client: Client, pid: int, who: Person, choice: str) -> None:
    reason = "because" if choice in ("object", "block") else ""
    ok(
        client.post(
            f"/api/v1/proposals/{pid}/votes", json={"choice": choice, "reason": reason}, headers=who.auth
        )
    )


def tally(client: Client, pid: int, who: Person) -> dict[str, Any]:
    t: dict[str, Any] = ok(client.get(f"/api/v1/proposals/{pid}/tally", headers=who.auth))
    return t


def poll_view(client: Client, pid: int, who: Person) -> dict[str, Any]:
    v: dict[str, Any] = ok(client.get(f"/api/v1/proposals/{pid}/delegation", headers=who.auth))
    return v


def counts(t: dict[str, Any]) -> dict[str, int]:
    return {c: t[c] for c in CHOICES}


def zero(**kw: int) -> dict[str, int]:
    return {c: kw.get(c, 0) for c in CHOICES}


def audit_size(client: Client) -> int:
    size: int = ok(client.get("/api/v1/audit/checkpoint"))["tree_size"]
    return size


def recounted(client: Client, pid: int) -> Any:
    export = client.get("/api/v1/audit/export").content
    verify_export(export, strict=True)
    (poll,) = recount(export, pid)
    return poll


def test_transitive_chain_override_and_recount(
    client: Client, community: dict[str, Person], pass_time: PassTime, tmp_path: Path
) -> None:
    people = community
    ann, bob, cat, dan = (people[h] for h in ("ann", "bob", "cat", "dan"))
    delegate(client, ann, bob)
    delegate(client, dan, ann)
    d = delegate(client, bob, cat, "category", "cooking")
    assert d["label"] == "category cooking" and d["delegator"] == "bob" and d["delegate"] == "cat"
    delegate(client, bob, people["rev3"], "category", "gardening")  # another topic: does not apply here

    p = new_proposal(client, people["coun1"])  # a category 'cooking' proposal
    pid = p["id"]
    assert poll_view(client, pid, ann)["frozen"] is False
    to_voting(client, p, people)
    view = poll_view(client, pid, cat)
    assert view["frozen"] and view["delegations"] == 3 and view["max_depth"] == 3
    assert view["carried"] == 3  # bob (1 hop), ann (2), dan (3)
    assert poll_view(client, pid, dan)["my_delegate_id"] == ann.id

    vote(client, pid, cat, "approve")
    vote(client, pid, people["rev3"], "object")
    t = tally(client, pid, dan)
    assert counts(t) == zero(approve=4, object=1) and t["turnout"] == 5
    assert t["delegated"] == zero(approve=3) and t["direct"] == zero(approve=1, object=1)
    carried = ok(client.get("/api/v1/delegations/carried", headers=cat.auth))
    assert [(x["proposal_id"], x["carried"], x["voted"]) for x in carried["polls"]] == [(pid, 3, True)]
    assert [x["delegator"] for x in carried["delegators"]] == ["bob"]

    vote(client, pid, ann, "object")  # ann overrides her delegation, and now carries dan's vote
    t = tally(client, pid, dan)
    assert counts(t) == zero(approve=2, object=3)
    assert t["delegated"] == zero(approve=1, object=1)
    assert poll_view(client, pid, cat)["carried"] == 1 and poll_view(client, pid, ann)["carried"] == 1

    vote(client, pid, people["coun2"], "approve")  # quorum: 6 of 11
    pass_time(days=8)
    t = tally(client, pid, dan)
    assert t["closed"] and counts(t) == zero(approve=3, object=3)
    poll = recounted(client, pid)
    assert poll.matches, poll
    assert poll.counts == counts(t) and poll.delegated == t["delegated"] and poll.direct == t["direct"]
    assert poll.delegations == {ann.id: bob.id, dan.id: ann.id, bob.id: cat.id}
    log = tmp_path / "log.jsonl"
    log.write_bytes(client.get("/api/v1/audit/export").content)
    r = CliRunner().invoke(main, ["audit", "recount", str(log), str(pid)])
    assert r.exit_code == 0, r.output
    assert "OK: approve 3, object 3, abstain 0, block 0 (electorate 11), as the tally published" in r.output
    assert "direct: approve 2, object 2, abstain 0, block 0; delegated: approve 1, object 1" in r.output
    # a tally entry that misstates the delegated votes, or a frozen delegation set that was not the one
    # counted, fails the recount
    export = log.read_bytes()
    published = b'"delegated":{"abstain":0,"approve":1,"block":0,"object":1}'
    forged = export.replace(published, b'"delegated":{"abstain":0,"approve":2,"block":0,"object":0}')
    assert forged != export
    (poll,) = recount(forged, pid)
    assert not poll.matches and poll.delegated == zero(approve=1, object=1)
    (tmp_path / "forged.jsonl").write_bytes(forged)
    r = CliRunner().invoke(main, ["audit", "recount", str(tmp_path / "forged.jsonl"), str(pid)])
    assert r.exit_code == 1 and "delegated votes: recounted" in r.output, r.output
    edge = f"[{dan.id},{ann.id}]".encode()
    assert export.count(edge) == 1
    (poll,) = recount(export.replace(edge, f"[{dan.id},{cat.id}]".encode()), pid)
    assert not poll.matches and poll.counts == zero(approve=4, object=2)
    assert poll.unbacked == [[dan.id, cat.id]]  # dan never delegated to cat


def test_bad_delegations_are_refused_and_change_nothing(client: Client, community: dict[str, Person]) -> None:
    people = community
    ann, bob, cat = people["ann"], people["bob"], people["cat"]
    delegate(client, ann, bob)
    delegate(client, bob, cat, "category", "cooking")
    before = audit_size(client)
    bad: list[tuple[Person, dict[str, Any], int, str]] = [
        (cat, {"delegate": "ann"}, 409, "cycle"),  # cat -> ann -> bob -> (cooking) cat
        (cat, {"delegate": "ann", "scope": "tag", "scope_value": "privacy"}, 409, "cycle"),
        (ann, {"delegate": "cat"}, 409, "revoke it first"),
        (ann, {"delegate": "ann", "scope": "category", "scope_value": "x"}, 422, "yourself"),
        (ann, {"delegate": "nobody-here"}, 422, "no member"),
        (ann, {"delegate_id": 99999}, 422, "no member"),
        (ann, {}, 422, "name the delegate"),
        (ann, {"delegate": "cat", "delegate_id": cat.id}, 422, "name the delegate"),
        (ann, {"delegate": "cat", "scope": "planet"}, 422, "scope must be one of"),
        (ann, {"delegate": "cat", "scope": "target_kind", "scope_value": "recipes"}, 422, "target kind"),
        (ann, {"delegate": "cat", "scope": "tag", "scope_value": "two words"}, 422, "tag"),
        (ann, {"delegate": "cat", "scope": "all", "scope_value": "x"}, 422, "no scope value"),
        (ann, {"delegate": "cat", "extra": 1}, 400, ""),
    ]
    for who, body, status, words in bad:
        r = client.post("/api/v1/delegations", json=body, headers=who.auth)
        assert r.status_code == status, (body, r.text)
        assert words in r.text, (body, r.text)
    assert client.post("/api/v1/delegations", json={"delegate": "cat"}).status_code == 401
    # a cycle through scopes that can never meet on one poll is no cycle (any poll may carry a tag: that one was)
    delegate(client, cat, ann, "category", "gardening")
    assert audit_size(client) == before + 1
    mine = ok(client.get("/api/v1/delegations", headers=ann.auth))
    (given,) = mine["given"]
    assert mine["received"][0]["delegator"] == "cat"
    # only the delegator revokes, once
    assert client.post(f"/api/v1/delegations/{given['id']}/revoke", headers=bob.auth).status_code == 403
    assert client.post("/api/v1/delegations/99999/revoke", headers=ann.auth).status_code == 404
    ok(client.post(f"/api/v1/delegations/{given['id']}/revoke", headers=ann.auth))
    r = client.post(f"/api/v1/delegations/{given['id']}/revoke", headers=ann.auth)
    assert r.status_code == 409 and "already revoked" in r.text
    assert ok(client.get("/api/v1/delegations", headers=ann.auth))["given"] == []
    assert ok(client.get("/api/v1/delegations?revoked=true", headers=ann.auth))["given"][0]["revoked_at"]
    # the revocation frees the scope, and the cycle through ann is gone
    delegate(client, cat, ann)


def test_revocation_during_a_poll_and_delegations_made_after_its_opening(
    client: Client, community: dict[str, Person], pass_time: PassTime
) -> None:
    people = community
    ann, cat, dan = people["ann"], people["cat"], people["dan"]
    given = delegate(client, ann, cat)
    p = new_proposal(client, people["coun1"])
    pid = p["id"]
    to_voting(client, p, people)
    delegate(client, dan, cat)  # made after the opening: counts from the next poll
    assert poll_view(client, pid, cat)["carried"] == 1
    vote(client, pid, cat, "approve")
    assert tally(client, pid, dan)["delegated"] == zero(approve=1)

    r = ok(client.post(f"/api/v1/delegations/{given['id']}/revoke", headers=ann.auth))
    assert r["open_polls_released"] == [pid]
    t = tally(client, pid, dan)
    assert counts(t) == zero(approve=1) and t["delegated"] == zero()
    assert (
        poll_view(client, pid, cat)["carried"] == 0 and poll_view(client, pid, ann)["my_delegate_id"] is None
    )
    for h in ("rev1", "rev2", "rev3", "coun2", "coun3"):
        vote(client, pid, people[h], "approve")
    pass_time(days=8)
    poll = recounted(client, pid)
    assert poll.matches and poll.delegated == zero() and poll.counts == zero(approve=6), poll
    assert poll.delegations == {} and poll.unbacked == []

    q = new_proposal(client, people["coun2"])  # the next poll: dan's delegation counts, ann's does not
    to_voting(client, q, people)
    assert poll_view(client, q["id"], cat)["carried"] == 1
    assert poll_view(client, q["id"], dan)["my_delegate_id"] == cat.id


def test_a_recused_delegate_cannot_cast_the_votes_they_carry(
    client: Client, community: dict[str, Person], pass_time: PassTime
) -> None:
    people = community
    ann, bob, cat, dan = (people[h] for h in ("ann", "bob", "cat", "dan"))
    src = register_source(client, ann)
    delegate(client, bob, ann)  # bob -> ann (the owner) -> cat
    delegate(client, ann, cat)
    delegate(client, dan, ann)  # dan -> ann -> cat: 2 hops
    p = new_proposal(client, people["coun1"], target={"kind": "data_source", "data_source_id": src["id"]})
    pid = p["id"]
    to_voting(client, p, people)
    assert poll_view(client, pid, ann)["carried"] == 0
    assert poll_view(client, pid, cat)["carried"] == 3  # ann, and bob and dan passed over ann

    vote(client, pid, ann, "object")  # the owner's own vote counts; the votes she carries pass on to cat
    vote(client, pid, cat, "approve")
    t = tally(client, pid, people["rev1"])
    assert counts(t) == zero(approve=3, object=1) and t["delegated"] == zero(approve=2)
    for h in ("rev1", "rev2"):
        vote(client, pid, people[h], "approve")
    pass_time(days=8)
    poll = recounted(client, pid)
    assert poll.matches and poll.recused_delegates == [ann.id], poll
    assert poll.counts == counts(tally(client, pid, people["rev1"]))


def test_with_nobody_further_up_the_recused_delegates_votes_are_not_cast(
    client: Client, community: dict[str, Person], pass_time: PassTime
) -> None:
    people = community
    ann, bob = people["ann"], people["bob"]
    delegate(client, bob, ann)
    # an election: its candidate is recused from carrying votes
    body = {
        "kind": "election",
        "title": "Elect ann as reviewer",
        "election": {"role": "reviewer", "candidate_id": ann.id},
    }
    body["submit"] = True
    p = ok(client.post("/api/v1/proposals", json=body, headers=people["coun1"].auth), 201)
    to_voting(client, p, people)
    vote(client, p["id"], ann, "approve")
    t = tally(client, p["id"], bob)
    assert counts(t) == zero(approve=1) and t["delegated"] == zero()


def test_tags_scope_a_delegation(client: Client, community: dict[str, Person]) -> None:
    people = community
    ann, cat, dan = people["ann"], people["cat"], people["dan"]
    delegate(client, ann, dan)
    delegate(client, ann, cat, "tag", "privacy")  # more specific: wins on a privacy poll
    p = new_proposal(client, people["coun1"], submit=False)
    pid = p["id"]
    assert ok(
        client.put(
            f"/api/v1/proposals/{pid}/tags",
            json={"tags": ["Privacy", "health"]},
            headers=people["coun1"].auth,
        )
    ) == ["health", "privacy"]
    r = client.put(f"/api/v1/proposals/{pid}/tags", json={"tags": ["x"]}, headers=ann.auth)
    assert r.status_code == 403
    assert client.get(f"/api/v1/proposals/{pid}/delegation", headers=ann.auth).status_code == 404  # a draft
    assert poll_view(client, pid, people["coun1"])["tags"] == ["health", "privacy"]
    r = client.put(f"/api/v1/proposals/{pid}/tags", json={"tags": ["not ok"]}, headers=people["coun1"].auth)
    assert r.status_code == 422
    ok(client.post(f"/api/v1/proposals/{pid}/submit", headers=people["coun1"].auth))
    to_voting(client, p, people)
    view = poll_view(client, pid, ann)
    assert view["tags"] == ["health", "privacy"] and view["my_delegate_id"] == cat.id
    r = client.put(f"/api/v1/proposals/{pid}/tags", json={"tags": []}, headers=people["coun1"].auth)
    assert r.status_code == 409


def _cat_sees(client: Client, ctx: Ctx, pid: int, cat: Person) -> dict[str, str]:
    """What the delegate can read about the poll: API answers and pages (signed in)."""
    paths = [
        "/api/v1/delegations/carried",
        "/api/v1/delegations",
        f"/api/v1/proposals/{pid}/delegation",
        f"/api/v1/proposals/{pid}/tally",
        f"/api/v1/proposals/{pid}",
    ]
    seen = {p: client.get(p, headers=cat.auth).text for p in paths}
    sign_in(client, ctx, cat.id, cat.handle)
    for path in ("/me", f"/proposals/{pid}", f"/proposals/{pid}/tally"):
        r = client.get(path)
        assert r.status_code == 200, path
        seen[f"ui {path}"] = r.text.replace(r.headers.get("x-request-id", "-"), "")
    client.cookies.clear()
    return seen


def test_a_delegate_cannot_learn_a_delegators_direct_vote_on_a_hidden_tally(
    client: Client, community: dict[str, Person], ctx: Ctx, pass_time: PassTime
) -> None:
    people = community
    ann, cat = people["ann"], people["cat"]
    delegate(client, ann, cat)
    p = new_proposal(client, people["coun1"], secret_tally=True)
    pid = p["id"]
    to_voting(client, p, people)
    vote(client, pid, cat, "approve")
    vote(client, pid, ann, "approve")  # ann overrides: the same choice as her delegate ...
    same = _cat_sees(client, ctx, pid, cat)
    vote(client, pid, ann, "block")  # ... or the opposite: cat sees exactly the same
    other = _cat_sees(client, ctx, pid, cat)
    for path in same:
        assert _stable(same[path]) == _stable(other[path]), path
        assert not LEAK.search(other[path]), (path, LEAK.search(other[path]))
    # what cat learns: ann voted herself (public, as every turnout is), so cat carries nothing here
    assert json.loads(same[f"/api/v1/proposals/{pid}/delegation"])["carried"] == 0
    t = tally(client, pid, cat)
    assert t["hidden"] and t["delegated"] is None and t["direct"] is None and t["approve"] is None
    for h in ("rev1", "rev2", "rev3", "coun2"):
        vote(client, pid, people[h], "approve")
    pass_time(days=8)
    t = tally(client, pid, cat)
    assert counts(t) == zero(approve=5, block=1) and t["delegated"] == zero()
    poll = recounted(client, pid)
    assert poll.matches and poll.hidden_votes == 7, poll


def _stable(text: str) -> str:
    """A page without what changes with every request (CSRF tokens, nonces: long random strings) and without
    the timeline's vote items (that ann changed her vote is public; her choice is not in them)."""
    text = re.sub(
        r"<li>\s*<time>[^<]*</time>\s*<strong>vote (cast|changed)</strong>.*?</li>", "", text, flags=re.S
    )
    return re.sub(r"\s+", " ", re.sub(r"[A-Za-z0-9_-]{32,}", "<random>", text))


def test_cli_delegation_add_list_carried_revoke(client: Client, community: dict[str, Person]) -> None:
    from tests.integration.test_cli import api

    people = community
    ann, cat = people["ann"], people["cat"]
    runner = CliRunner()
    r = runner.invoke(
        main, ["delegation", "add", "cat", "--scope", "category", "--value", "cooking"], obj=api(client, ann)
    )
    assert r.exit_code == 0 and "your vote on category cooking goes to @cat" in r.output, r.output
    r = runner.invoke(main, ["delegation", "add", "ann", "--json"], obj=api(client, cat))
    assert r.exit_code == 1 and "cycle" in r.output, r.output
    r = runner.invoke(main, ["delegation", "add", "cat", "--scope", "planet"], obj=api(client, ann))
    assert r.exit_code == 3, r.output
    r = runner.invoke(
        main, ["delegation", "add", "cat", "--scope", "tag", "--value", "no way"], obj=api(client, ann)
    )
    assert r.exit_code == 1 and "tag" in r.output, r.output
    r = runner.invoke(main, ["delegation", "list"], obj=api(client, cat))
    assert r.exit_code == 0 and "@ann -> @cat" in r.output and "category cooking" in r.output, r.output
    p = new_proposal(client, people["coun1"])
    to_voting(client, p, people)
    r = runner.invoke(main, ["delegation", "carried"], obj=api(client, cat))
    assert r.exit_code == 0 and f"#{p['id']:<5} 1 vote(s)" in r.output, r.output
    r = runner.invoke(main, ["delegation", "list", "--json"], obj=api(client, ann))
    (given,) = json.loads(r.output)["given"]
    r = runner.invoke(main, ["delegation", "revoke", str(given["id"])], obj=api(client, cat))
    assert r.exit_code == 1 and "only the member who made" in r.output, r.output
    r = runner.invoke(main, ["delegation", "revoke", str(given["id"])], obj=api(client, ann))
    assert r.exit_code == 0 and f"your vote is back in #{p['id']}" in r.output, r.output
    r = runner.invoke(main, ["delegation", "revoke", "0"], obj=api(client, ann))
    assert r.exit_code == 3, r.output


def test_ui_delegate_revoke_and_what_you_carry(
    client: Client, community: dict[str, Person], ctx: Ctx, pass_time: PassTime
) -> None:
    from tests.integration.test_ui_pages import error_of

    people = community
    ann, cat = people["ann"], people["cat"]
    token = sign_in(client, ctx, ann.id, "ann")
    page = client.get("/me").text
    assert 'id="h-delegation"' in page and "you delegate none" in page
    # bad input: an error next to its field, nothing stored
    r = client.post("/me/delegations", data={"csrf_token": token, "delegate": "nobody-here", "scope": "all"})
    assert r.status_code == 422 and "no member" in (error_of(r.text, "delegate") or ""), r.text
    r = client.post(
        "/me/delegations",
        data={"csrf_token": token, "delegate": "cat", "scope": "tag", "scope_value": "two words"},
    )
    assert r.status_code == 422 and "tag" in (error_of(r.text, "scope_value") or ""), r.text
    r = client.post("/me/delegations", data={"delegate": "cat", "scope": "all"})  # no CSRF token
    assert r.status_code == 403
    assert ok(client.get("/api/v1/delegations", headers=ann.auth))["given"] == []
    r = client.post(
        "/me/delegations",
        data={
            "csrf_token": token,
            "delegate": "cat",
            "scope": "category",
            "scope_value": "cooking",
            "next": "/me",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/me"
    page = client.get("/me").text
    assert "@cat" in page and "category cooking" in page and "goes to @cat" in page
    # a cycle is refused on the page
    sign_in_cat = sign_in(client, ctx, cat.id, "cat")
    r = client.post("/me/delegations", data={"csrf_token": sign_in_cat, "delegate": "ann", "scope": "all"})
    assert r.status_code == 409 and "cycle" in (error_of(r.text, "delegate") or "")
    # the delegate sees what they carry, on /me and on the proposal page; the tally shows the weight apart
    p = new_proposal(client, people["coun1"])
    pid = p["id"]
    to_voting(client, p, people)
    page = client.get("/me").text
    assert f"#{pid} Forget the recipes source" in page and "you carry <strong>1</strong> vote" in page
    page = client.get(f"/proposals/{pid}").text
    assert "You carry <strong>1</strong> delegated vote here" in page
    vote(client, pid, cat, "approve")
    tally_html = client.get(f"/proposals/{pid}/tally").text
    assert "Cast by delegates for others</th><td>1</td>" in tally_html, tally_html
    assert "Cast by members themselves</th><td>1</td>" in tally_html
    # ann revokes from the page: her vote leaves the open poll
    token = sign_in(client, ctx, ann.id, "ann")
    page = client.get(f"/proposals/{pid}").text
    assert "your vote goes to @cat" in page
    (given,) = ok(client.get("/api/v1/delegations", headers=ann.auth))["given"]
    r = client.post(
        f"/me/delegations/{given['id']}/revoke", data={"csrf_token": token}, follow_redirects=False
    )
    assert r.status_code == 303
    assert "yours again in open polls" in client.get("/me/delegations").text
    assert tally(client, pid, ann)["delegated"] == zero()
    r = client.post(f"/me/delegations/{given['id']}/revoke", data={"csrf_token": token})
    assert r.status_code == 409


def test_a_delegates_vote_that_makes_quorum_late_extends_the_deadline(
    client: Client, community: dict[str, Person], pass_time: PassTime
) -> None:
    people = community
    cat = people["cat"]
    for h in ("ann", "bob", "dan", "rev3", "coun3"):
        delegate(client, people[h], cat)
    p = new_proposal(client, people["coun1"])
    pid = p["id"]
    to_voting(client, p, people)
    deadline = ok(client.get(f"/api/v1/proposals/{pid}", headers=cat.auth))["voting_deadline"]
    pass_time(days=6, hours=12)  # within the last 24 hours
    vote(client, pid, people["ann"], "approve")  # a delegator's own vote: 1 of 11, ann no longer carried
    assert tally(client, pid, cat)["turnout"] == 1
    vote(client, pid, cat, "approve")  # cat's vote casts 4 more: 6 of 11 make quorum (0.5), first now
    t = tally(client, pid, cat)
    assert t["turnout"] == 6 and t["quorum_reached"]
    detail = ok(client.get(f"/api/v1/proposals/{pid}", headers=cat.auth))
    assert detail["voting_deadline"] > deadline
    assert [e for e in detail["history"] if e["action"] == "deadline_extended"]
