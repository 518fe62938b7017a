"""Robustness: how much of the forgetting comes back.

Forgetting is measured as the rise of the mean forget-set loss over the original model's, ``L_c - L_o``.
After an attack the candidate's loss is ``L_a``; the share undone is ``(L_c - L_a) / (L_c - L_o)``, clipped
to [0, 1] (0: nothing came back; 1: back to the original).

- ``relearn_recovery``: a relearning attack: a fixed budget of fine-tuning steps (``relearn_steps``) on a few
  (``relearn_examples``) *related but not identical* examples: half of the forget probe, measuring on the
  other half; when the target has fewer than 4 examples, on held-out examples outside the target.
- ``quantization_recovery``: int8 dynamic quantisation of every linear layer (torch), as a deployment would.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from unlearning.local import LocalConfig, train
from unlearning.tasks.base import Batch, batch_len, take
from unlearning.verification.probes import score
from unlearning.verification.registry import Verification, metric, not_applicable, result, unmeasured


def _mean_loss(v: Verification, model: nn.Module, batch: Batch) -> float:
    return float(score(model, v.task, batch, k=v.spec.min_k, bf16=v.spec.precision == "bf16").loss.mean())


def _share(l_orig: float, l_cand: float, l_after: float) -> float | None:
    forgotten = l_cand - l_orig
    if forgotten <= max(1e-3, 0.01 * abs(l_orig)):
        return None
    return min(1.0, max(0.0, (l_cand - l_after) / forgotten))


def relearn_split(v: Verification) -> tuple[Batch, Batch, str]:
    forget = v.probes.forget
    n = batch_len(forget)
    if n >= 4:
        idx = torch.arange(n)
        use = idx[0::2][: v.spec.relearn_examples]
        rest = torch.tensor([i for i in range(n) if i not in set(use.tolist())], dtype=torch.long)
        return (
            take(forget, use),
            take(forget, rest),
            "related: half of the forget probe, measured on the other half",
        )
    rest_batch = v.probes.heldout_rest
    if rest_batch is None or batch_len(rest_batch) == 0:
        raise ValueError("no examples to relearn from")
    k = min(v.spec.relearn_examples, batch_len(rest_batch))
    return take(rest_batch, torch.arange(k)), forget, "unrelated: held-out examples outside the target"


def relearn(v: Verification, model: nn.Module, data: Batch) -> nn.Module:
    cfg = LocalConfig.from_dict(
        {**v.task.train_defaults, "steps": v.spec.relearn_steps, "batch_size": min(8, batch_len(data))}
    )
    gen = torch.Generator()
    gen.manual_seed(v.spec.seed * 7919 + 17)
    train(model, data, v.task, cfg, generator=gen)
    return model


@metric("relearn_recovery")
def relearn_recovery(v: Verification) -> Any:
    name = "relearn_recovery"
    if v.target is None or batch_len(v.probes.forget) == 0:
        return not_applicable(name, "no forget examples")
    try:
        data, probe, kind = relearn_split(v)
    except ValueError as exc:
        return unmeasured(name, str(exc))
    l_o = _mean_loss(v, v.models["original"], probe)
    l_c = _mean_loss(v, v.models["candidate"], probe)
    l_a = _mean_loss(v, relearn(v, v.copy_model("candidate"), data), probe)
    details: dict[str, Any] = {
        "relearn_data": kind,
        "examples": batch_len(data),
        "steps": v.spec.relearn_steps,
        "loss": {"original": l_o, "candidate": l_c, "candidate_after": l_a},
    }
    share = _share(l_o, l_c, l_a)
    values: dict[str, float | None] = {"candidate": share}
    if v.has_reference:
        l_r = _mean_loss(v, v.models["reference"], probe)
        l_ra = _mean_loss(v, relearn(v, v.copy_model("reference"), data), probe)
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


def quantize(model: nn.Module) -> nn.Module:
    """int8 dynamic quantisation of every nn.Linear (weights int8, activations quantised on the fly)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q: nn.Module = torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
            model, {nn.Linear}, dtype=torch.qint8
        )
    return q


@metric("quantization_recovery")
def quantization_recovery(v: Verification) -> Any:
    name = "quantization_recovery"
    if v.target is None or batch_len(v.probes.forget) == 0:
        return not_applicable(name, "no forget examples")
    forget = v.probes.forget
    l_o = float(v.scores("original", "forget").loss.mean())
    l_c = float(v.scores("candidate", "forget").loss.mean())
    l_q = _mean_loss(v, quantize(v.copy_model("candidate")), forget)
    share = _share(l_o, l_c, l_q)
    values: dict[str, float | None] = {"candidate": share}
    details: dict[str, Any] = {"loss": {"original": l_o, "candidate": l_c, "candidate_int8": l_q}}
    if v.has_reference:
        l_r = float(v.scores("reference", "forget").loss.mean())
        l_rq = _mean_loss(v, quantize(v.copy_model("reference")), forget)
        details["loss"].update({"reference": l_r, "reference_int8": l_rq})
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
