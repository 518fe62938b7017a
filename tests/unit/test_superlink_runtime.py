"""The long-polling SuperLink (unlearning.federation.superlink_runtime) and the end of a forked ServerApp run
(serverapp_runtime.prompt_log_flush), without Flower processes. Real runs through both:
tests/integration/test_federation_runtimes.py."""

from __future__ import annotations

import threading
import time
import types
from pathlib import Path
from queue import Queue
from typing import Any

import pytest

from unlearning.federation.deployment import LocalFederation
from unlearning.federation.node_runtime import _NodePacer
from unlearning.federation.serverapp_runtime import prompt_log_flush
from unlearning.federation.superlink_runtime import HOLD_ENV, _Holds, hold_seconds, install


class _Reply:
    def __init__(self, messages: list[str]) -> None:
        self.messages_list = messages


class _Request:
    def __init__(self, message_ids: list[str]) -> None:
        self.message_ids = message_ids


def _fake_flower() -> tuple[types.ModuleType, types.ModuleType, dict[str, list[str]]]:
    """Two handler modules like Flower's: the Fleet side (nodes pull instructions, push replies) and the
    Runtime side (the ServerApp pushes instructions, pulls replies), over one in-memory store."""
    box: dict[str, list[str]] = {"instructions": [], "replies": [], "calls": []}
    fleet, runtime = types.ModuleType("fleet"), types.ModuleType("runtime")

    def fleet_pull(request: Any, state: Any, store: Any) -> _Reply:
        box["calls"].append("fleet-pull")
        got, box["instructions"][:] = list(box["instructions"]), []
        return _Reply(got)

    def fleet_push(request: Any, state: Any) -> str:
        box["replies"].append(request)
        return "ok"

    def runtime_pull(request: Any, state: Any, task: Any) -> _Reply:
        box["calls"].append("runtime-pull")
        got, box["replies"][:] = list(box["replies"]), []
        return _Reply(got)

    def runtime_push(request: Any, state: Any, task: Any) -> str:
        box["instructions"].append(request)
        return "ok"

    fleet.pull_messages, fleet.push_messages = fleet_pull, fleet_push  # type: ignore[attr-defined]
    runtime.pull_messages, runtime.push_messages = runtime_pull, runtime_push  # type: ignore[attr-defined]
    return fleet, runtime, box


def test_an_empty_pull_is_held_until_a_push_and_answered_at_once_after_it() -> None:
    fleet, runtime, store = _fake_flower()
    install(5.0, fleet=fleet, runtime=runtime)
    threading.Timer(0.3, lambda: runtime.push_messages("fit", None, None)).start()
    started = time.monotonic()
    reply = fleet.pull_messages(request=None, state=None, store=None)
    took = time.monotonic() - started
    assert reply.messages_list == ["fit"]
    assert 0.25 <= took < 2.0  # the push ended the hold, not the 5 s
    assert store["calls"] == ["fleet-pull", "fleet-pull"]  # Flower's handler answered: once empty, once after

    threading.Timer(0.3, lambda: fleet.push_messages("reply", None)).start()
    started = time.monotonic()
    reply = runtime.pull_messages(_Request(["m1"]), None, None)
    assert reply.messages_list == ["reply"]
    assert 0.25 <= time.monotonic() - started < 2.0

    runtime.push_messages("evaluate", None, None)
    started = time.monotonic()
    assert fleet.pull_messages(None, None, None).messages_list == ["evaluate"]
    assert time.monotonic() - started < 0.2  # work waiting: no hold


def test_a_pull_with_nothing_to_wait_for_is_answered_empty_after_the_hold() -> None:
    fleet, runtime, _ = _fake_flower()
    install(0.3, fleet=fleet, runtime=runtime)
    started = time.monotonic()
    assert fleet.pull_messages(None, None, None).messages_list == []
    assert 0.25 <= time.monotonic() - started < 2.0
    # a pull that waits for no reply (Flower's agent apps ask with no message ids) is not held
    started = time.monotonic()
    assert runtime.pull_messages(_Request([]), None, None).messages_list == []
    assert time.monotonic() - started < 0.2
    # no hold at all (COMMONS_SUPERLINK_HOLD_S=0): Flower's behaviour
    fleet, runtime, _ = _fake_flower()
    install(0.0, fleet=fleet, runtime=runtime)
    started = time.monotonic()
    assert fleet.pull_messages(None, None, None).messages_list == []
    assert time.monotonic() - started < 0.2


def test_a_push_between_the_call_and_the_wait_is_not_missed() -> None:
    holds = _Holds(hold_s=5.0, tick_s=5.0)
    work: list[str] = []

    def call() -> _Reply:
        reply = _Reply(list(work))
        if not work:  # the push lands after the handler looked and before the hold waits
            work.append("fit")
            holds.pushed()
        return reply

    started = time.monotonic()
    assert holds.hold(call, lambda r: not r.messages_list).messages_list == ["fit"]
    assert time.monotonic() - started < 1.0


def test_at_most_max_held_requests_wait_the_rest_are_answered_at_once() -> None:
    holds = _Holds(hold_s=2.0, tick_s=2.0, max_held=2)
    empty = lambda r: not r.messages_list  # noqa: E731
    waiting = [
        threading.Thread(target=holds.hold, args=(lambda: _Reply([]), empty), daemon=True) for _ in range(2)
    ]
    for t in waiting:
        t.start()
    deadline = time.monotonic() + 5
    while holds.held < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert holds.held == 2
    started = time.monotonic()
    assert holds.hold(lambda: _Reply([]), empty).messages_list == []  # a third: not held
    assert time.monotonic() - started < 0.2
    holds.pushed()  # nothing came for the two: they go back to waiting until their hold ends
    for t in waiting:
        t.join(timeout=5)
    assert holds.held == 0


def test_the_hold_comes_from_the_environment_and_bad_values_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(HOLD_ENV, raising=False)
    assert hold_seconds() == 1.0
    monkeypatch.setenv(HOLD_ENV, "0")
    assert hold_seconds() == 0.0
    for bad in ("soon", "-1", "60"):
        monkeypatch.setenv(HOLD_ENV, bad)
        with pytest.raises(SystemExit, match=HOLD_ENV):
            hold_seconds()


def test_local_federation_starts_the_long_polling_superlink_by_default(tmp_path: Path) -> None:
    fed = LocalFederation(tmp_path, [{"partition-id": 0, "num-partitions": 1}], port=9999)
    link = fed.superlink_argv()
    assert link[1:3] == ["-m", "unlearning.federation.superlink_runtime"]
    assert link[link.index("--port") + 1] == "9999"  # Flower's own arguments follow
    fed.long_poll = False
    assert Path(fed.superlink_argv()[0]).name == "flower-superlink"


def test_a_supernode_asks_again_at_once_after_a_held_pull_and_waits_after_a_quick_one() -> None:
    pacer = _NodePacer(0.25)
    pacer.pulled(1.0)  # the SuperLink held the pull a second: it already waited for work
    assert pacer.wait_for(3) == pacer.LOCAL_WAIT_S
    pacer.pulled(0.01)  # a SuperLink that answers at once (Flower's own)
    assert pacer.wait_for(3) == 0.25


def test_a_runs_logs_are_uploaded_before_its_output_without_flowers_extra_second() -> None:
    uploaded: list[str] = []

    def uploader(queue: Queue[str | None]) -> None:  # Flower's: takes what is queued, uploads, sleeps 0.2 s
        while True:
            batch, done = [], False
            while not queue.empty():
                line = queue.get_nowait()
                if line is None:
                    done = True
                    break
                batch.append(line)
            time.sleep(0.05)  # the upload
            uploaded.extend(batch)
            if done:
                return
            time.sleep(0.2)

    def start_log_uploader(queue: Queue[str | None], *args: Any) -> threading.Thread:
        thread = threading.Thread(target=uploader, args=(queue,), daemon=True)
        thread.start()
        return thread

    def flush_logs(queue: Queue[str | None], timeout: float = 3.0) -> bool:  # Flower's: drain, then 1 s
        time.sleep(1.0)
        return True

    module = types.ModuleType("run_serverapp")
    module.start_log_uploader, module.flush_logs = start_log_uploader, flush_logs  # type: ignore[attr-defined]
    prompt_log_flush(module)
    queue: Queue[str | None] = Queue()
    thread = module.start_log_uploader(queue, 1, 2, None)
    for i in range(5):
        queue.put(f"line {i}")
    started = time.monotonic()
    assert module.flush_logs(queue)
    assert time.monotonic() - started < 0.9
    assert uploaded == [f"line {i}" for i in range(5)]  # every line up before the output is pushed
    assert not thread.is_alive()
