"""A job's footprint (issue 17 item 6): energy measured from RAPL counters where readable, else estimated from
CPU seconds with the constant the report names; bytes to and from the nodes; the ratio to the retraining
reference; shown beside the verdict on the job's page and on its proposal's page. A job that left a departed
member out says so in its result, its audit entry and its page, and its retrained reference leaves the same
node out."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from governance.audit import log
from governance.db.engine import read_session
from governance.domain.clock import FixedClock
from governance.jobs import worker as worker_module
from governance.jobs.worker import Worker
from governance.services import jobs
from governance.services.context import Ctx
from tests.conftest import Person
from tests.integration.test_jobs import approved_proposal, fake_result
from tests.integration.test_ui_pages import sign_in
from unlearning import JobSpec, init_dataset, init_model, run_job
from unlearning.footprint import EnergyMeter, estimate, footprint, watts_per_core
from unlearning.jobs import JobCost


def fake_rapl(root: Path, packages: dict[str, int], wrap: int = 1_000_000) -> None:
    for name, value in packages.items():
        zone = root / name
        zone.mkdir(parents=True, exist_ok=True)
        (zone / "energy_uj").write_text(f"{value}\n")
        (zone / "max_energy_range_uj").write_text(f"{wrap}\n")


def test_rapl_is_measured_where_readable_and_wraps(tmp_path: Path) -> None:
    # two packages and a sub-zone (core) that must not be counted twice
    fake_rapl(tmp_path, {"intel-rapl:0": 900_000, "intel-rapl:1": 100, "intel-rapl:0:0": 5})
    meter = EnergyMeter(tmp_path)
    fake_rapl(tmp_path, {"intel-rapl:0": 400_000, "intel-rapl:1": 2_000_100, "intel-rapl:0:0": 999})
    energy, how, basis = meter.stop(cpu_s=123.0)
    assert how == "measured-rapl" and basis["zones"] == ["intel-rapl:0", "intel-rapl:1"]
    # package 0 wrapped at 1 J: 0.1 J + 0.4 J; package 1: 2 J
    assert energy == pytest.approx(0.5 + 2.0)


def test_without_rapl_energy_is_estimated_from_cpu_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    energy, how, basis = EnergyMeter(tmp_path / "none").stop(cpu_s=10.0)
    assert how == "estimated" and energy == pytest.approx(10.0 * watts_per_core())
    assert basis["tdp_watts"] == 85.0 and basis["load"] == 0.5 and "codecarbon" in basis["source"]
    monkeypatch.setenv("COMMONS_CPU_TDP_WATTS", "120")
    energy, _, basis = estimate(2.0)
    assert basis["tdp_watts"] == 120.0 and energy == pytest.approx(2.0 * 0.5 * 120.0 / basis["cores"])
    monkeypatch.setenv("COMMONS_CPU_TDP_WATTS", "lots")
    with pytest.raises(ValueError, match="COMMONS_CPU_TDP_WATTS"):
        estimate(1.0)


def test_the_footprint_is_each_figure_against_retraining() -> None:
    job = {"cpu_s": 2.0, "wall_s": 4.0, "bytes_to_nodes": 100, "bytes_from_nodes": 300, "energy_j": 10.0}
    ref = {"cpu_s": 8.0, "wall_s": 8.0, "bytes_to_nodes": 400, "bytes_from_nodes": 300, "energy_j": 40.0}
    out = footprint({**job, "energy_method": "estimated"}, ref)
    ratios = {f["name"]: f["ratio"] for f in out["figures"]}
    assert ratios == {
        "cpu_s": 0.25,
        "wall_s": 0.5,
        "bytes_to_nodes": 0.25,
        "bytes_from_nodes": 1.0,
        "energy_j": 0.25,
    }
    assert out["energy_method"] == "estimated" and out["has_reference"]
    alone = footprint({"cpu_s": 1.0, "rounds": [{"bytes_to_nodes": 5, "bytes_from_nodes": 7}]})
    assert not alone["has_reference"] and all(f["ratio"] is None for f in alone["figures"])
    by_name = {f["name"]: f["job"] for f in alone["figures"]}
    assert by_name["bytes_to_nodes"] == 5 and by_name["bytes_from_nodes"] == 7  # older costs: from rounds


def test_a_real_job_reports_its_energy_and_bytes_each_way(tmp_path: Path) -> None:
    init_dataset("digits", tmp_path / "data", nodes=2, seed=0)
    v0 = init_model(tmp_path / "art", "digits", size="tiny", seed=0)
    spec = JobSpec(
        kind="train",
        job_id="fp",
        artifact_root=str(tmp_path / "art"),
        dataset_dir=str(tmp_path / "data"),
        base_version=v0.version,
        rounds=1,
        local={"epochs": 0.25},
        evaluate=False,
    )
    cost = run_job(spec).cost
    assert cost.bytes_to_nodes > 0 and cost.bytes_from_nodes > 0
    assert cost.bytes_to_nodes + cost.bytes_from_nodes == cost.bytes_sent
    assert cost.energy_j is not None and cost.energy_j > 0
    if cost.energy_method == "estimated":  # this machine exposes no readable RAPL counter
        assert cost.energy_j == pytest.approx(cost.cpu_s * cost.energy_basis["watts_per_core"])
    else:
        assert cost.energy_method == "measured-rapl" and cost.energy_basis["zones"]


REFERENCE = {
    "cpu_s": 40.0,
    "wall_s": 50.0,
    "bytes_to_nodes": 8000,
    "bytes_from_nodes": 8000,
    "energy_j": 400.0,
    "energy_method": "estimated",
}


def test_the_job_and_proposal_pages_show_the_footprint_beside_the_verdict(
    ctx: Ctx,
    clock: FixedClock,
    community: dict[str, Person],
    client: TestClient[Litestar],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pid = approved_proposal(ctx, clock, community)
    (job,) = jobs.list_jobs(ctx, proposal_id=pid)

    def runner(ctx: Ctx, claim: jobs.Claim, progress: Any, cancel: threading.Event) -> Any:
        r = fake_result(claim)
        r.cost = JobCost(
            wall_s=5.0,
            cpu_s=10.0,
            bytes_to_nodes=2000,
            bytes_from_nodes=6000,
            bytes_sent=8000,
            energy_j=100.0,
            energy_method="estimated",
            energy_basis=estimate(10.0)[2],
        )
        r.metrics = {"method": {"departed": ["partition 2 (node-2)"], "departed-nodes": ["node-2"]}}
        return r

    references: list[dict[str, Any]] = []

    def reference(
        ctx: Ctx, claim: jobs.Claim, progress: Any, cancel: threading.Event, suffix: str = ""
    ) -> Any:
        references.append(dict(claim.spec))
        r = fake_result(claim)
        r.cost = JobCost(**{k: v for k, v in REFERENCE.items()})
        return r

    def verifier(
        ctx: Ctx, claim: jobs.Claim, result: dict[str, Any], progress: Any
    ) -> tuple[dict[str, Any], bool]:
        # what default_verifier does first: the retrained reference, without the departed node
        left_out = ((result.get("metrics") or {}).get("method") or {}).get("departed-nodes")
        ref = worker_module.retrain_reference(ctx, claim, progress, threading.Event(), departed=left_out)
        details = {"job": result["cost"], "retrain": ref.to_dict()["cost"]}
        return {
            "passed": True,
            "summary": "PASS: 4 of 4 acceptance tests",
            "tests": [
                {
                    "metric": "cost_ratio",
                    "comparator": "<=",
                    "threshold": 1.0,
                    "relative_to_reference": False,
                    "measured": 0.25,
                    "status": "pass",
                    "reason": "",
                }
            ],
            "metrics": {"cost_ratio": {"name": "cost_ratio", "value": 0.25, "details": details}},
        }, True

    monkeypatch.setattr(worker_module, "run_unlearning", reference)
    assert Worker(ctx, "w1", runner=runner, verifier=verifier).run_once()
    assert references and references[0]["method"] == "retrain" and references[0]["departed"] == ["node-2"]

    done = jobs.get(ctx, job["id"])
    assert done["departed"] == ["partition 2 (node-2)"]
    with read_session(ctx.engine) as s:
        finished = [e for e in log.entries_for_subject(s, f"job:{job['id']}") if e.action == "job.finished"]
    assert finished and json.loads(json.dumps(finished[-1].payload))["departed"] == ["partition 2 (node-2)"]

    sign_in(client, ctx, community["ann"].id, "ann")
    page = client.get(f"/jobs/{job['id']}").text
    verdict = page.index("PASS: 4 of 4 acceptance tests", page.index('id="h-verdicts"'))
    box = page.index("Footprint", verdict)
    assert box - verdict < 400  # right after the verdict
    table = page[box : page.index("</table>", box)]
    assert "10 s" in table and "40 s" in table and "0.25" in table  # CPU: job, retraining, ratio
    assert "2000 B" in table and "8000 B" in table and "0.75" in table  # bytes received: 6000 / 8000
    assert "100 J" in table and "400 J" in table
    assert "estimated: CPU seconds x" in page and "85" in page  # says how, and the constant
    assert "Departed nodes" in page and "left out by design" in page
    proposal = client.get(f"/proposals/{pid}").text
    verdict = proposal.index('id="h-verdict"')
    assert "PASS: 4 of 4 acceptance tests" in proposal[verdict:]
    assert "Footprint" in proposal[verdict:] and "100 J" in proposal[verdict:]
    assert "partition 2 (node-2)" in proposal[verdict:]
