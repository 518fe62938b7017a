"""The plug-in registry of metrics and the state they share while one verification runs.

A metric is one function ``fn(v: Verification) -> MetricResult`` registered with ``@metric("name")``; the
name must be in the catalogue (:mod:`unlearning.verification.catalog`). Metrics read what they need from
:class:`Verification`, which computes every expensive measurement once (per-example scores of each model on
each probe set, the federated evaluation, the robustness attacks) and caches it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from unlearning.measurability import CLASSIFIER, LANGUAGE_MODEL, DatasetFacts
from unlearning.tasks.base import Batch, Target, Task, batch_len, take
from unlearning.verification.catalog import CATALOG
from unlearning.verification.node_labels import node_label, nodes_where
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
    where: set[str] = field(default_factory=set)  # where the figures read since the last reset were computed

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
            if probe == "forget":
                self._scores.update({(r, probe): s for r, s in self.forget_scores(self.models).items()})
            else:
                b = self.batch(probe)
                if b is None:
                    raise ValueError(f"no {probe} probe set")
                self._scores[key] = score(
                    self.models[role], self.task, b, k=self.spec.min_k, bf16=self.spec.precision == "bf16"
                )
        self.where.update(self.probes.where_forget() if probe == "forget" else [PUBLISHED])
        return self._scores[key]

    def forget_scores(
        self,
        models: dict[str, nn.Module],
        *,
        transform: str = "",
        subset: list[int] | None = None,
        shift: str = "",
    ) -> dict[str, Scores]:
        """Per-example scores of ``models`` on the forget probe (or its examples ``subset``, probe order),
        after the model ``transform`` and the format ``shift`` (unlearning.verification.shifts) when given:
        the nodes score the examples they hold, the rest (the proposal's own examples) is scored here."""
        from unlearning.verification.probes import transformed

        p, k, bf16 = self.probes, self.spec.min_k, self.spec.precision == "bf16"
        keep = None if subset is None else set(subset)
        parts: list[dict[str, Scores]] = []
        offset = 0
        if p.nodes and p.scorer is not None:
            selection = []
            for s in p.nodes:
                idx = [i for j, i in enumerate(s.indices) if keep is None or offset + j in keep]
                offset += len(s.indices)
                selection.append(replace(s, indices=idx))
            if any(s.indices for s in selection):
                parts.append(
                    p.scorer.score(selection, models, k=k, bf16=bf16, transform=transform, shift=shift)
                )
        n_here = batch_len(p.forget)
        here = [i for i in range(n_here) if keep is None or offset + i in keep]
        if here:
            full = p.forget
            if shift and self.target is not None and self.target.kind == "behaviour":
                from unlearning.verification.shifts import shifted_batch

                recs = [{"text": ex.get("prompt", "") + ex["completion"]} for ex in self.target.examples]
                full = shifted_batch(self.task, recs, shift, self.target, forget=True)
            batch = full if len(here) == n_here else take(full, torch.tensor(here, dtype=torch.long))
            local = {name: transformed(m, transform) for name, m in models.items()}
            parts.append({name: score(m, self.task, batch, k=k, bf16=bf16) for name, m in local.items()})
        self.where.update(p.where_forget())
        return {name: _cat_scores([part[name] for part in parts]) for name in models}

    def canary_exposures(self) -> dict[str, Any]:
        """Exposure of every canary the target covers, per model: the nodes measure the canaries they hold
        (reported without prefix or secret), the service the proposal's digit secrets and the published
        never-inserted controls: {"candidates", "canaries": [...], "controls": [...]} (cached)."""
        if "canaries" in self.cache:
            cached: dict[str, Any] = self.cache["canaries"]
            return cached
        from unlearning.metrics import canary_exposure as exposure_of
        from unlearning.tasks.lm import CausalLMTask

        task, spec = self.task, self.spec
        assert isinstance(task, CausalLMTask)

        def measure(prefix: str, secret: str) -> dict[str, dict[str, float]]:
            out = {}
            for role in self.roles:
                e, z = exposure_of(
                    self.models[role],
                    task,
                    prefix,
                    secret,
                    candidates=spec.exposure_candidates,
                    seed=spec.seed,
                )
                out[role] = {"exposure": e, "z": z}
            return out

        held = self._canary_nodes()
        node_canaries: list[dict[str, Any]] = []
        if held and self.probes.scorer is not None:
            node_canaries = self.probes.scorer.canaries(
                held,
                {r: self.models[r] for r in self.roles},
                candidates=spec.exposure_candidates,
                seed=spec.seed,
                extraction=True,  # the same message: the nodes' extraction hits are kept for extraction_rate
            )
            self.where.add(nodes_where(held, self.probes.node_names))
            self.cache["node_extraction"] = [c["extracted"] for c in node_canaries if c["extraction"]]
        exposed = [c for c in node_canaries if all(r in c for r in self.roles)]  # protected: digits only
        here = [c for c in self.probes.canaries if c.node is None]
        if here or self.probes.controls:
            self.where.add("service: the proposal's examples and the published control canaries")
        self.cache["canaries"] = {
            "candidates": spec.exposure_candidates,
            "canaries": [
                {k: v for k, v in c.items() if k not in ("extraction", "extracted")} for c in exposed
            ]
            + [
                {
                    "prefix": c.prefix,
                    "secret_length": len(c.secret),
                    "repetitions": c.repetitions,
                    **measure(c.prefix, c.secret),
                }
                for c in here
            ],
            "controls": [
                {"prefix": c.prefix, "secret_length": len(c.secret), **measure(c.prefix, c.secret)}
                for c in self.probes.controls[:4]
            ],
        }
        return self.cache["canaries"]  # type: ignore[no-any-return]

    def _canary_nodes(self) -> list[int]:
        return sorted({c.node for c in self.probes.canaries if c.node is not None})

    def protected_strings(self) -> dict[str, Any]:
        """The strings the nodes' owners declared (``protected.txt``, unlearning.verification.protected)
        that the target's records hold, checked like the canaries: {"checked", "where": {node name: n}}
        (counts only: the strings never leave their nodes)."""
        scorer, held = self.probes.scorer, set(self._canary_nodes())
        declared = scorer.protected_declarations() if scorer is not None else {}
        names = self.probes.node_names
        where = {
            node_label(p, names): d["checked"]
            for p, d in sorted(declared.items())
            if p in held and d["checked"]
        }
        return {"checked": sum(where.values()), "where": where}

    def protected_problem(self) -> str | None:
        """Why the protected strings the target's nodes checked are not the list its owner registered (count
        and salted sha256 at registration, ``spec.protected_commitment``); None when they are, or when
        nothing was registered (a data source's nodes only)."""
        expected, scorer, t = self.spec.protected_commitment, self.probes.scorer, self.target
        if not expected or scorer is None or t is None or t.kind != "data_source":
            return None
        registered_for = (self.spec.target or {}).get("value")  # a regression check's target: another list
        if registered_for != t.value:
            return None
        count, digest = int(expected["count"]), str(expected["sha256"])
        for pid, d in sorted(scorer.protected_declarations().items()):
            if d["forget"] and (d["declared"] != count or d["commitment"] != digest):
                got = (d["commitment"] or "none")[:12]
                return (
                    f"{node_label(pid, self.probes.node_names)} checked {d['declared']} protected string(s) "
                    f"(commitment {got}...), not the {count} registered with the data source "
                    f"(commitment {digest[:12]}...): the node's protected.txt "
                    "or protected.salt changed since registration; the owner must restore them "
                    "(the service records one commitment per data source, at registration)"
                )
        return None

    def extraction_hits(self) -> dict[str, list[bool]]:
        """Per model, whether greedy decoding reproduces each secret / forbidden completion: the nodes try
        the canaries they hold, the service the proposal's prompt/completion pairs (one list per model,
        one entry per attempt; empty: nothing to extract)."""
        from unlearning.tasks.lm import CausalLMTask
        from unlearning.verification.probes import greedy_extracts

        task = self.task
        assert isinstance(task, CausalLMTask)
        held = self._canary_nodes()
        if held and "node_extraction" not in self.cache and self.probes.scorer is not None:
            found = self.probes.scorer.canaries(
                held,
                {r: self.models[r] for r in self.roles},
                candidates=0,
                seed=self.spec.seed,
                extraction=True,
            )
            self.cache["node_extraction"] = [c["extracted"] for c in found if c["extraction"]]
        node_hits: list[dict[str, bool]] = self.cache.get("node_extraction", [])
        if held:
            self.where.add(nodes_where(held, self.probes.node_names))
        if self.probes.extraction:
            self.where.add("service: the proposal's examples")
        return {
            role: [greedy_extracts(self.models[role], task, p, c) for p, c in self.probes.extraction]
            + [h[role] for h in node_hits]
            for role in self.roles
        }

    def sampled_extraction(self) -> dict[str, Any]:
        """Best-of-N extraction: per attempt (the canaries the nodes hold, then the proposal's prompt /
        completion pairs here), how many of ``extraction_samples`` completions sampled at temperature 1
        reproduce the secret, per model: {"samples", "attempts": [{"where", role: hits}]} (cached)."""
        if "sampled" in self.cache:
            cached: dict[str, Any] = self.cache["sampled"]
            return cached
        from unlearning.tasks.lm import CausalLMTask
        from unlearning.verification.probes import sampled_hits

        task, n, seed = self.task, self.spec.extraction_samples, self.spec.seed
        assert isinstance(task, CausalLMTask)
        attempts: list[dict[str, Any]] = []
        held = self._canary_nodes()
        if held and self.probes.scorer is not None:
            found = self.probes.scorer.canaries(
                held,
                {r: self.models[r] for r in self.roles},
                candidates=0,
                seed=seed,
                extraction=False,
                samples=n,
            )
            self.where.add(nodes_where(held, self.probes.node_names))
            attempts += [{"where": c["canary"], **c["sampled"]} for c in found if c["extraction"]]
        for i, (prompt, completion) in enumerate(self.probes.extraction):
            self.where.add("service: the proposal's examples")
            attempts.append(
                {
                    "where": f"service#{i + 1}",
                    **{
                        r: sampled_hits(self.models[r], task, prompt, completion, samples=n, seed=seed)
                        for r in self.roles
                    },
                }
            )
        self.cache["sampled"] = {"samples": n, "attempts": attempts}
        return self.cache["sampled"]  # type: ignore[no-any-return]

    def retained_scores(self) -> dict[str, Scores] | str:
        """Per-example scores of every model on a sample of the nodes' *retained* examples (at most
        ``probe_examples``, drawn as the forget probe is, with the seed + 1), scored on the nodes that hold
        them (cached); or why there is none."""
        if "retained" in self.cache:
            cached: dict[str, Scores] | str = self.cache["retained"]
            return cached
        from unlearning.verification.probes import _select

        p = self.probes
        out: dict[str, Scores] | str
        if p.scorer is None:
            out = "no nodes to score retained examples on"
        else:
            import random

            counts = p.scorer.retained_counts()
            selection = _select(counts, self.spec.probe_examples, random.Random(self.spec.seed + 1))
            selection = [s for s in selection if s.indices]
            if sum(len(s.indices) for s in selection) < 2:
                out = "fewer than 2 retained examples on the nodes"
            else:
                bf16 = self.spec.precision == "bf16"
                out = p.scorer.score(
                    selection, self.models, k=self.spec.min_k, bf16=bf16, probe_set="retained"
                )
                pids = [s.partition_id for s in selection]
                self.cache["retained_nodes"] = [node_label(pid, p.node_names) for pid in pids]
                self.where.add(nodes_where(pids, p.node_names))
        self.cache["retained"] = out
        return out

    def shifted_extraction(self, shifts: tuple[str, ...]) -> list[dict[str, Any]]:
        """Greedy extraction after format-shifted prompts: per attempt (the canaries the nodes hold, then
        the proposal's prompt / completion pairs), {"where", role: {shift: extracted}} (cached)."""
        if "shifted_extraction" in self.cache:
            cached: list[dict[str, Any]] = self.cache["shifted_extraction"]
            return cached
        from unlearning.tasks.lm import CausalLMTask
        from unlearning.verification.probes import greedy_extracts
        from unlearning.verification.shifts import shift_context

        task = self.task
        assert isinstance(task, CausalLMTask)
        attempts: list[dict[str, Any]] = []
        held = self._canary_nodes()
        if held and self.probes.scorer is not None:
            found = self.probes.scorer.canaries(
                held,
                {r: self.models[r] for r in self.roles},
                candidates=0,
                seed=self.spec.seed,
                extraction=False,
                shifts=shifts,
            )
            self.where.add(nodes_where(held, self.probes.node_names))
            attempts += [{"where": c["canary"], **c["shifted"]} for c in found if c["extraction"]]
        for i, (prompt, completion) in enumerate(self.probes.extraction):
            self.where.add("service: the proposal's examples")
            attempts.append(
                {
                    "where": f"service#{i + 1}",
                    **{
                        r: {
                            s: greedy_extracts(self.models[r], task, shift_context(s, prompt), completion)
                            for s in shifts
                        }
                        for r in self.roles
                    },
                }
            )
        self.cache["shifted_extraction"] = attempts
        return attempts

    def relearned(self, roles: list[str], train: list[int], steps: int) -> dict[str, nn.Module]:
        """Copies of the models ``roles`` after the relearning attack on the forget probe's examples
        ``train`` (probe order), run where those examples are: one node, or here."""
        from unlearning.verification.probes import relearn_model

        p, seed = self.probes, self.spec.seed
        models = {r: self.models[r] for r in roles}
        offset = 0
        for s in p.nodes:
            local = [s.indices[i - offset] for i in train if offset <= i < offset + len(s.indices)]
            if local and len(local) != len(train):
                raise ValueError("the relearning examples are on more than one node")
            if local:
                assert p.scorer is not None
                self.where.add(nodes_where([s.partition_id], p.node_names))
                return p.scorer.relearn(s.partition_id, local, models, steps=steps, seed=seed)
            offset += len(s.indices)
        data = take(p.forget, torch.tensor([i - offset for i in train], dtype=torch.long))
        return {
            r: relearn_model(self.task, copy.deepcopy(m), data, steps=steps, seed=seed)
            for r, m in models.items()
        }

    def utility(self) -> dict[str, dict[str, Any]]:
        """Federated evaluation of every model: {role: {"nodes": {pid: metrics}, "mean": ..., "worst": ...}}."""
        if self._utility is None:
            if self.utility_fn is None:
                raise ValueError("no federation to evaluate on")
            self._utility = self.utility_fn()
        nodes = sorted(int(p) for p in self._utility.get("candidate", {}).get("nodes", {}))  # "0", "1": ids
        self.where.add(nodes_where(nodes, self.probes.node_names))
        return self._utility

    def copy_model(self, role: str) -> nn.Module:
        return copy.deepcopy(self.models[role])


PUBLISHED = "service: published held-out split"


def _cat_scores(parts: list[Scores]) -> Scores:
    if not parts:
        empty = torch.zeros(0)
        return Scores(empty, empty, empty, None, empty)
    if len(parts) == 1:
        return parts[0]

    def cat(xs: list[Tensor]) -> Tensor:
        return torch.cat(xs)

    min_k = [p.min_k for p in parts]
    return Scores(
        cat([p.loss for p in parts]),
        cat([p.correct for p in parts]),
        cat([p.tokens for p in parts]),
        cat([m for m in min_k if m is not None]) if all(m is not None for m in min_k) else None,
        cat([p.min_k_pp for p in parts]),
    )


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


def facts_of(v: Verification) -> DatasetFacts:
    """What this verification's probes hold, in the terms metrics declare their needs in
    (:mod:`unlearning.measurability`): the runner reports a metric whose needs these do not meet as
    ``not_applicable``, with the sentence the service shows before the vote."""
    from unlearning.tasks.lm import CausalLMTask

    p, t = v.probes, v.target
    family = (
        CLASSIFIER if v.task.is_classifier else LANGUAGE_MODEL if isinstance(v.task, CausalLMTask) else None
    )
    rest = p.heldout_rest
    return DatasetFacts(
        task=family,
        target_kind=t.kind if t is not None else None,
        forget_examples=p.n_forget if t is not None else 0,
        heldout=batch_len(p.heldout) if p.heldout is not None else 0,
        heldout_reason=p.heldout_reason,
        heldout_rest=batch_len(rest) if rest is not None else 0,
        canaries=len(p.canaries),
        extractable=len(p.extraction) + sum(1 for c in p.canaries if c.node is not None),
    )


def not_applicable(name: str, reason: str) -> MetricResult:
    return MetricResult.not_applicable(name, CATALOG[name].family, reason)


def unmeasured(name: str, reason: str, **kw: Any) -> MetricResult:
    """The metric applies, but no value could be measured (blocks any test that names it)."""
    return MetricResult(name=name, family=CATALOG[name].family, applies=True, value=None, reason=reason, **kw)
