"""A warm node: a SuperNode that polls the SuperLink often, and one long-running ClientApp process beside it.

Flower 1.41 runs a ClientApp task (one message) in a fresh ``flwr-clientapp`` process, started by the
SuperNode's ``flower-superexec``: every message paid a process start and an import of torch and the apps
(2-3 s of CPU each, 11-19 s per message exchange on a small machine with Flower's polling). With
``flower-supernode --isolation process`` the SuperNode starts no executor: it serves its Runtime API and
waits for an executor of the operator's choosing to acquire each task with a token. This module is that
executor, kept alive between messages:

- ``python -m unlearning.federation.node_runtime clientapp --runtime-api-address HOST:PORT --insecure``
  acquires the SuperNode's ClientApp tasks one at a time (Runtime API ``AcquireTask``) and runs each in
  this process, exactly as ``flwr-clientapp`` does (pull the task input with the task's token, run the
  ClientApp the run's FAB names, push the reply and the task's output), with torch, the apps and the
  node's tensors (node.py's cache) already loaded. A failing ClientApp answers an error reply, as
  ``flwr-clientapp`` does, and the process goes on. Against this module's SuperNode, ``AcquireTask`` is a
  long poll (below) and the executor asks again at once; against Flower's own, which answers at once, it
  asks every ``COMMONS_CLIENTAPP_POLL_S`` (default 0.05 s).
- ``python -m unlearning.federation.node_runtime supernode <flower-supernode arguments>`` runs Flower's own
  ``flower-supernode`` with three changes (:class:`_NodePacer`, :class:`_TaskGate`): after a pull that
  brought no message it sleeps at most ``COMMONS_SUPERNODE_POLL_S`` (default 0.25 s; Flower: 3 s), and not
  at all after a pull the SuperLink held (superlink_runtime.py's long poll already waited for work); it
  checks its own memory for the executor's reply and that reply's objects every 0.01 s (Flower: 0.5 s);
  and it hands a task to the executor only once the task's message objects are stored (Flower creates
  the task first and downloads the objects after it, so the executor waited for them with retries), with
  ``AcquireTask`` held up to 1 s until a task is ready instead of answering "none" at once. This touches
  module attributes of Flower's SuperNode loop (``flwr.supernode.start_client_internal``: ``time``,
  ``pull_objects``, ``push_object_contents_from_iterable``, ``http_request_response``) and its Runtime
  API handler ``acquire_task``: pinned to flwr 1.41 like the rest of the adapter.
- Both, and the ServerApp (server.py), retry a message's object that is not uploaded yet after 0.01 s
  (doubling), then at most every 0.5 s (:func:`fast_object_pulls`; Flower waits 1, 2, 4 ... 10 s).
- ``COMMONS_FEDERATION_TRACE=DIR`` writes each step of an exchange with its time (trace.py;
  ``bench/federation_trace.py`` puts them together).

``LocalFederation`` (deployment.py) starts both per node by default; docs/federation.md gives the commands
for real hosts. The ServerApp side polls its replies every 0.05-0.25 s (server.py) instead of Flower's
fixed 3 s, or at once after a held pull; the SuperLink holds pulls that find nothing
(:mod:`unlearning.federation.superlink_runtime`).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import signal
import sys
import threading
import time
import types
from collections.abc import Sequence
from typing import Any

from unlearning.federation import trace
from unlearning.federation.superlink_runtime import HELD_PULL_S

log = logging.getLogger("unlearning.federation.node_runtime")

CLIENTAPP_POLL_ENV = "COMMONS_CLIENTAPP_POLL_S"
SUPERNODE_POLL_ENV = "COMMONS_SUPERNODE_POLL_S"
ACQUIRE_LONG_POLL_S = 1.0  # how long the SuperNode holds an AcquireTask that finds no task
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


class _NodePacer:
    """The waits of Flower's SuperNode loop, shortened. Flower sleeps 3 s after a pull that brought no
    message (a request to the SuperLink): here at most ``cap``. It sleeps 0.5 s between checks of its own
    memory for the executor's reply and for that reply's objects: here 0.01 s (no request, no one else's
    CPU). Each pull of an idle node is a request the SuperLink serves on the same CPUs as everything else,
    so the idle wait is not shortened further: the SuperLink's requests are most of a warm exchange's
    overhead on a small machine (bench/RESULTS.md, "Federation runtimes")."""

    LOCAL_WAIT_S = 0.01

    def __init__(self, cap: float) -> None:
        self.cap = cap
        self.last_pull_s = 0.0

    def pulled(self, seconds: float) -> None:
        """The last pull from the SuperLink took ``seconds``."""
        self.last_pull_s = seconds

    def wait_for(self, seconds: float) -> float:
        if seconds < 1.0:  # Flower's 0.5 s: its own state, in memory
            return min(seconds, self.LOCAL_WAIT_S)
        if self.last_pull_s >= HELD_PULL_S:  # a long-polling SuperLink held it: no need to wait again
            return self.LOCAL_WAIT_S
        return min(seconds, self.cap)  # Flower's 3 s: the SuperLink

    def module(self) -> types.ModuleType:
        """A stand-in for the ``time`` module whose ``sleep`` waits :meth:`wait_for` instead."""
        shim = types.ModuleType("time")
        shim.__dict__.update(time.__dict__)
        real_sleep = time.sleep

        def sleep(seconds: float) -> None:
            real_sleep(self.wait_for(seconds))

        shim.sleep = sleep  # type: ignore[attr-defined]
        return shim


class _TaskGate:
    """Hands a ClientApp task to the executor only once the SuperNode holds its message's objects, and
    lets the executor's ``AcquireTask`` wait for one (a long poll) instead of polling.

    Flower 1.41's SuperNode creates the task as soon as it has pulled the message, then downloads the
    message's objects from the SuperLink; an executor that acquired the task at once waited for them with
    retries (0.2-1.7 s of its input time in the earlier log). Here the SuperNode's ``AcquireTask`` handler
    holds a task back while the message's objects are on their way, and waits up to ``long_poll_s`` for a
    task before answering "none": the executor gets the task the moment its inputs are complete, and an
    idle executor sends one request per ``long_poll_s``. A message whose objects stay missing for
    ``STALE_S`` no longer holds tasks back (Flower fails such a message's task itself)."""

    STALE_S = 30.0
    TICK_S = 0.1  # re-check without a notification (a task that came another way)

    def __init__(self, long_poll_s: float) -> None:
        self.long_poll_s = long_poll_s
        self._cond = threading.Condition()
        self._receiving_since: float | None = None

    def receiving(self) -> None:
        """A message came; its objects are being downloaded."""
        with self._cond:
            self._receiving_since = time.monotonic()

    def received(self) -> None:
        """The message's objects are stored (or their download failed): its task may go."""
        with self._cond:
            self._receiving_since = None
            self._cond.notify_all()

    def _held_back(self) -> bool:
        since = self._receiving_since
        return since is not None and time.monotonic() - since < self.STALE_S

    def acquire(self, handler: Any, request: Any, state: Any) -> Any:
        """Flower's ``acquire_task`` handler, gated and long-polled."""
        deadline = time.monotonic() + self.long_poll_s
        reply = None
        with self._cond:
            while True:
                if not self._held_back():
                    reply = handler(request, state)
                    if reply.HasField("task"):
                        return reply
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(min(remaining, self.TICK_S))
        if reply is None:
            from flwr.proto.runtime_pb2 import AcquireTaskResponse

            reply = AcquireTaskResponse()
        return reply


PULL_BACKOFF_S = 0.01
PULL_BACKOFF_CAP_S = 0.5


def fast_object_pulls(module: types.ModuleType, name: str = "pull_objects") -> None:
    """Make ``module``'s Flower object-pull function retry a missing object after 0.01 s (doubling), then at
    most every 0.5 s. A message's objects (its arrays, configs, metrics) are uploaded after the message itself is
    listed, and Flower 1.41 retries an object that is not there yet after 1, 2, 4 ... 10 s: with no process
    to start, a warm node asks that early and waited seconds for objects that came milliseconds later."""

    current = getattr(module, name)
    if getattr(current, "commons_fast", False):
        return
    fast = functools.partial(current, initial_backoff=PULL_BACKOFF_S, backoff_cap=PULL_BACKOFF_CAP_S)
    fast.commons_fast = True  # type: ignore[attr-defined]
    setattr(module, name, fast)


def _instrument_supernode(loop: types.ModuleType, gate: _TaskGate, pacer: _NodePacer) -> None:
    """Hook Flower's SuperNode loop (module attributes of ``flwr.supernode.start_client_internal``): the
    gate learns when a message came and when its objects are stored, and with
    ``COMMONS_FEDERATION_TRACE`` each step is traced (trace.py)."""
    connect, pull_objects = getattr(loop, "http_request_response"), getattr(loop, "pull_objects")  # noqa: B009
    push_objects = getattr(loop, "push_object_contents_from_iterable")  # noqa: B009
    tracing = trace.enabled()

    def took(t0: float) -> str:
        return f"{time.perf_counter() - t0:.4f}"

    @contextlib.contextmanager
    def connection(*args: Any, **kwargs: Any) -> Any:
        with connect(*args, **kwargs) as conn:
            node_id, receive, send, get_run, get_fab, pull_object, push_object, *rest = conn

            def received() -> Any:
                gate.received()  # a message before, that never got to its objects
                t0 = time.perf_counter()
                result = receive()
                pacer.pulled(time.perf_counter() - t0)
                if result is not None:
                    gate.receiving()
                    if tracing:
                        trace.event(
                            "supernode",
                            "receive",
                            took=took(t0),
                            message=trace.short(result[0].metadata.message_id),
                        )
                return result

            def sent(message: Any, *a: Any) -> Any:
                t0 = time.perf_counter()
                result = send(message, *a)
                if tracing:
                    reply_to = trace.short(message.metadata.reply_to_message_id)
                    trace.event("supernode", "send", took=took(t0), reply_to=reply_to)
                return result

            def pulled(run_id: int, object_id: str) -> bytes:
                t0 = time.perf_counter()
                try:
                    content: bytes = pull_object(run_id, object_id)
                except Exception as exc:
                    if tracing:
                        trace.event("supernode", "pull-object", took=took(t0), error=type(exc).__name__)
                    raise
                if tracing:
                    trace.event("supernode", "pull-object", took=took(t0))
                return content

            yield (node_id, received, sent, get_run, get_fab, pulled, push_object, *rest)

    def objects(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            result = pull_objects(*args, **kwargs)
        finally:
            gate.received()
        if tracing:
            trace.event("supernode", "objects", took=took(t0), objects=len(result))
        return result

    def pushed(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        result = push_objects(*args, **kwargs)
        if tracing:
            trace.event("supernode", "push-objects", took=took(t0))
        return result

    setattr(loop, "http_request_response", connection)  # noqa: B010
    setattr(loop, "pull_objects", objects)  # noqa: B010
    setattr(loop, "push_object_contents_from_iterable", pushed)  # noqa: B010


def run_supernode(argv: Sequence[str]) -> None:
    """Flower's ``flower-supernode`` (same arguments) with its idle waits capped and its object pulls
    retried sooner."""
    import flwr.supernode.servicer.runtime.runtime_handlers as handlers
    import flwr.supernode.start_client_internal as loop
    from flwr.supernode.cli import flower_supernode

    pacer = _NodePacer(_env_seconds(SUPERNODE_POLL_ENV, 0.25))
    gate = _TaskGate(ACQUIRE_LONG_POLL_S)
    loop.time = pacer.module()  # type: ignore[attr-defined]
    fast_object_pulls(loop)
    _instrument_supernode(loop, gate, pacer)
    acquire_task = handlers.acquire_task
    handlers.acquire_task = functools.partial(gate.acquire, acquire_task)
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
        # the first beat after TASK_HEARTBEAT_S, not at once: acquiring the task gave it 30 s, and a
        # request at the start competed with the task's own input requests for the SuperNode
        while not self._stop.wait(TASK_HEARTBEAT_S):
            with contextlib.suppress(Exception):
                self._client.SendTaskHeartbeat(self._request)


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
            asked = time.monotonic()
            try:
                reply = self._client.AcquireTask(request)
            except httpx.HTTPError as exc:  # the SuperNode restarts, or is gone (the parent monitor ends us)
                log.warning("SuperNode Runtime API at %s: %s", self.address, exc)
                self.stopping.wait(1.0)
                continue
            if reply.HasField("task") and reply.token:
                trace.event("clientapp", "acquired")
                try:
                    self.run_task(reply.token)
                except Exception:  # the task is lost (its SuperNode expires it); the executor goes on
                    log.exception("ClientApp task failed outside the ClientApp")
            elif time.monotonic() - asked < self.poll_interval:  # a SuperNode that answers at once
                self.stopping.wait(self.poll_interval)
            # else: this SuperNode held the request until it had a task or its long poll ended; ask again

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
        if trace.enabled():
            client = trace.TracedClient(client, "clientapp")  # type: ignore[assignment]
        message = reply = context = None
        sub_status, details = SubStatus.FAILED, "ClientApp task failed due to unknown reason"
        t0 = time.perf_counter()
        t1 = t2 = t0
        try:
            with _Heartbeat(client):
                try:
                    message, context, run, fab = pull_task_input(client)
                    t1 = time.perf_counter()
                    trace.event("clientapp", "input", message=trace.short(message.metadata.message_id))
                    reply = self._client_app(run, fab)(message=message, context=context)
                    t2 = time.perf_counter()
                    trace.event("clientapp", "computed", took=f"{t2 - t1:.4f}")
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
            trace.event("clientapp", "done")
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


def executor_parser(
    prog: str, description: str, *, peer: str, address_help: str, insecure_note: str = ""
) -> argparse.ArgumentParser:
    """The command line both long-running executors share (this module's ClientApp executor and
    unlearning.federation.serverapp_runtime's): the Runtime API of ``peer`` ("the SuperNode's Runtime API",
    "the SuperLink") at ``--runtime-api-address``, plain HTTP or TLS with a CA, and the parent process to
    follow; a caller adds its own options before parsing."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--runtime-api-address", required=True, help=address_help)
    tls = parser.add_mutually_exclusive_group(required=True)
    tls.add_argument("--insecure", action="store_true", help=f"plain HTTP to {peer}{insecure_note}")
    tls.add_argument("--root-certificates", help=f"CA (PEM) of {peer}'s certificate")
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when this process exits")
    return parser


def read_argument_file(parser: argparse.ArgumentParser, path: str | None) -> bytes | None:
    """The bytes of a file named on the command line (None: not given); a usage error when unreadable."""
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        parser.error(f"cannot read {exc.filename}: {exc.strerror}")


def executor_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("flwr").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per poll otherwise


def run_clientapp_executor(argv: Sequence[str]) -> None:
    parser = executor_parser(
        "python -m unlearning.federation.node_runtime clientapp",
        "Run a SuperNode's ClientApp tasks in one long-running process "
        "(the SuperNode runs with --isolation process).",
        peer="the SuperNode's Runtime API",
        address_help="the SuperNode's Runtime API (HOST:PORT)",
    )
    args = parser.parse_args(argv)
    certificates = read_argument_file(parser, args.root_certificates)
    executor_logging()
    import unlearning.federation.apps  # noqa: F401  (torch, the tasks and the apps, once)

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
