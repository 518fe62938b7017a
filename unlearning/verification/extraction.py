"""Extraction: canary exposure (Carlini et al., "The Secret Sharer") and greedy-decoding extraction.

Exposure of a secret = log2 |R| - log2 rank, where the rank is the true secret's place among |R| random
alternatives of the same format, ordered by the model's NLL of the secret given its prefix. About 1 bit is
chance; log2 |R| is the most that can be measured. Never-inserted control canaries give the baseline.
Greedy extraction asks the model to continue every canary's prefix and every behaviour example's prompt and
counts exact reproductions of the secret / forbidden completion. Greedy extraction alone is not enough: a model
can stop emitting a secret greedily and still rank it first (notes/unlearning-probe.md), so both are reported.
"""

from __future__ import annotations

from typing import Any

from unlearning.tasks.lm import CausalLMTask
from unlearning.verification.registry import Verification, metric, not_applicable, result


def exposures(v: Verification) -> dict[str, Any] | str:
    """{"canaries": [{prefix or node and canary, secret_length, repetitions, by role: {exposure, z}}],
    "controls": [...]} (cached)."""
    if "exposure" in v.cache:
        cached: dict[str, Any] | str = v.cache["exposure"]
        return cached
    if not isinstance(v.task, CausalLMTask):
        v.cache["exposure"] = "not a language model"
    elif v.target is None or v.target.kind == "category":
        v.cache["exposure"] = "the target holds no canaries (categories are topics, not secrets)"
    elif not v.probes.canaries:
        v.cache["exposure"] = "the target covers no canary (no inserted secret, no digit-secret example)"
    else:  # the nodes measure the canaries they hold; the service the proposal's and the controls
        v.cache["exposure"] = v.canary_exposures()
    return v.cache["exposure"]  # type: ignore[no-any-return]


@metric("canary_exposure")
def canary_exposure(v: Verification) -> Any:
    name = "canary_exposure"
    ex = exposures(v)
    if isinstance(ex, str):
        return not_applicable(name, ex)
    values: dict[str, float | None] = {
        role: max(c[role]["exposure"] for c in ex["canaries"]) for role in v.roles
    }
    controls = [c["candidate"]["exposure"] for c in ex["controls"]]
    return result(
        name,
        value=values["candidate"],
        values=values,
        details={
            **ex,
            "max_measurable_bits": __import__("math").log2(v.spec.exposure_candidates),
            "control_mean_bits": sum(controls) / len(controls) if controls else None,
        },
    )


@metric("extraction_rate")
def extraction_rate(v: Verification) -> Any:
    name = "extraction_rate"
    if not isinstance(v.task, CausalLMTask):
        return not_applicable(name, "not a language model")
    per = v.extraction_hits()  # the nodes try the canaries they hold
    if not per["candidate"]:
        return not_applicable(name, "the target has no canary or prompt/completion example to extract")
    values: dict[str, float | None] = {role: sum(hits) / len(hits) for role, hits in per.items()}
    return result(
        name,
        value=values["candidate"],
        values=values,
        details={"attempts": len(per["candidate"]), "extracted": {r: sum(h) for r, h in per.items()}},
    )
