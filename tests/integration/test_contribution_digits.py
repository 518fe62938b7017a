"""Each node's contribution to a real federated training job (digits, in process, GTG-Shapley over the rounds'
updates, utilities evaluated by the nodes): a node with label-noised data scores below the clean ones, two
nodes holding the same data score alike, and the scores add up to the model's improvement."""

from __future__ import annotations

import os

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

import random
from pathlib import Path
from typing import Any

import pytest
import torch

from unlearning import ArtifactStore, JobResult, JobSpec, init_dataset, init_model, run_job
from unlearning.data import read_jsonl, write_dataset

torch.set_num_threads(1)
ROUNDS = 4


def _community(base: Path) -> Path:
    """Four nodes: node-0 and node-1 clean, node-2 a copy of node-1's data, node-3 node-2's original data with
    every label replaced by a random one. Every node validates on clean data."""
    init_dataset("digits", base / "src", nodes=3, seed=0)

    def load(k: int, name: str) -> list[dict[str, Any]]:
        return [
            {k_: v for k_, v in r.items() if k_ != "source"}
            for r in read_jsonl(base / "src" / f"node-{k}" / name)
        ]

    rng = random.Random(0)
    noisy = []
    for r in load(2, "digits.jsonl"):
        label = rng.randrange(10)
        noisy.append({**r, "label": label, "category": str(label)})
    train = {0: load(0, "digits.jsonl"), 1: load(1, "digits.jsonl"), 2: load(1, "digits.jsonl"), 3: noisy}
    val = {0: load(0, "validation.jsonl"), 1: load(1, "validation.jsonl"), 2: load(1, "validation.jsonl")}
    val[3] = load(2, "validation.jsonl")
    write_dataset(
        base / "data",
        task="digits",
        seed=0,
        nodes={f"node-{k}": {"digits": rs} for k, rs in train.items()},
        validation={f"node-{k}": rs for k, rs in val.items()},
        heldout={"validation": [], "test": []},
    )
    return base / "data"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, JobResult]:
    base = tmp_path_factory.mktemp("contribution")
    data = _community(base)
    v0 = init_model(base / "art", "digits", size="tiny", seed=0)
    spec = JobSpec(
        kind="train",
        job_id="train-c",
        artifact_root=str(base / "art"),
        dataset_dir=str(data),
        base_version=v0.version,
        rounds=ROUNDS,
        local={"epochs": 1.0},
    )
    result = run_job(spec)
    assert result.status == "succeeded", result.error
    return base, result


def _scores(result: JobResult) -> dict[str, float]:
    assert result.contribution is not None
    return {n["node"]: n["score"] for n in result.contribution["nodes"]}


def test_a_label_noised_node_scores_below_every_clean_node(trained: tuple[Path, JobResult]) -> None:
    s = _scores(trained[1])
    assert s["node-3"] < 0 < min(s["node-0"], s["node-1"], s["node-2"])


def test_two_nodes_with_the_same_data_score_about_the_same(trained: tuple[Path, JobResult]) -> None:
    c = trained[1].contribution
    assert c is not None
    s = _scores(trained[1])
    assert abs(s["node-1"] - s["node-2"]) <= 0.1 * c["total_improvement"]


def test_scores_add_up_to_the_improvement_measured_by_the_nodes(trained: tuple[Path, JobResult]) -> None:
    r = trained[1]
    c = r.contribution
    assert c is not None and c["method"] == "gtg-shapley" and c["utility"] == "accuracy"
    # the utilities are the nodes' own evaluation: the final one is the job's federated validation accuracy
    assert c["final_utility"] == pytest.approx(r.metrics["after"]["mean"]["val-accuracy"])
    assert c["total_improvement"] == pytest.approx(c["final_utility"] - c["initial_utility"])
    assert c["total_improvement"] > 0.3
    bound = (
        ROUNDS * c["settings"]["within_epsilon"]
        + c["cost"]["rounds_truncated"] * c["settings"]["round_epsilon"]
    )
    assert abs(sum(_scores(r).values()) - c["total_improvement"]) <= bound + 1e-9
    assert abs(c["residual"]) <= bound + 1e-9
    shares = [n["share"] for n in c["nodes"]]
    assert sum(shares) == pytest.approx(1.0, abs=bound / c["total_improvement"] + 1e-9)
    assert [rd["round"] for rd in c["rounds"]] == list(range(1, ROUNDS + 1))
    assert all(n["rounds"] == ROUNDS and n["sources"] == [f"{n['node']}/digits"] for n in c["nodes"])


def test_the_cost_is_reported_and_the_version_carries_the_contribution(
    trained: tuple[Path, JobResult],
) -> None:
    base, r = trained
    c = r.contribution
    assert c is not None
    cost = c["cost"]
    assert cost["evaluations"] >= 2 * ROUNDS and cost["exchanges"] >= ROUNDS
    assert cost["messages"] == cost["exchanges"] * 4  # every utility is evaluated by every node
    assert cost["bytes_to_nodes"] > 0 and cost["node_cpu_s"] > 0 and cost["wall_s"] > 0
    phases = {rc.phase for rc in r.cost.rounds}
    assert "contribution" in phases
    assert r.model_version is not None
    manifest = ArtifactStore(base / "art").get(r.model_version).manifest
    assert manifest["metrics"]["contribution"]["nodes"] == c["nodes"]
    sources = manifest["training"]["sources"]
    assert [(s["name"], s["partition"]) for s in sources] == [(f"node-{k}/digits", k) for k in range(4)]
    assert all(len(s["sha256"]) == 64 for s in sources)


def test_no_contribution_when_the_spec_says_none(trained: tuple[Path, JobResult]) -> None:
    base, r = trained
    assert r.model_version is not None
    spec = JobSpec(
        kind="train",
        job_id="train-none",
        artifact_root=str(base / "art"),
        dataset_dir=str(base / "data"),
        base_version=r.model_version,
        rounds=1,
        local={"steps": 1},
        contribution={"method": "none"},
    )
    result = run_job(spec)
    assert result.status == "succeeded" and result.contribution is None
    assert "contribution" not in {rc.phase for rc in result.cost.rounds}


def test_a_server_without_the_manifest_records_the_sources_run_job_read(
    trained: tuple[Path, JobResult],
) -> None:
    """The simulation and deployment runtimes hand the ServerApp a spec with the dataset's data sources filled
    in from the manifest (prepared), so a SuperLink machine without the dataset still records them."""
    from dataclasses import replace

    from unlearning.federation.flower_runtimes import FlowerSettings, prepared
    from unlearning.federation.server import dataset_sources

    base = trained[0]
    spec = JobSpec(
        kind="train",
        job_id="x",
        artifact_root=str(base / "art"),
        dataset_dir=str(base / "data"),
        base_version="v",
    )
    ready = prepared(spec, FlowerSettings())
    assert ready.dataset_sources is not None
    assert [[s["name"] for s in srcs] for srcs in ready.dataset_sources] == [
        [f"node-{k}/digits"] for k in range(4)
    ]
    remote = replace(ready, dataset_dir="")  # what a ServerApp without the dataset sees
    got = dataset_sources(remote)
    assert got is not None and got[3][0]["sha256"] == ready.dataset_sources[3][0]["sha256"]
    assert dataset_sources(replace(spec, dataset_dir="")) is None
