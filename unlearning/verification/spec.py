"""What verification takes and what it returns: :class:`VerifySpec` in, :class:`VerificationReport` out.

Pure data (no torch). The policy hash, the acceptance tests' normal form, the comparators and the report
format version are the contract's (:mod:`unlearning.contract`) and re-exported here.

The report's key is ``(candidate content hash, policy hash)``: the policy hash covers the acceptance tests
that were checked (:func:`policy_hash`), the config hash covers every setting that changes a number
(:func:`VerifySpec.config_hash`); seed, precision and library versions are recorded beside them. A report is
only ever valid for the exact model whose content hash it names.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from unlearning.contract import (
    BLOCKING_TEST_STATUSES,
    COMPARATORS,
    METRICS,
    REPORT_FORMAT,
    VOTED_BUT_UNMEASURABLE,
    ContractError,
    canonical_json,
    compare,
    normalise_tests,
    policy_hash,
    sha256_json,
)

PRECISIONS = ("fp32", "bf16")

# statuses of one acceptance test; every one but pass blocks (a voted test that cannot be measured here,
# not_applicable, never counts as passed: unlearning.contract.BLOCKING_TEST_STATUSES)
PASS, FAIL, NOT_APPLICABLE, UNMEASURED = "pass", "fail", "not_applicable", "unmeasured"


class VerifySpecError(ValueError):
    """The verification spec is invalid (raised before any work starts)."""


@dataclass
class RegressionCheck:
    """An earlier approved unlearning of the candidate's lineage, re-checked on the candidate."""

    label: str  # e.g. "proposal 12"
    target: dict[str, Any]  # unlearning.contract.Target.to_dict() ({kind, value, examples})
    tests: list[dict[str, Any]]  # that proposal's acceptance tests
    original_version: str  # the version that earlier unlearning started from
    reference_version: str | None = None  # its retrained reference, when one was kept
    proposal_id: int | None = None


@dataclass
class VerifySpec:
    """Everything one verification needs; JSON-serialisable (``to_dict`` / ``from_dict``)."""

    artifact_root: str  # the artifact store (model versions are read from there)
    dataset_dir: str  # the dataset (manifest + per-node directories); utility is evaluated on the nodes
    candidate_version: str  # the model version to verify
    tests: list[dict[str, Any]]  # the acceptance tests (the policy); see governance/domain/proposals.py
    target: dict[str, Any] | None = None  # what was forgotten (Target JSON); None: regression checks only
    original_version: str | None = None  # the model before unlearning (default: the candidate's parent)
    reference_version: str | None = None  # the retrained reference, when one was computed
    job_cost: dict[str, Any] | None = None  # JobResult.cost of the unlearning job (cost metrics)
    reference_cost: dict[str, Any] | None = None  # JobResult.cost of the retraining job
    regressions: list[RegressionCheck] = field(default_factory=list)
    protected_commitment: dict[str, Any] | None = None  # registered protected strings {count, sha256}
    proposal_id: int | None = None  # for the report's readers; not part of any hash
    job_id: str | None = None
    metrics: list[str] | None = None  # compute only these (default: every registered metric)
    seed: int = 0  # probe sampling, relearning batches, exposure candidates
    precision: str = "fp32"  # "fp32" | "bf16" (autocast while scoring)
    probe_examples: int = 128  # at most this many forget / held-out examples per probe set
    exposure_candidates: int = 1000  # Secret Sharer: random alternatives per canary
    relearn_steps: int = 10  # robustness: fine-tuning steps of the relearning attack
    relearn_examples: int = 8  # ... on this many related examples
    extraction_samples: int = 64  # best-of-N extraction: completions sampled at temperature 1 per canary
    min_k: float = 0.4  # Min-K% / Min-K%++: the share of lowest-scoring tokens
    num_threads: int = 1
    runtime: str = "in-process"  # federated evaluation runtime (verify() also takes a Flower Grid)

    def validate(self) -> None:
        if not self.candidate_version:
            raise VerifySpecError("candidate_version is required")
        if self.precision not in PRECISIONS:
            raise VerifySpecError(f"precision must be one of {', '.join(PRECISIONS)}")
        if self.probe_examples < 2 or self.exposure_candidates < 2:
            raise VerifySpecError("probe_examples and exposure_candidates must be >= 2")
        if self.relearn_steps < 1 or self.relearn_examples < 1:
            raise VerifySpecError("relearn_steps and relearn_examples must be >= 1")
        if not 1 <= self.extraction_samples <= 4096:
            raise VerifySpecError("extraction_samples must be in 1..4096")
        if not 0 < self.min_k <= 1:
            raise VerifySpecError("min_k must be in (0, 1]")
        if self.num_threads < 1:
            raise VerifySpecError("num_threads must be >= 1")
        try:
            normalise_tests(self.tests)
            for r in self.regressions:
                normalise_tests(r.tests)
        except ContractError as exc:
            raise VerifySpecError(str(exc)) from exc
        names = [t["metric"] for t in self.tests] + [t["metric"] for r in self.regressions for t in r.tests]
        names += list(self.metrics or [])
        unknown = sorted({n for n in names if n not in METRICS})
        if unknown:
            raise VerifySpecError(
                f"unknown metric(s) {', '.join(unknown)}; registered metrics: {', '.join(sorted(METRICS))}"
            )

    def settings(self) -> dict[str, Any]:
        """The settings that change measured values (hashed into ``config_hash``)."""
        return {
            "seed": self.seed,
            "precision": self.precision,
            "probe_examples": self.probe_examples,
            "exposure_candidates": self.exposure_candidates,
            "relearn_steps": self.relearn_steps,
            "relearn_examples": self.relearn_examples,
            "extraction_samples": self.extraction_samples,
            "min_k": self.min_k,
            "metrics": sorted(self.metrics) if self.metrics is not None else None,
        }

    def config_hash(self, models: Mapping[str, str | None], dataset_hash: str) -> str:
        return sha256_json(
            {
                "settings": self.settings(),
                "target": self.target,
                "models": dict(models),
                "dataset": dataset_hash,
                "regressions": [
                    {**asdict(r), "tests": normalise_tests(r.tests), "label": None} for r in self.regressions
                ],
            }
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VerifySpec:
        d = dict(d)
        regs = [RegressionCheck(**r) for r in d.pop("regressions", [])]
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise VerifySpecError(f"unknown verify spec field(s): {', '.join(unknown)}")
        return cls(**d, regressions=regs)


@dataclass
class VerifyProgress:
    """Sent to the progress callback as verification moves through its stages."""

    stage: str  # "probes" | "score" | "utility" | "robustness" | "metric" | "regression" | "done"
    done: int
    total: int
    detail: str = ""


VerifyProgressCallback = Callable[[VerifyProgress], None]


@dataclass
class MetricResult:
    """One metric on the same probes for the original, the candidate and (when available) the reference.

    ``value`` is what acceptance tests compare (None when the metric does not apply or could not be
    measured; ``reason`` says which and why). ``values`` holds the per-model measurements the value is
    derived from; ``details`` anything a reader or a plot needs.
    """

    name: str
    family: str
    applies: bool
    value: float | None = None
    reason: str = ""
    values: dict[str, float | None] = field(default_factory=dict)  # original / candidate / reference
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def not_applicable(cls, name: str, family: str, reason: str) -> MetricResult:
        return cls(name=name, family=family, applies=False, reason=reason)


@dataclass
class TestOutcome:
    """The judgement of one acceptance test."""

    __test__ = False  # not a pytest test class

    metric: str
    comparator: str
    threshold: float
    relative_to_reference: bool
    status: str  # pass | fail | not_applicable | unmeasured
    measured: float | None
    reason: str

    @property
    def blocks(self) -> bool:
        """Whether this outcome stops a release: fail, unmeasured, or not_applicable (the members voted a test
        that cannot be measured on this model and data: it never counts as passed)."""
        return self.status in BLOCKING_TEST_STATUSES


def evaluate_tests(
    tests: Iterable[Mapping[str, Any]], metrics: Mapping[str, Mapping[str, Any]]
) -> list[TestOutcome]:
    """Judge every acceptance test against measured metrics (``MetricResult`` dicts by name).

    - a metric that cannot be measured on this model and data (a classifier has no perplexity, the target
      covers no canary) is ``not_applicable`` and blocks: the members voted it, and a test nobody could
      measure never counts as passed (the service warns before the vote: unlearning.contract.cannot_measure);
    - a metric that applies but has no value (e.g. it needs a retrained reference) is ``unmeasured``
      and blocks: nothing is released on a number nobody measured;
    - ``relative_to_reference`` compares ``candidate - reference`` of the metric's per-model values.
    """
    out: list[TestOutcome] = []
    for t in normalise_tests(tests):
        name, cmp_, thr, rel = t["metric"], t["comparator"], t["threshold"], t["relative_to_reference"]
        m = metrics.get(name)

        def outcome(status: str, measured: float | None, reason: str) -> TestOutcome:
            return TestOutcome(name, cmp_, thr, rel, status, measured, reason)  # noqa: B023

        if m is None:
            out.append(outcome(UNMEASURED, None, f"{name} was not computed"))
            continue
        if not m.get("applies", False):
            why = str(m.get("reason") or "the metric does not apply to this model and data")
            out.append(outcome(NOT_APPLICABLE, None, f"{VOTED_BUT_UNMEASURABLE}: {why}"))
            continue
        value: float | None = m.get("value")
        if rel:
            vals = m.get("values") or {}
            cand, ref = vals.get("candidate"), vals.get("reference")
            if cand is None or ref is None:
                out.append(
                    outcome(UNMEASURED, None, "relative to the reference, but no reference was measured")
                )
                continue
            value = float(cand) - float(ref)
        if value is None or not math.isfinite(value):
            out.append(outcome(UNMEASURED, None, m.get("reason") or "no value"))
            continue
        ok = compare(float(value), cmp_, thr)
        what = "candidate - reference" if rel else name
        reason = f"{what} = {value:.4g} {'meets' if ok else 'fails'} {cmp_} {thr:g}"
        out.append(outcome(PASS if ok else FAIL, float(value), reason))
    return out


def policy_passes(outcomes: Sequence[TestOutcome]) -> bool:
    """A policy passes when no test blocks and at least one test was actually measured and passed."""
    return not any(o.blocks for o in outcomes) and any(o.status == PASS for o in outcomes)


@dataclass
class RegressionOutcome:
    label: str
    proposal_id: int | None
    target: dict[str, Any]
    policy_hash: str
    passed: bool
    tests: list[TestOutcome]
    metrics: dict[str, MetricResult]


@dataclass
class VerificationReport:
    """The JSON-serialisable result of :func:`unlearning.verification.verify` (see docs/verification.md)."""

    candidate_version: str
    candidate_hash: str  # the content hash of the candidate: the report is only valid for this model
    policy_hash: str
    config_hash: str
    seed: int
    precision: str
    libraries: dict[str, str]
    task: str
    target: dict[str, Any] | None
    models: dict[str, dict[str, Any] | None]  # original / candidate / reference: {version, content_hash}
    metrics: dict[str, MetricResult]
    tests: list[TestOutcome]
    regressions: list[RegressionOutcome]
    passed: bool
    summary: str
    settings: dict[str, Any]
    timing: dict[str, float]
    created_at: str
    proposal_id: int | None = None
    job_id: str | None = None
    format: int = REPORT_FORMAT

    @property
    def key(self) -> dict[str, Any]:
        return {
            "candidate_hash": self.candidate_hash,
            "policy_hash": self.policy_hash,
            "config_hash": self.config_hash,
            "seed": self.seed,
            "precision": self.precision,
            "libraries": self.libraries,
        }

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["verdict"] = "pass" if self.passed else "fail"
        out: dict[str, Any] = _finite(d)
        return out

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True, allow_nan=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VerificationReport:
        d = dict(d)
        d.pop("verdict", None)
        metrics = {k: MetricResult(**v) for k, v in d.pop("metrics").items()}
        tests = [TestOutcome(**t) for t in d.pop("tests")]
        regs = [
            RegressionOutcome(
                **{
                    **r,
                    "tests": [TestOutcome(**t) for t in r["tests"]],
                    "metrics": {k: MetricResult(**v) for k, v in r["metrics"].items()},
                }
            )
            for r in d.pop("regressions")
        ]
        return cls(**d, metrics=metrics, tests=tests, regressions=regs)

    @classmethod
    def from_json(cls, text: str) -> VerificationReport:
        return cls.from_dict(json.loads(text))


def _finite(x: Any) -> Any:
    """NaN and infinities become None, so the report is strict JSON."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    return x


__all__ = [
    "COMPARATORS",
    "FAIL",
    "NOT_APPLICABLE",
    "PASS",
    "PRECISIONS",
    "REPORT_FORMAT",
    "UNMEASURED",
    "VOTED_BUT_UNMEASURABLE",
    "MetricResult",
    "RegressionCheck",
    "RegressionOutcome",
    "TestOutcome",
    "VerificationReport",
    "VerifyProgress",
    "VerifySpec",
    "VerifySpecError",
    "canonical_json",
    "evaluate_tests",
    "normalise_tests",
    "policy_hash",
    "policy_passes",
    "sha256_json",
]
