"""The spine on real components, over the API: proposal -> review -> vote -> job (federated unlearning on a
small digits federation) -> verification against a retrained reference -> candidate -> verdict -> release,
with progress over server-sent events and the release going out as a webhook."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from governance.domain.clock import FixedClock
from governance.jobs.worker import Worker
from governance.services import events
from governance.services.context import Ctx
from governance.settings import Settings
from tests.conftest import PassTime, Person


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A 3-node digits federation and a base model trained on it (about 10 s)."""
    from unlearning import JobSpec, init_dataset, init_model, run_job

    root = tmp_path_factory.mktemp("federation")
    init_dataset("digits", root / "dataset", nodes=3, seed=0)
    init = init_model(root / "artifacts", "digits", seed=0)
    base = run_job(
        JobSpec(
            kind="train",
            job_id="base",
            artifact_root=str(root / "artifacts"),
            dataset_dir=str(root / "dataset"),
            base_version=init.version,
            rounds=3,
        )
    )
    assert base.status == "succeeded", base.error
    return {"root": root, "base": base.model_version}


@pytest.fixture
def spine_settings(settings: Settings, federation: dict[str, Any]) -> Settings:
    import shutil

    data = settings.data_dir
    data.mkdir(parents=True, exist_ok=True)
    shutil.copytree(federation["root"] / "artifacts", data / "artifacts")
    shutil.copytree(federation["root"] / "dataset", data / "dataset")
    settings.base_model_version = federation["base"]
    return settings


def ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


def test_proposal_to_release(
    spine_settings: Settings,
    ctx: Ctx,
    client: TestClient[Litestar],
    community: dict[str, Person],
    clock: FixedClock,
    pass_time: PassTime,
) -> None:
    ctx.settings = spine_settings
    app_ctx: Ctx = client.app.state.ctx
    app_ctx.settings = spine_settings
    p = community
    hook = events.add_webhook(
        ctx, "http://127.0.0.1:9/ci", ["release", "verification.result"], p["admin"].actor
    )
    tests = [
        {"metric": "forget_accuracy_gap", "comparator": "<=", "threshold": 0.1},
        {"metric": "retained_utility_drop", "comparator": "<=", "threshold": 0.1},
    ]
    prop = ok(
        client.post(
            "/api/v1/proposals",
            json={
                "title": "Forget the digit seven",
                "target": {"kind": "category", "category": "7"},
                "acceptance_tests": tests,
                "submit": True,
            },
            headers=p["bob"].auth,
        ),
        201,
    )
    pid = prop["id"]
    for r in ("rev1", "rev2"):
        ok(client.post(f"/api/v1/proposals/{pid}/triage", json={"decision": "approve"}, headers=p[r].auth))
    for h in ("ann", "bob", "cat", "dan", "rev3", "admin"):
        ok(client.post(f"/api/v1/proposals/{pid}/votes", json={"choice": "approve"}, headers=p[h].auth))
    pass_time(days=7, seconds=1)
    ok(client.get(f"/api/v1/proposals/{pid}", headers=p["bob"].auth))
    for c in ("coun1", "coun2"):
        ok(client.post(f"/api/v1/proposals/{pid}/council", json={"decision": "ratify"}, headers=p[c].auth))
    pass_time(days=3, seconds=1)
    assert ok(client.get(f"/api/v1/proposals/{pid}", headers=p["bob"].auth))["state"] == "job_queued"
    (job,) = ok(client.get(f"/api/v1/jobs?proposal_id={pid}", headers=p["bob"].auth))
    assert job["spec"]["base_version"] == spine_settings.base_model_version

    worker = Worker(app_ctx, "spine")
    t = threading.Thread(target=worker.run_once)
    t.start()
    with client.stream(
        "GET", f"/api/v1/jobs/{job['id']}/events?interval=0.2", headers=p["bob"].auth
    ) as stream:
        body = "".join(stream.iter_text())
    t.join(timeout=300)
    assert "event: progress" in body and "event: end" in body
    phases = {
        json.loads(line[5:].strip())["progress"].get("phase")
        for line in body.splitlines()
        if line.startswith("data:") and '"progress"' in line
    }
    assert phases - {None}, phases  # the job's phases (fisher, ascent, repair, evaluate, verify) as they ran

    done = ok(client.get(f"/api/v1/jobs/{job['id']}", headers=p["bob"].auth))
    assert done["state"] == "succeeded", done["error"]
    version = done["model_version"]
    report = done["report"]
    assert report["candidate_version"] == version and report["passed"] is True, report.get("summary")
    assert ok(client.get(f"/api/v1/proposals/{pid}", headers=p["bob"].auth))["state"] == "verified"

    verdict = ok(client.get(f"/api/v1/releases/{version}/verdict", headers=p["bob"].auth))
    assert verdict["verdict"] == "allow", verdict
    assert verdict["proofs"] and verdict["checkpoint"]
    r = client.post(f"/api/v1/models/{version}/release", headers=p["ann"].auth)
    assert r.status_code == 403
    released = ok(client.post(f"/api/v1/models/{version}/release", headers=p["coun1"].auth), 201)
    assert released["state"] == "released"
    assert ok(client.get(f"/api/v1/proposals/{pid}", headers=p["bob"].auth))["state"] == "released"
    queued = {d["event"] for d in events.deliveries(ctx, hook["id"], p["admin"].actor)}
    assert {"release", "verification.result"} <= queued
    # the next job starts from the released version
    assert ok(client.get("/api/v1/models?state=released", headers=p["bob"].auth))


def test_jobs_api_errors(client: TestClient[Litestar], community: dict[str, Person]) -> None:
    p = community
    assert client.get("/api/v1/jobs/999", headers=p["ann"].auth).status_code == 404
    assert client.get("/api/v1/jobs?state=nope", headers=p["ann"].auth).status_code == 422
    assert client.get("/api/v1/jobs/999/events", headers=p["ann"].auth).status_code == 404
    r = client.post("/api/v1/jobs/999/cancel", json={"reason": ""}, headers=p["coun1"].auth)
    assert r.status_code == 400
    assert (
        client.post(
            "/api/v1/webhooks",
            json={"url": "https://x.example/h", "events": ["release"]},
            headers=p["ann"].auth,
        ).status_code
        == 403
    )
    r = client.post(
        "/api/v1/webhooks", json={"url": "https://x.example/h", "events": ["bogus"]}, headers=p["admin"].auth
    )
    assert r.status_code == 422 and r.json()["field"] == "events"
    assert ok(client.get("/api/v1/notifications", headers=p["ann"].auth)) == []
    assert client.post("/api/v1/notifications/5/read", headers=p["ann"].auth).status_code == 404
