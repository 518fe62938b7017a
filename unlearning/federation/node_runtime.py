"""A warm node: a SuperNode that polls the SuperLink often, and one long-running ClientApp process beside it.

Flower 1.41 runs a ClientApp task (one message) in a fresh ``flwr-clientapp`` process, started by the
SuperNode's ``flower-superexec``: every message paid a process start and an import of torch and the apps
(2-3 s of CPU each, 11-19 s per message exchange on a small machine with Flower's polling). With
``flower-supernode --isolation process`` the SuperNode starts no executor: it serves its Runtime API and
waits for an executor of the operator's choosing to acquire each task with a token. This module is that
executor, kept alive between messages:

- ``python -m unlearning.federation.node_runtime clientapp --runtime-api-address HOST:PORT --insecure``
  acquires the SuperNode's ClientApp tasks one at a time (Runtime API ``AcquireTask``, polled every
  ``COMMONS_CLIENTAPP_POLL_S``, default 0.05 s) and runs each in this process, exactly as ``flwr-clientapp``
  does (pull the task input with the task's token, run the ClientApp the run's FAB names, push the reply
  and the task's output), with torch, the apps and the node's tensors (node.py's cache) already loaded.
  A failing ClientApp answers an error reply, as ``flwr-clientapp`` does, and the process goes on.
- ``python -m unlearning.federation.node_runtime supernode <flower-supernode arguments>`` runs Flower's own
  ``flower-supernode`` with its fixed waits shortened: it sleeps 3 s after a pull that brought no message
  and 0.5 s between checks for a reply; here both are at most ``COMMONS_SUPERNODE_POLL_S`` (default
  0.25 s). This touches module attributes of Flower's SuperNode loop (``flwr.supernode.
  start_client_internal.time`` and ``.pull_objects``): pinned to flwr 1.41 like the rest of the adapter.
- Both, and the ServerApp (server.py), retry a message's object that is not uploaded yet after 0.05 s and
  then at most every 0.5 s (:func:`fast_object_pulls`; Flower waits 1, 2, 4 ... 10 s).

``LocalFederation`` (deployment.py) starts both per node by default; docs/federation.md gives the commands
for real hosts. The ServerApp side polls its replies every 0.05-0.25 s (server.py) instead of Flower's
fixed 3 s.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import time
import types
from collections.abc import Sequence
from typing import Any

log = logging.getLogger("unlearning.federation.node_runtime")

CLIENTAPP_POLL_ENV = "COMMONS_CLIENTAPP_POLL_S"
SUPERNODE_POLL_ENV = "COMMONS_SUPERNODE_POLL_S"
TASK_HEARTBEAT_S = 10.0  # Flower's task heartbeat: every ~20 s, a task expires after 2 x 30 s without one


def _env_seconds(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        raise SystemExit(f"{name} must be a number of seconds, got {os.environ[name]!r}") from None
    if not 0.01 <= value <= 60:
        raise SystemExit(f"{name} must be between 0.01 and 60 seconds, got {value}")
    return value


# ---- the SuperNode -------------------------------------------------------------------------------------


def _capped_time(cap: float) -> types.ModuleType:
    """A stand-in for the ``time`` module whose ``sleep`` waits at most ``cap`` seconds."""
    shim = types.ModuleType("time")
    shim.__dict__.update(time.__dict__)
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        real_sleep(min(seconds, cap))

    shim.sleep = sleep  # type: ignore[attr-defined]
    return shim


PULL_BACKOFF_S = 0.05
PULL_BACKOFF_CAP_S = 0.5


def fast_object_pulls(module: types.ModuleType, name: str = "pull_objects") -> None:
    """Make ``module``'s Flower object-pull function retry a missing object after 0.05 s, then at most every
    0.5 s. A message's objects (its arrays, configs, metrics) are uploaded after the message itself is
    listed, and Flower 1.41 retries an object that is not there yet after 1, 2, 4 ... 10 s: with no process
    to start, a warm node asks that early and waited seconds for objects that came milliseconds later."""
    import functools

    current = getattr(module, name)
    if getattr(current, "commons_fast", False):
        return
    fast = functools.partial(current, initial_backoff=PULL_BACKOFF_S, backoff_cap=PULL_BACKOFF_CAP_S)
    fast.commons_fast = True  # type: ignore[attr-defined]
    setattr(module, name, fast)


def run_supernode(argv: Sequence[str]) -> None:
    """Flower's ``flower-supernode`` (same arguments) with its idle waits capped and its object pulls
    retried sooner."""
    import flwr.supernode.start_client_internal as loop
    from flwr.supernode.cli import flower_supernode

    loop.time = _capped_time(_env_seconds(SUPERNODE_POLL_ENV, 0.25))  # type: ignore[attr-defined]
    fast_object_pulls(loop)
    sys.argv = ["flower-supernode", *argv]
    flower_supernode()


# ---- the ClientApp executor ----------------------------------------------------------------------------


class _Heartbeat:
    """Keeps a task alive at its SuperNode while the ClientApp computes (Flower's HeartbeatSender raises
    SIGINT when the SuperNode refuses a heartbeat; a long-running executor must not die of that)."""

    def __init__(self, client: Any) -> None:
        from flwr.proto.runtime_pb2 import SendTaskHeartbeatRequest

        self._client, self._request = client, SendTaskHeartbeatRequest()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="clientapp-heartbeat")

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                self._client.SendTaskHeartbeat(self._request)
            self._stop.wait(TASK_HEARTBEAT_S)


class ClientAppExecutor:
    """Acquires and runs one SuperNode's ClientApp tasks in this process (see the module docstring)."""

    def __init__(
        self,
        runtime_api_address: str,
        *,
        insecure: bool = True,
        root_certificates: bytes | None = None,
        poll_interval: float = 0.05,
    ) -> None:
        from flwr.supercore.interceptors import RuntimeVersionHttpInterceptor
        from flwr.supercore.retry import make_simple_http_retry_invoker
        from flwr.supercore.runtime import RuntimeHttpClient

        self.address, self.insecure, self.certificates = runtime_api_address, insecure, root_certificates
        self.poll_interval = poll_interval
        self.stopping = threading.Event()
        self.tasks_run = 0
        self._apps: dict[str, Any] = {}  # FAB hash -> its ClientApp, loaded once
        import flwr.supernode.runtime.run_clientapp as clientapp_runtime

        fast_object_pulls(clientapp_runtime, "pull_and_inflate_object_from_tree")
        self._client = RuntimeHttpClient.from_server_address(
            server_address=runtime_api_address,
            insecure=insecure,
            root_certificates=root_certificates,
            interceptors=[RuntimeVersionHttpInterceptor(component_name="SuperExec")],
            retry_invoker=make_simple_http_retry_invoker(),
        )

    def close(self) -> None:
        self._client.close()

    def serve(self) -> None:
        """Acquire and run tasks until ``stopping`` is set."""
        import httpx
        from flwr.proto.runtime_pb2 import AcquireTaskRequest
        from flwr.supercore.constant import TaskType

        request = AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP.value])
        while not self.stopping.is_set():
            try:
                reply = self._client.AcquireTask(request)
            except httpx.HTTPError as exc:  # the SuperNode restarts, or is gone (the parent monitor ends us)
                log.warning("SuperNode Runtime API at %s: %s", self.address, exc)
                self.stopping.wait(1.0)
                continue
            if reply.HasField("task") and reply.token:
                try:
                    self.run_task(reply.token)
                except Exception:  # the task is lost (its SuperNode expires it); the executor goes on
                    log.exception("ClientApp task failed outside the ClientApp")
            else:
                self.stopping.wait(self.poll_interval)

    def _client_app(self, run: Any, fab: Any) -> Any:
        from flwr.cli.install import install_from_fab
        from flwr.clientapp.utils import get_load_client_app_fn

        if fab.hash_str not in self._apps:
            install_from_fab(fab.content, skip_prompt=True)
            load = get_load_client_app_fn(default_app_ref="", app_path=None, multi_app=True)
            self._apps[fab.hash_str] = load(run.fab_id, run.fab_version, fab.hash_str)
        return self._apps[fab.hash_str]

    def run_task(self, token: str) -> None:
        """One task, as ``flwr-clientapp`` runs it (flwr.supernode.runtime.run_clientapp), without exiting."""
        from flwr.app import Message
        from flwr.app.error import Error
        from flwr.clientapp.client_app import LoadClientAppError
        from flwr.common.constant import ErrorCode, SubStatus
        from flwr.supercore.interceptors import (
            RuntimeTokenHttpInterceptor,
            RuntimeVersionHttpInterceptor,
        )
        from flwr.supercore.retry import make_simple_http_retry_invoker
        from flwr.supercore.runtime import RuntimeHttpClient
        from flwr.supernode.runtime.run_clientapp import (
            pull_task_input,
            push_message,
            push_task_output,
        )

        client = RuntimeHttpClient.from_server_address(
            server_address=self.address,
            insecure=self.insecure,
            root_certificates=self.certificates,
            interceptors=[
                RuntimeVersionHttpInterceptor(component_name="flwr-clientapp"),
                RuntimeTokenHttpInterceptor(token),
            ],
            retry_invoker=make_simple_http_retry_invoker(),
        )
        message = reply = context = None
        sub_status, details = SubStatus.FAILED, "ClientApp task failed due to unknown reason"
        t0 = time.perf_counter()
        t1 = t2 = t0
        try:
            with _Heartbeat(client):
                try:
                    message, context, run, fab = pull_task_input(client)
                    t1 = time.perf_counter()
                    reply = self._client_app(run, fab)(message=message, context=context)
                    t2 = time.perf_counter()
                    sub_status, details = SubStatus.COMPLETED, ""
                except Exception as exc:
                    log.exception("ClientApp raised an exception")
                    code, reason = ErrorCode.CLIENT_APP_RAISED_EXCEPTION, f"{type(exc)}:<'{exc}'>"
                    if isinstance(exc, LoadClientAppError):
                        code = ErrorCode.LOAD_CLIENT_APP_EXCEPTION
                        reason = "An exception was raised when attempting to load `ClientApp`"
                    details = reason
                    if message is not None:
                        reply = Message(Error(code=code, reason=reason), reply_to=message)
                if reply is not None and context is not None:
                    try:
                        push_message(client, reply, context)
                    except Exception:
                        log.exception("failed to push the reply message")
            push_task_output(client=client, context=context, sub_status=sub_status, details=details)
        finally:
            client.close()
            self.tasks_run += 1
        kind = message.metadata.message_type if message is not None else "?"
        log.info(
            "task %d (%s) %s: input %.3f s, ClientApp %.3f s, reply %.3f s",
            self.tasks_run,
            kind,
            sub_status,
            t1 - t0,
            t2 - t1,
            time.perf_counter() - t2,
        )


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, killed but not yet reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    with contextlib.suppress(OSError, IndexError), open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def run_clientapp_executor(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m unlearning.federation.node_runtime clientapp",
        description="Run a SuperNode's ClientApp tasks in one long-running process "
        "(the SuperNode runs with --isolation process).",
    )
    parser.add_argument(
        "--runtime-api-address", required=True, help="the SuperNode's Runtime API (HOST:PORT)"
    )
    tls = parser.add_mutually_exclusive_group(required=True)
    tls.add_argument("--insecure", action="store_true", help="plain HTTP to the SuperNode's Runtime API")
    tls.add_argument("--root-certificates", help="CA (PEM) of the SuperNode's Runtime API certificate")
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when this process exits")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("flwr").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per poll otherwise
    import unlearning.federation.apps  # noqa: F401  (torch, the tasks and the apps, once)

    certificates = None
    if args.root_certificates:
        with open(args.root_certificates, "rb") as f:
            certificates = f.read()
    executor = ClientAppExecutor(
        args.runtime_api_address,
        insecure=bool(args.insecure),
        root_certificates=certificates,
        poll_interval=_env_seconds(CLIENTAPP_POLL_ENV, 0.05),
    )
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: executor.stopping.set())
    if args.parent_pid is not None:
        parent = args.parent_pid

        def watch() -> None:
            while not executor.stopping.wait(0.5):
                if not _alive(parent):
                    log.info("the SuperNode (pid %d) is gone", parent)
                    executor.stopping.set()

        threading.Thread(target=watch, daemon=True).start()
    log.info("ClientApp executor for the SuperNode at %s", args.runtime_api_address)
    try:
        executor.serve()
    finally:
        executor.close()
        log.info("ClientApp executor stopped after %d task(s)", executor.tasks_run)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in ("clientapp", "supernode"):
        print(
            "usage: python -m unlearning.federation.node_runtime {clientapp,supernode} ...\n"
            "  clientapp --runtime-api-address HOST:PORT (--insecure | --root-certificates PEM)\n"
            "  supernode <flower-supernode arguments, with --isolation process>",
            file=sys.stderr,
        )
        return 2
    if args[0] == "supernode":
        run_supernode(args[1:])
    else:
        run_clientapp_executor(args[1:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
