"""What a reference task is: a model family, a way to turn JSONL records into tensors, and per-example losses.

The federation, the methods and the CLI never look inside a task's data: they see a :class:`Task`, a node's
:class:`NodeData` (tensors that never leave the node) and per-example loss / correctness functions. A task is
described by a small JSON-able ``model_config`` that travels with every message (the architecture, never
data), so any node can build the model and load the arrays it receives.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from unlearning.contract import Target as Target  # re-exported: the tasks and verification take it from here
from unlearning.data import Record

# A batch is a dict of tensors that share their first dimension (examples): digits use {"x", "y"},
# causal LMs use {"input_ids", "attention_mask", "labels"} (labels = -100 where no loss is taken).
Batch = dict[str, Tensor]


def batch_len(batch: Batch) -> int:
    return int(next(iter(batch.values())).shape[0])


def take(batch: Batch, index: Tensor | slice) -> Batch:
    return {k: v[index] for k, v in batch.items()}


def concat(batches: Sequence[Batch]) -> Batch:
    batches = [b for b in batches if batch_len(b) > 0]
    if not batches:
        raise ValueError("concat() needs at least one non-empty batch")
    keys = batches[0].keys()
    if any(b.keys() != keys for b in batches):
        raise ValueError("batches have different keys")
    if "input_ids" in keys:  # pad LM batches to a common length
        width = max(int(b["input_ids"].shape[1]) for b in batches)
        padded = []
        for b in batches:
            extra = width - int(b["input_ids"].shape[1])
            padded.append(
                {
                    "input_ids": nn.functional.pad(b["input_ids"], (0, extra), value=0),
                    "attention_mask": nn.functional.pad(b["attention_mask"], (0, extra), value=0),
                    "labels": nn.functional.pad(b["labels"], (0, extra), value=-100),
                }
            )
        batches = padded
    return {k: torch.cat([b[k] for b in batches]) for k in keys}


class Task(ABC):
    """A reference task. Subclasses are registered in :mod:`unlearning.tasks` by ``name``."""

    name: str = ""
    #: accuracy is exact-match of a class (stop rules pick accuracy for categories)
    is_classifier: bool = False
    #: EWC weights (Fisher normalised to mean 1) used when a method leaves them unset: the proximal pull per
    #: step is lr * lambda * F, so they depend on the task's learning rates (benchmarked in bench/unlearning.py)
    ewc_defaults: dict[str, float] = {"ascent": 100.0, "repair": 1000.0}
    #: local settings of repair rounds (over the lineage's training settings) when a method leaves them unset
    repair_defaults: dict[str, Any] = {}
    #: defaults for local training and for ascent; methods and job specs override them
    train_defaults: dict[str, Any] = {}
    ascent_defaults: dict[str, Any] = {}
    #: unlearning-method settings by target kind, under a job's own ``method_config`` (a method takes the
    #: settings it knows; ``ascent`` is merged key by key); the values are the ones bench/unlearning.py chose
    method_defaults: dict[str, dict[str, Any]] = {}

    def __init__(self, model_config: dict[str, Any]) -> None:
        self.model_config = model_config

    @classmethod
    @abstractmethod
    def default_model_config(cls, size: str = "default") -> dict[str, Any]:
        """A JSON-able description of the architecture (``size`` is ``default``, ``small`` or ``tiny``)."""

    @abstractmethod
    def build_model(self, seed: int) -> nn.Module:
        """A freshly initialised model (same seed -> same weights)."""

    @abstractmethod
    def to_batch(
        self, records: Sequence[Record], target: Target | None = None, forget: bool = False
    ) -> Batch:
        """Turn records into tensors. With ``forget`` and a behaviour target, only completion tokens count."""

    @abstractmethod
    def per_example_loss(self, model: nn.Module, batch: Batch) -> Tensor:
        """Mean loss of every example, shape [B] (LM: mean NLL over its counted tokens)."""

    def per_example_distill(
        self, student: nn.Module, teacher: nn.Module, batch: Batch
    ) -> tuple[Tensor, Tensor]:
        """The student's per-example loss and KL(teacher || student) of the output distributions, both of
        shape [B] (LM: means over the counted tokens), from one forward pass of each model, for
        distillation; the teacher gets no gradient."""
        raise NotImplementedError(f"task {self.name!r} has no distillation loss")

    @abstractmethod
    def per_example_correct(self, model: nn.Module, batch: Batch) -> Tensor:
        """Accuracy of every example in [0, 1], shape [B] (LM: next-token accuracy over counted tokens)."""

    def per_example_stats(self, model: nn.Module, batch: Batch) -> tuple[Tensor, Tensor]:
        """Both of the above; tasks override it to run the model once instead of twice."""
        return self.per_example_loss(model, batch), self.per_example_correct(model, batch)

    def behaviour_batch(self, target: Target) -> Batch | None:
        """The proposal's own prompt/completion examples as a batch (LM tasks only)."""
        return None
