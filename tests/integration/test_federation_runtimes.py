"""The same unlearning job on Flower's two real runtimes: the Deployment Engine (a SuperLink and three
SuperNodes on 127.0.0.1, each SuperNode pointed at its node's data through --node-config) and the simulation
engine (Ray, one subprocess per job). Each must produce exactly the model the in-process runtime produces,
and every process started here must be gone afterwards.

The deployment job sends no path of the service's machine: the SuperLink reaches the artifact store through its
own root (a different path to the same store here) and each SuperNode its data through its own node config
(other paths again); the run config and every byte between the SuperNodes and the SuperLink (through a
recording relay) are searched for the service's paths. With only what the operator publishes at the service
(manifest, held-out split), a deployment job and its verification (a Flower run) pass, and no digits row
crosses the relay. Last, a SuperNode is killed by PID mid-job: the job fails, naming the node's partition,
within Flower's heartbeat window plus the node timeout (a job that starts without a node is refused the same
way: tests/unit/test_node_failure.py).

The SuperNodes are warm (LocalFederation's default: --isolation process and one long-running ClientApp
executor each, unlearning.federation.node_runtime). Slow all the same: several minutes on 2 cores (on a loaded
machine a deployment job took 56-107 s and the verification 107 s), plus the wait (36-60 s) for Flower to
notice the killed node."""

from __future__ import annotations

import os

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import contextlib
import json
import shutil
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import numpy as np
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
from unlearning.api import VerifySpec, verify
from unlearning.data import load_node_data, read_manifest
from unlearning.federation.deployment import DeploymentRunner, FederationError, LocalFederation, RunFailed
from unlearning.federation.flower_runtimes import FlowerSettings
from unlearning.tasks import make_task
from unlearning.verification.spec import VerifyProgress

torch.set_num_threads(1)

pytestmark = pytest.mark.slow

# A small gradient_ascent_ewc job: discovery, Fisher, one ascent round, Fisher, one repair round (5 exchanges).
METHOD_CONFIG = {"max_rounds": 1, "repair_rounds": 1}


@dataclass
class Trained:
    root: Path
    data: Path
    version: str


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    base = tmp_path_factory.mktemp("federation")
    init_dataset("digits", base / "data", nodes=3, seed=0)
    v0 = init_model(base / "art", "digits", size="tiny", seed=0)
    spec = JobSpec(
        kind="train",
        job_id="train",
        artifact_root=str(base / "art"),
        dataset_dir=str(base / "data"),
        base_version=v0.version,
        rounds=2,
        local={"epochs": 1.0},
    )
    result = run_job(spec)
    assert result.status == "succeeded", result.error
    assert result.model_version is not None
    return Trained(base / "art", base / "data", result.model_version)


def unlearn_spec(t: Trained, job_id: str, runtime: str) -> JobSpec:
    return JobSpec(
        kind="unlearn",
        job_id=job_id,
        artifact_root=str(t.root),
        dataset_dir=str(t.data),
        base_version=t.version,
        method="gradient_ascent_ewc",
        method_config=dict(METHOD_CONFIG),
        target=Target(kind="category", value="7"),
        evaluate=False,
        runtime=runtime,
    )


@pytest.fixture(scope="module")
def reference(trained: Trained) -> JobResult:
    """The job in process: what the other runtimes must reproduce bit for bit."""
    result = run_job(unlearn_spec(trained, "unlearn-in-process", "in-process"))
    assert result.status == "succeeded", result.error
    return result


def _live_members(pgid: int) -> list[str]:
    """Processes of the group that are not zombies (a zombie waits for init to reap it; it runs nothing)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        state, pg = fields[0], int(fields[2])
        if pg == pgid and state != "Z":
            members.append(stat.parent.name)
    return members


class Relay:
    """A TCP relay on 127.0.0.1 to ``port`` that keeps every byte it carries, both directions (the SuperNodes
    dial it instead of the SuperLink: Flower's HTTP on loopback is plain and uncompressed)."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.captured = bytearray()
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self._sockets: list[socket.socket] = [self._server]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                return
            self._sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                with self._lock:
                    self.captured += data
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()


@dataclass
class Deployment:
    federation: LocalFederation
    relay: Relay
    service_paths: list[str]  # where the service sees the artifact store and the dataset


@pytest.fixture(scope="module")
def deployment(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    views = tmp_path_factory.mktemp("elsewhere")
    (views / "superlink-store").symlink_to(trained.root, target_is_directory=True)  # the SuperLink's view
    nodes: list[dict[str, str | int]] = []
    for i, node in enumerate(read_manifest(trained.data)["nodes"]):
        (views / f"member-{i}").symlink_to(trained.data / node["path"], target_is_directory=True)
        nodes.append({"partition-id": i, "num-partitions": 3, "data-path": str(views / f"member-{i}")})
    fed = LocalFederation(tmp_path_factory.mktemp("flwr"), nodes, artifact_root=views / "superlink-store")
    relay = Relay(fed.port)
    fed.node_superlink = f"127.0.0.1:{relay.port}"
    started = time.monotonic()
    fed.start(timeout=120)
    pgids = list(fed.pids)  # each process leads its own group; superexec and app processes join it
    print(f"\nfederation up in {time.monotonic() - started:.1f} s at {fed.address}")
    paths = {str(p) for root in (trained.root, trained.data) for p in (root, root.resolve())}
    try:
        yield Deployment(fed, relay, sorted(paths))
    finally:
        fed.stop()
        relay.close()
        deadline = time.monotonic() + 20
        while any(_live_members(g) for g in pgids) and time.monotonic() < deadline:
            time.sleep(0.5)
        leftovers = {g: _live_members(g) for g in pgids if _live_members(g)}
        assert not leftovers, f"processes left running: {leftovers}"


@pytest.fixture(scope="module")
def federation(deployment: Deployment) -> LocalFederation:
    return deployment.federation


def settings_of(fed: LocalFederation) -> FlowerSettings:
    """What the service passes down from its settings (COMMONS_FLOWER_SUPERLINK, ...)."""
    return FlowerSettings(superlink=fed.address, poll_interval_s=0.5, job_timeout_s=300)


def test_deployment_engine_runs_the_unlearning_job(
    deployment: Deployment, trained: Trained, reference: JobResult
) -> None:
    federation = deployment.federation
    events: list[ProgressEvent] = []
    started = time.monotonic()
    result = run_job(
        unlearn_spec(trained, "unlearn-deployment", "deployment"),
        events.append,
        flower=settings_of(federation),
    )
    print(f"deployment job: {time.monotonic() - started:.1f} s")
    assert result.status == "succeeded", result.error
    # the same apps over the wire: the same model, byte for byte
    assert result.content_hash == reference.content_hash
    assert result.model_version is not None
    version = ArtifactStore(trained.root).get(result.model_version)  # verifies the files' hashes
    assert version.parent == trained.version
    runtime = result.metrics["runtime"]
    assert runtime["runtime"] == "deployment" and int(runtime["bytes_sent"]) > 0
    phases = {e.phase for e in events}  # forwarded from the ServerApp's process while the run went on
    assert {"ascent", "repair"} <= phases, phases
    assert all(e.job_id == "unlearn-deployment" for e in events)
    # the ServerApp ran in a child of the federation's ServerApp executor, not in a fresh flwr-serverapp process
    assert "ServerApp task" in (federation.workdir / "serverapp.log").read_text()
    # no path of the service's machine in the run config, nor in anything the SuperNodes sent or received
    with DeploymentRunner(federation.address) as runner:
        run_config = runner.control.run_state(int(runtime["flower_run_id"])).run_config
    wire = bytes(deployment.relay.captured)
    assert b"unlearn-deployment" in wire and len(wire) > 100_000  # the control: the job's messages crossed
    for path in deployment.service_paths:
        assert path not in str(run_config), path
        assert path.encode() not in wire, path


def _published(data: Path, out: Path) -> Path:
    """What the operator publishes at the service: the manifest (no canary inserted in members' data) and the
    held-out split; no node directory."""
    out.mkdir(parents=True)
    manifest = json.loads((data / "manifest.json").read_text())
    manifest["canaries"] = [c for c in manifest.get("canaries", []) if not c.get("inserted")]
    (out / "manifest.json").write_text(json.dumps(manifest))
    shutil.copytree(data / "heldout", out / "heldout")
    return out


def _found(wire: bytes, needles: list[bytes]) -> list[bytes]:
    """The needles (16 bytes or longer) that occur in ``wire``: every 16-byte window is hashed at once
    (numpy), and only the windows whose hash is a needle's are compared (thousands of needles, megabytes)."""
    size = len(wire)
    if size < 16:
        return []
    mult = np.uint64(0x9E3779B97F4A7C15)

    def key(first: np.ndarray, second: np.ndarray) -> np.ndarray:
        return np.bitwise_xor(first, second * mult)

    words = np.empty(size - 7, dtype=np.uint64)  # the little-endian uint64 at every byte offset
    for k in range(8):
        count = (size - k) // 8
        words[k::8] = np.frombuffer(wire, dtype="<u8", count=count, offset=k)
    with np.errstate(over="ignore"):
        windows = key(words[:-8], words[8:])
        heads = np.frombuffer(b"".join(n[:16] for n in needles), dtype="<u8").reshape(-1, 2)
        wanted = key(heads[:, 0].copy(), heads[:, 1].copy())
    by_key: dict[int, list[bytes]] = {}
    for k_, n in zip(wanted.tolist(), needles, strict=True):
        by_key.setdefault(k_, []).append(n)
    hits = []
    for pos in np.nonzero(np.isin(windows, wanted))[0].tolist():
        hits += [n for n in by_key[int(windows[pos])] if wire[pos : pos + len(n)] == n]
    return hits


def test_no_member_data_at_the_service_job_and_verification(
    deployment: Deployment, trained: Trained, reference: JobResult, tmp_path: Path
) -> None:
    """The service holds only what the operator publishes (a manifest, the held-out split): a deployment job
    and its verification run, the verifier's per-example queries reach the members' SuperNodes through the
    SuperLink, and no digits row crosses the wire between SuperNodes and SuperLink (all 1,797, as float32,
    float64 and JSON text); the job's parameters do, as a control."""
    service = _published(trained.data, tmp_path / "published")
    assert not any(p.is_dir() and p.name.startswith("node-") for p in service.iterdir())
    settings = settings_of(deployment.federation)
    start = len(deployment.relay.captured)
    result = run_job(
        replace(unlearn_spec(trained, "unlearn-published", "deployment"), dataset_dir=str(service)),
        flower=settings,
    )
    assert result.status == "succeeded", result.error
    assert result.content_hash == reference.content_hash
    assert result.model_version is not None
    spec = VerifySpec(
        artifact_root=str(trained.root),
        dataset_dir=str(service),
        candidate_version=result.model_version,
        tests=[
            {"metric": "forget_accuracy_gap", "comparator": "<=", "threshold": 1.0},
            {"metric": "retained_utility_drop", "comparator": "<=", "threshold": 1.0},
        ],
        target={"kind": "category", "value": "7"},
        metrics=["forget_accuracy_gap", "retained_utility_drop", "mia_auc"],
        probe_examples=32,
        runtime="deployment",
    )
    events: list[VerifyProgress] = []
    started = time.monotonic()
    on_nodes = verify(spec, events.append, flower=settings)
    print(f"verification through the SuperLink: {time.monotonic() - started:.1f} s")
    assert on_nodes.passed, on_nodes.summary
    assert events and events[-1].stage == "done"  # forwarded from the ServerApp's process
    where = {name: m.details.get("computed_at") for name, m in on_nodes.metrics.items() if m.applies}
    assert where["forget_accuracy_gap"] == ["nodes: node-0, node-1, node-2"]
    assert where["retained_utility_drop"] == ["nodes: node-0, node-1, node-2"]
    # the same figures as the verifier with every member's data at hand (in process; the config hashes differ
    # only by the manifests': the published one leaves out the canaries inserted in members' data)
    central = verify(replace(spec, dataset_dir=str(trained.data), runtime="in-process"))
    assert on_nodes.passed == central.passed and set(on_nodes.metrics) == set(central.metrics)
    for name, m in central.metrics.items():
        for key, value in m.values.items():
            got = on_nodes.metrics[name].values[key]
            if isinstance(value, float):
                assert got == pytest.approx(value, rel=1e-5, abs=1e-6), (name, key)
            else:
                assert got == value, (name, key)

    wire = bytes(deployment.relay.captured[start:])
    rows = [r for n in read_manifest(trained.data)["nodes"] for r in _node_rows(trained.data / n["path"])]
    rows += [
        json.loads(line) for f in sorted((trained.data / "heldout").glob("*.jsonl")) for line in f.open()
    ]
    assert len(rows) == 1797
    needles = []
    for r in rows:
        x = np.asarray(r["x"])
        needles += [x.astype(np.float32).tobytes()[:64], x.astype(np.float64).tobytes()[:128]]
        needles.append(json.dumps(r["x"])[:64].encode())
    assert not _found(wire, needles), "a digits row crossed the wire"
    candidate = ArtifactStore(trained.root).get(result.model_version)
    weights = candidate.load_into(make_task(candidate.task, candidate.model_config).build_model(0))
    control = [p.detach().flatten()[:16].numpy().astype(np.float32).tobytes() for p in weights.parameters()]
    assert _found(wire, control), "the control: the job's parameters crossed the wire"


def _node_rows(path: Path) -> list[dict[str, object]]:
    data = load_node_data(path)
    return list(data.train) + list(data.validation)


def test_deployment_run_is_cancelled_through_the_control_api(
    federation: LocalFederation, trained: Trained
) -> None:
    cancel = threading.Event()
    cancel.set()  # StopRun at the first poll
    started = time.monotonic()
    result = run_job(
        unlearn_spec(trained, "unlearn-cancelled", "deployment"),
        cancel=cancel,
        flower=settings_of(federation),
    )
    assert result.status == "cancelled", result.error
    assert result.model_version is None
    assert time.monotonic() - started < 60
    with DeploymentRunner(federation.address) as runner:
        nodes = runner.control.list_nodes()
    assert sum(n.status == "online" for n in nodes) == 3  # the federation is still healthy


def test_only_the_serverapp_executor_is_handed_runs(federation: LocalFederation) -> None:
    """The SuperLink runs with a SuperExec auth secret: a ServerApp task (its token, the job spec) goes only to
    an executor that signs its AcquireTask with it, not to any process that reaches the port."""
    from flwr.proto.runtime_pb2 import AcquireTaskRequest
    from flwr.supercore.constant import TaskType
    from flwr.supercore.interceptors import RuntimeVersionHttpInterceptor
    from flwr.supercore.runtime import RuntimeHttpClient

    client = RuntimeHttpClient.from_server_address(  # no retries: Flower's would SIGINT us on a 401
        server_address=federation.address,
        insecure=True,
        root_certificates=None,
        interceptors=[RuntimeVersionHttpInterceptor(component_name="SuperExec")],
    )
    try:
        with pytest.raises(httpx.HTTPStatusError) as refused:
            client.AcquireTask(AcquireTaskRequest(supported_task_types=[TaskType.SERVER_APP.value]))
        assert refused.value.response.status_code == 401, refused.value.response.text
    finally:
        client.close()


def test_deployment_reports_refused_and_failed_runs(federation: LocalFederation) -> None:
    with DeploymentRunner(federation.address, poll_interval=0.5) as runner:
        with pytest.raises(FederationError, match="refused start-run"):
            runner.submit({"no-such-key": 1})  # Flower accepts only keys the app project declares
        with pytest.raises(RunFailed) as failed:
            runner.run({"job-spec": "{}"}, timeout=120)  # the ServerApp raises: not a JobSpec
    assert failed.value.state.sub_status == "failed"
    assert "ServerApp" in failed.value.state.details


def test_simulation_engine_runs_the_same_job(trained: Trained, reference: JobResult) -> None:
    events: list[ProgressEvent] = []
    started = time.monotonic()
    result = run_job(unlearn_spec(trained, "unlearn-simulation", "simulation"), events.append)
    print(f"simulation job: {time.monotonic() - started:.1f} s")
    assert result.status == "succeeded", result.error
    assert result.content_hash == reference.content_hash
    assert result.metrics["runtime"]["runtime"] == "simulation"
    assert {"ascent", "repair"} <= {e.phase for e in events}


NODE_TIMEOUT = 5.0
HEARTBEAT_WINDOW = 60.0  # Flower 1.41: a SuperNode is offline 2 x 30 s after its last heartbeat


def test_a_supernode_killed_mid_job_fails_the_job_naming_its_partition(
    federation: LocalFederation, trained: Trained
) -> None:
    """Runs after the other deployment tests: it leaves the federation a node short."""
    pid = federation.pid("supernode-1")
    killed: list[float] = []

    def kill_after_discovery(event: ProgressEvent) -> None:
        if event.phase == "info" and not killed:
            os.kill(pid, signal.SIGKILL)
            killed.append(time.monotonic())

    settings = replace(settings_of(federation), node_timeout_s=NODE_TIMEOUT)
    result = run_job(
        unlearn_spec(trained, "unlearn-node-killed", "deployment"), kill_after_discovery, flower=settings
    )
    took = time.monotonic() - killed[0]
    print(f"killed node: job failed {took:.1f} s after the kill: {result.error}")
    assert result.status == "failed" and result.model_version is None
    assert result.error is not None
    assert "partition 1 (node-1) stopped answering" in result.error, result.error
    assert f"did not come back within {NODE_TIMEOUT:g} s" in result.error
    assert took < HEARTBEAT_WINDOW + NODE_TIMEOUT + 20
