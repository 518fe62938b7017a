"""The job interface the service calls: :class:`JobSpec` in, :class:`JobResult` out (see :func:`run_job`).

Two job kinds:

- ``train``: ``rounds`` FedAvg rounds from ``base_version`` (an ``init`` version or a trained one) over every
  node's data, minus whatever the base version's lineage has already unlearned.
- ``unlearn``: the unlearning ``method`` (default ``gradient_ascent_ewc``) for ``target`` on ``base_version``.

Both end with a federated evaluation (every node on its local validation data; the mean and the worst node)
and write a new immutable model version into the artifact store under ``artifact_root``.

Errors: an invalid spec raises :class:`JobSpecError` (a ``ValueError``) before any work starts; anything that
fails while the job runs comes back as ``status="failed"`` with ``error`` set; cancellation (checked at every
round boundary) comes back as ``status="cancelled"``. Neither writes a model version.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from unlearning.contract import (
    DEFAULT_METHOD,
    ContractError,
    Target,
    parse_contribution_settings,
    validate_method_settings,
)

JOB_KINDS = ("train", "unlearn")
RUNTIMES = ("in-process",)


class JobSpecError(ValueError):
    """The job spec is invalid (raised by run_job before any work starts)."""


@dataclass
class JobSpec:
    """Everything a job needs; JSON-serialisable (``to_json`` / ``from_json``) so it can travel as Flower
    run config (``job-spec``) to a ServerApp started by Flower's command line or its Control API."""

    kind: str  # "train" | "unlearn"
    job_id: str  # the service's job id; also names the result file and is recorded in the new version
    artifact_root: str  # the artifact store's root directory (model versions are read and written there)
    dataset_dir: str  # the dataset: manifest.json + one directory per node (see unlearning.data)
    base_version: str  # the version to start from: an init version, a trained or an unlearned one
    rounds: int = 10  # train: FedAvg rounds
    local: dict[str, Any] = field(
        default_factory=dict
    )  # train: LocalConfig overrides (lr, steps, epochs, ...)
    method: str = DEFAULT_METHOD  # unlearn: a method name (unlearning.contract.METHOD_SPECS)
    method_config: dict[str, Any] = field(default_factory=dict)  # unlearn: the method's settings
    target: Target | None = None  # unlearn: what to forget
    seed: int = 0  # seeds every node's batch order and the retrain reference
    nodes: list[int] | None = None  # partition ids taking part (default: every node in the dataset)
    departed: list[str] | None = None  # nodes (manifest names) that left the federation: never contacted,
    # their data wholly left out (a ``retrain`` reference without them; ``federaser`` removes their share)
    keep_updates_every: int = 0  # train: keep the global model and every node's update each this many
    # rounds in the artifact store (unlearning.federation.history), for federaser; 0 keeps none
    node_names: list[str] | None = None  # the dataset's nodes by partition id (manifest names; run_job fills
    # it in): the job must reach every one of them (or every one of ``nodes``) and fails naming any it cannot
    evaluate: bool = True  # federated evaluation before (unlearn) and after the job
    num_threads: int = 1  # torch threads (1 when other processes share the CPU)
    timeout_s: float | None = None  # seconds one message exchange may take (None: FlowerSettings' default)
    node_timeout_s: float | None = None  # seconds to wait for a missing or failed node to (re)appear before
    # the job fails (None: FlowerSettings' default); transient failures are re-sent with backoff meanwhile
    runtime: str = (
        "in-process"  # how run_job runs the Flower apps (the simulation/deployment runners add theirs)
    )
    contribution: dict[str, Any] = field(default_factory=dict)  # train: how each node's contribution is
    # measured (unlearning.contract.ContributionSettings; {"method": "none"} skips it)
    dataset_sources: list[list[dict[str, Any]]] | None = None  # the dataset's data sources by partition id
    # (name, sha256, records; run_job fills it in from the manifest): a trained version records those it used

    def validate(self) -> None:
        if self.kind not in JOB_KINDS:
            raise JobSpecError(f"unknown job kind {self.kind!r}; expected one of {', '.join(JOB_KINDS)}")
        if not self.job_id or "/" in self.job_id or self.job_id.startswith("."):
            raise JobSpecError("job_id must be a non-empty name without '/'")
        if not self.base_version:
            raise JobSpecError(
                "base_version is required (create one with init_model or `commons model init`)"
            )
        if self.kind == "train" and self.rounds < 1:
            raise JobSpecError("a train job needs rounds >= 1")
        try:
            parse_contribution_settings(self.contribution)
        except ContractError as exc:
            raise JobSpecError(str(exc)) from exc
        if self.kind == "unlearn":
            if self.target is None:
                raise JobSpecError("an unlearn job needs a target")
            if self.target.kind == "behaviour" and not self.target.examples:
                raise JobSpecError("a behaviour target needs at least one prompt/completion example")
            try:
                validate_method_settings(self.method, self.method_config)
            except ContractError as exc:
                raise JobSpecError(str(exc)) from exc
        if not (Path(self.dataset_dir) / "manifest.json").is_file():
            raise JobSpecError(f"no dataset at {self.dataset_dir} (manifest.json missing)")
        if self.num_threads < 1:
            raise JobSpecError("num_threads must be >= 1")
        if not isinstance(self.keep_updates_every, int) or not 0 <= self.keep_updates_every <= 1000:
            raise JobSpecError("keep_updates_every must be an integer from 0 (keep none) to 1000")
        if self.departed is not None and (
            not isinstance(self.departed, list) or not all(isinstance(n, str) and n for n in self.departed)
        ):
            raise JobSpecError("departed must be a list of node names")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["target"] = self.target.to_dict() if self.target is not None else None
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JobSpec:
        d = dict(d)
        t = d.pop("target", None)
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise JobSpecError(f"unknown job spec field(s): {', '.join(unknown)}")
        try:
            target = Target.from_dict(t) if t else None
            return cls(**d, target=target)
        except (TypeError, ValueError) as exc:
            raise JobSpecError(str(exc)) from exc

    @classmethod
    def from_json(cls, text: str) -> JobSpec:
        return cls.from_dict(json.loads(text))


@dataclass
class RoundCost:
    """One message exchange (a round of one phase)."""

    phase: str  # "train" | "fisher" | "reference" | "ascent" | "repair" | "retrain" | "evaluate" | "info"
    round: int
    messages: int
    bytes_to_nodes: int  # serialised (protobuf) size of the message contents sent
    bytes_from_nodes: int  # ... and of the replies
    wall_s: float
    optimizer_steps: int


@dataclass
class JobCost:
    wall_s: float = 0.0
    cpu_s: float = 0.0  # CPU seconds of the process running the ServerApp (in-process: includes the nodes)
    node_cpu_s: float = 0.0  # CPU seconds the nodes reported for their local work
    optimizer_steps: int = 0  # local optimizer steps summed over nodes
    bytes_sent: int = 0  # both directions, all rounds
    rounds: list[RoundCost] = field(default_factory=list)
    bytes_to_nodes: int = 0  # the messages' contents sent to the nodes, all rounds
    bytes_from_nodes: int = 0  # ... and the replies' (bytes_sent is the two together)
    energy_j: float | None = None  # the job's energy (see unlearning.footprint)
    energy_method: str | None = None  # "measured-rapl" | "estimated"
    energy_basis: dict[str, Any] = field(default_factory=dict)  # the RAPL zones, or the estimate's constants


@dataclass
class ProgressEvent:
    """Sent to the progress callback after every round of every phase."""

    job_id: str
    phase: str
    round: int  # 1-based within the phase
    total_rounds: int  # planned rounds of the phase (ascent: an upper bound)
    metrics: dict[str, float] = field(default_factory=dict)  # aggregated over the replies of the round
    nodes: int = 0  # how many nodes answered the round


ProgressCallback = Callable[[ProgressEvent], None]


@dataclass
class JobResult:
    job_id: str
    kind: str
    status: str  # "succeeded" | "cancelled" | "failed"
    retriable: bool = True  # failed: whether another attempt may succeed (False: the spec or data is wrong)
    model_version: str | None = None  # the new version (only when succeeded)
    content_hash: str | None = None  # its content hash (weights + config + tokenizer)
    parent_version: str | None = None
    method: str | None = None  # unlearn jobs
    target: dict[str, Any] | None = None
    metrics: dict[str, Any] = field(
        default_factory=dict
    )  # {"after": eval, "before": eval (unlearn), "method": ...}
    cost: JobCost = field(default_factory=JobCost)
    error: str | None = None
    contribution: dict[str, Any] | None = None  # train: each node's contribution (unlearning.contribution)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JobResult:
        d = dict(d)
        cost = dict(d.pop("cost", {}))
        rounds = [RoundCost(**r) for r in cost.pop("rounds", [])]
        return cls(**d, cost=JobCost(**cost, rounds=rounds))
