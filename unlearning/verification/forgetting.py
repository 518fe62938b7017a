"""Forgetting: the forget set measured against the retrained reference, never against zero.

Without a retrained reference a documented proxy stands in where one exists (the report says so): for a data
source, the *original* model on held-out examples of the same distribution (what a model that never saw the
source would show); for a category, accuracy 0 (a model that never saw a class never predicts it).
"""

from __future__ import annotations

from typing import Any

from unlearning.verification.registry import Verification, metric, not_applicable, result, unmeasured


def _proxy_allowed(v: Verification) -> bool:
    return v.target is not None and v.target.kind == "data_source" and v.probes.heldout is not None


@metric("forget_accuracy_gap")
def forget_accuracy_gap(v: Verification) -> Any:
    name = "forget_accuracy_gap"
    if not v.task.is_classifier:
        return not_applicable(name, "not a classifier (see forget_perplexity_ratio)")
    if v.target is None or v.probes.n_records == 0:
        return not_applicable(name, "no forget examples in the dataset")
    values: dict[str, float | None] = {r: float(v.scores(r, "forget").correct.mean()) for r in v.roles}
    if v.has_reference:
        ref, source = values["reference"], "retrained reference"
    elif v.target.kind == "category":
        ref, source = 0.0, "proxy: a model that never saw the category (accuracy 0)"
    elif _proxy_allowed(v):
        ref = float(v.scores("original", "heldout").correct.mean())
        source = "proxy: the original model's accuracy on held-out examples"
    else:
        return unmeasured(name, "needs a retrained reference", values=values)
    assert ref is not None
    cand = values["candidate"]
    assert cand is not None
    values.setdefault("reference", ref)
    return result(name, value=abs(cand - ref), values=values, details={"reference_source": source})


@metric("forget_perplexity_ratio")
def forget_perplexity_ratio(v: Verification) -> Any:
    name = "forget_perplexity_ratio"
    if v.task.is_classifier:
        return not_applicable(name, "a classifier has no perplexity (see forget_accuracy_gap)")
    if v.target is None or v.probes.n_forget == 0:
        return not_applicable(name, "no forget examples")
    values: dict[str, float | None] = {r: v.scores(r, "forget").perplexity for r in v.roles}
    if v.has_reference:
        ref, source = values["reference"], "retrained reference"
    elif _proxy_allowed(v):
        ref = v.scores("original", "heldout").perplexity
        source = "proxy: the original model's perplexity on held-out examples"
    else:
        return unmeasured(name, "needs a retrained reference", values=values)
    assert ref is not None
    cand = values["candidate"]
    assert cand is not None
    values.setdefault("reference", ref)
    return result(name, value=cand / ref, values=values, details={"reference_source": source})


@metric("forget_quality")
def forget_quality(v: Verification) -> Any:
    """TOFU's forget quality: the p-value of a two-sample Kolmogorov-Smirnov test between the candidate's and
    the reference's per-example forget-set losses (high: indistinguishable from retraining)."""
    from scipy.stats import ks_2samp

    name = "forget_quality"
    if v.target is None or v.probes.n_forget < 2:
        return not_applicable(name, "fewer than 2 forget examples")
    cand = v.scores("candidate", "forget").loss
    if v.has_reference:
        ref, source = v.scores("reference", "forget").loss, "retrained reference on the forget set"
    elif _proxy_allowed(v):
        ref = v.scores("original", "heldout").loss
        source = "proxy: the original model's losses on held-out examples"
    else:
        return unmeasured(name, "needs a retrained reference")
    test = ks_2samp(cand.numpy(), ref.numpy())
    values: dict[str, float | None] = {r: float(v.scores(r, "forget").loss.mean()) for r in v.roles}
    orig = ks_2samp(v.scores("original", "forget").loss.numpy(), ref.numpy())
    return result(
        name,
        value=float(test.pvalue),
        values=values,
        details={
            "ks_statistic": float(test.statistic),
            "original_pvalue": float(orig.pvalue),
            "reference_source": source,
            "values_are": "mean forget-set loss per model",
        },
    )
