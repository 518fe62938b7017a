"""Causal language models (transformers): the shared half of the community-LM and bring-your-own tasks.

``model_config`` = ``{"hf_config": <transformers config dict>, "max_length": int, "tokenizer": "byt5" | dir}``.
The model is built from the config (``AutoModelForCausalLM.from_config``), never downloaded. Loss is the mean
next-token NLL over the tokens whose label is not -100; for a behaviour target only the completion's tokens
count, so ascent touches the secret and nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import torch
from torch import Tensor, nn

from unlearning.data import Record
from unlearning.tasks.base import Batch, Target, Task

IGNORE = -100


@lru_cache(maxsize=8)
def load_tokenizer(spec: str) -> Any:
    """``byt5`` -> a file-free byte-level tokenizer (259 ids: pad 0, eos 1, unk 2, byte b -> b + 3);
    anything else is a local directory in ``save_pretrained`` format (never a hub name: nothing is fetched)."""
    if spec == "byt5":
        from transformers import ByT5Tokenizer

        return ByT5Tokenizer(extra_ids=0)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(spec, local_files_only=True)


def _pieces(record: Record, target: Target | None, forget: bool) -> list[tuple[str, bool]]:
    """Split a record's text into (text, counts-for-loss) pieces."""
    text = str(record["text"])
    if not (forget and target is not None and target.kind == "behaviour"):
        return [(text, True)]
    for ex in target.examples:
        comp = ex["completion"]
        i = text.find(comp)
        if i >= 0:
            return [(text[:i], False), (comp, True), (text[i + len(comp) :], False)]
    return [(text, True)]


class CausalLMTask(Task):
    """Any local transformers causal LM (bring your own); ``tokenizer`` names a local directory."""

    name = "causal-lm"
    train_defaults = {
        "optimizer": "adamw",
        "lr": 3e-3,
        "batch_size": 16,
        "steps": 10,
        "clip": 1.0,
        "betas": [0.9, 0.98],
        "bf16": True,
    }
    method_defaults = {
        # data sources: secret-like spans (5+ digits) get their own exposure-stopped phase; the rest is
        # ascended on once per distinct line with joint descent on retained data until the local MIA AUC
        # against unseen lines of the same kind is <= 0.45; two short repair rounds keep every line as
        # forgotten as the ascent left it (bench/RESULTS.md "## Unlearning": without them the MIA AUC stays at
        # 0.81 against retraining's 0.38 and repeated canaries at 10 bits). The cost settings (learning rate,
        # checks every 2 steps, a ball around the original model instead of the Halimi reference's extra local
        # round, 32 Fisher examples per node, 2 x 3 repair steps) bring the job under 5 % of retraining there.
        # A secret's line also takes part in the ordinary ascent as the text before its secret: left out, the
        # lines around memorised canaries stayed memorised and the per-example attack flagged them (TPR at 1 %
        # FPR 0.20-0.35 where retrained models flag 0-0.10; 0.00 on every tuning seed with it, and retained
        # perplexity 2.4 % worse instead of 10.6 %: bench/RESULTS.md "Unlearning suite", tuning seeds 0-2).
        "data_source": {
            "secrets": r"\d{5,}",
            "secret_lines": "prefix",
            "stop_reference": "same-kind",
            "dedup": True,
            "retain_weight": 1.0,
            "stop": "auc",
            "auc": 0.45,
            "ascent": {"max_steps": 400, "lr": 2.5e-4, "check_every": 2},
            "reference": "original",
            "fisher_examples": 32,
            "repair_rounds": 2,
            "repair_local": {"steps": 3},
            "repair_guard": 3.0,
        },
        # a behaviour (a memorised secret): the generic 3 repair rounds of the lineage's local steps cost three
        # eighths of the suite's retraining; 2 rounds of 3 steps met the same targets on the tuning seeds 0-2 at
        # a third of the job's cost (bench/RESULTS.md "Unlearning suite", session 10)
        "behaviour": {"repair_rounds": 2, "repair_local": {"steps": 3}},
    }
    ascent_defaults = {
        "optimizer": "adamw",
        "lr": 1e-4,
        "batch_size": 16,
        "max_steps": 200,
        "clip": 1.0,
        "bf16": True,
    }

    @classmethod
    def default_model_config(cls, size: str = "default") -> dict[str, Any]:
        raise ValueError("a bring-your-own causal LM takes its config from its directory")

    def build_model(self, seed: int) -> nn.Module:
        from transformers import AutoConfig, AutoModelForCausalLM

        cfg = dict(self.model_config["hf_config"])
        model_type = cfg.pop("model_type")
        for key in ("transformers_version", "architectures", "_name_or_path", "dtype", "torch_dtype"):
            cfg.pop(key, None)
        config = AutoConfig.for_model(model_type, **cfg)
        torch.manual_seed(seed)
        model: nn.Module = AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]
        return model

    @property
    def tokenizer(self) -> Any:
        return load_tokenizer(str(self.model_config.get("tokenizer", "byt5")))

    def encode(self, record: Record, target: Target | None, forget: bool) -> tuple[list[int], list[int]]:
        tok = self.tokenizer
        start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        ids: list[int] = [int(start)]
        labels: list[int] = [IGNORE]
        for text, counts in _pieces(record, target, forget):
            if not text:
                continue
            piece = [int(i) for i in tok(text, add_special_tokens=False)["input_ids"]]
            ids += piece
            labels += piece if counts else [IGNORE] * len(piece)
        if not (forget and target is not None and target.kind == "behaviour"):
            ids.append(int(tok.eos_token_id))
            labels.append(int(tok.eos_token_id))
        n = int(self.model_config.get("max_length", 128))
        return ids[:n], labels[:n]

    def to_batch(
        self, records: Sequence[Record], target: Target | None = None, forget: bool = False
    ) -> Batch:
        return pad_batch([self.encode(r, target, forget) for r in records])

    def behaviour_batch(self, target: Target) -> Batch | None:
        if target.kind != "behaviour":
            return None
        recs = [{"text": ex.get("prompt", "") + ex["completion"]} for ex in target.examples]
        return self.to_batch(recs, target, forget=True)

    def _logits(self, model: nn.Module, batch: Batch) -> Tensor:
        out: Tensor = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return out[:, :-1]  # position t predicts token t + 1

    def per_example_loss(self, model: nn.Module, batch: Batch) -> Tensor:
        return _mean_nll(self._logits(model, batch), batch["labels"][:, 1:])

    def per_example_correct(self, model: nn.Module, batch: Batch) -> Tensor:
        return _accuracy(self._logits(model, batch), batch["labels"][:, 1:])

    def per_example_distill(
        self, student: nn.Module, teacher: nn.Module, batch: Batch
    ) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            target = self._logits(teacher, batch).float().log_softmax(-1)
        logits, labels = self._logits(student, batch), batch["labels"][:, 1:]
        kl = nn.functional.kl_div(logits.float().log_softmax(-1), target, log_target=True, reduction="none")
        mask = (labels != IGNORE).float()
        return _mean_nll(logits, labels), (kl.sum(-1) * mask).sum(1) / mask.sum(1).clamp(min=1)

    def per_example_stats(self, model: nn.Module, batch: Batch) -> tuple[Tensor, Tensor]:
        logits, labels = self._logits(model, batch), batch["labels"][:, 1:]
        return _mean_nll(logits, labels), _accuracy(logits, labels)


def _mean_nll(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean next-token NLL over each row's counted tokens: [B, L, V] logits, [B, L] labels -> [B]."""
    nll = nn.functional.cross_entropy(
        logits.float().transpose(1, 2), labels, ignore_index=IGNORE, reduction="none"
    )
    count = (labels != IGNORE).sum(1).clamp(min=1)
    out: Tensor = nll.sum(1) / count
    return out


def _accuracy(logits: Tensor, labels: Tensor) -> Tensor:
    mask = labels != IGNORE
    hit = (logits.argmax(-1) == labels) & mask
    out: Tensor = hit.sum(1).float() / mask.sum(1).clamp(min=1).float()
    return out


def pad_batch(encoded: Sequence[tuple[list[int], list[int]]]) -> Batch:
    width = max((len(ids) for ids, _ in encoded), default=1)
    b = len(encoded)
    input_ids = torch.zeros(b, width, dtype=torch.long)
    attention = torch.zeros(b, width, dtype=torch.long)
    labels = torch.full((b, width), IGNORE, dtype=torch.long)
    for i, (ids, lab) in enumerate(encoded):
        input_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention[i, : len(ids)] = 1
        labels[i, : len(lab)] = torch.tensor(lab, dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}
