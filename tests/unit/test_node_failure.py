"""A job never silently runs on fewer nodes than its dataset has: on the in-process grid, a node that stops
answering mid-job (Flower's NODE_UNAVAILABLE reply, or no reply at all) is waited for up to the node timeout
and the job then fails naming the node's partition and its name in the manifest; a node that comes back within
the timeout, even under a new Flower node id (a restarted SuperNode), is re-sent its message and the job ends
with exactly the model of an undisturbed run."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from unlearning import JobSpec, init_dataset, init_model
from unlearning.federation.apps import build_client_app
from unlearning.federation.flower_runtimes import FlowerSettings, prepared
from unlearning.federation.local_grid import LocalGrid
from unlearning.federation.server import execute_job
from unlearning.jobs import JobResult, ProgressEvent

torch.set_num_threads(1)

NODE_TIMEOUT = 1.5


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> JobSpec:
    base = tmp_path_factory.mktemp("node-failure")
    init_dataset("digits", base / "data", nodes=3, seed=0)
    v0 = init_model(base / "art", "digits", size="tiny", seed=0)
    job = JobSpec(
        kind="train",
        job_id="train",
        artifact_root=str(base / "art"),
        dataset_dir=str(base / "data"),
        base_version=v0.version,
        rounds=3,
        local={"epochs": 0.25},
        evaluate=False,
        contribution={"method": "none"},  # only the training rounds: the failures below name "train round k"
    )
    return prepared(job, FlowerSettings(node_timeout_s=NODE_TIMEOUT, exchange_timeout_s=5))


def run(
    spec: JobSpec, job_id: str, on_event: Callable[[LocalGrid, ProgressEvent], None] | None = None
) -> tuple[JobResult, float]:
    grid = LocalGrid.for_dataset(build_client_app(), Path(spec.dataset_dir))
    started = time.monotonic()
    result = execute_job(
        grid, replace(spec, job_id=job_id), (lambda e: on_event(grid, e)) if on_event is not None else None
    )
    return result, time.monotonic() - started


def after_train_round(
    round_: int, act: Callable[[LocalGrid], None]
) -> Callable[[LocalGrid, ProgressEvent], None]:
    done: list[bool] = []

    def on_event(grid: LocalGrid, event: ProgressEvent) -> None:
        if event.phase == "train" and event.round == round_ and not done:
            done.append(True)
            act(grid)

    return on_event


@pytest.fixture(scope="module")
def undisturbed(spec: JobSpec) -> JobResult:
    result, _ = run(spec, "undisturbed")
    assert result.status == "succeeded", result.error
    return result


def test_the_spec_knows_the_datasets_nodes(spec: JobSpec) -> None:
    assert spec.node_names == ["node-0", "node-1", "node-2"]
    assert (spec.timeout_s, spec.node_timeout_s) == (5, NODE_TIMEOUT)


@pytest.mark.parametrize("silent", [False, True], ids=["node-unavailable", "no-reply"])
def test_a_node_that_stops_answering_fails_the_job_naming_it(spec: JobSpec, silent: bool) -> None:
    result, took = run(
        spec, f"dies-{silent}", after_train_round(1, lambda g: g.stop_node(1001, silent=silent))
    )
    assert result.status == "failed"
    assert result.model_version is None
    assert result.error is not None
    assert "partition 1 (node-1)" in result.error, result.error
    assert "train round 2" in result.error and f"within {NODE_TIMEOUT:g} s" in result.error
    assert "1001" not in result.error.split("(")[0]  # named by partition, not by Flower's node id
    assert took < NODE_TIMEOUT + 10


def test_a_node_missing_at_the_start_is_named(spec: JobSpec) -> None:
    grid = LocalGrid.for_dataset(build_client_app(), Path(spec.dataset_dir))
    grid.stop_node(1002)
    started = time.monotonic()
    result = execute_job(grid, replace(spec, job_id="missing"))
    assert result.status == "failed"
    assert result.error is not None and "partition 2 (node-2) did not join" in result.error, result.error
    assert "joined: partition 0 (node-0), partition 1 (node-1)" in result.error
    assert time.monotonic() - started < NODE_TIMEOUT + 10


def test_a_restarted_node_is_found_under_its_new_id_and_the_model_is_unchanged(
    spec: JobSpec, undisturbed: JobResult
) -> None:
    new_ids: list[int] = []
    result, _ = run(spec, "restarted", after_train_round(1, lambda g: new_ids.append(g.restart_node(1001))))
    assert new_ids == [1003]
    assert result.status == "succeeded", result.error
    assert result.content_hash == undisturbed.content_hash
    train2 = [r for r in result.cost.rounds if r.phase == "train" and r.round == 2]
    assert train2[0].messages == 4  # three sent, one re-sent to the restarted node


def test_a_node_back_before_the_timeout_is_resent_its_message(spec: JobSpec, undisturbed: JobResult) -> None:
    def flaky(grid: LocalGrid) -> None:
        grid.stop_node(1000, silent=True)
        threading.Timer(0.5, grid.resume_node, (1000,)).start()  # back before the first re-send (1 s)

    result, _ = run(spec, "flaky", after_train_round(1, flaky))
    assert result.status == "succeeded", result.error
    assert result.content_hash == undisturbed.content_hash


def test_a_reply_whose_sender_is_gone_stops_waiting_for_its_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deployment Engine: a SuperNode killed while it uploads its reply never sends the rest of the objects;
    the server's object pull gives up once the sender is no longer connected (not when the SuperLink drops the
    objects, minutes later), and keeps waiting while every sender is connected."""
    from flwr.supercore.inflatable.inflatable_utils import (
        ObjectPullError,
        ObjectUnavailableError,
        pull_objects,
    )

    from unlearning.federation import server

    monkeypatch.setattr(server, "SENDER_CHECK_S", 0.05)

    def never(object_id: str) -> bytes:
        raise ObjectUnavailableError(object_id)

    asked: list[float] = []

    def gone() -> bool:
        asked.append(time.monotonic())
        return False

    t0 = time.monotonic()
    with pytest.raises(ObjectPullError, match="no longer connected"):
        server.senders_guard(pull_objects, gone)(["a", "b"], never, initial_backoff=0.01, backoff_cap=0.02)
    assert time.monotonic() - t0 < 2.0 and asked and asked[0] - t0 >= 0.05  # asked only after the grace

    tries: dict[str, int] = {}

    def late(object_id: str) -> bytes:  # an upload that completes after a while, sender connected throughout
        tries[object_id] = tries.get(object_id, 0) + 1
        if tries[object_id] < 8:
            raise ObjectUnavailableError(object_id)
        return object_id.encode()

    got = server.senders_guard(pull_objects, lambda: True)(
        ["a"], late, initial_backoff=0.01, backoff_cap=0.02
    )
    assert got == {"a": b"a"} and tries["a"] == 8


def test_connected_asks_the_superlink_at_most_once_a_second() -> None:
    from unlearning.federation.server import _connected

    class Grid:
        calls = 0
        nodes = [1, 2, 3]

        def get_node_ids(self) -> list[int]:
            Grid.calls += 1
            return Grid.nodes

    grid = Grid()
    connected = _connected(grid, {1, 3})  # type: ignore[arg-type]
    assert connected() and connected() and Grid.calls == 1
    Grid.nodes = [1, 2]
    assert connected()  # the cached answer, within the second
    time.sleep(1.05)
    assert not connected() and Grid.calls == 2
