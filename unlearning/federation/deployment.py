"""Flower Deployment Engine adapter: a local SuperLink + SuperNodes, and a job runner over the Control API.

Two things live here, and nothing else in the project talks to a SuperLink:

- ``LocalFederation`` starts (and always stops) a SuperLink and one SuperNode per node on one machine, each
  in its own process group and its own ``FLWR_HOME``, with telemetry, update checks and runtime dependency
  installation turned off. The integration test uses it; operators can use it for a single-machine
  federation (``python -m unlearning.federation.deployment up``). On real hosts the operator starts the same
  commands by hand (docs/federation.md).
- ``DeploymentRunner`` submits a job to a running SuperLink through its Control API (protobuf over HTTP),
  polls the run until it finishes and raises ``RunFailed`` when Flower reports a failed or stopped run. The
  ServerApp writes the results itself (into the artifact store, keyed by job id): the Control API returns
  status and logs only.

Flower's ``flwr.proto``, ``flwr.common.serde`` and ``flwr.cli.build`` are internal modules; they are only
imported here and in ``simulation.py``, and the project pins ``flwr==1.41.*``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

ConfigValue = str | int | float | bool
"""A value of a Flower run config or node config (what TOML and Flower's ``UserConfig`` allow)."""

APP_DIR = Path(__file__).with_name("flwr_app")
"""The Flower app project (``pyproject.toml`` only) that the FAB is built from; its components point at the
installed ``unlearning.federation.apps`` module, which every node must have installed."""

ARTIFACT_ROOT_ENV = "COMMONS_SERVERAPP_ARTIFACT_ROOT"
"""The artifact store's root as the machine of a ServerApp run by Flower sees it: set in the SuperLink's
environment (its ``flower-superexec`` and ``flwr-serverapp`` children inherit it)."""

NODE_RUNTIME = "unlearning.federation.node_runtime"
"""The warm SuperNode and its long-running ClientApp executor (``python -m`` module)."""

SERVERAPP_RUNTIME = "unlearning.federation.serverapp_runtime"
"""The SuperLink's ServerApp executor: each run forked from a process with torch and the apps imported."""

SUPERLINK_RUNTIME = "unlearning.federation.superlink_runtime"
"""Flower's SuperLink with its empty pulls held until work comes (``python -m`` module, same arguments)."""

SUPEREXEC_POLL_ENV = "FLWR_SUPEREXEC_TASK_POLL_INTERVAL"
"""Flower's SuperExec polls for tasks (a run's ServerApp) this often, 1 s by default."""

PROTOBUF_MEDIA_TYPE = "application/protobuf"
PROTOBUF_STREAM_MEDIA_TYPE = "application/flower-protobuf-stream"

FINISHED = "finished"
COMPLETED = "completed"


class FederationError(RuntimeError):
    """A SuperLink, SuperNode or run did not behave: not reachable, not started, timed out."""


class RunFailed(FederationError):
    """A Flower run ended ``failed`` or ``stopped``; ``state.details`` carries Flower's reason."""

    def __init__(self, state: RunState, logs: str = "") -> None:
        super().__init__(f"Flower run {state.run_id} {state.sub_status}: {state.details or 'no details'}")
        self.state = state
        self.logs = logs


def flower_environment(
    flwr_home: Path | None = None, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment every Flower process of ours gets: telemetry and update checks off, Ray usage stats
    off, an own ``FLWR_HOME`` (so nothing is written to ``~/.flwr``) and this interpreter's ``bin`` first
    on ``PATH`` (the SuperLink and SuperNodes start ``flower-superexec`` and the app processes by name)."""
    env = dict(os.environ if base is None else base)
    env.update(
        FLWR_TELEMETRY_ENABLED="0",
        FLWR_DISABLE_UPDATE_CHECK="1",
        RAY_USAGE_STATS_ENABLED="0",
        PYTHONUNBUFFERED="1",
    )
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    if flwr_home is not None:
        env["FLWR_HOME"] = str(flwr_home)
    return env


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _toml_value(value: ConfigValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def node_config_toml(config: Mapping[str, ConfigValue]) -> str:
    """A SuperNode's ``--node-config`` as a TOML file (the form that survives paths with spaces)."""
    return "".join(f'"{key}" = {_toml_value(value)}\n' for key, value in config.items())


def die_with_parent() -> None:
    """``preexec_fn`` for children that must not outlive the thread that started them (Linux: the kernel
    sends SIGTERM when it exits, even by SIGKILL; elsewhere a no-op). Only for children started from a
    thread that lives as long as they should."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _executable(name: str) -> str:
    """A console script installed beside this interpreter (falls back to ``PATH``)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


@dataclass
class _Process:
    """One process we started, in its own process group, so that stopping it also stops its children
    (``flower-superexec`` and the app processes it spawned)."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def _stop_processes(processes: Sequence[_Process], timeout: float) -> None:
    """SIGTERM every group, wait up to ``timeout``, then SIGKILL what is left (leaders and children)."""
    for proc in processes:
        proc.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
    for proc in processes:
        # Children (superexec, app processes) may outlive their leader: kill the whole group regardless.
        proc.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout=5)


@dataclass(frozen=True)
class NodeStatus:
    node_id: int
    status: str  # "online", "offline", "registered", "unregistered"


@dataclass(frozen=True)
class RunState:
    """What the SuperLink says about a run. ``status`` is pending | starting | running | finished;
    ``sub_status`` is completed | failed | stopped once finished."""

    run_id: int
    status: str
    sub_status: str
    details: str
    run_config: dict[str, ConfigValue] = field(default_factory=dict)
    bytes_sent: int = 0  # SuperLink -> SuperNodes, all messages of the run
    bytes_recv: int = 0  # SuperNodes -> SuperLink
    clientapp_seconds: float = 0.0  # summed ClientApp compute time

    @property
    def finished(self) -> bool:
        return self.status == FINISHED

    @property
    def succeeded(self) -> bool:
        return self.status == FINISHED and self.sub_status == COMPLETED


class ControlClient:
    """A thin client of the SuperLink's Control API (protobuf over HTTP POST, ``/v1/control/*``).

    Takes an ``httpx.Client`` so that tests can inject a transport. Only the calls the project needs."""

    def __init__(
        self,
        address: str,
        *,
        insecure: bool = True,
        root_certificates: str | None = None,
        timeout: float = 30.0,
        http: httpx.Client | None = None,
    ) -> None:
        scheme = "http" if insecure else "https"
        self.base_url = f"{scheme}://{address}"
        verify: ssl.SSLContext | bool = False
        if not insecure:  # the CA bundle the SuperLink's certificate is checked against (or the system's)
            verify = ssl.create_default_context(cafile=root_certificates)
        self._own_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=timeout, verify=verify)

    def close(self) -> None:
        if self._own_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, path: str, request: Any, response: Any) -> Any:
        try:
            reply = self._http.post(
                f"{self.base_url}/v1/control/{path}",
                content=request.SerializeToString(deterministic=True),
                headers={"content-type": PROTOBUF_MEDIA_TYPE, "accept": PROTOBUF_MEDIA_TYPE},
            )
        except httpx.TransportError as exc:
            raise FederationError(f"SuperLink at {self.base_url} not reachable: {exc}") from exc
        if reply.is_error:
            raise FederationError(
                f"SuperLink refused {path} ({reply.status_code}): {reply.text[:500] or reply.reason_phrase}"
            )
        response.ParseFromString(reply.content)
        return response

    def healthy(self) -> bool:
        try:
            return self._http.get(f"{self.base_url}/health", timeout=2.0).status_code == 200
        except httpx.TransportError:
            return False

    def start_run(self, fab: bytes, run_config: Mapping[str, ConfigValue]) -> int:
        from flwr.common.serde import fab_to_proto, user_config_to_proto
        from flwr.proto.control_pb2 import StartRunRequest, StartRunResponse
        from flwr.supercore.fab import Fab

        request = StartRunRequest(
            fab=fab_to_proto(Fab(hashlib.sha256(fab).hexdigest(), fab, {})),
            override_config=user_config_to_proto(dict(run_config)),
        )
        reply = self._call("start-run", request, StartRunResponse())
        if not reply.HasField("run_id"):
            raise FederationError("SuperLink did not start the run (no run id returned)")
        return int(reply.run_id)

    def run_state(self, run_id: int) -> RunState:
        from flwr.common.serde import user_config_from_proto
        from flwr.proto.control_pb2 import ListRunsRequest, ListRunsResponse

        reply = self._call("list-runs", ListRunsRequest(run_id=run_id), ListRunsResponse())
        if run_id not in reply.run_dict:
            raise FederationError(f"SuperLink knows no run {run_id}")
        run = reply.run_dict[run_id]
        return RunState(
            run_id=run_id,
            status=run.status.status,
            sub_status=run.status.sub_status,
            details=run.status.details,
            run_config=dict(user_config_from_proto(run.override_config)),
            bytes_sent=int(run.bytes_sent),
            bytes_recv=int(run.bytes_recv),
            clientapp_seconds=float(run.clientapp_runtime),
        )

    def stop_run(self, run_id: int) -> bool:
        from flwr.proto.control_pb2 import StopRunRequest, StopRunResponse

        return bool(self._call("stop-run", StopRunRequest(run_id=run_id), StopRunResponse()).success)

    def list_nodes(self) -> list[NodeStatus]:
        from flwr.proto.control_pb2 import ListNodesRequest, ListNodesResponse

        reply = self._call("list-nodes", ListNodesRequest(), ListNodesResponse())
        return [NodeStatus(int(n.node_id), str(n.status)) for n in reply.nodes_info]

    def logs(self, run_id: int, timeout: float = 10.0) -> str:
        """The run's logs so far. The stream stays open while the run is live, so this reads for at most
        ``timeout`` seconds; on a finished run it returns at once."""
        from flwr.proto.control_pb2 import StreamLogsRequest, StreamLogsResponse

        request = StreamLogsRequest(run_id=run_id, after_timestamp=0.0)
        parts: list[str] = []
        deadline = time.monotonic() + timeout
        headers = {"content-type": PROTOBUF_MEDIA_TYPE, "accept": PROTOBUF_STREAM_MEDIA_TYPE}
        buffer = bytearray()
        try:
            with self._http.stream(
                "POST",
                f"{self.base_url}/v1/control/stream-logs",
                content=request.SerializeToString(deterministic=True),
                headers={**headers, "accept-encoding": "identity"},
                timeout=httpx.Timeout(timeout, read=timeout),
            ) as reply:
                if reply.is_error:
                    return ""
                for chunk in reply.iter_bytes():
                    buffer.extend(chunk)
                    while len(buffer) >= 4:
                        size = int.from_bytes(buffer[:4], "big")
                        if len(buffer) < 4 + size:
                            break
                        message = StreamLogsResponse()
                        message.ParseFromString(bytes(buffer[4 : 4 + size]))
                        del buffer[: 4 + size]
                        parts.append(message.log_output)
                    if time.monotonic() > deadline:
                        break
        except httpx.HTTPError:
            pass
        return "".join(parts)


def build_fab(app_dir: Path = APP_DIR) -> bytes:
    """Zip the Flower app project into a FAB (Flower's own builder: same filters, same hashing)."""
    from flwr.cli.build import build_fab_from_disk

    return build_fab_from_disk(app_dir)


class LocalFederation:
    """A SuperLink and one SuperNode per entry of ``nodes`` on one machine (default 127.0.0.1, free ports).

    Each process runs in its own process group with its own ``FLWR_HOME`` under ``workdir`` and writes its
    log to ``workdir/<name>.log``. ``stop()`` (also on ``__exit__`` and on a failed ``start()``) terminates
    every process group it started, including the ``flower-superexec`` and app processes below them.

    ``nodes`` holds each SuperNode's node config, e.g. ``{"partition-id": 0, "num-partitions": 3,
    "data-path": "/srv/node0"}``; the ClientApp reads it from ``context.node_config``.

    ``artifact_root`` is the artifact store as the SuperLink's ServerApps see it (``COMMONS_SERVERAPP_ARTIFACT_ROOT``
    in the SuperLink's environment): the deployment runtime sends no path, so a federation that runs jobs
    needs it. ``node_superlink`` is the address the SuperNodes dial (default: the SuperLink's own; a test
    puts a recording relay there). ``database`` is the SuperLink's ``--database`` (default: Flower's in-memory
    state, the documented choice: see docs/federation.md, "SuperLink state").

    ``torch_threads`` (default 1) sets ``OMP_NUM_THREADS`` for the app processes: three nodes on a small
    machine otherwise oversubscribe its cores. With ``die_with_parent`` (the default, Linux) the processes also end when the thread that called
    ``start()`` ends, even if this process is killed: start it from a thread that outlives the federation."""

    def __init__(
        self,
        workdir: Path,
        nodes: Sequence[Mapping[str, ConfigValue]],
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        torch_threads: int | None = 1,
        die_with_parent: bool = True,
        artifact_root: Path | None = None,
        node_superlink: str | None = None,
        database: str | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.database = database
        self.artifact_root = artifact_root
        self.node_superlink = node_superlink
        self.torch_threads = torch_threads
        self.die_with_parent = die_with_parent
        self.nodes = [dict(n) for n in nodes]
        self.host = host
        self.port = port if port is not None else free_port(host)
        self._base_env = env
        self._processes: list[_Process] = []
        self._lock = threading.Lock()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pids(self) -> list[int]:
        return [p.popen.pid for p in self._processes]

    def pid(self, name: str) -> int:
        """The process id of ``superlink`` or ``supernode-<k>`` (the SuperNode of ``nodes[k]``)."""
        for proc in self._processes:
            if proc.name == name:
                return proc.popen.pid
        raise KeyError(f"no process {name!r} in this federation")

    def _spawn(self, name: str, argv: list[str], extra_env: Mapping[str, str] | None = None) -> _Process:
        home = self.workdir / name
        home.mkdir(parents=True, exist_ok=True)
        log_path = self.workdir / f"{name}.log"
        env = flower_environment(home, self._base_env)
        env.update(extra_env or {})
        if self.torch_threads is not None:  # inherited by every ClientApp / ServerApp process below
            threads = str(self.torch_threads)
            env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        with log_path.open("ab") as log:
            popen = subprocess.Popen(
                argv,
                cwd=home,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() reaches superexec and app children
                preexec_fn=die_with_parent if self.die_with_parent else None,
            )
        proc = _Process(name, popen, log_path)
        self._processes.append(proc)
        return proc

    def control_client(self) -> ControlClient:
        """A client of this federation's Control API (``SecureFederation``: over TLS)."""
        return ControlClient(self.address)

    def runtime_port(self) -> int:
        """The port of the next SuperNode's runtime API (``SecureFederation``: from its port range)."""
        return free_port(self.host)

    def before_nodes(self, control: ControlClient) -> None:
        """Called once the SuperLink is healthy, before the SuperNodes start (``SecureFederation`` starts
        its fleet gateway and registers the nodes' keys here)."""

    long_poll: bool = True
    """True (the default): the SuperLink is Flower's with its empty pulls held until work comes
    (:mod:`unlearning.federation.superlink_runtime`); False: Flower's ``flower-superlink`` as it is."""

    def superlink_argv(self) -> list[str]:
        return [
            *(
                [sys.executable, "-m", SUPERLINK_RUNTIME]
                if self.long_poll
                else [_executable("flower-superlink")]
            ),
            "--insecure",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--disable-runtime-dependency-installation",
            *(["--database", self.database] if self.database else []),
            *(
                ["--isolation", "process", "--superexec-auth-secret-file", str(self.superexec_secret_file)]
                if self.server_isolation == "process"
                else []
            ),
        ]

    server_isolation: str = "process"
    """``process`` (the default): the SuperLink runs with ``--isolation process`` and a SuperExec auth secret,
    and its ServerApp runs are forked from one long-running executor beside it
    (:mod:`unlearning.federation.serverapp_runtime`: Flower, torch and the apps imported once); ``subprocess``:
    Flower's default, ``flower-superexec`` starting a fresh ``flwr-serverapp`` process per run."""

    @property
    def superexec_secret_file(self) -> Path:
        """The SuperExec auth secret the SuperLink and the ServerApp executor share (``workdir``, mode 0600)."""
        return self.workdir / "superexec.secret"

    def runtime_tls_argv(self) -> list[str]:
        """How the ServerApp executor reaches the SuperLink's Runtime API (``SecureFederation``: TLS)."""
        return ["--insecure"]

    def serverapp_argv(self, superlink_pid: int) -> list[str]:
        """The ServerApp executor of this federation's SuperLink (``server_isolation == "process"``)."""
        return [
            sys.executable,
            "-m",
            SERVERAPP_RUNTIME,
            "--runtime-api-address",
            self.address,
            *self.runtime_tls_argv(),
            "--superexec-auth-secret-file",
            str(self.superexec_secret_file),
            "--parent-pid",
            str(superlink_pid),
        ]

    isolation: str = "process"
    """``process`` (the default): each SuperNode is Flower's with ``--isolation process`` and shorter idle
    waits, and runs its ClientApp tasks in one long-running executor process beside it
    (:mod:`unlearning.federation.node_runtime`: torch and the apps imported once, the node's data cached
    between messages); ``subprocess``: Flower's default, a fresh ``flwr-clientapp`` process per message."""

    def supernode_argv(self, index: int, node_config_file: Path, runtime_port: int) -> list[str]:
        warm = self.isolation == "process"
        return [
            *(
                [sys.executable, "-m", NODE_RUNTIME, "supernode"]
                if warm
                else [_executable("flower-supernode")]
            ),
            *(["--isolation", "process"] if warm else []),
            "--insecure",
            "--superlink",
            self.node_superlink or self.address,
            "--node-config",
            str(node_config_file),
            "--host",
            self.host,
            "--port",
            str(runtime_port),
        ]

    def clientapp_argv(self, runtime_port: int, supernode_pid: int) -> list[str]:
        """The long-running ClientApp executor of the SuperNode whose Runtime API is at ``runtime_port``."""
        return [
            sys.executable,
            "-m",
            NODE_RUNTIME,
            "clientapp",
            "--runtime-api-address",
            f"{self.host}:{runtime_port}",
            "--insecure",
            "--parent-pid",
            str(supernode_pid),
        ]

    def start(self, timeout: float = 60.0) -> Self:
        """Start the SuperLink, wait until it answers, start the SuperNodes and wait until all are online."""
        with self._lock:
            if self._processes:
                raise FederationError("this federation is already started")
            self.workdir.mkdir(parents=True, exist_ok=True)
            try:
                self._start(timeout)
            except BaseException:
                self._stop(timeout=10.0)
                raise
        return self

    def _start(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        root = {ARTIFACT_ROOT_ENV: str(Path(self.artifact_root).resolve())} if self.artifact_root else {}
        root[SUPEREXEC_POLL_ENV] = os.environ.get(SUPEREXEC_POLL_ENV, "0.1")  # ServerApps start sooner
        if self.server_isolation == "process":
            secret = self.superexec_secret_file
            secret.unlink(missing_ok=True)
            fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(32))
        link = self._spawn("superlink", self.superlink_argv(), root)
        if self.server_isolation == "process":
            self._spawn("serverapp", self.serverapp_argv(link.popen.pid), root)
        with self.control_client() as control:
            while not control.healthy():
                self._check_alive(link)
                if time.monotonic() > deadline:
                    raise FederationError(f"SuperLink not healthy after {timeout:.0f} s:\n{link.log_tail()}")
                time.sleep(0.2)
            self.before_nodes(control)
            for index, config in enumerate(self.nodes):
                name = f"supernode-{index}"
                config_file = self.workdir / f"{name}.toml"
                config_file.write_text(node_config_toml(config))
                runtime_port = self.runtime_port()
                node = self._spawn(name, self.supernode_argv(index, config_file, runtime_port))
                if self.isolation == "process":
                    self._spawn(f"clientapp-{index}", self.clientapp_argv(runtime_port, node.popen.pid))
            while True:
                for proc in self._processes:
                    self._check_alive(proc)
                online = [n for n in control.list_nodes() if n.status == "online"]
                if len(online) >= len(self.nodes):
                    return
                if time.monotonic() > deadline:
                    raise FederationError(
                        f"{len(online)} of {len(self.nodes)} SuperNodes online after {timeout:.0f} s"
                    )
                time.sleep(0.3)

    @staticmethod
    def _check_alive(proc: _Process) -> None:
        if not proc.alive():
            raise FederationError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}")

    def stop(self, timeout: float = 15.0) -> None:
        """Stop every process this federation started (idempotent)."""
        with self._lock:
            self._stop(timeout)

    def _stop(self, timeout: float) -> None:
        # SuperNodes first, so that they do not spin on a vanished SuperLink, then the SuperLink.
        _stop_processes(list(reversed(self._processes)), timeout)
        self._processes.clear()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class DeploymentRunner:
    """Submit a job to a running SuperLink and wait for it to finish.

    ``run_config`` holds the job's settings; every key must be declared in the app's
    ``[tool.flwr.app.config]`` (Flower refuses unknown keys). Results are not returned by Flower: the
    ServerApp writes them into the artifact store keyed by the job id, and the caller reads them there."""

    def __init__(
        self,
        address: str,
        *,
        insecure: bool = True,
        root_certificates: str | None = None,
        app_dir: Path = APP_DIR,
        poll_interval: float = 1.0,
        http: httpx.Client | None = None,
    ) -> None:
        self.address = address
        self.app_dir = Path(app_dir)
        self.poll_interval = poll_interval
        self._control = ControlClient(
            address, insecure=insecure, root_certificates=root_certificates, http=http
        )
        self._fab: bytes | None = None

    def close(self) -> None:
        self._control.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def control(self) -> ControlClient:
        return self._control

    def fab(self) -> bytes:
        if self._fab is None:
            self._fab = build_fab(self.app_dir)
        return self._fab

    def submit(self, run_config: Mapping[str, ConfigValue]) -> int:
        """Start a run; returns Flower's run id."""
        return self._control.start_run(self.fab(), run_config)

    def wait(
        self,
        run_id: int,
        *,
        timeout: float | None = None,
        cancel: Callable[[], bool] | None = None,
        on_state: Callable[[RunState], None] | None = None,
    ) -> RunState:
        """Poll until the run is finished. ``cancel()`` returning true stops the run (and the wait ends in
        ``RunFailed`` with sub-status ``stopped``); past ``timeout`` the run is stopped and
        ``FederationError`` raised. ``on_state`` sees every change of status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last: tuple[str, str] | None = None
        stop_sent = False
        while True:
            state = self._control.run_state(run_id)
            if (state.status, state.sub_status) != last:
                last = (state.status, state.sub_status)
                if on_state is not None:
                    on_state(state)
            if state.finished:
                if not state.succeeded:
                    raise RunFailed(state, self._control.logs(run_id, timeout=5.0))
                return state
            if cancel is not None and cancel() and not stop_sent:
                self._control.stop_run(run_id)
                stop_sent = True
            if deadline is not None and time.monotonic() > deadline:
                self._control.stop_run(run_id)
                raise FederationError(f"Flower run {run_id} did not finish within {timeout:.0f} s")
            time.sleep(self.poll_interval)

    def run(
        self,
        run_config: Mapping[str, ConfigValue],
        *,
        timeout: float | None = None,
        cancel: Callable[[], bool] | None = None,
        on_state: Callable[[RunState], None] | None = None,
    ) -> RunState:
        """``submit`` then ``wait``."""
        return self.wait(self.submit(run_config), timeout=timeout, cancel=cancel, on_state=on_state)


@contextlib.contextmanager
def local_federation(
    workdir: Path, num_nodes: int, node_config: Callable[[int], Mapping[str, ConfigValue]] | None = None
) -> Iterator[LocalFederation]:
    """``LocalFederation`` with ``partition-id``/``num-partitions`` set per node (plus ``node_config(i)``)."""
    nodes = [
        {"partition-id": i, "num-partitions": num_nodes, **(node_config(i) if node_config else {})}
        for i in range(num_nodes)
    ]
    with LocalFederation(workdir, nodes) as federation:
        yield federation


def _main(argv: Sequence[str] | None = None) -> int:
    """``up`` (a federation on this machine, by default with TLS, SuperNode authentication and the Control API
    on 127.0.0.1 only), ``certs``, ``node-key`` and ``register``: :func:`unlearning.federation.security.main`."""
    from unlearning.federation.security import main

    return main(argv)


if __name__ == "__main__":
    raise SystemExit(_main())
