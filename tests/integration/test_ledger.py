"""The contribution ledger through the API and the CLI (SQLite and PostgreSQL): a data source's lineage through
real trained versions, the version that unlearned it and its report, which released versions still hold it,
audit proofs that verify against the signed checkpoint, and each node's contribution as open data."""

from __future__ import annotations

import os

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

import csv
import io
import json
import shutil
from typing import Any

import pytest
from click.testing import CliRunner
from litestar import Litestar
from litestar.testing import TestClient

from governance.audit import merkle
from governance.audit.canonical import dumps_plain
from governance.audit.checkpoint import VerifierKey, open_checkpoint
from governance.db.engine import write_session
from governance.domain.clock import FixedClock
from governance.registry_schemas import ModelVersionCreate
from governance.schemas import DataSourceCreate
from governance.services import data_sources, gate, ledger, registry
from governance.services.context import Ctx
from tests.conftest import Person
from tests.trust import signed, store_version
from unlearning.contract import CONTRIBUTION_COLUMNS, policy_hash

Client = TestClient[Litestar]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real digits version trained on two nodes (GTG-Shapley measured), from an init version."""
    import torch

    from unlearning import JobSpec, init_dataset, init_model, run_job

    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("ledger")
    manifest = init_dataset("digits", base / "data", nodes=2, seed=0)
    v0 = init_model(base / "art", "digits", size="tiny", seed=0)
    spec = JobSpec(
        kind="train",
        job_id="ledger-train",
        artifact_root=str(base / "art"),
        dataset_dir=str(base / "data"),
        base_version=v0.version,
        rounds=2,
        local={"epochs": 1.0},
    )
    result = run_job(spec)
    assert result.status == "succeeded" and result.model_version and result.contribution, result.error
    return {"root": base / "art", "init": v0.version, "trained": result.model_version, "manifest": manifest}


def _adopt(ctx: Ctx, t: dict[str, Any]) -> None:
    """The operator adopts the trained version from the store (`commons registry adopt`), then it is verified
    and released."""
    dest = ctx.settings.artifact_dir / "versions"
    dest.mkdir(parents=True, exist_ok=True)
    for v in (t["init"], t["trained"]):
        shutil.copytree(t["root"] / "versions" / v, dest / v)
    gate.register_base_version(ctx, t["init"])
    gate.register_base_version(ctx, t["trained"])


def _release(ctx: Ctx, admin: Person, version: str) -> None:
    row = registry.get_version(ctx, version)
    body = {
        "candidate_version": version,
        "candidate_hash": row.content_hash,
        "policy_hash": policy_hash([]),
        "config_hash": "0" * 64,
        "seed": 0,
        "precision": "fp32",
        "libraries": {},
        "passed": True,
        "summary": "PASS",
        "tests": [],
        "regressions": [],
        "metrics": {},
    }
    registry.attach_report(ctx, admin.actor, version, signed(ctx, body))
    gate.release(ctx, admin.actor, version)


def _unlearned(ctx: Ctx, parent: str, source: str) -> str:
    """An unlearning version of ``source`` (as a job registers it), stored and registered."""
    version, content_hash = store_version(ctx, f"forget {source}", parent=parent)
    with write_session(ctx.engine) as s:
        registry.register(
            s,
            ModelVersionCreate(
                version=version,
                content_hash=content_hash,
                parent_version=parent,
                task="digits",
                kind="unlearn",
            ),
            actor=None,
            now=ctx.clock.now(),
            details={"target": {"kind": "data_source", "value": source}},
        )
    return version


def _verify_proofs(client: Client, body: dict[str, Any]) -> list[dict[str, Any]]:
    key = VerifierKey.parse(client.get("/api/v1/audit/public-key").json()["verifier_key"])
    cp = open_checkpoint(body["checkpoint"]["checkpoint"], key, None)
    for p in body["proofs"]:
        leaf = merkle.leaf_hash(dumps_plain(p["entry"]))
        hashes = [bytes.fromhex(x) for x in p["inclusion_proof"]["hashes"]]
        assert leaf.hex() == p["leaf_hash"]
        assert merkle.verify_inclusion(p["seq"], cp.size, leaf, hashes, cp.root_hash)
    return [p["entry"] for p in body["proofs"]]


def test_is_my_data_in_the_released_model(
    client: Client, ctx: Ctx, community: dict[str, Person], trained: dict[str, Any], clock: FixedClock
) -> None:
    ann, bob, admin = community["ann"], community["bob"], community["admin"]
    src = {n["node"]: n["sources"][0] for n in trained["manifest"]["nodes"]}
    mine = data_sources.register(
        ctx,
        DataSourceCreate(name="digits", node_id="node-0", content_hash=src["node-0"]["sha256"]),
        ann.actor,
    )
    theirs = data_sources.register(
        ctx,
        DataSourceCreate(name="digits", node_id="node-1", content_hash=src["node-1"]["sha256"]),
        bob.actor,
    )
    url = f"/api/v1/data-sources/{mine.id}/ledger"
    assert client.get(url, headers=ann.auth).json()["answer"] == "no released model"

    _adopt(ctx, trained)
    _release(ctx, admin, trained["trained"])
    body = client.get(url, headers=ann.auth).json()
    assert body["answer"] == "yes" and body["released_version"] == trained["trained"]
    assert [v["version"] for v in body["trained_in"]] == [trained["trained"]]
    assert body["released_containing"] == [trained["trained"]] and body["unlearned_by"] == []
    holds = {v["version"]: v["holds"] for v in body["versions"]}
    assert holds == {trained["init"]: "never", trained["trained"]: "contains"}
    (row,) = body["contributions"]
    assert (
        row["node"] == "node-0"
        and row["sources"] == "node-0/digits"
        and row["model_version"] == trained["trained"]
    )

    clock.advance(days=1)
    forgot = _unlearned(ctx, trained["trained"], "node-0/digits")
    _release(ctx, admin, forgot)
    body = client.get(url, headers=ann.auth).json()
    assert body["answer"] == "no" and body["released_version"] == forgot
    assert "unlearned it" in body["explanation"]
    (u,) = body["unlearned_by"]
    assert u["version"] == forgot and u["passed"] is True and u["report_url"].endswith("/report.html")
    assert body["released_containing"] == [trained["trained"]] and body["released_without"] == [forgot]
    # the other member's data is still in the released model
    other = client.get(f"/api/v1/data-sources/{theirs.id}/ledger", headers=ann.auth).json()
    assert other["answer"] == "yes" and set(other["released_containing"]) == {trained["trained"], forgot}

    # every step is backed by an audit entry that verifies against the signed checkpoint
    entries = _verify_proofs(client, body)
    steps = {(e["action"], e["subject"]) for e in entries}
    assert ("data_source.registered", f"data_source:{mine.id}") in steps
    for action in ("model.registered", "model.released"):
        assert (action, f"model:{forgot}") in steps and (action, f"model:{trained['trained']}") in steps
    (trained_entry,) = [e for e in entries if e["action"] == "model.trained"]
    assert "node-0/digits" in {s["name"] for s in trained_entry["payload"]["sources"]}
    assert trained_entry["payload"]["contribution"]["method"] == "gtg-shapley"

    # the member's page, the data source's page and the version page show it
    me = client.get("/me", headers=ann.auth).text
    assert "Your data in the model" in me and "node-0/digits" in me
    assert "in the released model: <strong>no</strong>" in me
    page = client.get(f"/data-sources/{mine.id}", headers=bob.auth).text
    assert "Is this data in the released model?" in page and "<strong>No</strong>" in page
    assert "no (unlearned)" in page and forgot in page and "passed" in page
    page = client.get(f"/models/{trained['trained']}", headers=bob.auth).text
    assert "What each node contributed" in page and "node-1/digits" in page and "contributions.csv" in page
    assert "What each node contributed" not in client.get(f"/models/{forgot}", headers=bob.auth).text


def test_contributions_are_open_data(
    client: Client, ctx: Ctx, community: dict[str, Person], trained: dict[str, Any]
) -> None:
    _adopt(ctx, trained)
    v = trained["trained"]
    c = client.get(f"/api/v1/models/{v}/contribution", headers=community["ann"].auth).json()
    assert c["method"] == "gtg-shapley" and [n["node"] for n in c["nodes"]] == ["node-0", "node-1"]
    assert sum(n["score"] for n in c["nodes"]) == pytest.approx(c["sum_of_scores"])
    assert c["cost"]["evaluations"] > 0 and c["audit_seq"] >= 0
    rows = client.get("/api/v1/contributions").json()  # public, like the audit log
    assert [(r["model_version"], r["node"]) for r in rows] == [(v, "node-0"), (v, "node-1")]
    r = client.get("/api/v1/contributions.csv", params={"model_version": v})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(r.text)))
    assert tuple(table[0]) == CONTRIBUTION_COLUMNS and len(table) == 3
    assert [float(x) for x in (table[1][7], table[2][7])] == pytest.approx([n["score"] for n in c["nodes"]])
    # a version no training job measured, a bad id, and no token
    assert (
        client.get(
            f"/api/v1/models/{trained['init']}/contribution", headers=community["ann"].auth
        ).status_code
        == 404
    )
    assert client.get("/api/v1/data-sources/999/ledger", headers=community["ann"].auth).status_code == 404
    assert client.get("/api/v1/data-sources/0/ledger", headers=community["ann"].auth).status_code in (
        400,
        404,
    )
    assert client.get("/api/v1/data-sources/1/ledger").status_code == 401
    assert client.get("/api/v1/contributions", params={"model_version": "mv-nothing"}).json() == []
    # adopting again records nothing twice
    before = ledger.contribution_rows(ctx)
    gate.register_base_version(ctx, v)
    assert ledger.contribution_rows(ctx) == before


def test_the_cli_answers_and_verifies_the_proofs(
    client: Client, ctx: Ctx, community: dict[str, Person], trained: dict[str, Any]
) -> None:
    from governance.cli import main
    from governance.cli.common import ApiContext
    from governance.client import CommonsClient

    ann = community["ann"]
    src = trained["manifest"]["nodes"][0]["sources"][0]
    ds = data_sources.register(
        ctx, DataSourceCreate(name="digits", node_id="node-0", content_hash=src["sha256"]), ann.actor
    )
    _adopt(ctx, trained)
    _release(ctx, community["admin"], trained["trained"])
    runner = CliRunner()
    obj = ApiContext(CommonsClient(client, ann.token))
    out = runner.invoke(main, ["data-source", "ledger", str(ds.id)], obj=obj)
    assert out.exit_code == 0, out.output
    assert "yes" in out.output and trained["trained"] in out.output and "audit entries verified" in out.output
    out = runner.invoke(main, ["data-source", "ledger", str(ds.id), "--json"], obj=obj)
    assert json.loads(out.output)["answer"] == "yes"
    out = runner.invoke(main, ["data-source", "ledger", "999"], obj=obj)
    assert out.exit_code == 1 and "no data source 999" in out.output
