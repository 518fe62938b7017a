"""Registry of verification metric names that acceptance tests may name.

The unlearning library owns the metrics themselves; this registry is what governance validates proposals
against. The verification layer extends it with ``register_metric`` when it registers a metric, so a
proposal can never name a metric that nothing computes.
"""

from __future__ import annotations

from dataclasses import dataclass

from governance.domain.errors import InvalidInput

COMPARATORS: dict[str, str] = {
    "<=": "at most",
    ">=": "at least",
    "<": "below",
    ">": "above",
}


@dataclass(frozen=True)
class MetricInfo:
    name: str
    description: str
    target_kinds: frozenset[str]  # which proposal targets it applies to


_REGISTRY: dict[str, MetricInfo] = {}

ALL_TARGETS = frozenset({"data_source", "category", "behaviour"})


def register_metric(name: str, description: str, target_kinds: frozenset[str] = ALL_TARGETS) -> None:
    if not name or not name.replace("_", "").isalnum():
        raise ValueError(f"metric names are snake_case identifiers, got {name!r}")
    _REGISTRY[name] = MetricInfo(name, description, frozenset(target_kinds))


def known_metrics() -> dict[str, MetricInfo]:
    return dict(_REGISTRY)


def get_metric(name: str) -> MetricInfo:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise InvalidInput(f"unknown metric {name!r}; known metrics: {known}", field="metric") from None


for _name, _desc, _kinds in [
    (
        "forget_accuracy_gap",
        "|forget-set accuracy - retrained reference's| (classifier)",
        {"data_source", "category"},
    ),
    ("forget_perplexity_ratio", "forget-set perplexity of the candidate / the reference's (LM)", ALL_TARGETS),
    (
        "forget_quality",
        "KS-test p-value between candidate and reference forget-set scores (TOFU)",
        ALL_TARGETS,
    ),
    ("mia_auc", "membership-inference AUC, forget vs held-out (0.5 = no signal)", ALL_TARGETS),
    ("mia_auc_gap", "|MIA AUC - the reference's MIA AUC|", ALL_TARGETS),
    ("privleak", "(AUC_candidate - AUC_reference) / AUC_reference", ALL_TARGETS),
    ("canary_exposure", "max Secret Sharer exposure of the target's canaries, in bits", ALL_TARGETS),
    (
        "extraction_rate",
        "share of canaries / forbidden completions extracted by greedy decoding",
        ALL_TARGETS,
    ),
    (
        "retained_utility_drop",
        "drop of retained-data quality against the original model (weighted mean)",
        ALL_TARGETS,
    ),
    ("worst_node_utility_drop", "drop of quality on the worst node's local validation data", ALL_TARGETS),
    (
        "heldout_accuracy_gap",
        "|held-out accuracy - the reference's| (classifier)",
        {"data_source", "category"},
    ),
    ("relearn_recovery", "share of forgetting undone by a small relearning fine-tune", ALL_TARGETS),
    ("quantization_recovery", "share of forgetting undone by int8 dynamic quantisation", ALL_TARGETS),
    ("cost_ratio", "unlearning compute / retraining compute", ALL_TARGETS),
]:
    register_metric(_name, _desc, frozenset(_kinds))
