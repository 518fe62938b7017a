"""Rules hold on every path, not only in the UI (issue 15, section 5): recusal covers every action on a
proposal, undoing an approval needs a council majority, and a job's retry settings are refused alike by the
API and the UI (the contract's bounds)."""

from __future__ import annotations

import html
import json
from typing import Any

from litestar import Litestar
from litestar.testing import TestClient

from governance.db.engine import write_session
from governance.db.models import Job
from governance.schemas import DataSourceCreate, ProposalCreate
from governance.services import data_sources, jobs, proposals
from governance.services.context import Ctx
from tests.conftest import PassTime, Person
from tests.integration.test_ui_pages import error_of, sign_in


def _approved_on_owned_source(ctx: Ctx, people: dict[str, Person], pass_time: PassTime) -> int:
    """A proposal to forget a data source that council member coun1 owns, taken to approval by the others."""
    ds = data_sources.register(
        ctx,
        DataSourceCreate(name="coun1's forum posts", node_id="node-1", content_hash="a" * 64),
        people["coun1"].actor,
    )
    p = proposals.create(
        ctx,
        ProposalCreate(title="Forget the forum", target={"kind": "data_source", "data_source_id": ds.id}),
        people["bob"].actor,
    )
    proposals.submit(ctx, p.id, people["bob"].actor)
    for r in ("rev1", "rev2"):
        proposals.triage(ctx, p.id, people[r].actor, "approve", None)
    for h in ("ann", "cat", "dan", "bob", "rev3", "admin"):
        proposals.vote(ctx, p.id, people[h].actor, "approve", None)
    pass_time(days=7, seconds=1)
    assert proposals.get_detail(ctx, p.id).state == "council_review"
    return p.id


def test_the_owner_on_the_council_is_recused_from_every_action_and_cancelling_needs_a_majority(
    client: TestClient[Litestar], ctx: Ctx, community: dict[str, Person], pass_time: PassTime
) -> None:
    pid = _approved_on_owned_source(ctx, community, pass_time)
    owner = community["coun1"].auth
    for decision in ("ratify", "veto"):
        r = client.post(
            f"/api/v1/proposals/{pid}/council", json={"decision": decision, "reason": "mine"}, headers=owner
        )
        assert r.status_code == 403 and "recused" in r.text, r.text
    # before approval one council member may cancel alone, but not the owner of the target
    r = client.post(f"/api/v1/proposals/{pid}/cancel", json={"reason": "mine"}, headers=owner)
    assert r.status_code == 403 and "recused" in r.text
    for c in ("coun2", "coun3"):  # 2 eligible council members: the majority is 2
        r = client.post(
            f"/api/v1/proposals/{pid}/council", json={"decision": "ratify"}, headers=community[c].auth
        )
        assert r.status_code == 200, r.text
    pass_time(days=3, seconds=1)
    assert proposals.get_detail(ctx, pid).state == "job_queued"
    (job,) = jobs.list_jobs(ctx, proposal_id=pid)

    # after approval: the owner can neither cancel the proposal nor its job (which would cancel it)
    r = client.post(f"/api/v1/proposals/{pid}/cancel", json={"reason": "mine"}, headers=owner)
    assert r.status_code == 403 and "recused" in r.text
    r = client.post(f"/api/v1/jobs/{job['id']}/cancel", json={"reason": "mine"}, headers=owner)
    assert r.status_code == 403 and "recused" in r.text
    # nor can an admin alone undo what the council ratified
    r = client.post(
        f"/api/v1/jobs/{job['id']}/cancel", json={"reason": "ops"}, headers=community["admin"].auth
    )
    assert r.status_code == 403 and "council" in r.text
    # one eligible council member's support is recorded; the job runs on
    r = client.post(
        f"/api/v1/jobs/{job['id']}/cancel", json={"reason": "new facts"}, headers=community["coun2"].auth
    )
    assert r.status_code == 200 and r.json()["cancellation"] == "supported"
    assert jobs.get(ctx, job["id"])["state"] == "queued"
    r = client.post(
        f"/api/v1/proposals/{pid}/cancel", json={"reason": "again"}, headers=community["coun2"].auth
    )
    assert r.status_code == 409 and "already support" in r.text
    # the majority cancels the proposal and its job together
    r = client.post(
        f"/api/v1/proposals/{pid}/cancel", json={"reason": "agreed"}, headers=community["coun3"].auth
    )
    assert r.status_code == 200 and r.json()["state"] == "cancelled", r.text
    detail = proposals.get_detail(ctx, pid)
    supported = [e for e in detail.history if e.action == "cancel_supported"]
    assert [e.payload["support"] for e in supported] == [
        [community["coun2"].id],
        [community["coun2"].id, community["coun3"].id],
    ]


BAD_RETRIES: list[tuple[str | None, dict[str, Any], str]] = [
    ("../../../etc/passwd", {}, "unknown unlearning method"),
    (None, {"ascent": {"lr": 1e308}}, "'lr'"),
    (None, {"repair_rounds": -1}, "'repair_rounds'"),
    (None, {"repair_rounds": 10**12}, "'repair_rounds'"),
    (None, {"no_such_setting": 1}, "unknown setting"),
    (None, {"ascent": {"no_such_local": 1}}, "unknown local setting"),
]


def test_a_retry_with_bad_settings_is_refused_alike_by_the_api_and_the_ui(
    client: TestClient[Litestar], ctx: Ctx, community: dict[str, Person], pass_time: PassTime
) -> None:
    pid = _approved_on_owned_source(ctx, community, pass_time)
    for c in ("coun2", "coun3"):
        proposals.council(ctx, pid, community[c].actor, "ratify", None)
    pass_time(days=3, seconds=1)
    (job,) = jobs.list_jobs(ctx, proposal_id=pid)
    with write_session(ctx.engine) as s:  # the job failed (its worker gave up)
        row = s.get(Job, job["id"])
        assert row is not None
        row.state, row.error = "failed", "node unreachable"
        s.add(row)
    for method, config, words in BAD_RETRIES:
        body: dict[str, Any] = {"method_config": config}
        if method:
            body["method"] = method
        r = client.post(f"/api/v1/jobs/{job['id']}/retry", json=body, headers=community["rev1"].auth)
        assert r.status_code == 422 and words in r.text, (body, r.status_code, r.text)
    token = sign_in(client, ctx, community["rev1"].id, "rev1")
    for method, config, words in BAD_RETRIES:
        form = {"method_config": json.dumps(config), "csrf_token": token}
        if method:
            form["method"] = method
        r = client.post(f"/jobs/{job['id']}/retry", data=form)
        field = "retry-method" if method else "retry-method_config"
        shown = html.unescape(error_of(r.text, field) or "")
        assert r.status_code == 422 and words in shown, (form, shown)
    assert jobs.get(ctx, job["id"])["state"] == "failed"  # never re-queued
    ok = client.post(
        f"/api/v1/jobs/{job['id']}/retry",
        json={"method_config": {"repair_rounds": 2, "ascent": {"lr": 0.01}}},
        headers=community["rev1"].auth,
    )
    assert ok.status_code == 200 and ok.json()["state"] == "queued", ok.text


def test_the_contracts_local_settings_are_the_local_configs_fields() -> None:
    """The bounds the service checks (unlearning.contract.LocalSettings) cover what a node runs with."""
    from dataclasses import fields

    from unlearning.contract import LocalSettings
    from unlearning.local import LocalConfig

    assert {f.name for f in fields(LocalSettings)} == {f.name for f in fields(LocalConfig)}
    for f in fields(LocalSettings):
        if f.name != "betas":
            assert getattr(LocalConfig(), f.name) == f.default, f.name
