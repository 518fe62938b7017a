"""The model registry and the release gate over the API (SQLite and PostgreSQL): verdicts, the keying of
reports by content hash and policy hash, regressions, release refusal, audit entries and their proofs."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient
from sqlmodel import select

from governance.audit import merkle
from governance.db.engine import read_session, write_session
from governance.db.models import Proposal
from governance.domain.errors import NotFound
from governance.schemas import ProposalCreate
from governance.services import proposals
from governance.services.context import Ctx
from tests.conftest import Person
from tests.trust import signed, store_version
from unlearning.verification.spec import policy_hash

Client = TestClient[Litestar]
TESTS = [
    {"metric": "forget_accuracy_gap", "comparator": "<=", "threshold": 0.05, "relative_to_reference": False},
    {
        "metric": "retained_utility_drop",
        "comparator": "<=",
        "threshold": 0.05,
        "relative_to_reference": False,
    },
]


# names that stay outside the artifact store (unknown versions, fake ancestors, other models' hashes)
UNSTORED = {"nope", "unknown", "not-stored", "base", "other", "evil", "config"}
_CTX: list[Ctx] = []


@pytest.fixture(autouse=True)
def _store(ctx: Ctx) -> Any:
    """mv(name) and h(name) name real stored versions of this test's artifact store (the gate re-hashes the
    bytes at every verdict), and attach() signs reports as the verifying worker does."""
    _CTX[:] = [ctx]
    yield
    _CTX.clear()


def h(name: str) -> str:
    if name in UNSTORED or not _CTX:
        return hashlib.sha256(name.encode()).hexdigest()
    return store_version(_CTX[0], name)[1]


def mv(name: str) -> str:
    if name in UNSTORED or not _CTX:
        return "mv-" + hashlib.sha256(name.encode()).hexdigest()[:20]
    return store_version(_CTX[0], name)[0]


def proposal_in_state(ctx: Ctx, who: Person, state: str, title: str = "Forget class 7") -> int:
    p = proposals.create(
        ctx,
        ProposalCreate(title=title, target={"kind": "category", "category": "7"}, acceptance_tests=TESTS),
        who.actor,
    )
    with write_session(ctx.engine) as s:
        row = s.exec(select(Proposal).where(Proposal.id == p.id)).one()
        row.state = state
        s.add(row)
    return p.id


def register(client: Client, admin: Person, name: str, **kw: Any) -> dict[str, Any]:
    body = {"version": mv(name), "content_hash": h(name), "task": "digits", "kind": "unlearn", **kw}
    r = client.post("/api/v1/models", json=body, headers=admin.auth)
    assert r.status_code == 201, r.text
    return dict(r.json())


def report(name: str, *, passed: bool, tests: list[dict[str, Any]] = TESTS, **kw: Any) -> dict[str, Any]:
    outcomes = [
        {
            **t,
            "status": "pass" if passed else "fail",
            "measured": 0.01 if passed else 0.3,
            "reason": f"{t['metric']} = {'0.01 meets' if passed else '0.3 fails'} {t['comparator']} {t['threshold']}",
        }
        for t in tests
    ]
    return {
        "candidate_version": mv(name),
        "candidate_hash": h(name),
        "policy_hash": policy_hash(tests),
        "config_hash": h("config"),
        "seed": 0,
        "precision": "fp32",
        "libraries": {"torch": "2.13.0"},
        "passed": passed,
        "summary": "PASS" if passed else "FAIL: forget_accuracy_gap (fail)",
        "tests": outcomes,
        "regressions": [],
        "metrics": {},
        **kw,
    }


def attach(client: Client, admin: Person, name: str, body: dict[str, Any], status: int = 201) -> Any:
    """Post ``body`` signed by the service's verifier (as the worker signs it): the only kind accepted."""
    body = signed(_CTX[0], body)
    r = client.post(f"/api/v1/models/{mv(name)}/verification", json={"report": body}, headers=admin.auth)
    assert r.status_code == status, r.text
    return r.json()


def verdict(client: Client, who: Person, name: str) -> dict[str, Any]:
    r = client.get(f"/api/v1/releases/{mv(name)}/verdict", headers=who.auth)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_verdicts_follow_the_report_of_the_exact_model_and_policy(
    client: Client, ctx: Ctx, community: dict[str, Person]
) -> None:
    admin, ann = community["admin"], community["ann"]
    pid = proposal_in_state(ctx, community["bob"], "verified")
    assert client.get(f"/api/v1/releases/{mv('nope')}/verdict", headers=ann.auth).status_code == 404
    assert client.get(f"/api/v1/releases/{mv('nope')}/verdict").status_code == 401
    register(client, admin, "cand", proposal_id=pid, parent_version=mv("base"))
    v = verdict(client, ann, "cand")
    assert v["verdict"] == "pending" and "no verification report" in v["reasons"][0]
    assert v["proposals"] == [{"id": pid, "title": "Forget class 7", "state": "verified", "role": "produced"}]

    # a report computed on another model is refused and never served for this one
    attach(client, admin, "cand", report("other", passed=True, candidate_version=mv("cand")), 409)
    assert verdict(client, ann, "cand")["verdict"] == "pending"
    # a report for other acceptance tests than the proposal's does not count either
    looser = [{**TESTS[0], "threshold": 0.5}]
    attach(client, admin, "cand", report("cand", passed=True, tests=looser))
    v = verdict(client, ann, "cand")
    assert v["verdict"] == "pending" and "re-verification" in v["reasons"][0]

    attach(client, admin, "cand", report("cand", passed=False))
    v = verdict(client, ann, "cand")
    assert v["verdict"] == "deny" and any("forget_accuracy_gap" in r for r in v["reasons"])
    assert client.get(f"/api/v1/models/{mv('cand')}", headers=ann.auth).json()["state"] == "failed"
    r = client.post(f"/api/v1/models/{mv('cand')}/release", headers=admin.auth)
    assert r.status_code == 409

    attach(client, admin, "cand", report("cand", passed=True))
    v = verdict(client, ann, "cand")
    assert v["verdict"] == "allow", v["reasons"]
    assert v["report_key"]["candidate_hash"] == h("cand") and v["report_key"]["policy_hash"] == policy_hash(
        TESTS
    )
    assert [t["status"] for t in v["tests"]] == ["pass", "pass"]
    detail = client.get(f"/api/v1/models/{mv('cand')}", headers=ann.auth).json()
    assert detail["state"] == "verified" and detail["verification"]["passed"]


def test_verdict_carries_a_signed_checkpoint_and_proofs_of_its_audit_entries(
    client: Client, ctx: Ctx, community: dict[str, Person]
) -> None:
    admin, ann = community["admin"], community["ann"]
    pid = proposal_in_state(ctx, community["bob"], "verified")
    register(client, admin, "m1", proposal_id=pid)
    attach(client, admin, "m1", report("m1", passed=True))
    v = verdict(client, ann, "m1")
    actions = [p["entry"]["action"] for p in v["proofs"]]
    assert actions == ["model.registered", "model.verification", "release.verdict"]
    cp = v["checkpoint"]
    assert cp["checkpoint"] and cp["tree_size"] >= 3
    for p in v["proofs"]:
        proof = p["inclusion_proof"]
        assert proof["tree_size"] == cp["tree_size"]
        ok = merkle.verify_inclusion(
            p["seq"],
            proof["tree_size"],
            bytes.fromhex(proof["leaf_hash"]),
            [bytes.fromhex(x) for x in proof["hashes"]],
            bytes.fromhex(cp["root_hash"]),
        )
        assert ok
    assert v["audit_seq"] == v["proofs"][-1]["seq"]
    assert v["proofs"][-1]["entry"]["payload"]["verdict"] == "allow"
    # every verdict is recorded, including repeated asks
    verdict(client, ann, "m1")
    from governance.audit import log

    with read_session(ctx.engine) as s:
        entries = [
            e for e in log.entries_for_subject(s, f"model:{mv('m1')}") if e.action == "release.verdict"
        ]
    assert len(entries) == 2


def test_release_needs_allow_and_released_versions_never_change(
    client: Client, ctx: Ctx, community: dict[str, Person]
) -> None:
    admin, ann = community["admin"], community["ann"]
    pid = proposal_in_state(ctx, community["bob"], "verified")
    register(client, admin, "r1", proposal_id=pid)
    assert (
        client.post(f"/api/v1/models/{mv('r1')}/release", headers=admin.auth).status_code == 409
    )  # candidate
    attach(client, admin, "r1", report("r1", passed=True))
    assert client.post(f"/api/v1/models/{mv('r1')}/release", headers=ann.auth).status_code == 403
    r = client.post(f"/api/v1/models/{mv('r1')}/release", headers=admin.auth)
    assert r.status_code == 201 and r.json()["state"] == "released"
    assert (
        client.post(f"/api/v1/models/{mv('r1')}/reject", json={"reason": "x"}, headers=admin.auth).status_code
        == 409
    )
    attach(client, admin, "r1", report("r1", passed=False), 409)
    listed = client.get("/api/v1/models?state=released", headers=ann.auth).json()
    assert [m["version"] for m in listed] == [mv("r1")]
    from governance.services import registry

    with read_session(ctx.engine) as s:
        assert registry.latest_released_version(s) == mv("r1")


def test_a_rejected_version_or_a_vetoed_proposal_is_denied(
    client: Client, ctx: Ctx, community: dict[str, Person]
) -> None:
    admin, ann = community["admin"], community["ann"]
    pid = proposal_in_state(ctx, community["bob"], "verified")
    register(client, admin, "x1", proposal_id=pid)
    attach(client, admin, "x1", report("x1", passed=True))
    assert (
        client.post(
            f"/api/v1/models/{mv('x1')}/reject", json={"reason": "bad"}, headers=admin.auth
        ).status_code
        == 201
    )
    assert verdict(client, ann, "x1")["verdict"] == "deny"
    vetoed = proposal_in_state(ctx, community["bob"], "vetoed", "Vetoed")
    register(client, admin, "x2", proposal_id=vetoed)
    attach(client, admin, "x2", report("x2", passed=True))
    v = verdict(client, ann, "x2")
    assert v["verdict"] == "deny" and "vetoed" in v["reasons"][0]


def test_regression_suite_every_later_version_keeps_earlier_released_unlearnings(
    client: Client, ctx: Ctx, community: dict[str, Person]
) -> None:
    admin, ann = community["admin"], community["ann"]
    first = proposal_in_state(ctx, community["bob"], "released", "Forget my notebook")
    register(client, admin, "u1", proposal_id=first, parent_version=mv("base"))
    attach(client, admin, "u1", report("u1", passed=True))
    assert client.post(f"/api/v1/models/{mv('u1')}/release", headers=admin.auth).status_code == 201
    # a later training round with no proposal still owes the earlier unlearning
    register(client, admin, "t2", parent_version=mv("u1"), kind="train")
    v = verdict(client, ann, "t2")
    assert v["verdict"] == "pending" and v["proposals"][0]["role"] == "regression"
    checks = client.get(f"/api/v1/models/{mv('t2')}/regression-checks", headers=ann.auth).json()
    assert checks[0]["proposal_id"] == first and checks[0]["original_version"] == mv("base")
    assert checks[0]["tests"] == TESTS
    failed_reg = {
        "label": f"proposal {first}",
        "proposal_id": first,
        "target": {},
        "policy_hash": policy_hash(TESTS),
        "passed": False,
        "tests": [
            {
                **TESTS[0],
                "status": "fail",
                "measured": 0.9,
                "reason": "forget_accuracy_gap = 0.9 fails <= 0.05",
            }
        ],
        "metrics": {},
    }
    attach(client, admin, "t2", report("t2", passed=False, tests=[], regressions=[failed_reg]))
    v = verdict(client, ann, "t2")
    assert v["verdict"] == "deny" and f"proposal {first}" in v["reasons"][0]
    assert v["regressions"][0]["proposal_id"] == first
    attach(
        client,
        admin,
        "t2",
        report("t2", passed=True, tests=[], regressions=[{**failed_reg, "passed": True, "tests": []}]),
    )
    v = verdict(client, ann, "t2")
    assert v["verdict"] == "allow" and "still holds" in v["reasons"][0]


def test_a_version_with_no_obligation_is_allowed_and_registration_is_for_operators(
    client: Client, community: dict[str, Person]
) -> None:
    admin, ann = community["admin"], community["ann"]
    body = {"version": mv("plain"), "content_hash": h("plain"), "task": "digits", "kind": "train"}
    assert client.post("/api/v1/models", json=body, headers=ann.auth).status_code == 403
    assert (
        client.post("/api/v1/models", json={**body, "content_hash": "zz"}, headers=admin.auth).status_code
        == 400
    )
    register(client, admin, "plain", kind="train")
    again = client.post("/api/v1/models", json={**body, "content_hash": h("other")}, headers=admin.auth)
    assert again.status_code == 409
    # serving no proposal is not enough: the service's own worker verifies it first
    assert verdict(client, ann, "plain")["verdict"] == "pending"
    assert client.post(f"/api/v1/models/{mv('plain')}/verify", headers=ann.auth).status_code == 403
    r = client.post(f"/api/v1/models/{mv('plain')}/verify", headers=admin.auth)
    assert r.status_code == 201, r.text
    from governance.jobs.worker import Worker

    assert Worker(_CTX[0], "w-verify").run_once()
    v = verdict(client, ann, "plain")
    assert v["verdict"] == "allow" and "verified by the service's verifier" in v["reasons"][-1]


@pytest.mark.parametrize("html", [False, True])
def test_report_endpoints(client: Client, ctx: Ctx, community: dict[str, Person], html: bool) -> None:
    admin = community["admin"]
    register(client, admin, "rep")
    path = f"/api/v1/models/{mv('rep')}/report" + (".html" if html else "")
    assert client.get(path, headers=admin.auth).status_code == 404
    attach(client, admin, "rep", report("rep", passed=True))
    r = client.get(path, headers=admin.auth)
    assert r.status_code == 200
    if html:
        assert r.headers["content-type"].startswith("text/html") and "<html" in r.text
        # the worker stores the page once with the report (issue 19); the endpoint serves that file as stored
        from unlearning.api import store_report_html

        stored = client.get(path.removesuffix(".html"), headers=admin.auth).json()
        page = store_report_html(ctx.settings.artifact_dir, stored)
        assert page.read_text() == r.text  # the same page, rendered once
        page.write_text("<p>the stored page</p>")
        assert client.get(path, headers=admin.auth).text == "<p>the stored page</p>"
    else:
        assert r.json()["candidate_hash"] == h("rep")


def test_commons_gate_against_the_real_app(client: Client, ctx: Ctx, community: dict[str, Person]) -> None:
    from click.testing import CliRunner

    from governance.cli.gate import gate

    admin, ann = community["admin"], community["ann"]
    pid = proposal_in_state(ctx, community["bob"], "verified")
    register(client, admin, "ci", proposal_id=pid)
    run = CliRunner()
    r = run.invoke(gate, [mv("ci"), "--token", ann.token], obj=client)
    assert r.exit_code == 2, r.output
    attach(client, admin, "ci", report("ci", passed=False))
    r = run.invoke(gate, [mv("ci"), "--token", ann.token, "--json"], obj=client)
    assert r.exit_code == 1 and json.loads(r.stdout)["verdict"] == "deny"
    attach(client, admin, "ci", report("ci", passed=True))
    assert run.invoke(gate, [mv("ci"), "--token", ann.token], obj=client).exit_code == 0
    assert run.invoke(gate, [mv("ci"), "--token", "cmn_wrong"], obj=client).exit_code == 3
    assert run.invoke(gate, [mv("unknown"), "--token", ann.token], obj=client).exit_code == 3


def test_base_versions_and_job_versions_enter_the_registry(
    client: Client, ctx: Ctx, community: dict[str, Person]
) -> None:
    from governance.db.models import Job
    from governance.jobs.worker import verify_and_release_base
    from governance.services import gate, jobs
    from unlearning import init_model

    base = init_model(ctx.settings.artifact_dir, "digits")  # real bytes: the registry re-hashes them
    with pytest.raises(NotFound):
        gate.register_base_version(ctx, mv("not-stored"))
    released = verify_and_release_base(ctx, base.version)
    assert released.state == "released" and released.content_hash == base.content_hash
    # a job's model and report enter the registry when the worker records them, not when someone reads
    pid = proposal_in_state(ctx, community["bob"], "job_queued")
    with write_session(ctx.engine) as s:
        s.add(
            Job(
                proposal_id=pid,
                state="queued",
                spec={"target": {"kind": "category", "value": "7"}},
                acceptance_tests=TESTS,
            )
        )
    claim = jobs.claim(ctx, "w1")
    assert claim is not None and claim.proposal_id == pid
    result = {"model_version": mv("job"), "content_hash": h("job"), "parent_version": base.version}
    jobs.start_verification(ctx, claim.job_id, "w1", result)
    jobs.complete(ctx, claim.job_id, "w1", signed(ctx, report("job", passed=True)), passed=True)
    models = client.get("/api/v1/models", headers=community["ann"].auth).json()
    adopted = next(m for m in models if m["version"] == mv("job"))
    assert adopted["state"] == "verified" and adopted["proposal_id"] == pid and adopted["kind"] == "unlearn"
    assert adopted["parent_version"] == base.version
    assert verdict(client, community["ann"], "job")["verdict"] == "allow"


def test_provenance_bundle_checks_offline_and_detects_tampering(
    client: Client, ctx: Ctx, community: dict[str, Person], tmp_path: Any
) -> None:
    from click.testing import CliRunner

    from governance.bundle_verify import verify_bundle
    from governance.cli.gate import release

    admin, ann = community["admin"], community["ann"]
    pid = proposal_in_state(ctx, community["bob"], "verified")
    register(client, admin, "b1", proposal_id=pid, parent_version=mv("base"))
    attach(client, admin, "b1", report("b1", passed=True))
    r = client.get(f"/api/v1/releases/{mv('b1')}/bundle", headers=ann.auth)
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["verdict"]["verdict"] == "allow" and b["artifacts"]["after"]["content_hash"] == h("b1")
    assert b["proposals"][0]["id"] == pid and "tally" in b["proposals"][0]
    assert b["report"]["policy_hash"] == policy_hash(TESTS)
    assert verify_bundle(b) == []
    forged = json.loads(json.dumps(b))
    forged["verdict"]["verdict"] = "deny"
    assert any("audit log's last verdict" in p for p in verify_bundle(forged))
    altered = json.loads(json.dumps(b))
    altered["audit"]["entries"][0]["entry"]["payload"]["content_hash"] = h("evil")
    assert any("altered" in p for p in verify_bundle(altered))
    swapped = json.loads(json.dumps(b))
    swapped["report"]["candidate_hash"] = h("other")
    assert any("another model" in p for p in verify_bundle(swapped))

    out = tmp_path / "bundle.json"
    run = CliRunner()
    res = run.invoke(release, ["bundle", mv("b1"), "--token", ann.token, "--out", str(out)], obj=client)
    assert res.exit_code == 0, res.output
    res = run.invoke(release, ["verify-bundle", str(out)])
    assert res.exit_code == 0 and res.stdout.startswith("OK:")
    from governance.cli.audit import audit

    res = run.invoke(audit, ["verify", "--bundle", str(out)])  # the same check, as the issue names it
    assert res.exit_code == 0 and res.stdout.startswith("OK:"), res.output
    out.write_text(json.dumps(forged))
    assert run.invoke(release, ["verify-bundle", str(out)]).exit_code == 1
    assert run.invoke(audit, ["verify", "--bundle", str(out)]).exit_code == 1
