"""No member's data at the service (issue 17 item 1), in process: the demo lays its corpus out as a community
holds it (each node's data in its own folder, COMMONS_DATA_DIR/nodes/<node>/, standing for a member's
machine) and the service's dataset directory holds only what the operator publishes (the manifest without the
canaries inserted in a member's data, and the held-out split). The in-process runtime gives each node its own
folder as its data-path (as a SuperNode's --node-config), so a job, its retrained reference, its verification
and the community evaluation run with no record of any node at the service."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from governance import demo
from governance.domain.clock import FixedClock
from governance.jobs.worker import Worker
from governance.services import jobs, proposals
from governance.services.context import Ctx
from tests.conftest import Person
from tests.integration.test_jobs import approved_proposal
from unlearning import JobSpec, init_dataset, init_model, run_job
from unlearning.api import FlowerSettings, publish_dataset
from unlearning.data import MANIFEST, read_manifest, sha256_file


def node_lines(node_root: Path, manifest: dict[str, Any]) -> list[str]:
    """Every line of every node's files (training and validation)."""
    lines = []
    for n in manifest["nodes"]:
        for f in sorted((node_root / n["path"]).glob("*.jsonl")):
            lines += [line for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
    return lines


def assert_only_published(service: Path, node_root: Path, manifest: dict[str, Any]) -> None:
    """``service`` holds the manifest and the held-out split, no node folder, and no node's line anywhere."""
    files = sorted(p.relative_to(service).as_posix() for p in service.rglob("*") if p.is_file())
    assert files == sorted([MANIFEST] + [f"heldout/{s}.jsonl" for s in manifest["heldout"]]), files
    lines = node_lines(node_root, manifest)
    assert len(lines) > 100
    for f in service.rglob("*"):
        if f.is_file():
            text = f.read_text(encoding="utf-8")
            found = [line for line in lines if line in text]
            assert not found, f"a node's record in {f}: {found[0][:80]}"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_demo_lays_each_nodes_data_in_its_own_folder_and_publishes_only_the_manifest(ctx: Ctx) -> None:
    said: list[str] = []
    community = demo.create_community(ctx, size="small", say=said.append)
    s = ctx.settings
    service, home = s.effective_dataset_dir, s.data_dir / "nodes"
    assert s.nodes_home == home and s.effective_node_data_dir == home  # where the in-process nodes read
    manifest = read_manifest(service)
    assert [n["path"] for n in manifest["nodes"]] == [f"node-{k}" for k in range(5)]
    assert sorted(p.name for p in home.iterdir()) == [f"node-{k}" for k in range(5)]
    assert_only_published(service, home, manifest)
    # every file the manifest lists is on its node, as listed (the data sources were registered from it)
    for n in manifest["nodes"]:
        for src in n["sources"]:
            assert sha256_file(home / src["file"]) == src["sha256"]
            assert src["name"] in community.sources
    # the access codes inserted in nadia's notebook are hers: not in the published manifest
    notebook = [json.loads(x) for x in (home / "node-0" / "notebook.jsonl").read_text().splitlines()]
    secrets = {r["secret"] for r in notebook if r.get("kind") == "canary"}
    assert len(secrets) == 8
    published = (service / MANIFEST).read_text()
    assert not [x for x in secrets if x in published]
    assert manifest["canaries"] and not any(c["inserted"] for c in manifest["canaries"])
    assert any(str(home) in m and str(service) in m for m in said)
    # the database removed on its own: the same corpus, already laid out, is kept; a changed one is refused
    assert demo.lay_out_corpus(ctx) == manifest
    forum = home / "node-1" / "forum.jsonl"
    forum.write_text(forum.read_text() + '{"text": "a line of my own"}\n')
    with pytest.raises(RuntimeError, match="already holds a dataset manifest: use `commons demo --reset`"):
        demo.lay_out_corpus(ctx)
    assert "a line of my own" in forum.read_text() and read_manifest(service) == manifest


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_job_and_its_verification_run_with_only_the_manifest_at_the_service(
    ctx: Ctx, clock: FixedClock, community: dict[str, Person]
) -> None:
    s = ctx.settings
    service, home, art = s.effective_dataset_dir, s.data_dir / "nodes", s.artifact_dir
    init_dataset("digits", s.data_dir / "generated", nodes=3, seed=0)
    manifest = publish_dataset(s.data_dir / "generated", service, home)
    assert not (s.data_dir / "generated").exists()
    assert_only_published(service, home, manifest)
    v0 = init_model(art, "digits", size="tiny", seed=0)
    base = JobSpec(
        kind="train",
        job_id="base",
        artifact_root=str(art),
        dataset_dir=str(service),
        base_version=v0.version,
        rounds=2,
    )
    # the control: without the nodes' folders the in-process nodes find no data at the service
    blind = run_job(base, flower=FlowerSettings(node_timeout_s=1.0))
    assert blind.status == "failed" and "node-0" in str(blind.error) and "does not exist" in str(blind.error)
    trained = run_job(base, flower=FlowerSettings(node_data_dir=str(home)))
    assert trained.status == "succeeded", trained.error
    s.base_model_version = trained.model_version

    tests = [
        {"metric": "forget_accuracy_gap", "comparator": "<=", "threshold": 0.1},
        {"metric": "retained_utility_drop", "comparator": "<=", "threshold": 0.1},
    ]
    pid = approved_proposal(ctx, clock, community, "Forget the digit seven", "7", tests)
    (job,) = jobs.list_jobs(ctx, proposal_id=pid)
    assert Worker(ctx, "nodes").run_once()  # the service's worker: run_job, reference, verify, evaluation
    done = jobs.get(ctx, job["id"])
    assert done["state"] == "succeeded", done["error"]
    report = done["report"]
    assert report["passed"] is True, report.get("summary")
    assert report["models"]["reference"] is not None  # the retrained reference ran on the nodes too
    where = {name: m["details"].get("computed_at") for name, m in report["metrics"].items() if m["applies"]}
    assert where["forget_accuracy_gap"] == ["nodes: node-0, node-1, node-2"]
    evaluation = report["community_evaluation"]
    assert [n["node"] for n in evaluation["nodes"]] == ["node-0", "node-1", "node-2"], evaluation
    assert proposals.get_detail(ctx, pid).state == "verified"
    assert_only_published(service, home, manifest)  # nothing of the nodes' was copied to the service
