"""The pieces of the warm Deployment Engine and of verification through the SuperLink that need no Flower
processes (the whole path runs in tests/integration/test_federation_runtimes.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from unlearning.federation.deployment import LocalFederation
from unlearning.federation.node_runtime import (
    _alive,
    _NodePacer,
    _TaskGate,
    fast_object_pulls,
    main,
)
from unlearning.federation.verify_runtime import VerificationFailed, publish_dataset, verification_key
from unlearning.verification.spec import VerifySpec


def test_the_supernode_waits_at_most_the_cap() -> None:
    shim = _NodePacer(0.05).module()
    started = time.monotonic()
    shim.sleep(3)  # Flower's idle wait after a pull that brought nothing
    assert time.monotonic() - started < 1.0
    assert shim.monotonic is time.monotonic  # everything else is the time module's


def test_a_killed_supernode_counts_as_gone_before_it_is_reaped() -> None:
    assert _alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    assert _alive(child.pid)
    child.kill()
    deadline = time.monotonic() + 10
    while _alive(child.pid) and time.monotonic() < deadline:  # a zombie until waited for: not alive
        time.sleep(0.05)
    assert not _alive(child.pid)
    child.wait()


def test_the_node_runtime_names_its_two_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["nonsense"]) == 2
    assert "clientapp --runtime-api-address" in capsys.readouterr().err


def test_local_federation_starts_warm_nodes_by_default(tmp_path: Path) -> None:
    fed = LocalFederation(tmp_path, [{"partition-id": 0, "num-partitions": 1}], port=9999)
    assert fed.isolation == "process"
    node = fed.supernode_argv(0, tmp_path / "n.toml", 9100)
    assert node[1:4] == ["-m", "unlearning.federation.node_runtime", "supernode"]
    assert node[node.index("--isolation") + 1] == "process"
    executor = fed.clientapp_argv(9100, 4242)
    assert executor[3] == "clientapp"
    assert executor[executor.index("--runtime-api-address") + 1] == "127.0.0.1:9100"
    assert executor[executor.index("--parent-pid") + 1] == "4242"
    fed.isolation = "subprocess"  # Flower's own: a flwr-clientapp process per message
    assert Path(fed.supernode_argv(0, tmp_path / "n.toml", 9100)[0]).name == "flower-supernode"


def test_only_the_published_part_of_a_dataset_goes_to_the_verification_run(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "node-0").mkdir(parents=True)
    (data / "node-0" / "digits.jsonl").write_text('{"x": [1.0]}\n')
    (data / "heldout").mkdir()
    (data / "heldout" / "test.jsonl").write_text('{"x": [2.0]}\n')
    (data / "manifest.json").write_text(json.dumps({"nodes": [{"path": "node-0"}]}))
    out = publish_dataset(data, tmp_path / "job" / "dataset")
    assert sorted(p.name for p in out.iterdir()) == ["heldout", "manifest.json"]
    assert (out / "manifest.json").read_bytes() == (data / "manifest.json").read_bytes()  # same config hash
    with pytest.raises(VerificationFailed, match="no dataset manifest"):
        publish_dataset(tmp_path / "nothing", tmp_path / "job2")


def test_a_verification_has_its_own_job_folder() -> None:
    spec = VerifySpec(artifact_root="", dataset_dir="", candidate_version="v 1/2", tests=[], job_id="job-7")
    assert verification_key(spec) == "job-7-verify-v_1_2"


def test_object_pulls_are_retried_sooner_once() -> None:
    import types

    calls: list[dict[str, object]] = []
    module = types.ModuleType("fake_flower")
    module.pull_objects = lambda *a, **kw: calls.append(kw)  # type: ignore[attr-defined]
    fast_object_pulls(module)
    fast_object_pulls(module)  # idempotent: not wrapped twice
    module.pull_objects(["id"])  # type: ignore[attr-defined]
    assert calls == [{"initial_backoff": 0.01, "backoff_cap": 0.5}]


def test_the_supernode_checks_its_own_memory_often_and_the_superlink_at_most_every_cap() -> None:
    pacer = _NodePacer(0.25)
    assert pacer.wait_for(0.5) == 0.01  # Flower's wait for the executor's reply: in memory, no request
    assert pacer.wait_for(3) == 0.25  # Flower's wait after an empty pull from the SuperLink
    assert pacer.wait_for(0.1) == 0.01


class _Reply:
    def __init__(self, task: bool) -> None:
        self.task = task

    def HasField(self, name: str) -> bool:
        return name == "task" and self.task


def test_a_task_waits_for_its_message_objects_and_the_executor_for_a_task() -> None:
    import threading

    tasks: list[str] = []

    def handler(request: object, state: object) -> _Reply:
        return _Reply(bool(tasks))

    gate = _TaskGate(long_poll_s=0.3)
    started = time.monotonic()
    assert not gate.acquire(handler, None, None).HasField("task")  # none: answered after the long poll
    assert 0.25 <= time.monotonic() - started < 2

    gate.receiving()  # the SuperNode got a message and created its task; its objects are on their way
    tasks.append("task")
    gate.long_poll_s = 5.0
    threading.Timer(0.2, gate.received).start()  # the objects are stored 0.2 s later
    started = time.monotonic()
    assert gate.acquire(handler, None, None).HasField("task")
    assert 0.15 <= time.monotonic() - started < 2  # held back until then, handed out at once after

    started = time.monotonic()
    assert gate.acquire(handler, None, None).HasField("task")  # nothing on its way: at once
    assert time.monotonic() - started < 0.1


def test_a_message_whose_objects_never_come_holds_tasks_back_only_so_long(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = _TaskGate(long_poll_s=0.2)
    monkeypatch.setattr(_TaskGate, "STALE_S", 0.05)
    gate.receiving()
    time.sleep(0.06)
    assert gate.acquire(lambda request, state: _Reply(True), None, None).HasField("task")
