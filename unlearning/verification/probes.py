"""Probe sets and per-example scores: the same examples for the original, the candidate and the reference.

- **forget**: the dataset's examples of the target (deduplicated; a behaviour adds its own examples and
  counts only the completion's tokens), at most ``probe_examples``, sampled with the spec's seed;
- **heldout**: non-members of the same distribution for membership inference: held-out test examples
  (a category: of that category; a data source: of the kinds of record it holds);
- **heldout_rest**: held-out test examples outside the target (held-out utility);
- **canaries** the target covers (inserted secrets), the never-inserted **controls**, and the
  prompt/completion pairs greedy extraction tries.

Scores per example (:func:`score`): mean NLL (``loss``), accuracy, Min-K% (mean of the lowest k share of
token log-probabilities) and Min-K%++ (token log-probability standardised by the mean and standard
deviation of the log-probability under the model's own next-token distribution, then the lowest-k mean).
Membership scores are oriented so that higher means "more likely a member".
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from unlearning.data import Record, load_heldout, load_node_data, read_manifest
from unlearning.local import autocast
from unlearning.tasks.base import Batch, Target, Task, batch_len
from unlearning.tasks.lm import IGNORE, CausalLMTask


@dataclass
class Canary:
    prefix: str
    secret: str
    inserted: bool
    repetitions: int = 0


@dataclass
class Probes:
    forget_records: list[Record]
    forget: Batch
    heldout: Batch | None  # None: membership inference does not apply (heldout_reason says why)
    heldout_reason: str
    heldout_rest: Batch | None
    canaries: list[Canary] = field(default_factory=list)
    controls: list[Canary] = field(default_factory=list)
    extraction: list[tuple[str, str]] = field(default_factory=list)  # (prompt, forbidden completion)


def _dedup(records: Sequence[Record]) -> list[Record]:
    seen: set[str] = set()
    out = []
    for r in records:
        key = json.dumps({k: v for k, v in r.items() if k != "source"}, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def _sample(records: list[Record], n: int, rng: random.Random) -> list[Record]:
    if len(records) <= n:
        return records
    idx = sorted(rng.sample(range(len(records)), n))
    return [records[i] for i in idx]


def all_training_records(dataset_dir: Path) -> list[Record]:
    manifest = read_manifest(dataset_dir)
    out: list[Record] = []
    for node in manifest["nodes"]:
        out.extend(load_node_data(dataset_dir / node["path"]).train)
    return out


def build_probes(
    task: Task, target: Target | None, dataset_dir: Path, *, max_examples: int, seed: int
) -> Probes:
    rng = random.Random(seed)
    manifest = read_manifest(dataset_dir)
    train = all_training_records(dataset_dir)
    held = load_heldout(dataset_dir, "test") if (dataset_dir / "heldout" / "test.jsonl").is_file() else []
    forget_records: list[Record] = []
    if target is not None:
        forget_records = _sample(_dedup([r for r in train if target.matches(r)]), max_examples, rng)
    parts: list[Batch] = []
    if forget_records:
        parts.append(task.to_batch(forget_records, target, forget=True))
    if target is not None and target.kind == "behaviour":
        b = task.behaviour_batch(target)
        if b is not None:
            parts.append(b)
    from unlearning.tasks.base import concat

    forget = concat(parts) if parts else task.to_batch([], target, forget=True)

    heldout: Batch | None = None
    reason = ""
    if target is None:
        reason = "no target"
    elif target.kind == "behaviour":
        reason = (
            "a behaviour's examples have no held-out counterpart (see canary_exposure and extraction_rate)"
        )
    else:
        if target.kind == "category":
            pool = [r for r in held if str(r.get("category")) == target.value]
        else:
            kinds = {r.get("kind") for r in forget_records if r.get("kind") not in (None, "canary")}
            pool = [r for r in held if not kinds or r.get("kind") in kinds]
        pool = _sample(_dedup(pool), max_examples, rng)
        if len(pool) < 2 or batch_len(forget) < 2:
            reason = "fewer than 2 forget or held-out examples"
        else:
            heldout = task.to_batch(pool)
    rest = [r for r in held if target is None or not target.matches(r)]
    if target is not None and target.kind == "category":
        rest = [r for r in rest if str(r.get("category")) != target.value]
    heldout_rest = task.to_batch(_sample(rest, max(max_examples, 256), rng)) if rest else None

    canaries: list[Canary] = []
    controls: list[Canary] = []
    extraction: list[tuple[str, str]] = []
    if isinstance(task, CausalLMTask):
        for c in manifest.get("canaries", []):
            canary = Canary(
                str(c["prefix"]), str(c["secret"]), bool(c.get("inserted")), int(c.get("repetitions", 0))
            )
            if not canary.inserted:
                controls.append(canary)
            elif target is not None and _covers(target, c):
                canaries.append(canary)
        if target is not None and target.kind == "behaviour":
            known = {c.secret for c in canaries}
            for ex in target.examples:
                prompt, completion = ex.get("prompt", ""), ex["completion"]
                digits = completion.rstrip(".")
                if digits.isdigit() and digits not in known:
                    canaries.append(Canary(prompt, digits, True))
                    known.add(digits)
                extraction.append((prompt, completion))
        extraction += [(c.prefix, c.secret) for c in canaries if (c.prefix, c.secret) not in extraction]
    return Probes(forget_records, forget, heldout, reason, heldout_rest, canaries, controls, extraction)


def _covers(target: Target, canary: dict[str, Any]) -> bool:
    if target.kind == "data_source":
        return bool(canary.get("source") == target.value)
    if target.kind == "behaviour":
        text = f"{canary['prefix']}{canary['secret']}{canary.get('suffix', '')}"
        return any(
            ex["completion"] in text or str(canary["secret"]) in ex["completion"] for ex in target.examples
        )
    return False


# ------------------------------------------------------------------------------------------ scoring


@dataclass
class Scores:
    """Per-example scores of one model on one probe set (all shape [B])."""

    loss: Tensor  # mean NLL over the counted tokens (classifier: cross-entropy)
    correct: Tensor  # accuracy in [0, 1]
    tokens: Tensor  # counted tokens (classifier: 1)
    min_k: Tensor | None  # Min-K% score (higher = member); None for classifiers (one token: = -loss)
    min_k_pp: Tensor  # Min-K%++ score (higher = member)

    @property
    def perplexity(self) -> float:
        """exp of the token-weighted mean NLL."""
        total = float((self.loss * self.tokens).sum())
        count = float(self.tokens.sum())
        return math.exp(min(total / max(count, 1.0), 50.0))


def _lowest_k_mean(values: Tensor, mask: Tensor, k: float) -> Tensor:
    """Mean of the lowest ``k`` share of each row's masked values. values, mask: [B, T] -> [B]."""
    big = torch.finfo(values.dtype).max
    filled = torch.where(mask, values, torch.full_like(values, big))
    ordered = filled.sort(dim=1).values
    counts = mask.sum(1)
    keep = (counts.float() * k).ceil().clamp(min=1).long()
    pos = torch.arange(values.shape[1]).unsqueeze(0)
    sel = pos < keep.unsqueeze(1)
    return torch.where(sel, ordered, torch.zeros_like(ordered)).sum(1) / keep.float()


@torch.no_grad()
def score(model: nn.Module, task: Task, batch: Batch, *, k: float = 0.4, bf16: bool = False) -> Scores:
    """Per-example scores of ``model`` on ``batch`` (chunks of 64)."""
    was = model.training
    model.eval()
    n = batch_len(batch)
    outs: list[tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor]] = []
    for i in range(0, n, 64):
        part = {key: v[i : i + 64] for key, v in batch.items()}
        with autocast(bf16):
            if isinstance(task, CausalLMTask):
                outs.append(_score_lm(model, part, k))
            else:
                outs.append(_score_classifier(model, task, part))
    model.train(was)
    if not outs:
        empty = torch.zeros(0)
        return Scores(empty, empty, empty, None, empty)
    min_k = None if outs[0][3] is None else torch.cat([o[3] for o in outs if o[3] is not None])
    return Scores(
        torch.cat([o[0] for o in outs]),
        torch.cat([o[1] for o in outs]),
        torch.cat([o[2] for o in outs]),
        min_k,
        torch.cat([o[4] for o in outs]),
    )


def _score_lm(model: nn.Module, batch: Batch, k: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logp = logits[:, :-1].float().log_softmax(-1)  # [B, L-1, V]
    labels = batch["labels"][:, 1:]  # [B, L-1]
    mask = labels != IGNORE
    safe = labels.clamp(min=0)
    tok = logp.gather(-1, safe.unsqueeze(-1)).squeeze(-1)  # [B, L-1]
    count = mask.sum(1).clamp(min=1)
    loss = -(tok * mask).sum(1) / count
    correct = ((logp.argmax(-1) == labels) & mask).sum(1).float() / count.float()
    p = logp.exp()
    mu = (p * logp).sum(-1)
    sigma = ((p * logp.pow(2)).sum(-1) - mu.pow(2)).clamp(min=1e-12).sqrt()
    pp = (tok - mu) / sigma
    return loss, correct, mask.sum(1).float(), _lowest_k_mean(tok, mask, k), _lowest_k_mean(pp, mask, k)


def _score_classifier(
    model: nn.Module, task: Task, batch: Batch
) -> tuple[Tensor, Tensor, Tensor, None, Tensor]:
    logp = model(batch["x"]).float().log_softmax(-1)  # [B, C]
    y = batch["y"]
    tok = logp.gather(-1, y.unsqueeze(-1)).squeeze(-1)
    p = logp.exp()
    mu = (p * logp).sum(-1)
    sigma = ((p * logp.pow(2)).sum(-1) - mu.pow(2)).clamp(min=1e-12).sqrt()
    correct = (logp.argmax(-1) == y).float()
    return -tok, correct, torch.ones_like(tok), None, (tok - mu) / sigma


# ------------------------------------------------------------------------------- LM helpers


def prompt_ids(task: CausalLMTask, text: str) -> list[int]:
    tok = task.tokenizer
    start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    return (
        [int(start), *(int(i) for i in tok(text, add_special_tokens=False)["input_ids"])]
        if text
        else [int(start)]
    )


@torch.no_grad()
def greedy_extracts(model: nn.Module, task: CausalLMTask, prompt: str, completion: str) -> bool:
    """Whether greedy decoding after ``prompt`` reproduces ``completion`` token for token."""
    want = [int(i) for i in task.tokenizer(completion, add_special_tokens=False)["input_ids"]]
    ids = prompt_ids(task, prompt)
    limit = int(task.model_config.get("max_length", 128))
    was = model.training
    model.eval()
    try:
        for expected in want:
            if len(ids) >= limit:
                return False
            x = torch.tensor([ids], dtype=torch.long)
            nxt = int(model(input_ids=x, attention_mask=torch.ones_like(x)).logits[0, -1].argmax())
            if nxt != expected:
                return False
            ids.append(nxt)
        return True
    finally:
        model.train(was)
