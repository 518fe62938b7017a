"""The metric catalogue: every metric verification computes, by name (pure data, no torch).

Acceptance tests name these metrics; the service registers every entry with its own registry
(``governance.domain.metrics``) so that a proposal can never name a metric nothing computes. The functions
that compute them live in the family modules (forgetting.py, privacy.py, ...), one registered function per
metric (see :mod:`unlearning.verification.registry`); a test checks that both lists agree.
"""

from __future__ import annotations

from dataclasses import dataclass

ALL_TARGETS = frozenset({"data_source", "category", "behaviour"})


@dataclass(frozen=True)
class MetricSpec:
    name: str
    family: str  # forgetting | privacy | extraction | utility | robustness | cost
    description: str
    target_kinds: frozenset[str]  # proposal targets the metric can apply to
    better: str  # "lower" | "higher" | "closer-to-zero": what a good candidate shows


_ENTRIES = [
    MetricSpec(
        "forget_accuracy_gap",
        "forgetting",
        "|forget-set accuracy - retrained reference's| (classifier)",
        frozenset({"data_source", "category"}),
        "lower",
    ),
    MetricSpec(
        "forget_perplexity_ratio",
        "forgetting",
        "forget-set perplexity of the candidate / the reference's (LM)",
        ALL_TARGETS,
        "closer-to-one",
    ),
    MetricSpec(
        "forget_quality",
        "forgetting",
        "KS-test p-value between candidate and reference forget-set scores (TOFU)",
        ALL_TARGETS,
        "higher",
    ),
    MetricSpec(
        "mia_auc",
        "privacy",
        "membership-inference AUC, forget vs held-out (0.5 = no signal)",
        ALL_TARGETS,
        "closer-to-reference",
    ),
    MetricSpec("mia_auc_gap", "privacy", "|MIA AUC - the reference's MIA AUC|", ALL_TARGETS, "lower"),
    MetricSpec(
        "privleak",
        "privacy",
        "(AUC_candidate - AUC_reference) / AUC_reference",
        ALL_TARGETS,
        "closer-to-zero",
    ),
    MetricSpec(
        "canary_exposure",
        "extraction",
        "max Secret Sharer exposure of the target's canaries, in bits",
        ALL_TARGETS,
        "lower",
    ),
    MetricSpec(
        "extraction_rate",
        "extraction",
        "share of canaries / forbidden completions extracted by greedy decoding",
        ALL_TARGETS,
        "lower",
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
        frozenset({"data_source", "category"}),
        "lower",
    ),
    MetricSpec(
        "relearn_recovery",
        "robustness",
        "share of forgetting undone by a small relearning fine-tune",
        ALL_TARGETS,
        "lower",
    ),
    MetricSpec(
        "quantization_recovery",
        "robustness",
        "share of forgetting undone by int8 dynamic quantisation",
        ALL_TARGETS,
        "lower",
    ),
    MetricSpec("cost_ratio", "cost", "unlearning compute / retraining compute", ALL_TARGETS, "lower"),
]

CATALOG: dict[str, MetricSpec] = {m.name: m for m in _ENTRIES}
FAMILIES = ("forgetting", "privacy", "extraction", "utility", "robustness", "cost")


def metric_names() -> list[str]:
    return list(CATALOG)
