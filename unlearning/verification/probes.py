"""Probe sets and per-example scores: the same examples for the original, the candidate and the reference.

- **forget**: the target's examples (deduplicated per node; a behaviour adds its own examples and counts only
  the completion's tokens), at most ``probe_examples``, sampled with the spec's seed. The examples members
  hold stay on their nodes: the probe names them by node and local index (:class:`NodeSelection`) and the
  nodes score them (:class:`NodeScorer`); only the proposal's own behaviour examples are a batch here;
- **heldout**: non-members of the same distribution for membership inference: the operator's published
  held-out test examples (a category: of that category; a data source: of the kinds of record it holds);
- **heldout_rest**: published held-out test examples outside the target (held-out utility);
- **canaries** the target covers: those inserted in a member's data are found and scored by the node that
  holds them (``node_canaries``); digit secrets among a behaviour's completions are scored here, as are the
  never-inserted **controls** the manifest publishes and the prompt/completion pairs greedy extraction tries.

Scores per example (:func:`score`): mean NLL (``loss``), accuracy, Min-K% (mean of the lowest k share of
token log-probabilities) and Min-K%++ (token log-probability standardised by the mean and standard
deviation of the log-probability under the model's own next-token distribution, then the lowest-k mean).
Membership scores are oriented so that higher means "more likely a member".
"""

from __future__ import annotations

import json
import math
import random
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from unlearning.data import Record, load_heldout, read_manifest
from unlearning.local import LocalConfig, autocast, train
from unlearning.tasks.base import Batch, Target, Task, batch_len
from unlearning.tasks.lm import IGNORE, CausalLMTask
from unlearning.verification.node_labels import manifest_node_names, nodes_where


@dataclass
class Canary:
    prefix: str
    secret: str
    inserted: bool
    repetitions: int = 0
    node: int | None = None  # held by this node (partition id): prefix and secret stay there, blank here
    protected: bool = False  # a string the node's owner declared (unlearning.verification.protected)


@dataclass
class NodeSelection:
    """The forget examples one node holds in the probe: local indices into its deduplicated forget examples
    (in the node's file order), in probe order."""

    partition_id: int
    indices: list[int]
    canaries: int = 0  # inserted canaries of the target this node holds


class NodeScorer(Protocol):
    """Per-example work on the nodes that hold the data (unlearning.verification.nodes over Flower): every
    call sends models (parameters) and indices, and gets back scores and counts only."""

    def forget_counts(self, target: Target) -> list[tuple[int, int, int, list[int]]]:
        """Per node: (partition id, deduplicated forget examples, canaries held, indices of the target's
        behaviour examples whose secret a canary of the node already is)."""
        ...

    def forget_kinds(self, selection: Sequence[NodeSelection], kinds: Sequence[str]) -> set[str]:
        """Which of the published record ``kinds`` the selected forget examples have."""
        ...

    def score(
        self,
        selection: Sequence[NodeSelection],
        models: Mapping[str, nn.Module],
        *,
        k: float,
        bf16: bool,
        transform: str = "",
        probe_set: str = "forget",
        shift: str = "",
    ) -> dict[str, Scores]:
        """Per-example scores of each model on the selected examples, concatenated in selection order
        (``probe_set`` "retained": indices into the node's retained examples; ``shift``: after that format
        shift, unlearning.verification.shifts)."""
        ...

    def retained_counts(self) -> list[tuple[int, int]]:
        """Per node: (partition id, deduplicated retained examples: not the target's, no canary, none an
        earlier unlearning of the lineage removed)."""
        ...

    def canaries(
        self,
        partitions: Sequence[int],
        models: Mapping[str, nn.Module],
        *,
        candidates: int,
        seed: int,
        extraction: bool,
        samples: int = 0,
        shifts: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """Per canary held by those nodes: {"node", "canary", "secret_length", "repetitions", "extraction"
        (whether greedy extraction tries it), role: {"exposure", "z"} (``candidates`` > 0), "extracted":
        {role: bool} (``extraction``), "sampled": {role: hits among ``samples`` completions sampled at
        temperature 1} (``samples`` > 0), "shifted": {role: {shift: bool}} (greedy extraction after each of
        ``shifts``' shifted prefixes)}; no prefix and no secret."""
        ...

    def relearn(
        self, partition: int, indices: list[int], models: Mapping[str, nn.Module], *, steps: int, seed: int
    ) -> dict[str, nn.Module]:
        """Each model after the relearning attack on the node's selected examples ``indices``."""
        ...

    def protected_declarations(self) -> dict[int, dict[str, Any]]:
        """Per node: its owner's protected strings as counted by the probe: {"declared", "checked" (found in
        the target's records), "forget", "commitment" (salted sha256 of the list)}; no string."""
        ...


@dataclass
class Probes:
    forget_records: list[Record]  # forget examples held here (constructed cases); node examples: nodes
    forget: Batch  # the forget examples scored here (the proposal's behaviour examples), after the nodes'
    heldout: Batch | None  # None: membership inference does not apply (heldout_reason says why)
    heldout_reason: str
    heldout_rest: Batch | None
    canaries: list[Canary] = field(default_factory=list)
    controls: list[Canary] = field(default_factory=list)
    extraction: list[tuple[str, str]] = field(default_factory=list)  # (prompt, forbidden completion)
    nodes: list[NodeSelection] = field(default_factory=list)  # forget examples held by nodes, first
    scorer: NodeScorer | None = None
    node_names: dict[int, str] = field(default_factory=dict)  # partition id -> name (the manifest's)

    @property
    def n_node_forget(self) -> int:
        return sum(len(s.indices) for s in self.nodes)

    @property
    def n_records(self) -> int:
        """Forget examples of the dataset (members' records, not the proposal's own examples)."""
        return len(self.forget_records) + self.n_node_forget

    @property
    def n_forget(self) -> int:
        """Examples of the whole forget probe: the nodes' then the ones held here."""
        return self.n_node_forget + batch_len(self.forget)

    @property
    def node_partitions(self) -> list[int]:
        return [s.partition_id for s in self.nodes if s.indices]

    def where_forget(self) -> list[str]:
        where = []
        if self.nodes:
            where.append(nodes_where(self.node_partitions, self.node_names))
        if batch_len(self.forget):
            where.append(
                "service: "
                + (
                    "the proposal's examples"
                    if self.nodes or not self.forget_records
                    else "forget examples given to the verifier"
                )
            )
        return where


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


def _select(counts: Sequence[tuple[int, int]], n: int, rng: random.Random) -> list[NodeSelection]:
    """The same draw as sampling ``n`` of the concatenated examples (nodes in partition order): global
    indices, then each node's local ones."""
    total = sum(c for _, c in counts)
    chosen = list(range(total)) if total <= n else sorted(rng.sample(range(total), n))
    out: list[NodeSelection] = []
    start = 0
    for pid, c in counts:
        out.append(NodeSelection(pid, [i - start for i in chosen if start <= i < start + c]))
        start += c
    return out


def build_probes(
    task: Task,
    target: Target | None,
    dataset_dir: Path,
    *,
    max_examples: int,
    seed: int,
    scorer: NodeScorer,
) -> Probes:
    """The probes, with no member's record read here: ``dataset_dir`` needs only the manifest and the
    published ``heldout/`` split; the nodes count, select and later score their own forget examples."""
    rng = random.Random(seed)
    manifest = read_manifest(dataset_dir)
    held = load_heldout(dataset_dir, "test") if (dataset_dir / "heldout" / "test.jsonl").is_file() else []
    selection: list[NodeSelection] = []
    covered: set[int] = set()
    held_canaries: dict[int, int] = {}
    if target is not None:
        counts = scorer.forget_counts(target)
        selection = _select([(pid, n) for pid, n, _, _ in counts], max_examples, rng)
        for pid, _, n_canaries, cov in counts:
            held_canaries[pid] = n_canaries
            covered.update(cov)
        for s in selection:
            s.canaries = held_canaries.get(s.partition_id, 0)
    selection = [s for s in selection if s.indices or s.canaries]
    n_node = sum(len(s.indices) for s in selection)
    behaviour: Batch | None = None
    if target is not None and target.kind == "behaviour":
        behaviour = task.behaviour_batch(target)
    forget = behaviour if behaviour is not None else task.to_batch([], target, forget=True)
    n_forget = n_node + batch_len(forget)

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
            published = sorted({str(r["kind"]) for r in held if r.get("kind") not in (None, "canary")})
            kinds = scorer.forget_kinds(selection, published) if published and n_node else set()
            pool = [r for r in held if not kinds or r.get("kind") in kinds]
        pool = _sample(_dedup(pool), max_examples, rng)
        if len(pool) < 2 or n_forget < 2:
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
            if not c.get("inserted"):  # never-inserted controls: published by the operator, no member's data
                controls.append(Canary(str(c["prefix"]), str(c["secret"]), False))
        for s in selection:
            canaries += [Canary("", "", True, node=s.partition_id) for _ in range(s.canaries)]
        if target is not None and target.kind == "behaviour":
            known: set[str] = set()
            for i, ex in enumerate(target.examples):
                prompt, completion = ex.get("prompt", ""), ex["completion"]
                digits = completion.rstrip(".")
                if digits.isdigit() and digits not in known and i not in covered:
                    canaries.append(Canary(prompt, digits, True))
                    known.add(digits)
                extraction.append((prompt, completion))
        extraction += [
            (c.prefix, c.secret)
            for c in canaries
            if c.node is None and (c.prefix, c.secret) not in extraction
        ]
    return Probes(
        [],
        forget,
        heldout,
        reason,
        heldout_rest,
        canaries,
        controls,
        extraction,
        selection,
        scorer,
        manifest_node_names(manifest),
    )


def node_canaries(target: Target | None, records: Sequence[Record]) -> list[Canary]:
    """The inserted canaries (records of kind ``canary`` with their ``secret``) among a node's ``records``
    that ``target`` covers, each once with its number of repetitions (run on the node that holds them)."""
    if target is None or target.kind == "category":
        return []
    found: dict[tuple[str, str], Canary] = {}
    for r in records:
        text, secret = str(r.get("text", "")), str(r.get("secret") or "")
        if r.get("kind") != "canary" or not secret or secret not in text:
            continue
        prefix = text[: text.index(secret)]
        if target.kind == "data_source":
            covered = r.get("source") == target.value
        else:
            covered = any(ex["completion"] in text or secret in ex["completion"] for ex in target.examples)
        if covered:
            c = found.setdefault((prefix, secret), Canary(prefix, secret, True, 0))
            c.repetitions += 1
    return list(found.values())


def node_protected(target: Target | None, records: Sequence[Record], node_dir: Path) -> list[Canary]:
    """The strings declared in ``node_dir``'s ``protected.txt`` that occur in the records ``target`` covers
    (a data source's records; a behaviour: records its completions are in, or strings within a completion),
    as canaries: the text before the string's most frequent occurrence is the prefix (run on the node)."""
    from unlearning.verification.protected import occurrences, read_protected

    if target is None or target.kind == "category":
        return []
    strings = read_protected(node_dir)
    if not strings:
        return []

    def covers(r: Record, s: str) -> bool:
        return target.matches(r) or (
            target.kind == "behaviour" and any(s in ex["completion"] for ex in target.examples)
        )

    return [Canary(p, s, True, n, protected=True) for p, s, n in occurrences(strings, records, covers)]


def dedup_records(records: Sequence[Record]) -> list[Record]:
    """Keep the first of records equal but for their source (a canary inserted 32 times counts once)."""
    return _dedup(records)


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


def relearn_model(task: Task, model: nn.Module, data: Batch, *, steps: int, seed: int) -> nn.Module:
    """The relearning attack: ``steps`` fine-tuning steps of the task's training optimiser on ``data``
    (in place; returns ``model``). Runs where ``data`` is: on the node that holds it, or here."""
    cfg = LocalConfig.from_dict(
        {**task.train_defaults, "steps": steps, "batch_size": min(8, batch_len(data))}
    )
    gen = torch.Generator()
    gen.manual_seed(seed * 7919 + 17)
    train(model, data, task, cfg, generator=gen)
    return model


def quantize(model: nn.Module) -> nn.Module:
    """int8 dynamic quantisation of every nn.Linear (weights int8, activations quantised on the fly)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q: nn.Module = torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
            model, {nn.Linear}, dtype=torch.qint8
        )
    return q


@torch.no_grad()
def quantize4(model: nn.Module) -> nn.Module:
    """4-bit weight-only quantisation, round-to-nearest per output channel (in place; returns ``model``): every
    nn.Linear weight row is mapped to the 16 levels -8..7 times the row's scale max|w| / 7 and back (as the
    weight-only RTN baseline of GPTQ/AWQ evaluations; biases and activations stay in float)."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            w = module.weight.data
            scale = w.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 7.0
            module.weight.data = (w / scale).round().clamp(-8, 7) * scale
    return model


def transformed(model: nn.Module, transform: str) -> nn.Module:
    """A copy of ``model`` after the attack ``transform`` ("": the model itself; "int8": dynamic int8
    quantisation of every nn.Linear; "int4": 4-bit round-to-nearest weights per output channel)."""
    import copy

    if not transform:
        return model
    if transform == "int8":
        return quantize(copy.deepcopy(model))
    if transform == "int4":
        return quantize4(copy.deepcopy(model))
    raise ValueError(f"unknown transform {transform!r}")


@torch.no_grad()
def sampled_hits(
    model: nn.Module, task: CausalLMTask, prompt: str, completion: str, *, samples: int, seed: int
) -> int:
    """Best-of-N extraction: how many of ``samples`` completions sampled at temperature 1 (full distribution,
    no top-k) after ``prompt`` reproduce ``completion`` token for token (one batch; a sample stops counting
    at its first wrong token)."""
    want = [int(i) for i in task.tokenizer(completion, add_special_tokens=False)["input_ids"]]
    ids = prompt_ids(task, prompt)
    limit = int(task.model_config.get("max_length", 128))
    if samples < 1 or len(ids) + len(want) > limit:
        return 0
    gen = torch.Generator()
    gen.manual_seed(seed * 1_000_003 + 7)
    was = model.training
    model.eval()
    try:
        x = torch.tensor([ids] * samples, dtype=torch.long)
        alive = torch.ones(samples, dtype=torch.bool)
        for expected in want:
            logits = model(input_ids=x, attention_mask=torch.ones_like(x)).logits[:, -1].float()
            nxt = torch.multinomial(logits.softmax(-1), 1, generator=gen)  # [N, 1]
            alive &= nxt[:, 0] == expected
            if not alive.any():
                return 0
            x = torch.cat([x, nxt], dim=1)
        return int(alive.sum())
    finally:
        model.train(was)
