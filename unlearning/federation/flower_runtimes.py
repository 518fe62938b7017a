"""The runtimes of ``run_job`` (registered by :func:`unlearning.federation.register_runtimes`): a JobSpec in,
a JobResult out. ``in-process`` (the default, no Ray) runs the unmodified apps on a LocalGrid in the caller's
thread; ``simulation`` and ``deployment`` run the same apps by Flower's simulation engine (a subprocess per
job) or by a SuperLink and its SuperNodes (the Deployment Engine).

Both hand the job to the module-level ServerApp as run config ``job-spec`` (the JobSpec as JSON). Simulation
runs on this machine: its spec carries absolute paths, and run config ``dataset-dir`` tells the virtual
SuperNodes where the dataset is. Deployment sends no path of this machine anywhere (:func:`deployment_spec`):
the ServerApp finds the artifact store through its own configured root (``COMMONS_SERVERAPP_ARTIFACT_ROOT``
in the SuperLink's environment, or run config ``artifact-root``) and each SuperNode its data through its own
node config (``data-path``). The ServerApp writes the JobResult to ``<artifact_root>/jobs/<job_id>/result.json``
(and the model version into the artifact store); these runtimes read it from there once Flower says the run
completed.

Every runtime hands the job the dataset's node names (the manifest's, by partition id) and the timeouts of
the settings (:func:`prepared`): the job must reach every node and fails naming any it cannot (see
unlearning.federation.server). Progress events, when the ServerApp writes them (one JSON object a line, in
``<artifact_root>/jobs/<job_id>/progress.jsonl``), are forwarded to the progress callback as they appear.

Settings are a :class:`FlowerSettings`, passed down by the caller (``run_job(..., flower=...)``; the service
builds it from its own settings, governance/settings.py). The library used on its own (its CLI, the benchmarks)
reads them from the environment instead (:meth:`FlowerSettings.from_env`):

| variable | default | meaning |
|---|---|---|
| ``COMMONS_FLOWER_SUPERLINK`` | ``127.0.0.1:9093`` | the SuperLink's address (host:port) for ``deployment`` |
| ``COMMONS_FLOWER_ROOT_CERTIFICATES`` | unset | CA bundle (PEM path) to verify the SuperLink over HTTPS |
| ``COMMONS_FLOWER_INSECURE`` | ``1`` unless root certificates are set | plain HTTP to the SuperLink |
| ``COMMONS_FLOWER_JOB_TIMEOUT`` | ``2700`` | seconds a whole simulation or deployment run may take before it is stopped |
| ``COMMONS_FLOWER_EXCHANGE_TIMEOUT`` | ``300`` | seconds one message exchange may take before its missing replies are re-sent |
| ``COMMONS_FLOWER_NODE_TIMEOUT`` | ``120`` | seconds a job waits for a missing or failed node to (re)appear before it fails |
| ``COMMONS_FLOWER_POLL_INTERVAL`` | ``1.0`` | seconds between two run-status polls |
| ``COMMONS_SIMULATION_NUM_CPUS`` | min(cores, nodes) | CPUs Ray may use for ClientApp actors (one each) |
| ``COMMONS_NODE_DATA_DIR`` | unset: beside the manifest | ``in-process`` and ``simulation``: the folder that holds each node's own folder (``<dir>/<the manifest's node path>``, given to the node as ``data-path`` like a SuperNode's), so that the dataset directory needs only the published manifest |
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from unlearning.jobs import JobResult, JobSpec, ProgressCallback, ProgressEvent

JOB_SPEC_KEY = "job-spec"


def _env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class FlowerSettings:
    """Where the SuperLink is and how long to wait (see the module docstring for the variables)."""

    superlink: str = "127.0.0.1:9093"
    root_certificates: str | None = None
    insecure: bool = True
    job_timeout_s: float = 2700.0
    poll_interval_s: float = 1.0
    simulation_num_cpus: int | None = None
    exchange_timeout_s: float = 300.0
    node_timeout_s: float = 120.0
    node_data_dir: str | None = None  # in-process, simulation: a node reads <this>/<its manifest path>

    @classmethod
    def from_env(cls) -> FlowerSettings:
        certs = os.environ.get("COMMONS_FLOWER_ROOT_CERTIFICATES") or None
        cpus = os.environ.get("COMMONS_SIMULATION_NUM_CPUS")
        return cls(
            superlink=os.environ.get("COMMONS_FLOWER_SUPERLINK", cls.superlink),
            root_certificates=certs,
            insecure=_env_flag("COMMONS_FLOWER_INSECURE", certs is None),
            job_timeout_s=float(os.environ.get("COMMONS_FLOWER_JOB_TIMEOUT", cls.job_timeout_s)),
            poll_interval_s=float(os.environ.get("COMMONS_FLOWER_POLL_INTERVAL", cls.poll_interval_s)),
            simulation_num_cpus=int(cpus) if cpus else None,
            exchange_timeout_s=float(
                os.environ.get("COMMONS_FLOWER_EXCHANGE_TIMEOUT", cls.exchange_timeout_s)
            ),
            node_timeout_s=float(os.environ.get("COMMONS_FLOWER_NODE_TIMEOUT", cls.node_timeout_s)),
            node_data_dir=os.environ.get("COMMONS_NODE_DATA_DIR") or None,
        )


def prepared(spec: JobSpec, settings: FlowerSettings) -> JobSpec:
    """The spec a runtime hands to the ServerApp: the dataset's node names and, for a training job, its data
    sources (from its manifest, when this machine has it; run_job has checked it does) and the settings'
    timeouts filled in where the spec leaves them open."""
    from unlearning.federation.server import manifest_names, manifest_sources

    names = spec.node_names if spec.node_names is not None else manifest_names(spec.dataset_dir)
    sources = spec.dataset_sources
    if sources is None and spec.kind == "train":  # what a trained version records it trained on
        by_pid = manifest_sources(spec.dataset_dir)
        sources = [by_pid[p] for p in sorted(by_pid)] if by_pid is not None else None
    return replace(
        spec,
        node_names=names,
        dataset_sources=sources,
        timeout_s=spec.timeout_s if spec.timeout_s is not None else settings.exchange_timeout_s,
        node_timeout_s=spec.node_timeout_s if spec.node_timeout_s is not None else settings.node_timeout_s,
    )


def remote_spec(spec: JobSpec) -> JobSpec:
    """The spec as a ServerApp in another process on this machine (another working directory) must see it:
    absolute paths (the simulation runtime)."""
    return replace(
        spec,
        artifact_root=str(Path(spec.artifact_root).resolve()),
        dataset_dir=str(Path(spec.dataset_dir).resolve()),
    )


def deployment_spec(spec: JobSpec) -> JobSpec:
    """The spec as it travels to the SuperLink (and, in the run config, to every SuperNode): no path of this
    machine. The ServerApp reaches the artifact store through its own configured root and each node its data
    through its own node config; the node names tell the ServerApp which nodes it must reach."""
    return replace(spec, artifact_root="", dataset_dir="")


def run_config_for(spec: JobSpec, **extra: str) -> dict[str, str]:
    return {JOB_SPEC_KEY: spec.to_json(), **extra}


class ProgressTail:
    """Forwards the lines a ServerApp appends to ``progress.jsonl`` to a progress callback."""

    def __init__(self, path: Path, progress: ProgressCallback | None) -> None:
        self.path = path
        self.progress = progress
        self._offset = 0

    def poll(self) -> None:
        if self.progress is None or not self.path.exists():
            return
        with self.path.open("rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits for the next poll
        self._offset += len(complete)
        for line in complete.splitlines():
            with contextlib.suppress(ValueError, TypeError, KeyError):
                self.progress(ProgressEvent(**json.loads(line)))


def _prepare(spec: JobSpec) -> tuple[Path, Path]:
    """Remove what an earlier attempt of the same job id left (a retried job must not read a stale result)."""
    from unlearning.federation.apps import progress_path, result_path

    out, prog = result_path(spec.artifact_root, spec.job_id), progress_path(spec.artifact_root, spec.job_id)
    out.unlink(missing_ok=True)
    prog.unlink(missing_ok=True)
    return out, prog


def _read_result(spec: JobSpec, path: Path, extra: Mapping[str, Any]) -> JobResult:
    if not path.exists():
        return _ended(spec, "failed", f"the Flower run completed but wrote no result at {path}")
    result = JobResult.from_dict(json.loads(path.read_text()))
    result.metrics.setdefault("runtime", {}).update(extra)
    return result


def _ended(spec: JobSpec, status: str, error: str | None) -> JobResult:
    return JobResult(
        job_id=spec.job_id,
        kind=spec.kind,
        status=status,
        parent_version=spec.base_version,
        method=spec.method if spec.kind == "unlearn" else None,
        target=json.loads(spec.target.to_json()) if spec.target is not None else None,
        error=error,
    )


def _cancelled(cancel: threading.Event | None) -> Callable[[], bool]:
    return (lambda: False) if cancel is None else cancel.is_set


def run_in_process(
    spec: JobSpec,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    settings: FlowerSettings | None = None,
) -> JobResult:
    """The ``in-process`` runtime: the unmodified ServerApp and ClientApp on a :class:`LocalGrid` in this
    thread, each node reading its own folder (``settings.node_data_dir``, else beside the manifest)."""
    from flwr.app import Context, RecordDict
    from flwr.common.constant import SUPERLINK_NODE_ID

    from unlearning.federation.apps import build_client_app, build_server_app
    from unlearning.federation.local_grid import LOCAL_RUN_ID, LocalGrid

    settings = settings or FlowerSettings.from_env()
    spec = prepared(spec, settings)
    node_root = Path(settings.node_data_dir) if settings.node_data_dir else None
    grid = LocalGrid.for_dataset(build_client_app(), Path(spec.dataset_dir), node_root=node_root)
    sink: list[JobResult] = []
    app = build_server_app(spec, progress=progress, cancel=cancel, sink=sink)
    app(
        grid,
        Context(
            run_id=LOCAL_RUN_ID, node_id=SUPERLINK_NODE_ID, node_config={}, state=RecordDict(), run_config={}
        ),
    )
    return sink[0]


def run_in_simulation(
    spec: JobSpec,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    settings: FlowerSettings | None = None,
) -> JobResult:
    """The ``simulation`` runtime: Flower's simulation engine (Ray) in a subprocess, one virtual SuperNode
    per node of the dataset (node ``k`` gets ``partition-id=k``)."""
    from unlearning.data import read_manifest
    from unlearning.federation.simulation import SimulationFailed, run_simulation_job

    settings = settings or FlowerSettings.from_env()
    remote = remote_spec(prepared(spec, settings))
    num_nodes = len(read_manifest(Path(remote.dataset_dir))["nodes"])
    out, prog = _prepare(remote)
    tail = ProgressTail(prog, progress)
    is_cancelled = _cancelled(cancel)

    def check_cancel() -> bool:
        tail.poll()
        return is_cancelled()

    try:
        outcome = run_simulation_job(
            run_config_for(remote, **{"dataset-dir": remote.dataset_dir, **_node_data_dir(settings)}),
            num_nodes=num_nodes,
            num_cpus=settings.simulation_num_cpus,
            torch_threads=spec.num_threads,
            timeout=settings.job_timeout_s,
            cancel=check_cancel,
        )
    except SimulationFailed as exc:
        tail.poll()
        if exc.cancelled:
            return _ended(spec, "cancelled", None)
        return _ended(spec, "failed", f"simulation failed: {exc.reason}")
    tail.poll()
    return _read_result(remote, out, {"runtime": "simulation", "wall_s": round(outcome.wall_s, 3)})


def _node_data_dir(settings: FlowerSettings) -> dict[str, str]:
    """Run config ``node-data-dir`` (absolute) where the nodes' folders live apart from the manifest."""
    return {"node-data-dir": str(Path(settings.node_data_dir).resolve())} if settings.node_data_dir else {}


def run_on_superlink(
    spec: JobSpec,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    settings: FlowerSettings | None = None,
) -> JobResult:
    """The ``deployment`` runtime: submit the job to the SuperLink (Control API StartRun), poll it until it
    finishes (StopRun on cancel or timeout) and read the result the ServerApp wrote."""
    from unlearning.federation.deployment import DeploymentRunner, FederationError, RunFailed

    settings = settings or FlowerSettings.from_env()
    job = prepared(spec, settings)
    remote = remote_spec(job)  # where this machine reads the result and the progress
    out, prog = _prepare(remote)
    tail = ProgressTail(prog, progress)
    is_cancelled = _cancelled(cancel)

    def check_cancel() -> bool:
        tail.poll()
        return is_cancelled()

    try:
        with DeploymentRunner(
            settings.superlink,
            insecure=settings.insecure,
            root_certificates=settings.root_certificates,
            poll_interval=settings.poll_interval_s,
        ) as runner:
            run_id = runner.submit(run_config_for(deployment_spec(job)))
            state = runner.wait(run_id, timeout=settings.job_timeout_s, cancel=check_cancel)
    except RunFailed as exc:
        tail.poll()
        if exc.state.sub_status == "stopped" and is_cancelled():
            return _ended(spec, "cancelled", None)
        return _ended(
            spec, "failed", f"Flower run {exc.state.run_id} {exc.state.sub_status}: {exc.state.details}"
        )
    except FederationError as exc:
        return _ended(spec, "failed", str(exc))
    tail.poll()
    return _read_result(
        remote,
        out,
        {
            "runtime": "deployment",
            "flower_run_id": str(state.run_id),
            "bytes_sent": state.bytes_sent,
            "bytes_recv": state.bytes_recv,
            "clientapp_s": round(state.clientapp_seconds, 3),
        },
    )
