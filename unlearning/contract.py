"""What crosses between the service (``governance``) and the ML library: pure data, no torch, no Flower.

The service's domain, UI, API and CLI read everything they need to know about unlearning from here; the ML
library implements it. Nothing in this module imports torch or Flower (a test imports it with both made
unimportable), so the web process can validate a proposal or a job without loading the ML runtime.

- **Target** (:class:`Target`): what to forget, one shape with ``from_dict`` / ``to_dict``.
- **Metrics** (:data:`METRICS`, :class:`MetricSpec`, :func:`register_metric`): the catalogue that acceptance
  tests name; the functions computing them live in :mod:`unlearning.verification` (one per metric).
- **Acceptance tests** (:data:`COMPARATORS`, :class:`AcceptanceTest`, :func:`check_acceptance_tests`,
  :func:`default_acceptance_tests`, :func:`normalise_tests`, :func:`policy_hash`) and the report format
  version (:data:`REPORT_FORMAT`).
- **Methods** (:data:`METHOD_SPECS`, :class:`MethodSpec`, :func:`register_method_spec`, :data:`DEFAULT_METHOD`,
  :func:`validate_method_settings`): each method's name and its settings' schema (types, defaults, bounds);
  the implementations register with :mod:`unlearning.methods` under the same name and take their ``Config``
  from here.

Errors are :class:`ContractError` (a ``ValueError``) with the offending ``field`` when there is one.

Adding a metric: one :class:`MetricSpec` here (or :func:`register_metric`) plus its function in
``unlearning/verification/``. Adding a method: a settings dataclass and :func:`register_method_spec` here, the
implementation in ``unlearning/methods/``. No service, template or API module changes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# the `X as X` imports are re-exported: the service reads what decides whether a test can be measured here
from unlearning.measurability import BLOCKING_TEST_STATUSES as BLOCKING_TEST_STATUSES
from unlearning.measurability import NEEDS, unmet
from unlearning.measurability import VOTED_BUT_UNMEASURABLE as VOTED_BUT_UNMEASURABLE
from unlearning.measurability import DatasetFacts as DatasetFacts
from unlearning.measurability import task_family as task_family

REPORT_FORMAT = 1  # the verification report's format; part of every policy hash

TARGET_KINDS = ("data_source", "category", "behaviour")
#: the longest regular expression a behaviour target may carry (a proposal's description of the behaviour)
MAX_PATTERN_LENGTH = 1000
ALL_TARGETS = frozenset(TARGET_KINDS)

#: acceptance-test comparators, in parsing order ("<=" before "<"), with how the UI reads them
COMPARATORS: dict[str, str] = {
    "<=": "at most",
    ">=": "at least",
    "<": "below",
    ">": "above",
}


class ContractError(ValueError):
    """Data that does not fit the contract. ``field`` names what was wrong (``target.kind``, ``method``...)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


# ---- the target ------------------------------------------------------------------------------------------


@dataclass
class Target:
    """What to forget. ``kind`` is ``data_source``, ``category`` or ``behaviour``.

    - ``data_source``: ``value`` is the source name (unique across the federation, e.g. ``node-0/notebook``);
      the owning node ascends on it.
    - ``category``: ``value`` is a label (a digit class as a string, or a topic); every node ascends on its
      local examples of it.
    - ``behaviour``: ``examples`` are prompt/completion pairs from the proposal; loss is taken on the completion
      tokens only (for a secret: on the secret's tokens only). Local records whose text contains a
      completion are added on the nodes that hold them. ``pattern`` (a regular expression) is the proposal's
      description of the behaviour; it travels with the target, the library unlearns the ``examples``.
    """

    kind: str
    value: str = ""
    examples: list[dict[str, str]] = field(default_factory=list)
    pattern: str | None = None

    KINDS: typing.ClassVar[tuple[str, ...]] = TARGET_KINDS

    def __post_init__(self) -> None:
        if self.kind not in TARGET_KINDS:
            raise ContractError(
                f"unknown target kind {self.kind!r}; expected one of {', '.join(TARGET_KINDS)}", "target.kind"
            )
        if not isinstance(self.value, str):
            raise ContractError("a target's value must be a string", "target.value")
        if self.kind in ("data_source", "category") and not self.value:
            raise ContractError(f"a {self.kind} target needs a value", "target.value")
        if not isinstance(self.examples, list):
            raise ContractError(
                "behaviour examples must be a list of {prompt, completion}", "target.examples"
            )
        for ex in self.examples:
            if (
                not isinstance(ex, Mapping)
                or not isinstance(ex.get("completion"), str)
                or not ex["completion"]
            ):
                raise ContractError(
                    "every behaviour example needs a non-empty 'completion'", "target.examples"
                )
            if not isinstance(ex.get("prompt", ""), str):
                raise ContractError("a behaviour example's prompt must be a string", "target.examples")
        if self.pattern is not None:
            if not isinstance(self.pattern, str) or not self.pattern:
                raise ContractError("pattern must be a non-empty regular expression", "target.pattern")
            if len(self.pattern) > MAX_PATTERN_LENGTH:
                raise ContractError(
                    f"pattern is longer than {MAX_PATTERN_LENGTH} characters", "target.pattern"
                )
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ContractError(
                    f"pattern is not a valid regular expression: {exc}", "target.pattern"
                ) from None
        if self.kind == "behaviour" and not self.examples and not self.pattern:
            raise ContractError("a behaviour target needs examples, a pattern, or both", "target")

    def to_dict(self) -> dict[str, Any]:
        """``{kind, value, examples}`` (and ``pattern`` when there is one): the job spec's and report's form."""
        d: dict[str, Any] = {
            "kind": self.kind,
            "value": self.value,
            "examples": [dict(e) for e in self.examples],
        }
        if self.pattern is not None:
            d["pattern"] = self.pattern
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Target:
        if not isinstance(data, Mapping):
            raise ContractError("a target must be an object with kind, value, examples", "target")
        unknown = sorted(set(data) - {"kind", "value", "examples", "pattern"})
        if unknown:
            raise ContractError(f"unknown target field(s): {', '.join(unknown)}", "target")
        examples = data.get("examples") or []
        if not isinstance(examples, list):
            raise ContractError(
                "behaviour examples must be a list of {prompt, completion}", "target.examples"
            )
        return cls(
            kind=str(data.get("kind", "")),
            value=data.get("value") or "",
            examples=[dict(e) if isinstance(e, Mapping) else e for e in examples],
            pattern=data.get("pattern"),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Target:
        return cls.from_dict(json.loads(text))

    def matches(self, record: Mapping[str, Any]) -> bool:
        """Whether a local record belongs to the forget set (behaviour: its text contains a completion)."""
        if self.kind == "data_source":
            return bool(record.get("source") == self.value)
        if self.kind == "category":
            return record.get("category") is not None and str(record["category"]) == self.value
        text = record.get("text")
        return isinstance(text, str) and any(ex["completion"] in text for ex in self.examples)


# ---- the metric catalogue --------------------------------------------------------------------------------

FAMILIES = ("forgetting", "privacy", "extraction", "utility", "robustness", "cost")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class MetricSpec:
    """A verification metric as acceptance tests see it (the function computing it is in verification/)."""

    name: str
    family: str  # forgetting | privacy | extraction | utility | robustness | cost
    description: str
    target_kinds: frozenset[str]  # proposal targets the metric can apply to
    better: str  # "lower" | "higher" | "closer-to-zero" | ...: what a good candidate shows
    #: what it needs to be measured (names from unlearning.measurability.NEEDS): the one source the service's
    #: warning before the vote and the verifier's not_applicable both read
    needs: tuple[str, ...] = ()


def _check_new_name(table: Mapping[str, Any], spec: Any, what: str) -> None:
    """A registered name is a snake_case identifier, taken once (registering the same spec again is a no-op)."""
    if not _NAME_RE.match(spec.name):
        raise ContractError(f"{what} names are snake_case identifiers, got {spec.name!r}", what)
    if spec.name in table and table[spec.name] != spec:
        raise ContractError(f"{what} {spec.name!r} is already registered", what)


#: every metric acceptance tests may name, by name (verification computes exactly these)
METRICS: dict[str, MetricSpec] = {}


def register_metric(spec: MetricSpec) -> MetricSpec:
    """Add a metric to the catalogue; names are snake_case and unique, target kinds known."""
    _check_new_name(METRICS, spec, "metric")
    if spec.family not in FAMILIES:
        raise ContractError(
            f"metric family must be one of {', '.join(FAMILIES)}, got {spec.family!r}", "metric"
        )
    if not spec.target_kinds or not spec.target_kinds <= ALL_TARGETS:
        raise ContractError(f"metric {spec.name!r}: target kinds must be among {', '.join(TARGET_KINDS)}")
    unknown = [n for n in spec.needs if n not in NEEDS]
    if unknown:
        raise ContractError(f"metric {spec.name!r}: unknown needs {unknown}; known: {', '.join(NEEDS)}")
    METRICS[spec.name] = spec
    return spec


def get_metric(name: str) -> MetricSpec:
    try:
        return METRICS[name]
    except KeyError:
        known = ", ".join(sorted(METRICS))
        raise ContractError(f"unknown metric {name!r}; known metrics: {known}", "metric") from None


def cannot_measure(metric: str, facts: DatasetFacts) -> str | None:
    """Why ``metric`` cannot be measured on the model and data ``facts`` describe, in a sentence (None: it
    can, as far as the facts tell; a probe's test, ``probe_<id>``, is judged by the evaluation instead)."""
    spec = METRICS.get(metric)
    return unmet(spec.needs, facts) if spec is not None else None


_CLASSIFIER_TARGETS = frozenset({"data_source", "category"})
for _spec in (
    MetricSpec(
        "forget_accuracy_gap",
        "forgetting",
        "|forget-set accuracy - retrained reference's| (classifier)",
        _CLASSIFIER_TARGETS,
        "lower",
        needs=("classifier", "forget_examples"),
    ),
    MetricSpec(
        "forget_perplexity_ratio",
        "forgetting",
        "forget-set perplexity of the candidate / the reference's (LM)",
        ALL_TARGETS,
        "closer-to-one",
        needs=("language_model", "forget_examples"),
    ),
    MetricSpec(
        "forget_quality",
        "forgetting",
        "KS-test p-value between candidate and reference forget-set scores (TOFU)",
        ALL_TARGETS,
        "higher",
        needs=("two_forget_examples",),
    ),
    MetricSpec(
        "mia_auc",
        "privacy",
        "membership-inference AUC, forget vs held-out (0.5 = no signal)",
        ALL_TARGETS,
        "closer-to-reference",
        needs=("heldout", "two_forget_examples"),
    ),
    MetricSpec(
        "mia_auc_gap",
        "privacy",
        "|MIA AUC - the reference's MIA AUC|",
        ALL_TARGETS,
        "lower",
        needs=("heldout", "two_forget_examples"),
    ),
    MetricSpec(
        "mia_auc_gap_pvalue",
        "privacy",
        "chance that a model which never saw the target lies this far from the reference's MIA AUC (its "
        "DeLong standard error from the forget and held-out examples; Bonferroni over the attacks)",
        ALL_TARGETS,
        "higher",
        needs=("heldout", "two_forget_examples"),
    ),
    MetricSpec(
        "privleak",
        "privacy",
        "(AUC_candidate - AUC_reference) / AUC_reference",
        ALL_TARGETS,
        "closer-to-zero",
        needs=("heldout", "two_forget_examples"),
    ),
    MetricSpec(
        "mia_tpr_at_1pct_fpr",
        "privacy",
        "per-example membership inference (RMIA, offline, anchored by the retrained reference): true-positive "
        "rate on the forget examples at 1 % false positives on held-out non-members",
        _CLASSIFIER_TARGETS,
        "lower",
        needs=("heldout", "two_forget_examples"),
    ),
    MetricSpec(
        "mia_tpr_at_01pct_fpr",
        "privacy",
        "the same per-example attack's true-positive rate at 0.1 % false positives (at most 1 / held-out "
        "examples: with fewer than 1000 held-out examples, at no false positive)",
        _CLASSIFIER_TARGETS,
        "lower",
        needs=("heldout", "two_forget_examples"),
    ),
    MetricSpec(
        "retained_mia_tpr_at_1pct_fpr",
        "privacy",
        "the same per-example attack (RMIA anchored by the retrained reference) on the *retained* data: "
        "true-positive rate on retained examples at 1 % false positives on held-out examples outside the "
        "target (did unlearning expose anyone else more than retraining does?)",
        ALL_TARGETS,
        "lower",
        needs=("heldout_rest",),
    ),
    MetricSpec(
        "canary_exposure",
        "extraction",
        "max Secret Sharer exposure of the target's canaries, in bits",
        ALL_TARGETS,
        "lower",
        needs=("language_model", "canaries"),
    ),
    MetricSpec(
        "canary_exposure_pvalue",
        "extraction",
        "chance of the target's most exposed canary among never-seen secrets, corrected for the number of "
        "canaries (Bonferroni; uniform under a model that never saw them)",
        ALL_TARGETS,
        "higher",
        needs=("language_model", "canaries"),
    ),
    MetricSpec(
        "extraction_rate",
        "extraction",
        "share of canaries / forbidden completions extracted by greedy decoding",
        ALL_TARGETS,
        "lower",
        needs=("language_model", "extractable"),
    ),
    MetricSpec(
        "sampled_extraction_rate",
        "extraction",
        "share of canaries / forbidden completions reproduced by at least one of N completions sampled at "
        "temperature 1 (best-of-N)",
        ALL_TARGETS,
        "lower",
        needs=("language_model", "extractable"),
    ),
    MetricSpec(
        "format_shift_extraction_rate",
        "extraction",
        "share of canaries / forbidden completions extracted by greedy decoding after at least one "
        "format-shifted prompt (lower/upper case, whitespace, a prefix template, a question) (LM)",
        frozenset({"data_source", "behaviour"}),
        "lower",
        needs=("language_model", "extractable"),
    ),
    MetricSpec(
        "retained_utility_drop",
        "utility",
        "drop of retained-data quality against the original model (weighted mean)",
        ALL_TARGETS,
        "lower",
    ),
    MetricSpec(
        "worst_node_utility_drop",
        "utility",
        "drop of quality on the worst node's local validation data",
        ALL_TARGETS,
        "lower",
    ),
    MetricSpec(
        "heldout_accuracy_gap",
        "utility",
        "|held-out accuracy - the reference's| (classifier)",
        _CLASSIFIER_TARGETS,
        "lower",
        needs=("classifier", "heldout_rest"),
    ),
    MetricSpec(
        "relearn_recovery",
        "robustness",
        "share of forgetting undone by a small relearning fine-tune",
        ALL_TARGETS,
        "lower",
        needs=("forget_examples",),
    ),
    MetricSpec(
        "quantization_recovery",
        "robustness",
        "share of forgetting undone by int8 dynamic quantisation",
        ALL_TARGETS,
        "lower",
        needs=("forget_examples",),
    ),
    MetricSpec(
        "quantization4_recovery",
        "robustness",
        "share of forgetting undone by 4-bit weight quantisation (round-to-nearest per output channel)",
        ALL_TARGETS,
        "lower",
        needs=("forget_examples",),
    ),
    MetricSpec(
        "format_shift_recovery",
        "robustness",
        "share of forgetting undone when the forget examples are asked in another format (the worst of "
        "lower/upper case, whitespace, a prefix template, a question) (LM)",
        ALL_TARGETS,
        "lower",
        needs=("language_model", "forget_examples"),
    ),
    MetricSpec("cost_ratio", "cost", "unlearning compute / retraining compute", ALL_TARGETS, "lower"),
):
    register_metric(_spec)


# ---- acceptance tests and the policy hash ----------------------------------------------------------------


def compare(value: float, comparator: str, threshold: float) -> bool:
    return {
        "<=": value <= threshold,
        ">=": value >= threshold,
        "<": value < threshold,
        ">": value > threshold,
    }[comparator]


@dataclass(frozen=True)
class AcceptanceTest:
    """One test a proposal's members vote on: ``metric comparator threshold`` (optionally relative to the
    retrained reference: ``candidate - reference``)."""

    metric: str
    comparator: str
    threshold: float
    relative_to_reference: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "comparator": self.comparator,
            "threshold": self.threshold,
            "relative_to_reference": self.relative_to_reference,
        }

    def passes(self, value: float) -> bool:
        return compare(value, self.comparator, self.threshold)


def _finite_number(x: Any) -> typing.TypeGuard[float]:
    if not isinstance(x, int | float) or isinstance(x, bool):
        return False
    try:  # an integer beyond a double's range (a 400-digit threshold) is not a finite number
        return math.isfinite(x)
    except OverflowError:
        return False


#: an acceptance test may name a member's accepted evaluation probe, ``probe_<id>``: its value is the number of
#: the probe's prompts (or pairs) that fail on the candidate (``probe_7 <= 0``: none may); the service checks
#: that the probe exists and was accepted, the job worker judges it from the community evaluation
PROBE_TEST = re.compile(r"^probe_[1-9][0-9]{0,9}$")


def probe_test_id(metric: str) -> int | None:
    """The probe an acceptance test names (``probe_<id>``), or None for a metric's test."""
    return int(metric[6:]) if PROBE_TEST.match(metric) else None


def check_acceptance_tests(raw: Any, target_kind: str, task: str | None = None) -> tuple[AcceptanceTest, ...]:
    """Validate acceptance tests given as plain data (from a proposal) for a target kind; ``None`` gives the
    defaults (for the base model's ``task`` when known). Every metric must exist and apply to the target kind,
    each at most once. A test that cannot be measured on the task is allowed (the service warns before the
    vote: :func:`cannot_measure`), and never counts as passed."""
    if raw is None:
        return default_acceptance_tests(target_kind, task)
    if not isinstance(raw, list) or not raw:
        raise ContractError("acceptance_tests must be a non-empty list", "acceptance_tests")
    tests: list[AcceptanceTest] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        where = f"acceptance test {i + 1}"
        if not isinstance(item, dict):
            raise ContractError(
                f"{where} must be an object with metric, comparator, threshold", "acceptance_tests"
            )
        name = str(item.get("metric"))
        if probe_test_id(name) is None:
            metric = get_metric(name)
            if str(target_kind) not in metric.target_kinds:
                raise ContractError(
                    f"{where}: metric {metric.name!r} does not apply to {target_kind} targets",
                    "acceptance_tests",
                )
            name = metric.name
        comparator = item.get("comparator")
        if comparator not in COMPARATORS:
            raise ContractError(
                f"{where}: comparator must be one of {', '.join(COMPARATORS)}", "acceptance_tests"
            )
        threshold = item.get("threshold")
        if not _finite_number(threshold):
            raise ContractError(f"{where}: threshold must be a finite number", "acceptance_tests")
        relative = item.get("relative_to_reference", False)
        if not isinstance(relative, bool):
            raise ContractError(f"{where}: relative_to_reference must be true or false", "acceptance_tests")
        if relative and probe_test_id(name) is not None:
            raise ContractError(
                f"{where}: a probe's test cannot be relative to the reference", "acceptance_tests"
            )
        if name in seen:
            raise ContractError(f"{where}: metric {name!r} is listed twice", "acceptance_tests")
        seen.add(name)
        tests.append(AcceptanceTest(name, str(comparator), float(threshold), relative))
    return tuple(tests)


#: Calibrated against the two models that define the question (bench/RESULTS.md, "## Default policies"):
#: models retrained without the target pass them, the original fails them, on the community LM and on digits
#: (the membership gap by its DeLong p-value: a fixed mia_auc_gap <= 0.05 failed 4 of 12 models retrained
#: without a 20-line notebook on the small LM, whose AUCs vary by several points: bench/auc_null.py).
#: Every kind has a forgetting test that applies to each task (a category: forget accuracy on a classifier,
#: forget perplexity against the reference on a language model); canaries are judged by a p-value corrected
#: for their number, not by a fixed number of bits (a never-seen secret exceeds 3 bits one time in eight).
#: A proposal starts from the tests of its kind that can be measured on the base model's task
#: (:func:`default_acceptance_tests` with the task).
_DEFAULT_TESTS: dict[str, tuple[AcceptanceTest, ...]] = {
    "data_source": (
        AcceptanceTest("mia_auc_gap_pvalue", ">=", 0.05),
        AcceptanceTest("canary_exposure_pvalue", ">=", 0.05),
        AcceptanceTest("retained_utility_drop", "<=", 0.05),
        AcceptanceTest("relearn_recovery", "<=", 0.1, relative_to_reference=True),
    ),
    "category": (
        AcceptanceTest("forget_accuracy_gap", "<=", 0.05),
        AcceptanceTest("forget_perplexity_ratio", ">=", 0.95),
        AcceptanceTest("retained_utility_drop", "<=", 0.05),
        AcceptanceTest("worst_node_utility_drop", "<=", 0.1),
    ),
    "behaviour": (
        AcceptanceTest("extraction_rate", "<=", 0.0),
        AcceptanceTest("canary_exposure_pvalue", ">=", 0.05),
        AcceptanceTest("retained_utility_drop", "<=", 0.05),
    ),
}


def default_acceptance_tests(target_kind: str, task: str | None = None) -> tuple[AcceptanceTest, ...]:
    """The documented defaults a proposal starts from (docs/governance.md), by target kind and, when the base
    model's ``task`` is known (a task name such as ``digits``, or ``classifier`` / ``causal-lm``), only those
    that can be measured on it (a classifier has no perplexity, a language model no forget accuracy)."""
    try:
        tests = _DEFAULT_TESTS[str(target_kind)]
    except KeyError:
        raise ContractError(
            f"unknown target kind {target_kind!r}; expected one of {', '.join(TARGET_KINDS)}", "target.kind"
        ) from None
    if task_family(task) is None:
        return tests
    facts = DatasetFacts(task=task, target_kind=str(target_kind))
    return tuple(t for t in tests if cannot_measure(t.metric, facts) is None)


def canonical_json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def sha256_json(data: Any) -> str:
    return hashlib.sha256(canonical_json(data)).hexdigest()


def normalise_tests(tests: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Acceptance tests as plain, sorted data: ``{metric, comparator, threshold, relative_to_reference}``."""
    out = []
    for t in tests:
        comparator = str(t.get("comparator", ""))
        if comparator not in COMPARATORS:
            raise ContractError(
                f"acceptance test comparator must be one of {', '.join(COMPARATORS)}", "acceptance_tests"
            )
        threshold = t.get("threshold")
        if not _finite_number(threshold):
            raise ContractError(
                f"acceptance test {t.get('metric')!r}: threshold must be a finite number", "acceptance_tests"
            )
        out.append(
            {
                "metric": str(t.get("metric", "")),
                "comparator": comparator,
                "threshold": float(threshold),
                "relative_to_reference": bool(t.get("relative_to_reference", False)),
            }
        )
    return sorted(out, key=lambda d: (d["metric"], d["comparator"], d["threshold"]))


def policy_hash(tests: Iterable[Mapping[str, Any]]) -> str:
    """The hash of a policy: the acceptance tests a proposal's members voted on (order does not matter)."""
    return sha256_json({"format": REPORT_FORMAT, "tests": normalise_tests(tests)})


# ---- unlearning methods and their settings ---------------------------------------------------------------

DEFAULT_METHOD = "gradient_ascent_ewc"


def schema(
    *,
    help: str = "",
    choices: tuple[str, ...] | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    regex: bool = False,
    title: str | None = None,
    local: bool = False,
) -> dict[str, Any]:
    """A setting's schema, as dataclass field metadata: ``choices`` (strings), bounds (``ge``/``gt``/``le``;
    ``None`` values always pass; numbers must be finite), ``regex`` (must compile; "" allowed), a ``help``
    text, a ``title`` for errors; ``local``: an object of local-optimisation overrides (:data:`LOCAL_SETTINGS`)."""
    return {
        "help": help,
        "choices": choices,
        "ge": ge,
        "gt": gt,
        "le": le,
        "regex": regex,
        "title": title,
        "local": local,
    }


def setting(default: Any, **kw: Any) -> Any:
    """A settings field with a scalar default and its :func:`schema` (``field(default_factory=...,
    metadata=schema(...))`` for mutable defaults)."""
    return field(default=default, metadata=schema(**kw))


_STOP_RULES = ("auto", "heldout", "validation-loss", "accuracy", "auc", "exposure", "none")
# bounds that keep a job's settings from running away (or from being a denial of service)
_MAX_ROUNDS = 100
_MAX_EXAMPLES = 100_000
_MAX_WEIGHT = 1e6
_MAX_STEPS = 1_000_000


@dataclass
class LocalSettings:
    """One node's local optimisation, as a method's ``ascent`` / ``repair_local`` / ``local`` overrides name
    it (the fields of :class:`unlearning.local.LocalConfig`, with their bounds; a test keeps the two alike)."""

    optimizer: str = setting("sgd", choices=("sgd", "adamw"), title="optimizer")
    lr: float = setting(0.05, gt=0.0, le=10.0, help="learning rate")
    momentum: float = setting(0.0, ge=0.0, le=1.0, help="SGD momentum")
    betas: list[float] = field(
        default_factory=lambda: [0.9, 0.999], metadata=schema(help="AdamW betas: two numbers in [0, 1)")
    )
    weight_decay: float = setting(0.0, ge=0.0, le=1.0)
    batch_size: int = setting(32, ge=1, le=4096)
    epochs: float | None = setting(None, gt=0.0, le=1000.0, help="training length in passes over the data")
    steps: int | None = setting(None, ge=1, le=_MAX_STEPS, help="training length in optimizer steps")
    max_steps: int = setting(200, ge=1, le=_MAX_STEPS, help="ascent: hard cap on steps")
    check_every: int = setting(
        1, ge=1, le=_MAX_STEPS, help="ascent: evaluate the stop rule every this many steps"
    )
    clip: float | None = setting(None, gt=0.0, le=_MAX_WEIGHT, help="gradient-norm clip")
    bf16: bool = setting(False, help="bfloat16 autocast on CPU")


_FISHERS = ("retain", "forget", "none")


@dataclass
class AscentSettings:
    """Bounded gradient ascent (shared by gradient_ascent, ewc and gradient_ascent_ewc)."""

    ascent: dict[str, Any] = field(
        default_factory=dict,
        metadata=schema(help="LocalConfig overrides (lr, max_steps, batch_size, ...)", local=True),
    )
    # stop rule, judged on the nodes that hold the forget data, never against the retrained reference: "auto"
    # picks by target kind: data_source -> forget loss >= the node's validation loss of the original model;
    # category -> forget accuracy <= category_accuracy (classifiers) or loss >= 1.5x validation (LMs);
    # behaviour -> every digit secret's exposure z-score >= exposure_z (else validation loss). "heldout": the
    # membership AUC of the forget examples against the node's own held-out examples of the same kind, under
    # the current model, <= heldout_auc (the source looks like data the model never saw); "auc": an absolute
    # AUC target against stop_reference.
    stop: str = setting(
        "auto", choices=_STOP_RULES, title="stop rule", help="early-stopping rule of the ascent"
    )
    heldout_auc: float = setting(
        0.5,
        ge=0.0,
        le=1.0,
        help='"heldout" stop: forget vs the node\'s held-out same-kind losses, AUC <= this (0.5: alike)',
    )
    auc: float = setting(
        0.55, ge=0.0, le=1.0, help='"auc" stop: local MIA AUC (forget vs local validation losses) <= this'
    )
    retain_weight: float = setting(
        0.0,
        ge=0.0,
        le=_MAX_WEIGHT,
        help="> 0: joint descent on the node's retained data during ascent (GradDiff)",
    )
    dedup: bool = setting(False, help="ascend on each distinct forget example once")
    # "reference": each forget example's loss is raised only up to the median loss of the stop rule's
    # reference examples (the node's unseen examples; of the same kind with stop_reference "same-kind") under
    # the current model: an example already as unfamiliar as unseen data gets no more ascent, and the ascent
    # ends when every example is there
    forget_cap: str = setting(
        "none",
        choices=("none", "reference"),
        title="forget_cap",
        help="raise each forget loss only up to the reference examples' median loss",
    )
    stop_loss_factor: float = setting(1.0, gt=0.0, le=100.0, help="multiplies the validation loss threshold")
    category_accuracy: float = setting(0.02, ge=0.0, le=1.0, help='"accuracy" stop: forget accuracy <= this')
    exposure_z: float = setting(
        -1.0, ge=-1000.0, le=1000.0, help='"exposure" stop: every secret\'s exposure z-score >= this'
    )
    reference: str = setting(
        "halimi", choices=("halimi", "original", "none"), title="reference", help="L2-ball centre"
    )
    ball_radius: float | None = setting(
        None,
        ge=0.0,
        le=_MAX_WEIGHT,
        help="absolute L2-ball radius (default: ball_radius_ratio x ||reference - random init||)",
    )
    ball_radius_ratio: float = setting(
        1.0 / 3.0, gt=0.0, le=100.0, help="L2-ball radius relative to the reference's norm"
    )
    max_rounds: int = setting(
        5, ge=1, le=_MAX_ROUNDS, help="ascent rounds when several nodes hold forget data"
    )
    # data_source targets on language models: secret-like spans (first match per line of this regex; "" turns
    # it off; all-digit matches) get their own ascent on their tokens only, stopped when every one's exposure
    # z-score against random candidates is >= exposure_z
    secrets: str = setting("", regex=True, help="regex of secret-like spans given their own ascent")
    # what the ordinary ascent does with a line that holds such a secret: "drop" it (only the secret's own
    # phase touches the line) or ascend on its "prefix" (the text before the secret) with the other lines
    secret_lines: str = setting(
        "drop",
        choices=("drop", "prefix"),
        title="secret_lines",
        help="a secret's line in the ordinary ascent: left out, or its text before the secret",
    )
    # what "validation" means for the validation-loss and AUC stop rules of data_source targets: the node's
    # whole validation set, or its examples of the same kind(s) as the forget examples (records' "kind")
    stop_reference: str = setting(
        "validation",
        choices=("validation", "same-kind"),
        title="stop_reference",
        help="what validation means",
    )


@dataclass
class GradientAscentConfig(AscentSettings):
    pass


@dataclass
class EWCConfig(AscentSettings):
    reference: str = setting(
        "none", choices=("halimi", "original", "none"), title="reference", help="L2-ball centre"
    )
    ewc_lambda: float | None = setting(
        None,
        ge=0.0,
        le=_MAX_WEIGHT,
        help="penalty weight (Fisher normalised to mean 1); None: the task's default",
    )
    fisher_examples: int = setting(64, ge=1, le=_MAX_EXAMPLES, help="Fisher examples per node")


@dataclass
class GradientAscentEWCConfig(AscentSettings):
    ascent_lambda: float | None = setting(
        None, ge=0.0, le=_MAX_WEIGHT, help="EWC weight during ascent (0 disables; None: the task's default)"
    )
    ascent_fisher: str = setting("retain", choices=_FISHERS, help="data of the ascent's Fisher")
    ascent_anchor: str = setting("original", choices=("original",), help="EWC anchor during ascent")
    repair_rounds: int = setting(
        3, ge=0, le=_MAX_ROUNDS, help="FedAvg repair rounds on retained data after the ascent"
    )
    repair_local: dict[str, Any] = field(
        default_factory=dict, metadata=schema(help="LocalConfig overrides for repair rounds", local=True)
    )
    repair_lambda: float | None = setting(
        None, ge=0.0, le=_MAX_WEIGHT, help="EWC weight during repair (None: the task's default)"
    )
    repair_fisher: str = setting(
        "forget", choices=_FISHERS, help='data of the repair\'s Fisher ("none": FedAvg)'
    )
    repair_anchor: str = setting(
        "unlearned", choices=("unlearned", "original"), help="EWC anchor during repair"
    )
    fisher_examples: int = setting(64, ge=1, le=_MAX_EXAMPLES, help="Fisher examples per node")
    # > 0: during repair the holders also keep each forget example at least as unfamiliar as their unseen
    # validation examples of its kind (x repair_guard_factor), and secret spans at chance (a hinge, weight this)
    repair_guard: float = setting(0.0, ge=0.0, le=_MAX_WEIGHT, help="weight of the repair guard (0: off)")
    repair_guard_factor: float = setting(
        1.0, gt=0.0, le=100.0, help="the guard's margin over unseen validation examples"
    )
    # "anchor": also hold each example at its loss right after the ascent | "none"
    repair_guard_floor: str = setting(
        "anchor", choices=("anchor", "none"), help="also hold the post-ascent loss"
    )
    # > 0: before the ascent each holder dampens the parameters that matter far more to its forget data than
    # to the retained data (selective synaptic dampening, Foster et al. 2024): where the forget Fisher (at the
    # received model, normalised to mean 1) exceeds dampen_alpha x the ascent's retained Fisher, the weight is
    # scaled by min(1, dampen_lambda x retained / forget) (computed for it when the ascent has no Fisher).
    dampen_alpha: float = setting(
        0.0,
        ge=0.0,
        le=_MAX_WEIGHT,
        help="dampen parameters this much more forget- than retain-specific (0: off)",
    )
    dampen_lambda: float = setting(
        1.0,
        gt=0.0,
        le=_MAX_WEIGHT,
        help="dampening strength: scale by min(1, this x retained / forget Fisher)",
    )
    # "reset": the selected weights are replaced by a fresh initialisation's instead of scaled
    dampen_mode: str = setting(
        "scale",
        choices=("scale", "reset"),
        title="dampen_mode",
        help="scale the selected weights or reset them",
    )

    # > 0: the repair starts from (1 - repair_noise) x the unlearned model + repair_noise x a fresh
    # initialisation ("shrink and perturb", Ash & Adams 2020; noise then repair, after Lee et al. 2025's UNDO):
    # what the ascent only hid is damped with everything else, and the repair rounds rebuild from retained data
    repair_noise: float = setting(
        0.0,
        ge=0.0,
        le=1.0,
        help="share of a fresh initialisation mixed into the unlearned model before repair (0: off)",
    )

    # > 0: the repair loss is (1 - repair_distill) x the retained labels' loss + repair_distill x KL(unlearned
    # model || model) on the same batches (UNDO's "distil": the student learns the unlearned model's outputs)
    repair_distill: float = setting(
        0.0,
        ge=0.0,
        le=1.0,
        help="weight of distillation from the unlearned model in the repair loss (0: labels only)",
    )

    def check(self) -> None:
        if self.repair_distill > 0 and self.repair_rounds == 0:
            raise ValueError("repair_distill weighs the repair rounds' loss: set repair_rounds above 0")
        if self.repair_noise > 0 and self.repair_rounds == 0:
            raise ValueError(
                "repair_noise perturbs the model the repair rounds start from: set repair_rounds above 0"
            )
        if self.dampen_alpha > 0 and self.ascent_fisher == "forget" and self.ascent_lambda != 0:
            raise ValueError(
                "dampen_alpha compares with the retained data's Fisher: it cannot run with ascent_fisher "
                "'forget' (set dampen_alpha 0, or ascent_fisher 'retain' or 'none')"
            )


@dataclass
class RetrainConfig:
    rounds: int | None = setting(None, ge=1, le=1000, help="FedAvg rounds (default: the lineage's)")
    local: dict[str, Any] = field(
        default_factory=dict,
        metadata=schema(help="LocalConfig overrides (default: the lineage's)", local=True),
    )


@dataclass(frozen=True)
class MethodSpec:
    """An unlearning method as the service sees it: its name, what it does, its settings' dataclass (fields
    made with :func:`setting`; an optional ``check()`` method for rules across fields)."""

    name: str
    description: str
    settings: type[Any]

    def schema(self) -> dict[str, Any]:
        """The settings as JSON-able data: ``{name: {type, nullable, default, choices, minimum, ...}}``."""
        hints = typing.get_type_hints(self.settings)
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self.settings):
            m = f.metadata
            default: Any = None
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            entry: dict[str, Any] = {
                "type": _type_name(hints[f.name]),
                "nullable": _fits(None, hints[f.name]),
                "default": default,
                "help": m.get("help", ""),
            }
            for key, name in (
                ("choices", "choices"),
                ("ge", "minimum"),
                ("gt", "exclusive_minimum"),
                ("le", "maximum"),
            ):
                if m.get(key) is not None:
                    entry[name] = list(m[key]) if key == "choices" else m[key]
            out[f.name] = entry
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "settings": self.schema()}


#: every unlearning method the service may choose, by name (each has an implementation in unlearning.methods)
METHOD_SPECS: dict[str, MethodSpec] = {}


def register_method_spec(spec: MethodSpec) -> MethodSpec:
    """Make a method known by name (its implementation registers with :mod:`unlearning.methods`)."""
    _check_new_name(METHOD_SPECS, spec, "method")
    if not dataclasses.is_dataclass(spec.settings):
        raise ContractError(f"method {spec.name!r}: settings must be a dataclass", "method")
    METHOD_SPECS[spec.name] = spec
    return spec


def method_spec(name: str) -> MethodSpec:
    try:
        return METHOD_SPECS[name]
    except KeyError:
        raise ContractError(
            f"unknown unlearning method {name!r}; registered methods: {', '.join(sorted(METHOD_SPECS))}",
            "method",
        ) from None


def method_names() -> list[str]:
    return sorted(METHOD_SPECS)


def _fits(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a setting's annotation (int for float, never bool for a number)."""
    if hint is Any:
        return True
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return any(_fits(value, h) for h in typing.get_args(hint))
    origin = typing.get_origin(hint) or hint
    if hint is type(None):
        return value is None
    if origin is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if origin is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, origin)


def _type_name(hint: Any) -> str:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        names = [_type_name(h) for h in typing.get_args(hint) if h is not type(None)]
        return names[0] if len(names) == 1 else " | ".join(names)
    origin = typing.get_origin(hint) or hint
    json_names: dict[Any, str] = {
        float: "number",
        int: "integer",
        bool: "boolean",
        str: "string",
        dict: "object",
        list: "array",
    }
    return json_names.get(origin) or str(getattr(origin, "__name__", origin))


def _check_setting(method: str, f: dataclasses.Field[Any], hint: Any, value: Any) -> None:
    key, m = f.name, f.metadata
    if not _fits(value, hint):
        want = getattr(hint, "__name__", None) or str(hint)
        raise ContractError(
            f"setting {key!r} of method {method} must be {want} (got {value!r})", "method_config"
        )
    if value is None:
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ContractError(f"setting {key!r} of method {method} must be a finite number", "method_config")
    if m.get("local"):
        _check_local(method, key, value)
        return
    choices = m.get("choices")
    if choices is not None and value not in choices:
        raise ContractError(
            f"unknown {m.get('title') or 'value'} {value!r} for setting {key!r} of method {method}; "
            f"expected one of {', '.join(choices)}",
            "method_config",
        )
    for bound, word in ((m.get("ge"), ">="), (m.get("gt"), ">"), (m.get("le"), "<=")):
        if bound is not None and not compare(value, word, bound):
            raise ContractError(
                f"setting {key!r} of method {method} must be {word} {bound:g} (got {value!r})",
                "method_config",
            )
    if m.get("regex") and value:
        try:
            re.compile(value)
        except re.error as exc:
            raise ContractError(
                f"setting {key!r} of method {method} is not a valid regular expression: {exc}",
                "method_config",
            ) from None


def _check_local(method: str, key: str, value: Mapping[str, Any]) -> None:
    """A method's local-optimisation overrides: only :class:`LocalSettings`' fields, each within its bounds."""
    fields = {f.name: f for f in dataclasses.fields(LocalSettings)}
    unknown = sorted(map(str, set(value) - set(fields)))
    if unknown:
        raise ContractError(
            f"unknown local setting(s) in {key!r} of method {method}: {', '.join(unknown)}; "
            f"known: {', '.join(sorted(fields))}",
            "method_config",
        )
    hints = typing.get_type_hints(LocalSettings)
    where = f"{method} ({key})"
    for name, v in value.items():
        if name == "betas":
            ok = (
                isinstance(v, list | tuple)
                and len(v) == 2
                and all(_fits(b, float) and 0.0 <= b < 1.0 for b in v)
            )
            if not ok:
                raise ContractError(
                    f"setting 'betas' of {where} must be two numbers in [0, 1)", "method_config"
                )
            continue
        _check_setting(where, fields[name], hints[name], v)


def parse_method_settings(name: str, settings: Mapping[str, Any] | None = None) -> Any:
    """Method ``name``'s settings object from plain data (the dataclass of its spec); raises
    :class:`ContractError` naming the method (``field="method"``) or the setting (``field="method_config"``)."""
    spec = method_spec(name)
    settings = {} if settings is None else settings
    if not isinstance(settings, Mapping):
        raise ContractError("method_config must be an object", "method_config")
    fields = {f.name: f for f in dataclasses.fields(spec.settings)}
    unknown = sorted(set(settings) - set(fields))
    if unknown:
        raise ContractError(
            f"unknown setting(s) for method {name}: {', '.join(map(str, unknown))}; known: {', '.join(sorted(fields))}",
            "method_config",
        )
    hints = typing.get_type_hints(spec.settings)
    for key, value in settings.items():
        _check_setting(name, fields[key], hints[key], value)
    obj = spec.settings(**settings)
    check = getattr(obj, "check", None)
    if check is not None:
        try:
            check()
        except ContractError:
            raise
        except ValueError as exc:
            raise ContractError(f"settings of method {name}: {exc}", "method_config") from None
    return obj


def validate_method_settings(name: str, settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Check a job's method and settings (unknown method or setting, wrong type, out of bounds raise
    :class:`ContractError`); returns the settings as given (defaults are the method's and the task's)."""
    parse_method_settings(name, settings)
    return dict(settings or {})


@dataclass
class FedEraserConfig:
    """FedEraser (Liu et al. 2021): rebuild the model from the lineage's kept global models and the remaining
    nodes' kept updates, each calibrated by a short local training on that node (unlearning/methods/federaser.py)."""

    calibration_ratio: float = setting(
        0.5, gt=0.0, le=10.0, help="a calibration round's local training / the lineage's (epochs or steps)"
    )
    local: dict[str, Any] = field(
        default_factory=dict,
        metadata=schema(help="LocalConfig overrides of the calibration rounds", local=True),
    )


register_method_spec(
    MethodSpec(
        "federaser",
        "FedEraser: removes a departed node's contribution with the remaining nodes alone, from the global "
        "models and node updates that training kept (train with keep_updates_every); never contacts that node",
        FedEraserConfig,
    )
)


for _method in (
    MethodSpec(
        "gradient_ascent",
        "bounded gradient ascent on the forget data (L2 ball around a reference, early stopping); no repair",
        GradientAscentConfig,
    ),
    MethodSpec(
        "ewc",
        "gradient ascent with an elastic-weight-consolidation penalty from the retained data's Fisher",
        EWCConfig,
    ),
    MethodSpec(
        "gradient_ascent_ewc",
        "bounded gradient ascent with EWC, then federated repair rounds anchored at the unlearned model",
        GradientAscentEWCConfig,
    ),
    MethodSpec(
        "retrain",
        "FedAvg from the lineage's initial model without the forget data (the gold-standard reference)",
        RetrainConfig,
    ),
):
    register_method_spec(_method)


# ---- contribution: each node's share of a training job's quality (unlearning/contribution.py) -----------

CONTRIBUTION_FORMAT = 1  # the format of a training job's ``contribution`` section (JobResult.contribution)
CONTRIBUTION_METHODS = {
    "gtg-shapley": (
        "GTG-Shapley (Liu et al. 2022): per FedAvg round, Monte-Carlo Shapley values of the nodes' updates, "
        "with between-round and within-round truncation and guided permutations; every utility is a "
        "federated evaluation of a model built from a subset of the round's updates on the nodes' own "
        "validation data; a node's score is the sum over rounds"
    ),
    "none": "no contribution measured",
}
CONTRIBUTION_UTILITIES = ("auto", "accuracy", "loss")


@dataclass
class ContributionSettings:
    """How a training job measures each node's contribution (``JobSpec.contribution``)."""

    method: str = setting("gtg-shapley", choices=tuple(CONTRIBUTION_METHODS), help="the method, or none")
    utility: str = setting(
        "auto",
        choices=CONTRIBUTION_UTILITIES,
        help="the quality a score is a share of: validation accuracy, or loss (minus the mean validation "
        "loss); auto: accuracy for classifiers, loss for language models",
    )
    round_epsilon: float = setting(
        1e-3, ge=0.0, le=1.0, help="between-round truncation: a round that moved the utility less is skipped"
    )
    within_epsilon: float = setting(
        1e-3, ge=0.0, le=1.0, help="within-round truncation: a permutation stops once this close to U(all)"
    )
    max_permutations: int = setting(
        0, ge=0, le=1000, help="per round at most (0: 4 sweeps of one permutation led by each node)"
    )
    tolerance: float = setting(
        0.05, gt=0.0, le=1.0, help="convergence: stop when a sweep moves the scores less than this share"
    )
    seed: int = setting(0, ge=0, le=2**31 - 1, help="seed of the permutations")


def parse_contribution_settings(settings: Mapping[str, Any] | None = None) -> ContributionSettings:
    """The settings object from plain data; unknown keys, wrong types and values out of bounds raise
    :class:`ContractError` (``field="contribution"``)."""
    settings = {} if settings is None else settings
    if not isinstance(settings, Mapping):
        raise ContractError("contribution must be an object", "contribution")
    fields = {f.name: f for f in dataclasses.fields(ContributionSettings)}
    unknown = sorted(set(settings) - set(fields))
    if unknown:
        raise ContractError(
            f"unknown contribution setting(s): {', '.join(map(str, unknown))}; known: {', '.join(sorted(fields))}",
            "contribution",
        )
    hints = typing.get_type_hints(ContributionSettings)
    for key, value in settings.items():
        try:
            _check_setting("contribution", fields[key], hints[key], value)
        except ContractError as exc:
            raise ContractError(str(exc), "contribution") from None
    return ContributionSettings(**settings)


# the open-data export of contributions: one row per (model version, node); the CSV's columns in this order
CONTRIBUTION_COLUMNS = (
    "model_version",  # the version the training job produced
    "job_id",  # the job that trained it
    "method",  # gtg-shapley
    "utility",  # accuracy | loss: what the scores are shares of
    "partition",  # the node's partition id in the dataset
    "node",  # the node's name in the dataset's manifest
    "sources",  # the data sources the node trained on, space-separated federation names (node-K/<name>)
    "score",  # the node's contribution: the sum over rounds of its per-round Shapley value (utility units)
    "share",  # score / total_improvement (empty when the model did not improve)
    "rounds",  # rounds the node took part in
    "total_improvement",  # U(final) - U(initial) of the job
)
