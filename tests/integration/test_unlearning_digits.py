"""Real (small) federated training and unlearning on digits, in process, through run_job."""

from __future__ import annotations

import os

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from unlearning import (
    ArtifactStore,
    JobResult,
    JobSpec,
    ProgressEvent,
    Target,
    init_dataset,
    init_model,
    run_job,
)

torch.set_num_threads(1)


@dataclass
class Trained:
    root: Path
    data: Path
    version: str
    result: JobResult
    events: list[ProgressEvent]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    base = tmp_path_factory.mktemp("digits")
    init_dataset("digits", base / "data", nodes=3, seed=0)
    v0 = init_model(base / "art", "digits", size="tiny", seed=0)
    events: list[ProgressEvent] = []
    spec = JobSpec(
        kind="train",
        job_id="train-1",
        artifact_root=str(base / "art"),
        dataset_dir=str(base / "data"),
        base_version=v0.version,
        rounds=4,
        local={"epochs": 1.0},
    )
    result = run_job(spec, events.append)
    assert result.status == "succeeded", result.error
    assert result.model_version is not None
    return Trained(base / "art", base / "data", result.model_version, result, events)


def _unlearn(t: Trained, method: str, target: Target, job_id: str, **config: object) -> JobResult:
    spec = JobSpec(
        kind="unlearn",
        job_id=job_id,
        artifact_root=str(t.root),
        dataset_dir=str(t.data),
        base_version=t.version,
        method=method,
        method_config=dict(config),
        target=target,
    )
    return run_job(spec)


def test_training_reports_progress_cost_and_evaluation(trained: Trained) -> None:
    r = trained.result
    train_rounds = [e.round for e in trained.events if e.phase == "train"]
    assert train_rounds == [1, 2, 3, 4]
    assert r.cost.optimizer_steps > 0 and r.cost.wall_s > 0 and r.cost.cpu_s > 0
    assert r.cost.bytes_sent == sum(c.bytes_to_nodes + c.bytes_from_nodes for c in r.cost.rounds)
    assert all(c.bytes_to_nodes > 0 for c in r.cost.rounds if c.phase == "train")
    after = r.metrics["after"]
    assert set(after["nodes"]) == {"0", "1", "2"}
    assert after["mean"]["val-accuracy"] > 0.5  # it learned something in 4 small rounds
    assert after["worst"]["val-accuracy"] <= min(n["val-accuracy"] for n in after["nodes"].values())
    v = ArtifactStore(trained.root).get(trained.version)
    assert v.manifest["training"]["rounds"] == 4 and v.manifest["job_id"] == "train-1"


@pytest.mark.parametrize("method", ["gradient_ascent", "ewc", "gradient_ascent_ewc", "retrain"])
def test_client_unlearning(trained: Trained, method: str) -> None:
    target = Target("data_source", "node-0/digits")
    r = _unlearn(trained, method, target, f"client-{method}")
    assert r.status == "succeeded", r.error
    before, after = r.metrics["before"]["nodes"]["0"], r.metrics["after"]["nodes"]["0"]
    # node 0's data now looks less like training data: its loss gap to the retained data grew
    ret_before, ret_after = (
        r.metrics["before"]["mean"]["retain-loss"],
        r.metrics["after"]["mean"]["retain-loss"],
    )
    assert after["forget-loss"] - ret_after > before["forget-loss"] - ret_before
    assert after["val-accuracy"] > 0.3  # and the model was not destroyed
    v = ArtifactStore(trained.root).get(str(r.model_version))
    assert v.parent == trained.version
    assert v.manifest["training"]["excluded"] == [
        {"examples": [], "kind": "data_source", "value": "node-0/digits"}
    ]
    phases = {c.phase for c in r.cost.rounds}
    if method == "retrain":
        assert "retrain" in phases and "ascent" not in phases
    else:
        assert "ascent" in phases and r.metrics["method"]["ascent-steps"] >= 0
    if method == "gradient_ascent_ewc":
        assert {"fisher-ascent", "fisher-repair", "repair"} <= phases
        # the digits data-source defaults (DigitsTask.method_defaults): the AdamW ascent ends on its stop rule
        # (plain SGD ran out its steps on a confident model) and 5 repair rounds follow
        assert r.metrics["method"]["stopped"] == 1.0 and r.metrics["method"]["repair-rounds"] == 5
        assert sum(1 for c in r.cost.rounds if c.phase == "repair") == 5
    if method == "gradient_ascent":
        assert "reference" in phases  # the Halimi reference needs the owner's local model


def test_class_unlearning_forgets_the_class(trained: Trained) -> None:
    r = _unlearn(trained, "gradient_ascent_ewc", Target("category", "3"), "class-3")
    assert r.status == "succeeded", r.error
    before = r.metrics["before"]["mean"]["forget-accuracy"]
    after = r.metrics["after"]["mean"]["forget-accuracy"]
    assert before > 0.5 and after < 0.3
    assert r.metrics["method"]["holders"] == 3.0  # every node holds some 3s


def test_training_after_unlearning_keeps_excluding_the_target(trained: Trained) -> None:
    u = _unlearn(trained, "gradient_ascent", Target("data_source", "node-1/digits"), "exclude-1")
    assert u.status == "succeeded", u.error
    events: list[ProgressEvent] = []
    spec = JobSpec(
        kind="train",
        job_id="train-after",
        artifact_root=str(trained.root),
        dataset_dir=str(trained.data),
        base_version=str(u.model_version),
        rounds=1,
        local={"epochs": 1.0},
    )
    r = run_job(spec, events.append)
    assert r.status == "succeeded", r.error
    trained_on = next(e.metrics["num-examples"] for e in events if e.phase == "train")
    all_train = next(e.metrics["num-examples"] for e in trained.events if e.phase == "train")
    node1 = sum(1 for _ in (trained.data / "node-1" / "digits.jsonl").open())
    assert trained_on == all_train - node1  # node 1's only source is excluded from now on
    v = ArtifactStore(trained.root).get(str(r.model_version))
    assert v.manifest["training"]["excluded"][0]["value"] == "node-1/digits"
    assert v.manifest["training"]["rounds"] == 5


def test_cancellation_at_a_round_boundary(trained: Trained) -> None:
    cancel = threading.Event()
    seen: list[ProgressEvent] = []

    def progress(e: ProgressEvent) -> None:
        seen.append(e)
        if e.phase == "train" and e.round == 1:
            cancel.set()

    before = set(ArtifactStore(trained.root).list())
    spec = JobSpec(
        kind="train",
        job_id="cancelled",
        artifact_root=str(trained.root),
        dataset_dir=str(trained.data),
        base_version=trained.version,
        rounds=5,
    )
    r = run_job(spec, progress, cancel)
    assert r.status == "cancelled" and r.model_version is None
    assert [e.round for e in seen if e.phase == "train"] == [1]
    assert set(ArtifactStore(trained.root).list()) == before


def test_failures_come_back_as_failed_results(trained: Trained) -> None:
    r = _unlearn(trained, "gradient_ascent", Target("data_source", "node-9/nothing"), "no-holder")
    assert r.status == "failed" and r.error is not None and "no node holds" in r.error
    assert r.model_version is None


def test_a_node_exception_comes_back_as_a_failed_job(tmp_path: Path) -> None:
    import shutil

    init_dataset("digits", tmp_path / "data", nodes=2, seed=0)
    v0 = init_model(tmp_path / "art", "digits", size="tiny")
    shutil.rmtree(tmp_path / "data" / "node-1")  # the node's data disappeared
    spec = JobSpec(
        kind="train",
        job_id="broken",
        artifact_root=str(tmp_path / "art"),
        dataset_dir=str(tmp_path / "data"),
        base_version=v0.version,
        rounds=1,
    )
    r = run_job(spec)
    assert r.status == "failed" and r.error is not None
    assert "failed in info" in r.error and "node-1" in r.error
