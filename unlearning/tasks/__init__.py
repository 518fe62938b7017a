"""Reference tasks, registered by name: ``digits``, ``community-lm`` and ``causal-lm`` (bring your own)."""

from __future__ import annotations

from typing import Any

from unlearning.data import NodeData, Record
from unlearning.tasks.base import Batch, Target, Task
from unlearning.tasks.community_lm import CommunityLMTask
from unlearning.tasks.digits import DigitsTask
from unlearning.tasks.lm import CausalLMTask

TASKS: dict[str, type[Task]] = {t.name: t for t in (DigitsTask, CommunityLMTask, CausalLMTask)}


def make_task(name: str, model_config: dict[str, Any]) -> Task:
    """The task ``name`` bound to ``model_config``; unknown names raise ``ValueError``."""
    try:
        cls = TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}") from None
    return cls(model_config)


__all__ = ["TASKS", "Batch", "NodeData", "Record", "Target", "Task", "make_task"]
