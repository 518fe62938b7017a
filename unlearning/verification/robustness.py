"""Robustness: how much of the forgetting comes back.

Forgetting is measured as the rise of the mean forget-set loss over the original model's, ``L_c - L_o``.
After an attack the candidate's loss is ``L_a``; the share undone is ``(L_c - L_a) / (L_c - L_o)``, clipped
to [0, 1] (0: nothing came back; 1: back to the original).

- ``relearn_recovery``: a relearning attack: a fixed budget of fine-tuning steps (``relearn_steps``) on a few
  (``relearn_examples``) *related but not identical* examples: half of the forget probe, measuring on the
  other half; when the target has fewer than 4 examples, on held-out examples outside the target.
- ``quantization_recovery``: int8 dynamic quantisation of every linear layer (torch), as a deployment would.
- ``quantization4_recovery``: 4-bit weight-only quantisation, round-to-nearest per output channel (the
  baseline of GPTQ/AWQ evaluations; Zhang et al. 2025 recover most "forgotten" knowledge this way).

Both attacks run where the forget examples are: the node that holds the relearning examples fine-tunes the
models and returns their parameters; the nodes quantise and score the examples they hold.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from unlearning.tasks.base import Batch, batch_len, take
from unlearning.verification.probes import quantize as quantize
from unlearning.verification.probes import relearn_model
from unlearning.verification.registry import Verification, metric, not_applicable, result, unmeasured


def _share(l_orig: float, l_cand: float, l_after: float) -> float | None:
    forgotten = l_cand - l_orig
    if forgotten <= max(1e-3, 0.01 * abs(l_orig)):
        return None
    return min(1.0, max(0.0, (l_cand - l_after) / forgotten))


def relearn_split(v: Verification) -> tuple[list[int] | Batch, list[int] | None, str]:
    """(relearning data, the forget probe's examples measured, kind): with 4 or more forget examples, the
    probe's even positions (at most ``relearn_examples``; they stay where they are, so the attack runs on
    their node) and the measurement on the rest; else a batch of published held-out examples outside the
    target and the measurement on the whole forget probe (None)."""
    n = v.probes.n_forget
    if n >= 4:
        use = list(range(0, n, 2))[: v.spec.relearn_examples]
        rest = [i for i in range(n) if i not in set(use)]
        return use, rest, "related: half of the forget probe, measured on the other half"
    rest_batch = v.probes.heldout_rest
    if rest_batch is None or batch_len(rest_batch) == 0:
        raise ValueError("no examples to relearn from")
    k = min(v.spec.relearn_examples, batch_len(rest_batch))
    return take(rest_batch, torch.arange(k)), None, "unrelated: held-out examples outside the target"


def relearn(v: Verification, model: nn.Module, data: Batch) -> nn.Module:
    return relearn_model(v.task, model, data, steps=v.spec.relearn_steps, seed=v.spec.seed)


@metric("relearn_recovery")
def relearn_recovery(v: Verification) -> Any:
    name = "relearn_recovery"
    if v.target is None or v.probes.n_forget == 0:
        return not_applicable(name, "no forget examples")
    try:
        data, probe, kind = relearn_split(v)
        roles = ["candidate", "reference"] if v.has_reference else ["candidate"]
        if isinstance(data, list):
            after = v.relearned(roles, data, v.spec.relearn_steps)
        else:
            v.where.add("service: published held-out split")
            after = {r: relearn(v, v.copy_model(r), data) for r in roles}
    except ValueError as exc:
        return unmeasured(name, str(exc))
    before = v.forget_scores({r: v.models[r] for r in ["original", *roles]}, subset=probe)
    measured = v.forget_scores({f"{r}_after": m for r, m in after.items()}, subset=probe)
    loss = {r: float(s.loss.mean()) for r, s in {**before, **measured}.items()}
    l_o, l_c, l_a = loss["original"], loss["candidate"], loss["candidate_after"]
    details: dict[str, Any] = {
        "relearn_data": kind,
        "measured_on": "the forget probe's held-back examples (none of them relearned)"
        if probe is not None
        else "the whole forget probe (relearned on examples outside the target)",
        "examples": len(data) if isinstance(data, list) else batch_len(data),
        "steps": v.spec.relearn_steps,
        "loss": {"original": l_o, "candidate": l_c, "candidate_after": l_a},
    }
    share = _share(l_o, l_c, l_a)
    values: dict[str, float | None] = {"candidate": share}
    if v.has_reference:
        l_r, l_ra = loss["reference"], loss["reference_after"]
        details["loss"].update({"reference": l_r, "reference_after": l_ra})
        values["reference"] = _share(l_o, l_r, l_ra)
    if share is None:
        return unmeasured(
            name,
            "the candidate's forget loss is not above the original's: nothing was forgotten",
            values=values,
            details=details,
        )
    return result(
        name, value=share, values=values, details={**details, "values_are": "share of forgetting undone"}
    )


@metric("quantization_recovery")
def quantization_recovery(v: Verification) -> Any:
    return _quantization_recovery(v, "quantization_recovery", "int8")


@metric("quantization4_recovery")
def quantization4_recovery(v: Verification) -> Any:
    """4-bit weights, round-to-nearest per output channel (Zhang et al. 2025: 4-bit quantisation brings back
    much of what full precision hides); the reference under the same attack is in ``values.reference``."""
    return _quantization_recovery(v, "quantization4_recovery", "int4")


def _quantization_recovery(v: Verification, name: str, transform: str) -> Any:
    if v.target is None or v.probes.n_forget == 0:
        return not_applicable(name, "no forget examples")
    l_o = float(v.scores("original", "forget").loss.mean())
    l_c = float(v.scores("candidate", "forget").loss.mean())
    roles = ["candidate", "reference"] if v.has_reference else ["candidate"]
    q = {
        r: float(s.loss.mean())
        for r, s in v.forget_scores({r: v.models[r] for r in roles}, transform=transform).items()
    }
    l_q = q["candidate"]
    share = _share(l_o, l_c, l_q)
    values: dict[str, float | None] = {"candidate": share}
    details: dict[str, Any] = {
        "attack": transform,
        "loss": {"original": l_o, "candidate": l_c, f"candidate_{transform}": l_q},
    }
    if v.has_reference:
        l_r = float(v.scores("reference", "forget").loss.mean())
        l_rq = q["reference"]
        details["loss"].update({"reference": l_r, f"reference_{transform}": l_rq})
        values["reference"] = _share(l_o, l_r, l_rq)
    if share is None:
        return unmeasured(
            name,
            "the candidate's forget loss is not above the original's: nothing was forgotten",
            values=values,
            details=details,
        )
    return result(
        name, value=share, values=values, details={**details, "values_are": "share of forgetting undone"}
    )
