"""Each node's contribution to a federated training job, measured from what the server already sees.

Method: **GTG-Shapley** (Z. Liu, Y. Chen, H. Yu, Y. Liu, L. Cui, "GTG-Shapley: Efficient and Accurate
Participant Contribution Evaluation in Federated Learning", ACM TIST 2022). At every FedAvg round ``t`` the server
holds the global model it sent, ``θ_t``, and every node's local model ``θ_t^i`` (its update). The utility of a
subset ``S`` of the round's nodes is the quality of the FedAvg of their updates alone,

    U_t(S) = v( Σ_{i∈S} n_i θ_t^i / Σ_{i∈S} n_i ),   U_t(∅) = v(θ_t),   U_t(N) = v(θ_{t+1}),

where ``v`` is a federated evaluation: every node evaluates the model on its own validation data and returns a
loss and an accuracy (no example leaves a node; :meth:`unlearning.federation.server.Federation.utility`). The
node's score for the round is its Shapley value in ``U_t``, estimated by Monte-Carlo permutations with

- **between-round truncation**: a round whose whole improvement ``|U_t(N) - U_t(∅)|`` is at most
  ``round_epsilon`` gives every node 0 and costs no further evaluation;
- **within-round truncation**: along a permutation, once ``|U_t(N) - U_t(prefix)|`` is at most
  ``within_epsilon`` the remaining nodes' marginal contributions are 0 (no evaluation);
- **guided sampling**: permutations come in sweeps of one permutation led by each node in turn (the rest
  shuffled), so every node is measured as the first contributor equally often; they are drawn without
  replacement, so a round of ``n`` nodes with ``n! <= max_permutations`` is exact;
- **convergence**: after each sweep, stop once the scores moved less than ``tolerance`` of the round's
  improvement, or at ``max_permutations``.

A node's score for the job is the sum of its per-round values. Efficiency (Shapley's): within a round every
permutation's marginals telescope to ``U_t(last evaluated prefix) - U_t(∅)``, within ``within_epsilon`` of
``U_t(N) - U_t(∅)``; and ``U_t(N) = U_{t+1}(∅)``, so the scores summed over nodes and rounds equal
``v(final) - v(initial)`` up to ``within_epsilon`` per round and ``round_epsilon`` per skipped round. The result
reports that ``total_improvement``, the ``sum_of_scores`` and their ``residual``.

Subset models are evaluated in batches: at each position of a sweep, every permutation still running needs one
prefix, and all the prefixes not evaluated before (a cache keyed by the subset) go to the nodes in one message
each. Cost reported: subset models evaluated, exchanges, bytes, the nodes' CPU seconds for them, the server's
CPU seconds for building the subset models, wall seconds.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from unlearning.contract import CONTRIBUTION_FORMAT, ContributionSettings, parse_contribution_settings
from unlearning.methods.blocks import Params

Subset = frozenset[int]
# a batch of subsets -> their utilities (same order)
BatchUtility = Callable[[Sequence[Subset]], list[float]]
# models by name -> (per name {"loss": mean validation loss, "accuracy": ...}, the nodes' CPU seconds)
FederatedEvaluate = Callable[[Mapping[str, Params]], tuple[dict[str, dict[str, float]], float]]

DEFAULT_SWEEPS = 4


@dataclass
class RoundValues:
    """One round's Shapley estimate."""

    round: int
    players: list[int]
    u_empty: float  # U_t(∅) = v(θ_t)
    u_full: float  # U_t(N) = v(θ_{t+1})
    values: dict[int, float]  # player -> Shapley value in U_t
    truncated: bool  # between-round truncation: every value is 0
    permutations: int = 0
    evaluations: int = 0  # subset utilities computed for this round (the cache's misses)


def gtg_round(
    players: Sequence[int],
    utility: BatchUtility,
    settings: ContributionSettings,
    rng: random.Random,
    *,
    known: Mapping[Subset, float] | None = None,
    round_: int = 0,
) -> RoundValues:
    """GTG-Shapley values of ``players`` in one round. ``utility`` evaluates a batch of subsets; ``known``
    holds utilities already measured (the empty and the full set usually: the round's global models)."""
    ids = list(players)
    n = len(ids)
    cache: dict[Subset, float] = dict(known or {})
    evaluations = 0

    def fill(subsets: Sequence[Subset]) -> None:
        nonlocal evaluations
        todo = list(dict.fromkeys(s for s in subsets if s not in cache))
        if todo:
            for s, v in zip(todo, utility(todo), strict=True):
                cache[s] = float(v)
            evaluations += len(todo)

    empty: Subset = frozenset()
    full: Subset = frozenset(ids)
    fill([empty, full])
    u0, un = cache[empty], cache[full]
    values = dict.fromkeys(ids, 0.0)
    out = RoundValues(round_, ids, u0, un, values, truncated=False)
    if n == 0 or abs(un - u0) <= settings.round_epsilon:
        out.truncated = True
        out.evaluations = evaluations
        return out
    if n == 1:
        values[ids[0]] = un - u0
        out.permutations, out.evaluations = 1, evaluations
        return out
    tails = math.factorial(n - 1)  # distinct permutations led by one player
    cap = min(settings.max_permutations or DEFAULT_SWEEPS * n, n * tails)
    used: set[tuple[int, ...]] = set()  # drawn without replacement: n! permutations make the round exact
    k = 0  # permutations done
    while k < cap:
        sweep = [ids[(k + q) % n] for q in range(min(n, cap - k))]
        perms = []
        for first in sweep:
            rest = [p for p in ids if p != first]
            while True:
                rng.shuffle(rest)
                if (first, *rest) not in used:
                    break
            used.add((first, *rest))
            perms.append([first, *rest])
        prev = [u0] * len(perms)
        running = [True] * len(perms)
        marginals = [[0.0] * n for _ in perms]
        for j in range(1, n + 1):
            for q in range(len(perms)):
                if running[q] and abs(un - prev[q]) <= settings.within_epsilon:
                    running[q] = False  # within-round truncation: the rest add nothing
            fill([frozenset(perms[q][:j]) for q in range(len(perms)) if running[q]])
            for q, perm in enumerate(perms):
                if running[q]:
                    v = cache[frozenset(perm[:j])]
                    marginals[q][j - 1] = v - prev[q]
                    prev[q] = v
        before = dict(values)
        for q, perm in enumerate(perms):
            k += 1
            for j, p in enumerate(perm):
                values[p] += (marginals[q][j] - values[p]) / k  # running mean over permutations
        moved = sum(abs(values[p] - before[p]) for p in ids)
        if k > n and moved <= settings.tolerance * abs(un - u0):
            break
    out.permutations, out.evaluations = k, evaluations
    return out


def fedavg_of(updates: Mapping[int, tuple[Params, float]], subset: Subset) -> Params:
    """The FedAvg (weighted by examples) of the updates of ``subset``."""
    members = [updates[i] for i in sorted(subset)]
    total = sum(w for _, w in members)
    if total <= 0:
        raise ValueError("the subset's nodes hold no examples")
    out: Params = {}
    for k, first in members[0][0].items():
        acc = torch.zeros_like(first, dtype=torch.float64)
        for p, w in members:
            acc += p[k].to(torch.float64) * (w / total)
        out[k] = acc.to(first.dtype)
    return out


@dataclass
class ContributionTracker:
    """Follows a training job's FedAvg rounds (:meth:`observe`, called by the federation after each round) and
    measures every node's GTG-Shapley value; :meth:`finish` returns the job's ``contribution`` section."""

    settings: ContributionSettings
    utility_name: str  # "accuracy" | "loss"
    evaluate: FederatedEvaluate
    names: Mapping[int, str] = field(default_factory=dict)  # partition id -> node name
    sources: Mapping[int, Sequence[str]] = field(default_factory=dict)  # partition id -> its data sources
    rounds: list[RoundValues] = field(default_factory=list)
    initial: float | None = None
    final: float | None = None
    evaluations: int = 0
    exchanges: int = 0
    node_cpu_s: float = 0.0
    server_cpu_s: float = 0.0
    wall_s: float = 0.0
    rounds_in: dict[int, int] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        settings: Mapping[str, Any] | ContributionSettings | None,
        *,
        is_classifier: bool,
        evaluate: FederatedEvaluate,
        names: Mapping[int, str] | None = None,
        sources: Mapping[int, Sequence[str]] | None = None,
    ) -> ContributionTracker | None:
        """A tracker, or None when the settings say ``method: none``."""
        s = settings if isinstance(settings, ContributionSettings) else parse_contribution_settings(settings)
        if s.method == "none":
            return None
        utility = s.utility if s.utility != "auto" else ("accuracy" if is_classifier else "loss")
        return cls(s, utility, evaluate, dict(names or {}), dict(sources or {}))

    def _value(self, metrics: Mapping[str, float]) -> float:
        return float(metrics["accuracy"]) if self.utility_name == "accuracy" else -float(metrics["loss"])

    def _utilities(self, models: Mapping[str, Params]) -> dict[str, float]:
        got, cpu = self.evaluate(models)
        self.exchanges += 1
        self.evaluations += len(models)
        self.node_cpu_s += cpu
        return {k: self._value(v) for k, v in got.items()}

    def observe(
        self, round_: int, before: Params, updates: Mapping[int, tuple[Params, float]], after: Params
    ) -> None:
        """One FedAvg round: the global model sent (``before``), every node's local model and example count by
        partition id, and the aggregate (``after``)."""
        t0 = time.perf_counter()
        rng = random.Random(self.settings.seed * 1_000_003 + round_)
        players = sorted(p for p, (_, w) in updates.items() if w > 0)
        for p in players:
            self.rounds_in[p] = self.rounds_in.get(p, 0) + 1
        known: dict[Subset, float] = {}
        models: dict[str, Params] = {"after": after}
        if self.final is None:  # the first round: v(θ_0) too
            models["before"] = before
        vals = self._utilities(models)
        if self.final is None:
            self.initial = vals["before"]
            known[frozenset()] = vals["before"]
        else:
            known[frozenset()] = self.final  # U_t(∅) = v(θ_t) = U_{t-1}(N)
        known[frozenset(players)] = vals["after"]
        self.final = vals["after"]

        def utility(subsets: Sequence[Subset]) -> list[float]:
            c0 = time.thread_time()
            batch = {f"s{i}": (before if not s else fedavg_of(updates, s)) for i, s in enumerate(subsets)}
            self.server_cpu_s += time.thread_time() - c0
            got = self._utilities(batch)
            return [got[f"s{i}"] for i in range(len(subsets))]

        self.rounds.append(gtg_round(players, utility, self.settings, rng, known=known, round_=round_))
        self.wall_s += time.perf_counter() - t0

    def finish(self) -> dict[str, Any]:
        """The ``contribution`` section of the job's result (format :data:`CONTRIBUTION_FORMAT`)."""
        scores: dict[int, float] = {}
        for r in self.rounds:
            for p, v in r.values.items():
                scores[p] = scores.get(p, 0.0) + v
        total = (self.final - self.initial) if self.final is not None and self.initial is not None else 0.0
        summed = sum(scores.values())
        nodes = [
            {
                "partition": p,
                "node": self.names.get(p, f"node-{p}"),
                "sources": list(self.sources.get(p, [])),
                "score": scores[p],
                "share": (scores[p] / total) if abs(total) > 1e-12 else None,
                "rounds": self.rounds_in.get(p, 0),
            }
            for p in sorted(scores)
        ]
        return {
            "format": CONTRIBUTION_FORMAT,
            "method": "gtg-shapley",
            "utility": self.utility_name,
            "settings": {
                "round_epsilon": self.settings.round_epsilon,
                "within_epsilon": self.settings.within_epsilon,
                "max_permutations": self.settings.max_permutations,
                "tolerance": self.settings.tolerance,
                "seed": self.settings.seed,
            },
            "initial_utility": self.initial,
            "final_utility": self.final,
            "total_improvement": total,
            "sum_of_scores": summed,
            "residual": total - summed,
            "nodes": nodes,
            "rounds": [
                {
                    "round": r.round,
                    "u_before": r.u_empty,
                    "u_after": r.u_full,
                    "truncated": r.truncated,
                    "permutations": r.permutations,
                    "evaluations": r.evaluations,
                    "values": {str(p): v for p, v in r.values.items()},
                }
                for r in self.rounds
            ],
            "cost": {
                "evaluations": self.evaluations,  # models evaluated by every node (subsets and globals)
                "exchanges": self.exchanges,
                "rounds_truncated": sum(1 for r in self.rounds if r.truncated),
                "permutations": sum(r.permutations for r in self.rounds),
                "node_cpu_s": self.node_cpu_s,
                "server_cpu_s": self.server_cpu_s,
                "wall_s": self.wall_s,
            },
        }
