"""The one entry point the service calls into the ML runtime (with :mod:`unlearning.contract` for the data that
crosses): run a job (:func:`run_job`), verify a model (:func:`verify`), create a model or a dataset
(:func:`init_model`, :func:`init_dataset`), read the artifact store (:func:`stored_version`,
:func:`discard_job_versions`) and render a report (:func:`render_report_html`).

Importing this module loads neither torch nor Flower (each function loads what it needs), so the web process
can import it for reading the store and rendering reports.
"""

from __future__ import annotations

import threading
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unlearning.artifacts import (
    ArtifactError,
    ArtifactIntegrityError,
    ArtifactNotFound,
    ArtifactStore,
    ModelVersion,
)
from unlearning.evaluation import (
    EvaluationSpec,
    ProbeSpecError,
    check_probe_spec,
    failing_probes,
)
from unlearning.federation.flower_runtimes import FlowerSettings
from unlearning.footprint import footprint
from unlearning.jobs import JobResult, JobSpec, JobSpecError, ProgressCallback, ProgressEvent
from unlearning.measurability import dataset_facts as dataset_facts  # what a proposal's tests can measure
from unlearning.verification.spec import (
    RegressionCheck,
    VerificationReport,
    VerifyProgressCallback,
    VerifySpec,
)

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "ArtifactError",
    "ArtifactIntegrityError",
    "ArtifactNotFound",
    "EvaluationSpec",
    "FlowerSettings",
    "JobResult",
    "JobSpec",
    "JobSpecError",
    "ModelVersion",
    "ProbeSpecError",
    "ProgressEvent",
    "RegressionCheck",
    "VerificationReport",
    "VerifySpec",
    "check_probe_spec",
    "dataset_sources",
    "discard_job_versions",
    "evaluate_candidate",
    "failing_probes",
    "footprint",
    "init_dataset",
    "init_model",
    "protected_commitment",
    "publish_dataset",
    "published_layout",
    "render_report_html",
    "report_html_page",
    "run_job",
    "store_report_html",
    "stored_version",
    "verify",
]


def run_job(
    spec: JobSpec,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    flower: FlowerSettings | None = None,
) -> JobResult:
    """Run a train or unlearn job and return its result (blocking; call it from a worker thread).

    ``progress`` is called after every round of every phase with a :class:`~unlearning.jobs.ProgressEvent`;
    ``cancel`` is checked at every round boundary (a cancelled job returns ``status="cancelled"`` and writes
    no model version). ``flower`` says where the SuperLink is and how long a run may take (the
    ``simulation`` and ``deployment`` runtimes; None: from the environment, see
    :class:`~unlearning.federation.flower_runtimes.FlowerSettings`). An invalid spec raises :class:`~unlearning.jobs.JobSpecError`; failures while running
    return ``status="failed"`` with ``error``. See :mod:`unlearning.jobs` for the fields.
    """
    from unlearning.federation import register_runtimes
    from unlearning.federation.runtimes import RUNTIMES

    register_runtimes()
    spec.validate()
    try:
        runtime = RUNTIMES[spec.runtime]
    except KeyError:
        raise JobSpecError(
            f"unknown runtime {spec.runtime!r}; available: {', '.join(sorted(RUNTIMES))}"
        ) from None
    return runtime(spec, progress, cancel, flower)


def init_model(
    artifact_root: str | Path,
    task: str,
    *,
    model_config: dict[str, Any] | None = None,
    size: str = "default",
    seed: int = 0,
    job_id: str = "init",
) -> ModelVersion:
    """Register a freshly initialised model (the root of a lineage) for ``task`` and return its version.

    ``task`` is ``digits``, ``community-lm``, or a local transformers causal-LM directory (bring your own:
    its config, weights (if any) and tokenizer are taken from the directory; nothing is downloaded).
    """
    from unlearning.tasks import TASKS, make_task

    store = ArtifactStore(artifact_root)
    path = Path(task)
    tokenizer: Any = None
    if task not in TASKS and path.is_dir():
        from transformers import AutoConfig, AutoModelForCausalLM

        hf = AutoConfig.from_pretrained(str(path), local_files_only=True).to_dict()
        cfg = {
            "hf_config": hf,
            "max_length": int((model_config or {}).get("max_length", 128)),
            "tokenizer": str(path),
        }
        t = make_task("causal-lm", cfg)
        has_weights = any(path.glob("*.safetensors")) or any(path.glob("*.bin"))
        if has_weights:
            model: nn.Module = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True)
        else:
            model = t.build_model(seed)
        tokenizer = getattr(t, "tokenizer", None)
        name = "causal-lm"
    else:
        if task not in TASKS or task == "causal-lm":
            raise ValueError(f"unknown task {task!r}: use digits, community-lm, or a local model directory")
        cfg = model_config or TASKS[task].default_model_config(size)
        t = make_task(task, cfg)
        model = t.build_model(seed)
        tokenizer = getattr(t, "tokenizer", None)
        name = task
    return store.put(
        model=model,
        task=name,
        model_config=cfg,
        seed=seed,
        parent=None,
        job_id=job_id,
        tokenizer=tokenizer,
        training={"kind": "init", "rounds": 0, "excluded": []},
    )


def init_dataset(task: str, out_dir: str | Path, **options: Any) -> dict[str, Any]:
    """Generate a reference task's dataset (``digits`` or ``community-lm``) into ``out_dir``; returns the
    manifest. Options are the generator's keyword arguments (nodes, seed, partition, noise, ...)."""
    from unlearning.tasks.community_lm import generate_community_corpus
    from unlearning.tasks.digits import generate_digits

    if task == "digits":
        return generate_digits(Path(out_dir), **options)
    if task == "community-lm":
        return generate_community_corpus(Path(out_dir), **options)
    raise ValueError(f"no generator for task {task!r}; use digits or community-lm (or bring your own JSONL)")


def publish_dataset(dataset: str | Path, service_dir: str | Path, node_root: str | Path) -> dict[str, Any]:
    """Lay ``dataset`` out as a federation holds it: each node's folder under ``node_root``
    (``<node_root>/<node>/``, a member's machine: its SuperNode's ``data-path``, or the in-process runtime's
    ``FlowerSettings.node_data_dir``) and in ``service_dir`` only what the operator publishes (the manifest
    without the canaries inserted in members' data, and the held-out split). Returns the published manifest;
    see :func:`unlearning.data.publish`."""
    from unlearning.data import publish

    return publish(Path(dataset), Path(service_dir), Path(node_root))


def published_layout(
    service_dir: str | Path, node_root: str | Path, manifest: dict[str, Any]
) -> dict[str, Any] | None:
    """The published manifest where ``manifest``'s dataset is already laid out as :func:`publish_dataset`
    does (the same manifest published in ``service_dir``, every node file under ``node_root`` with its
    sha256), else None."""
    from unlearning.data import laid_out, read_manifest

    if not laid_out(Path(service_dir), Path(node_root), manifest):
        return None
    return read_manifest(Path(service_dir))


def dataset_sources(dataset_dir: str | Path) -> list[dict[str, str]] | None:
    """The data sources a dataset's manifest lists, ``[{"node", "name" (``<node>/<source>``), "file",
    "sha256"}]`` (the published manifest only, no record), or None where ``dataset_dir`` holds no manifest."""
    from unlearning.data import MANIFEST, read_manifest

    if not (Path(dataset_dir) / MANIFEST).is_file():
        return None
    return [
        {"node": str(n["node"]), "name": str(s["name"]), "file": str(s["file"]), "sha256": str(s["sha256"])}
        for n in read_manifest(Path(dataset_dir))["nodes"]
        for s in n["sources"]
    ]


def protected_commitment(path: str | Path) -> dict[str, Any]:
    """The commitment to a data source owner's protected strings, ``{"count", "sha256"}``, computed where the
    file is (its salt is read from, or created as, ``protected.salt`` beside it); neither the strings nor the
    salt are in it (:mod:`unlearning.verification.protected`). Raises ValueError on a malformed file."""
    from unlearning.verification.protected import commitment_of_file

    return commitment_of_file(Path(path), create_salt=True)


def verify(
    spec: VerifySpec, progress: VerifyProgressCallback | None = None, flower: FlowerSettings | None = None
) -> VerificationReport:
    """Verify a candidate model version against its acceptance tests (see :mod:`unlearning.verification`):
    the per-example work runs on the nodes; only scores and aggregates come back.

    ``spec.runtime`` says how the nodes are reached: ``in-process`` (the dataset directory's node folders,
    on this machine) or ``deployment``: the verification runs as a Flower run on the SuperLink of
    ``flower`` (None: from the environment), so that the dataset directory here needs only what the operator
    publishes (the manifest, and the held-out split when there is one); see
    :mod:`unlearning.federation.verify_runtime`. In process, each node reads its own folder under
    ``flower.node_data_dir`` when set (as in :func:`run_job`), so that there too the dataset directory needs
    only the published manifest and held-out split."""
    if spec.runtime == "deployment":
        from unlearning.federation.verify_runtime import verify_on_superlink

        return verify_on_superlink(spec, progress, flower)
    from unlearning.verification import verify as _verify

    return _verify(spec, progress, grid=_in_process_grid(spec.runtime, spec.dataset_dir, flower))


def _in_process_grid(runtime: str, dataset_dir: str, flower: FlowerSettings | None) -> Any:
    """The in-process nodes over their own folders under ``node_data_dir`` (None: the default grid, nodes'
    folders beside the manifest)."""
    node_root = (flower or FlowerSettings.from_env()).node_data_dir
    if runtime != "in-process" or not node_root or not (Path(dataset_dir) / "manifest.json").is_file():
        return None  # (without a manifest there is no federation: the callers say so)
    from unlearning.verification.nodes import local_grid

    return local_grid(dataset_dir, node_root)


def evaluate_candidate(spec: EvaluationSpec, flower: FlowerSettings | None = None) -> dict[str, Any]:
    """Community evaluation of a candidate version (see :mod:`unlearning.evaluation`): the nodes evaluate it
    and the released version on their local validation data, per node and per group (only counts and sums
    come back), and the members' accepted probes run on it; plain JSON-able data. In process, each node
    reads its own folder under ``flower.node_data_dir`` when set (as in :func:`run_job`)."""
    from unlearning.evaluation import evaluate_candidate as _evaluate

    return _evaluate(spec, _in_process_grid(spec.runtime, spec.dataset_dir, flower))


def render_report_html(report: VerificationReport | dict[str, Any]) -> str:
    """A verification report as one self-contained HTML page (inline SVG plots, no scripts)."""
    from unlearning.verification.html import render_html

    return render_html(report)


def store_report_html(artifact_root: str | Path, report: VerificationReport | dict[str, Any]) -> Path:
    """Render a report's page once and keep it in the artifact store (``reports/<hash>.html``, keyed by the
    report's content without its signature), for :func:`report_html_page` to serve as stored."""
    from unlearning.verification.pages import store_page

    return store_page(artifact_root, report)


def report_html_page(artifact_root: str | Path | None, report: VerificationReport | dict[str, Any]) -> str:
    """A report's stored page (:func:`store_report_html`), else the page rendered now; never writes."""
    from unlearning.verification.pages import report_page

    return report_page(artifact_root, report)


def stored_version(artifact_root: str | Path, version: str) -> ModelVersion:
    """A model version of the store, its files re-hashed against its manifest; raises
    :class:`ArtifactNotFound` or :class:`ArtifactIntegrityError`."""
    return ArtifactStore(artifact_root).get(version)


def discard_job_versions(
    artifact_root: str | Path, job_ids: set[str], keep: Collection[str] = ()
) -> list[str]:
    """Delete the versions written by ``job_ids`` (dead attempts) and by their reference retrainings, except
    those in ``keep`` (the versions something refers to); returns those removed."""
    return ArtifactStore(artifact_root).discard_jobs(job_ids, keep)
