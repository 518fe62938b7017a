"""The Flower apps (Message API). Thin adapters: the ClientApp unpacks a message, calls the node-side
function in :mod:`unlearning.federation.node`, packs the reply; the ServerApp runs
:func:`unlearning.federation.server.execute_job` on whatever ``Grid`` the runtime gives it.

- :func:`build_client_app` / :func:`build_server_app` are factories (tests and run_job pass a job spec,
  a progress callback, a cancel event and a result sink directly).
- ``client_app`` and ``server_app`` are module-level apps for ``flwr run`` / the simulation and deployment
  runtimes. The ServerApp reads its job from ``context.run_config["job-spec"]`` (a JobSpec as JSON) and
  writes the result to ``<artifact_root>/jobs/<job_id>/result.json`` (the model version itself goes into
  the artifact store). ClientApps read their data location from ``context.node_config`` (``data-path``, or
  ``dataset-dir`` + ``partition-id``; see node.py); in a simulation, which has no node config of its own,
  from run config ``dataset-dir`` (and ``node-data-dir``, where the nodes' folders live apart from it).

Run-config keys: ``job-spec`` (str, JSON), optional ``artifact-root`` and ``dataset-dir`` (str) to override
the spec's paths on the server side. The ServerApp finds the artifact store at (first that is set) run config
``artifact-root``, the environment's ``COMMONS_SERVERAPP_ARTIFACT_ROOT`` (set where the SuperLink runs; the
deployment runtime sends a spec without paths), the spec's ``artifact_root``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from torch import Tensor

from unlearning.federation import node
from unlearning.federation import protocol as P
from unlearning.federation.deployment import ARTIFACT_ROOT_ENV
from unlearning.federation.verify_runtime import VERIFY_SPEC_KEY
from unlearning.jobs import JobResult, JobSpec, ProgressCallback, ProgressEvent

logging.getLogger("flwr").setLevel(logging.WARNING)


def _node_config(context: Context) -> dict[str, Any]:
    """The node's own config; a simulation's virtual SuperNodes (partition ids only) take the dataset from
    run config ``dataset-dir``."""
    config: dict[str, Any] = dict(context.node_config)
    hint = context.run_config.get("dataset-dir")
    if hint and "data-path" not in config and "dataset-dir" not in config:
        config["dataset-dir"] = str(hint)
        if context.run_config.get("node-data-dir"):  # each node's folder: <node-data-dir>/<its manifest path>
            config["node-data-dir"] = str(context.run_config["node-data-dir"])
    return config


def _extra_arrays(msg: Message) -> dict[str, dict[str, Tensor]]:
    return {k: P.from_record(v) for k, v in msg.content.array_records.items() if k != P.ARRAYS}


def build_client_app() -> ClientApp:
    app = ClientApp(mods=[P.unbundle_mod])

    @app.query("info")
    def info(msg: Message, context: Context) -> Message:
        metrics = node.info(P.config_of(msg), _node_config(context))
        return Message(RecordDict({P.METRICS: P.metric_record(metrics)}), reply_to=msg)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        arrays, metrics = node.train(
            P.config_of(msg),
            _node_config(context),
            P.from_record(P.arrays_of(msg)),
            _extra_arrays(msg),
        )
        return Message(
            RecordDict({P.ARRAYS: P.to_record(arrays), P.METRICS: P.metric_record(metrics)}), reply_to=msg
        )

    @app.train("unlearn")
    def unlearn(msg: Message, context: Context) -> Message:
        arrays, metrics = node.unlearn(
            P.config_of(msg),
            _node_config(context),
            P.from_record(P.arrays_of(msg)),
            _extra_arrays(msg),
        )
        return Message(
            RecordDict({P.ARRAYS: P.to_record(arrays), P.METRICS: P.metric_record(metrics)}), reply_to=msg
        )

    @app.query("fisher")
    def fisher(msg: Message, context: Context) -> Message:
        f, metrics = node.fisher(P.config_of(msg), _node_config(context), P.from_record(P.arrays_of(msg)))
        return Message(
            RecordDict({P.FISHER_ARRAYS: P.to_record(f), P.METRICS: P.metric_record(metrics)}), reply_to=msg
        )

    @app.query("probe")
    def probe(msg: Message, context: Context) -> Message:
        metrics = node.probe(P.config_of(msg), _node_config(context))
        return Message(RecordDict({P.METRICS: P.metric_record(metrics)}), reply_to=msg)

    @app.query("score")
    def score(msg: Message, context: Context) -> Message:
        scores, metrics = node.score(P.config_of(msg), _node_config(context), P.models_of(msg))
        records = {P.METRICS: P.metric_record(metrics)}
        return Message(RecordDict({P.SCORES: P.to_record(scores), **records}), reply_to=msg)

    @app.query("relearn")
    def relearn(msg: Message, context: Context) -> Message:
        models, metrics = node.relearn(P.config_of(msg), _node_config(context), P.models_of(msg))
        records: dict[str, Any] = {P.MODEL_PREFIX + k: P.to_record(v) for k, v in models.items()}
        return Message(RecordDict({**records, P.METRICS: P.metric_record(metrics)}), reply_to=msg)

    @app.query("groups")
    def groups(msg: Message, context: Context) -> Message:
        from unlearning.evaluation import node_groups

        metrics, names = node_groups(P.config_of(msg), _node_config(context), P.models_of(msg))
        named = ConfigRecord({"groups": json.dumps(names)})
        return Message(RecordDict({P.METRICS: P.metric_record(metrics), P.CONFIG: named}), reply_to=msg)

    @app.query("utility")
    def utility(msg: Message, context: Context) -> Message:
        metrics = node.utility(P.config_of(msg), _node_config(context), P.models_of(msg))
        return Message(RecordDict({P.METRICS: P.metric_record(metrics)}), reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        metrics = node.evaluate(P.config_of(msg), _node_config(context), P.from_record(P.arrays_of(msg)))
        return Message(RecordDict({P.METRICS: P.metric_record(metrics)}), reply_to=msg)

    return app


def result_path(artifact_root: str | Path, job_id: str) -> Path:
    return Path(artifact_root) / "jobs" / job_id / "result.json"


def progress_path(artifact_root: str | Path, job_id: str) -> Path:
    """Progress events of a ServerApp run by Flower in another process, one JSON object a line (the
    simulation and deployment runtimes forward them to run_job's progress callback)."""
    return Path(artifact_root) / "jobs" / job_id / "progress.jsonl"


def _progress_to_file(path: Path) -> ProgressCallback:
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(event: ProgressEvent) -> None:
        with path.open("a") as f:
            f.write(json.dumps(asdict(event)) + "\n")

    return write


def _artifact_root(context: Context, spec_root: str) -> str:
    """The artifact store as this ServerApp's machine sees it: run config ``artifact-root``, else the
    environment's ``COMMONS_SERVERAPP_ARTIFACT_ROOT``, else the spec's (a simulation's absolute path)."""
    root = str(context.run_config.get("artifact-root") or os.environ.get(ARTIFACT_ROOT_ENV) or spec_root)
    if not root:
        raise ValueError(
            f"no artifact store: start the SuperLink with {ARTIFACT_ROOT_ENV}=<the store's root as "
            "this machine sees it>, or set run config artifact-root"
        )
    return root


def build_server_app(
    spec: JobSpec | None = None,
    *,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    sink: list[JobResult] | None = None,
) -> ServerApp:
    """A ServerApp running ``spec`` (or the ``job-spec`` of the run config when ``spec`` is None)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        from unlearning.federation.server import execute_job

        job = spec
        if job is None and context.run_config.get(VERIFY_SPEC_KEY):  # a verification, not a job
            from unlearning.federation.verify_runtime import serve_verification

            serve_verification(grid, dict(context.run_config), _artifact_root(context, ""))
            return
        if job is None:
            if "job-spec" not in context.run_config:
                raise ValueError("run config has no 'job-spec' (a JobSpec as JSON)")
            job = JobSpec.from_json(str(context.run_config["job-spec"]))
            job.artifact_root = _artifact_root(context, job.artifact_root)
            if context.run_config.get("dataset-dir"):
                job.dataset_dir = str(context.run_config["dataset-dir"])
        events = progress
        if events is None and spec is None:  # run by Flower from run config: report progress through a file
            events = _progress_to_file(progress_path(job.artifact_root, job.job_id))
        result = execute_job(grid, job, events, cancel)
        out = result_path(job.artifact_root, job.job_id)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result.to_dict(), indent=2, sort_keys=True) + "\n")
        if sink is not None:
            sink.append(result)

    return app


client_app = build_client_app()
server_app = build_server_app()

__all__ = [
    "ArrayRecord",
    "build_client_app",
    "build_server_app",
    "client_app",
    "progress_path",
    "result_path",
    "server_app",
]
