"""Measurements used by nodes (stop rules) and by the benchmark: membership-inference AUC and canary exposure.

- :func:`loss_auc`: loss-threshold membership inference, the ROC AUC of ``-loss`` separating members
  (label 1) from non-members (label 0); 0.5 is chance, the target is the retrained model's value.
- :func:`canary_exposure`: Secret Sharer exposure (Carlini et al.): ``log2 |R| - log2 rank`` of the true
  secret among ``|R|`` random candidates of the same format, scored by the NLL of the secret's tokens given
  its prefix; also the z-score of the true secret's NLL against the candidates' (negative = more likely).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from unlearning.tasks.base import Target, Task
from unlearning.tasks.lm import IGNORE, pad_batch


def loss_auc(member_losses: Sequence[float] | Tensor, nonmember_losses: Sequence[float] | Tensor) -> float:
    from sklearn.metrics import roc_auc_score

    m = [float(x) for x in member_losses]
    n = [float(x) for x in nonmember_losses]
    if not m or not n:
        return float("nan")
    return float(roc_auc_score([1] * len(m) + [0] * len(n), [-x for x in m + n]))


def _candidates(secret: str, count: int, seed: int) -> list[str]:
    rng = random.Random(f"{seed}:{len(secret)}")
    out: list[str] = []
    seen = {secret}
    while len(out) < count:
        c = "".join(rng.choice("0123456789") for _ in secret)
        if c not in seen:
            seen.add(c)
            out.append(c)
    return out


@torch.no_grad()
def secret_nll(model: nn.Module, task: Task, prefix: str, secrets: Sequence[str]) -> Tensor:
    """Summed NLL of each secret's tokens given ``prefix`` (shape [len(secrets)])."""
    from unlearning.tasks.lm import CausalLMTask

    if not isinstance(task, CausalLMTask):
        raise TypeError("canary exposure needs a causal-LM task")
    encoded = [
        task.encode(
            {"text": prefix + s},
            Target(kind="behaviour", examples=[{"prompt": prefix, "completion": s}]),
            True,
        )
        for s in secrets
    ]
    batch = pad_batch(encoded)
    was = model.training
    model.eval()
    out = []
    for i in range(0, len(encoded), 128):
        part = {k: v[i : i + 128] for k, v in batch.items()}
        mean = task.per_example_loss(model, part)
        count = (part["labels"][:, 1:] != IGNORE).sum(1)
        out.append(mean * count)
    model.train(was)
    return torch.cat(out)


def canary_exposure(
    model: nn.Module, task: Task, prefix: str, secret: str, *, candidates: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """(exposure in bits, z-score) of ``secret`` after ``prefix`` against ``candidates`` random secrets."""
    cands = _candidates(secret, candidates, seed)
    nll = secret_nll(model, task, prefix, [secret, *cands])
    true, others = nll[0], nll[1:]
    rank = 1 + int((others < true).sum())
    exposure = math.log2(len(cands)) - math.log2(rank)
    z = float((true - others.mean()) / others.std().clamp(min=1e-8))
    return exposure, z


def exposure_z(
    model: nn.Module, task: Task, prefix: str, secret: str, *, candidates: int = 100, seed: int = 0
) -> float:
    """The z-score half of :func:`canary_exposure` (the stop rule of secret unlearning)."""
    return canary_exposure(model, task, prefix, secret, candidates=candidates, seed=seed)[1]
