"""A warm SuperLink: ServerApp runs forked from a process that has already imported torch and the apps.

Flower 1.41 runs each run's ServerApp in a fresh ``flwr-serverapp`` process, started by the SuperLink's
``flower-superexec``: every job paid a process start, an import of Flower's runtime, torch, transformers and
the apps (several seconds of CPU; 8-19 s of a deployment job outside its message exchanges on a loaded
2-core machine), plus SuperExec's poll. With ``flower-superlink --isolation process`` the SuperLink starts no
executor: it waits for one of the operator's choosing to acquire each ServerApp task (Runtime API
``AcquireTask``). This module is that executor:

    python -m unlearning.federation.serverapp_runtime --runtime-api-address HOST:PORT \\
        (--insecure | --root-certificates CA.pem) [--superexec-auth-secret-file SECRET] [--parent-pid PID]

It imports Flower's ServerApp runtime and ``unlearning.federation.apps`` once, then polls ``AcquireTask``
every ``COMMONS_SERVERAPP_POLL_S`` seconds (default 0.05) and runs each task in a child forked from itself
(``os.fork``: the child starts with everything imported), which does exactly what ``flwr-serverapp`` does
(Flower's ``run_serverapp``: pull the task input with the task's token, install the FAB, run the ServerApp
on an ``HttpGrid``, push the task output) and exits. One run per child, as with Flower: runs stay isolated
from each other and from this process, several can run at once, and a ServerApp that crashes takes only its
child down. The executor forks only while it runs no thread of its own (its parent check and its children's
reaping happen in the poll loop), and torch has computed nothing in it, so no lock or thread pool is
inherited in a bad state.

With ``--superexec-auth-secret-file`` (the same file as the SuperLink's ``--superexec-auth-secret-file``)
its ``AcquireTask`` calls are signed, and the SuperLink refuses to hand a ServerApp task (its token, the job
spec) to anyone else who reaches its port. ``LocalFederation`` (deployment.py) starts the SuperLink that way
and this executor beside it by default; docs/federation.md gives the commands for a real host. Linux only
(``fork``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from unlearning.federation.node_runtime import (
    _alive,
    _env_seconds,
    executor_logging,
    executor_parser,
    read_argument_file,
)

log = logging.getLogger("unlearning.federation.serverapp_runtime")

SERVERAPP_POLL_ENV = "COMMONS_SERVERAPP_POLL_S"
ACQUIRE_TASK = "/flwr.proto.Runtime/AcquireTask"  # the Runtime API call SuperExec auth signs


PRELOADED = (
    "flwr.superlink.runtime.run_serverapp",  # Flower's flwr-serverapp runtime
    "unlearning.federation.apps",  # torch, the tasks, the apps
    "unlearning.federation.server",
    "unlearning.federation.verify_runtime",
    "unlearning.federation.history",
    "unlearning.methods",  # every registered method
    "unlearning.artifacts",
    "unlearning.contribution",
    "unlearning.evaluation",
    "unlearning.footprint",
    "unlearning.local",
    "unlearning.verification",
    # what the community LM's ServerApp imports lazily: transformers and its Llama (18 s of wall time on a
    # loaded 2-core machine, which every forked run would otherwise pay again)
    "transformers",
    "transformers.models.llama.modeling_llama",
    "transformers.models.llama.configuration_llama",
    "transformers.models.byt5.tokenization_byt5",
    "transformers.models.auto.modeling_auto",
)


def preload(modules: Sequence[str] = PRELOADED) -> list[str]:
    """Import, once and before any fork, what ServerApp runs need (Flower's ServerApp runtime, torch, the
    tasks, the methods, transformers' Llama): a forked run starts with them. Imports only: nothing that
    computes with torch (its thread pools must not exist before a fork). Returns the modules that could not
    be imported (logged; a run then imports what it needs itself)."""
    import importlib

    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            log.warning("not preloaded: %s (%s)", name, exc)
            missing.append(name)
    return missing


def prompt_log_flush(module: Any) -> None:
    """Make ``module``'s (Flower's ``run_serverapp``) ``flush_logs`` end the log uploader and wait for it.

    Before pushing a run's output, Flower 1.41 waits for its log queue to drain and then sleeps a full second
    "to allow the PushLogs call to complete": a second at the end of every run (bench/RESULTS.md,
    "Federation runtimes"). Here the uploader thread is told to finish (Flower's own end-of-run signal, a
    ``None`` in the queue) and joined: every line logged so far is uploaded before the output, as before,
    and the run ends as soon as that upload does. Lines logged after it (Flower logs one only when pushing
    the output fails) still reach the executor's own output."""
    threads: list[threading.Thread] = []
    start, flush = module.start_log_uploader, module.flush_logs

    def started(*args: Any, **kwargs: Any) -> threading.Thread:
        thread: threading.Thread = start(*args, **kwargs)
        threads.append(thread)
        return thread

    def flushed(log_queue: Any, timeout: float = 3.0) -> bool:
        if not threads:
            return bool(flush(log_queue, timeout))
        log_queue.put(None)
        threads[-1].join(timeout)
        return not threads[-1].is_alive()

    module.start_log_uploader = started
    module.flush_logs = flushed


def run_task_in_child(
    token: str, runtime_api_address: str, insecure: bool, certificates: bytes | None
) -> None:
    """What ``flwr-serverapp --token TOKEN`` does, in this (forked) process; never returns."""
    code = 1
    try:
        from queue import Queue

        from flwr.supercore.logger import mirror_output_to_queue, restore_output
        from flwr.superlink.runtime import run_serverapp

        os.environ.pop(SERVERAPP_POLL_ENV, None)
        # the module (its package exports the function under the same name)
        prompt_log_flush(sys.modules["flwr.superlink.runtime.run_serverapp"])
        log_queue: Queue[str | None] = Queue()
        mirror_output_to_queue(log_queue)
        try:
            run_serverapp(
                runtime_api_address=runtime_api_address,
                log_queue=log_queue,
                token=token,
                insecure=insecure,
                certificates=certificates,
                parent_pid=None,
                runtime_dependency_install=False,
            )
            code = 0
        finally:
            restore_output()
    except SystemExit as exc:  # Flower's flwr_exit ends every run this way, after pushing the task output
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        log.exception("ServerApp task failed outside the ServerApp")
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


class ServerAppExecutor:
    """Acquires a SuperLink's ServerApp tasks and runs each in a forked child (see the module docstring)."""

    def __init__(
        self,
        runtime_api_address: str,
        *,
        insecure: bool = True,
        root_certificates: bytes | None = None,
        auth_secret: bytes | None = None,
        poll_interval: float = 0.05,
        parent_pid: int | None = None,
    ) -> None:
        from flwr.supercore.interceptors import RuntimeVersionHttpInterceptor, SuperExecAuthHttpInterceptor
        from flwr.supercore.retry import make_simple_http_retry_invoker
        from flwr.supercore.runtime import RuntimeHttpClient

        self.address, self.insecure, self.certificates = runtime_api_address, insecure, root_certificates
        self.poll_interval, self.parent_pid = poll_interval, parent_pid
        self.stopping = False
        self.children: dict[int, float] = {}  # pid -> when it started
        self.tasks_started = 0
        interceptors: list[Any] = [RuntimeVersionHttpInterceptor(component_name="SuperExec")]
        if auth_secret:
            interceptors.append(
                SuperExecAuthHttpInterceptor(master_secret=auth_secret, protected_methods={ACQUIRE_TASK})
            )
        self._client = RuntimeHttpClient.from_server_address(
            server_address=runtime_api_address,
            insecure=insecure,
            root_certificates=root_certificates,
            interceptors=interceptors,
            retry_invoker=make_simple_http_retry_invoker(),
        )

    def close(self) -> None:
        self._client.close()

    def reap(self) -> None:
        """Collect the children that ended (a run's exit code is Flower's; its status is at the SuperLink)."""
        for pid in list(self.children):
            with contextlib.suppress(ChildProcessError):
                done, status = os.waitpid(pid, os.WNOHANG)
                if not done:
                    continue
                took = time.monotonic() - self.children[pid]
                log.info("ServerApp run in pid %d ended (%s) after %.1f s", pid, _exit_text(status), took)
            self.children.pop(pid, None)

    def serve(self) -> None:
        """Acquire and fork tasks until ``stopping`` is set or the parent process is gone."""
        import httpx
        from flwr.proto.runtime_pb2 import AcquireTaskRequest
        from flwr.supercore.constant import TaskType

        request = AcquireTaskRequest(supported_task_types=[TaskType.SERVER_APP.value])
        while not self.stopping:
            self.reap()
            if self.parent_pid is not None and not _alive(self.parent_pid):
                log.info("the SuperLink (pid %d) is gone", self.parent_pid)
                break
            try:
                reply = self._client.AcquireTask(request)
            except httpx.HTTPError as exc:  # the SuperLink restarts, or is gone (the parent check ends us)
                log.warning("SuperLink Runtime API at %s: %s", self.address, exc)
                time.sleep(1.0)
                continue
            if reply.HasField("task") and reply.token:
                self.fork(reply.token)
            else:
                time.sleep(self.poll_interval)

    def fork(self, token: str) -> int:
        """Run the task of ``token`` in a forked child; returns the child's pid."""
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: the run's ServerApp, then exit (never back into the loop)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            run_task_in_child(token, self.address, self.insecure, self.certificates)
        self.tasks_started += 1
        self.children[pid] = time.monotonic()
        log.info("ServerApp task %d runs in pid %d", self.tasks_started, pid)
        return pid

    def stop_children(self, timeout: float = 10.0) -> None:
        """SIGTERM the runs still going (Flower's ServerApp pushes a stopped status on it), then SIGKILL."""
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.children and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.1)
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.reap()


def _exit_text(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"exit code {os.WEXITSTATUS(status)}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = executor_parser(
        "python -m unlearning.federation.serverapp_runtime",
        "Run a SuperLink's ServerApp tasks, each forked from one long-running process "
        "(the SuperLink runs with --isolation process).",
        peer="the SuperLink",
        address_help="the SuperLink's Runtime API (HOST:PORT: its --port)",
        insecure_note=" (loopback only)",
    )
    parser.add_argument(
        "--superexec-auth-secret-file",
        help="the SuperLink's --superexec-auth-secret-file: sign AcquireTask with it",
    )
    args = parser.parse_args(argv)
    if not hasattr(os, "fork"):
        parser.error("this executor forks a process per run: it needs Linux (or another POSIX system)")
    executor_logging()
    certificates = read_argument_file(parser, args.root_certificates)
    secret = read_argument_file(parser, args.superexec_auth_secret_file)
    if args.superexec_auth_secret_file and not secret:
        parser.error(f"{args.superexec_auth_secret_file} is empty")
    preload()
    executor = ServerAppExecutor(
        args.runtime_api_address,
        insecure=bool(args.insecure),
        root_certificates=certificates,
        auth_secret=secret,
        poll_interval=_env_seconds(SERVERAPP_POLL_ENV, 0.05),
        parent_pid=args.parent_pid,
    )

    def stop(*_: object) -> None:
        executor.stopping = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    log.info("ServerApp executor for the SuperLink at %s", args.runtime_api_address)
    try:
        executor.serve()
    finally:
        executor.stop_children()
        executor.close()
        log.info("ServerApp executor stopped after %d run(s)", executor.tasks_started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
