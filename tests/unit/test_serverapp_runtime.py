"""The ServerApp executor of a warm SuperLink (unlearning.federation.serverapp_runtime) without Flower processes:
how LocalFederation starts it, its refusals, and its children (forked, reaped, stopped). A real run through it:
tests/integration/test_federation_runtimes.py."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from unlearning.federation import serverapp_runtime
from unlearning.federation.deployment import LocalFederation
from unlearning.federation.serverapp_runtime import ServerAppExecutor, main


def test_local_federation_forks_its_serverapps_from_an_executor_by_default(tmp_path: Path) -> None:
    fed = LocalFederation(tmp_path, [{"partition-id": 0, "num-partitions": 1}], port=9999)
    assert fed.server_isolation == "process"
    link = fed.superlink_argv()
    assert link[link.index("--isolation") + 1] == "process"
    secret = fed.superexec_secret_file
    assert link[link.index("--superexec-auth-secret-file") + 1] == str(secret)
    executor = fed.serverapp_argv(4242)
    assert executor[1:3] == ["-m", "unlearning.federation.serverapp_runtime"]
    assert executor[executor.index("--runtime-api-address") + 1] == "127.0.0.1:9999"
    assert executor[executor.index("--superexec-auth-secret-file") + 1] == str(secret)
    assert executor[executor.index("--parent-pid") + 1] == "4242"
    assert "--insecure" in executor
    fed.server_isolation = "subprocess"  # Flower's own: flower-superexec starts a flwr-serverapp per run
    assert "--isolation" not in fed.superlink_argv()


def test_the_executor_refuses_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as no_tls:
        main(["--runtime-api-address", "127.0.0.1:1"])
    assert no_tls.value.code == 2
    with pytest.raises(SystemExit):
        main(
            [
                "--runtime-api-address",
                "127.0.0.1:1",
                "--insecure",
                "--superexec-auth-secret-file",
                "/nonexistent",
            ]
        )
    assert "cannot read /nonexistent" in capsys.readouterr().err
    empty = tmp_path / "secret"
    empty.write_bytes(b"")
    with pytest.raises(SystemExit):
        main(
            ["--runtime-api-address", "127.0.0.1:1", "--insecure", "--superexec-auth-secret-file", str(empty)]
        )
    assert "is empty" in capsys.readouterr().err


def _wait_reaped(executor: ServerAppExecutor, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while executor.children and time.monotonic() < deadline:
        executor.reap()
        time.sleep(0.02)
    assert not executor.children, "a child was not reaped"


def test_each_task_runs_in_a_forked_child_that_is_reaped(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"

    def fake_run(token: str, address: str, insecure: bool, certificates: bytes | None) -> None:
        marker.write_text(f"{token} {address} {insecure} {os.getppid()}")
        os._exit(3)

    monkeypatch.setattr(serverapp_runtime, "run_task_in_child", fake_run)
    executor = ServerAppExecutor("127.0.0.1:1", auth_secret=b"s" * 32)
    try:
        with caplog.at_level(logging.INFO, logger="unlearning.federation.serverapp_runtime"):
            pid = executor.fork("token-1")
            assert pid != os.getpid() and pid in executor.children
            _wait_reaped(executor)
        assert marker.read_text() == f"token-1 127.0.0.1:1 True {os.getpid()}"  # the child, of this process
        assert f"pid {pid} ended (exit code 3)" in caplog.text
        assert executor.tasks_started == 1
    finally:
        executor.close()


def test_runs_still_going_are_stopped_with_the_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serverapp_runtime, "run_task_in_child", lambda *_: (time.sleep(60), os._exit(0)))
    executor = ServerAppExecutor("127.0.0.1:1")
    try:
        pid = executor.fork("token-2")
        started = time.monotonic()
        executor.stop_children(timeout=10)
        assert not executor.children and time.monotonic() - started < 10
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    finally:
        executor.close()


def test_the_executor_ends_when_its_superlink_is_gone() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    executor = ServerAppExecutor("127.0.0.1:1", parent_pid=gone.pid)
    try:
        started = time.monotonic()
        executor.serve()  # returns before asking the (unreachable) Runtime API for a task
        assert time.monotonic() - started < 5
    finally:
        executor.close()


def test_preload_names_what_it_could_not_import(caplog: pytest.LogCaptureFixture) -> None:
    assert serverapp_runtime.preload(["json", "no_such_module_here"]) == ["no_such_module_here"]
    assert "not preloaded: no_such_module_here" in caplog.text
    assert "transformers.models.llama.modeling_llama" in serverapp_runtime.PRELOADED  # the LM's ServerApp
