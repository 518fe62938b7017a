"""The plug-in registry of metrics and the state they share while one verification runs.

A metric is one function ``fn(v: Verification) -> MetricResult`` registered with ``@metric("name")``; the
name must be in the catalogue (:mod:`unlearning.verification.catalog`). Metrics read what they need from
:class:`Verification`, which computes every expensive measurement once (per-example scores of each model on
each probe set, the federated evaluation, the robustness attacks) and caches it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from torch import nn

from unlearning.tasks.base import Batch, Target, Task
from unlearning.verification.catalog import CATALOG
from unlearning.verification.probes import Probes, Scores, score
from unlearning.verification.spec import MetricResult, VerifySpec

ROLES = ("original", "candidate", "reference")


@dataclass
class Verification:
    """One verification in progress: the spec, the task, the probes and the models by role."""

    spec: VerifySpec
    task: Task
    target: Target | None
    probes: Probes
    models: dict[str, nn.Module]  # "original", "candidate" and, when available, "reference"
    utility_fn: Callable[[], dict[str, dict[str, Any]]] | None = None  # federated evaluation per role
    _scores: dict[tuple[str, str], Scores] = field(default_factory=dict)
    _utility: dict[str, dict[str, Any]] | None = None
    cache: dict[str, Any] = field(default_factory=dict)  # metrics share derived results here

    @property
    def roles(self) -> list[str]:
        return [r for r in ROLES if r in self.models]

    @property
    def has_reference(self) -> bool:
        return "reference" in self.models

    def batch(self, probe: str) -> Batch | None:
        b: Batch | None = {
            "forget": self.probes.forget,
            "heldout": self.probes.heldout,
            "heldout_rest": self.probes.heldout_rest,
        }[probe]
        return b

    def scores(self, role: str, probe: str) -> Scores:
        key = (role, probe)
        if key not in self._scores:
            b = self.batch(probe)
            if b is None:
                raise ValueError(f"no {probe} probe set")
            self._scores[key] = score(
                self.models[role], self.task, b, k=self.spec.min_k, bf16=self.spec.precision == "bf16"
            )
        return self._scores[key]

    def utility(self) -> dict[str, dict[str, Any]]:
        """Federated evaluation of every model: {role: {"nodes": {pid: metrics}, "mean": ..., "worst": ...}}."""
        if self._utility is None:
            if self.utility_fn is None:
                raise ValueError("no federation to evaluate on")
            self._utility = self.utility_fn()
        return self._utility

    def copy_model(self, role: str) -> nn.Module:
        return copy.deepcopy(self.models[role])


MetricFn = Callable[[Verification], MetricResult]
METRIC_FUNCTIONS: dict[str, MetricFn] = {}

F = TypeVar("F", bound=MetricFn)


def metric(name: str) -> Callable[[F], F]:
    """Register ``fn`` as the function computing the catalogue metric ``name``."""
    if name not in CATALOG:
        raise ValueError(f"metric {name!r} is not in the catalogue (unlearning.contract.METRICS)")

    def deco(fn: F) -> F:
        if name in METRIC_FUNCTIONS:
            raise ValueError(f"metric {name!r} is already registered")
        METRIC_FUNCTIONS[name] = fn
        return fn

    return deco


def result(name: str, **kw: Any) -> MetricResult:
    """A MetricResult for an applicable metric (family from the catalogue)."""
    return MetricResult(name=name, family=CATALOG[name].family, applies=True, **kw)


def not_applicable(name: str, reason: str) -> MetricResult:
    return MetricResult.not_applicable(name, CATALOG[name].family, reason)


def unmeasured(name: str, reason: str, **kw: Any) -> MetricResult:
    """The metric applies, but no value could be measured (blocks any test that names it)."""
    return MetricResult(name=name, family=CATALOG[name].family, applies=True, value=None, reason=reason, **kw)
