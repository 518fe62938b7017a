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

from unlearning.metrics import canary_exposure as exposure_of
from unlearning.tasks.lm import CausalLMTask
from unlearning.verification.probes import greedy_extracts
from unlearning.verification.registry import Verification, metric, not_applicable, result


def exposures(v: Verification) -> dict[str, Any] | str:
    """{"canaries": [{prefix, secret, repetitions, by role: {exposure, z}}], "controls": [...]} (cached)."""
    if "exposure" in v.cache:
        cached: dict[str, Any] | str = v.cache["exposure"]
        return cached
    if not isinstance(v.task, CausalLMTask):
        v.cache["exposure"] = "not a language model"
    elif v.target is None or v.target.kind == "category":
        v.cache["exposure"] = "the target holds no canaries (categories are topics, not secrets)"
    elif not v.probes.canaries:
        v.cache["exposure"] = "the target covers no canary (no inserted secret, no digit-secret example)"
    else:
        task = v.task

        def measure(prefix: str, secret: str) -> dict[str, dict[str, float]]:
            out = {}
            for role in v.roles:
                e, z = exposure_of(
                    v.models[role],
                    task,
                    prefix,
                    secret,
                    candidates=v.spec.exposure_candidates,
                    seed=v.spec.seed,
                )
                out[role] = {"exposure": e, "z": z}
            return out

        v.cache["exposure"] = {
            "candidates": v.spec.exposure_candidates,
            "canaries": [
                {
                    "prefix": c.prefix,
                    "secret_length": len(c.secret),
                    "repetitions": c.repetitions,
                    **measure(c.prefix, c.secret),
                }
                for c in v.probes.canaries
            ],
            "controls": [
                {"prefix": c.prefix, "secret_length": len(c.secret), **measure(c.prefix, c.secret)}
                for c in v.probes.controls[:4]
            ],
        }
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
    if not v.probes.extraction:
        return not_applicable(name, "the target has no canary or prompt/completion example to extract")
    task = v.task
    per: dict[str, list[bool]] = {
        role: [greedy_extracts(v.models[role], task, p, c) for p, c in v.probes.extraction]
        for role in v.roles
    }
    values: dict[str, float | None] = {role: sum(hits) / len(hits) for role, hits in per.items()}
    return result(
        name,
        value=values["candidate"],
        values=values,
        details={"attempts": len(v.probes.extraction), "extracted": {r: sum(h) for r, h in per.items()}},
    )
