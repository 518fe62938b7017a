"""Verification's per-example work on the nodes that hold the data.

:class:`FederatedScorer` implements :class:`unlearning.verification.probes.NodeScorer` over a
:class:`unlearning.federation.server.Federation` (any Flower ``Grid``: in process, simulation, deployment):
the verifier sends models (as parameters) and indices into a node's own examples, each node scores its own
forget examples and the canaries it holds (with the protected strings its owner declared,
:mod:`unlearning.verification.protected`), and replies with per-example scores, counts and a hash only. The
verifying process never reads a member's data: the dataset directory it sees needs only ``manifest.json``
(and the operator's published ``heldout/`` split).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from unlearning.tasks.base import Target, Task
from unlearning.verification.node_labels import node_label
from unlearning.verification.probes import NodeSelection, Scores
from unlearning.verification.spec import VerifySpec

if TYPE_CHECKING:
    from unlearning.federation.protocol import Grid
    from unlearning.federation.server import Federation


def local_grid(dataset_dir: str, node_root: str | None = None) -> Grid:
    """The in-process federation: one node per node of the dataset's manifest, its data in its own folder
    (beside the manifest, or under ``node_root``: ``FlowerSettings.node_data_dir``)."""
    from unlearning.federation.apps import build_client_app
    from unlearning.federation.local_grid import LocalGrid

    root = Path(node_root) if node_root else None
    return LocalGrid.for_dataset(build_client_app(), Path(dataset_dir), node_root=root)


def federation(
    spec: VerifySpec, task: Task, model_config: dict[str, Any], excluded: list[Target], grid: Grid | None
) -> Federation:
    """A Federation for one verification (its messages are grouped under ``verify-<candidate>``)."""
    from unlearning.federation.server import Federation
    from unlearning.jobs import JobSpec

    if grid is None:
        if spec.runtime != "in-process":
            raise ValueError(f"runtime {spec.runtime!r} needs a Flower Grid passed to verify()")
        grid = local_grid(spec.dataset_dir)
    job = JobSpec(
        kind="train",
        job_id=f"verify-{spec.candidate_version}",
        artifact_root=spec.artifact_root,
        dataset_dir=spec.dataset_dir,
        base_version=spec.candidate_version,
        seed=spec.seed,
        num_threads=spec.num_threads,
    )
    return Federation(grid, job, task, model_config, excluded)


def _params(models: Mapping[str, nn.Module]) -> dict[str, dict[str, Tensor]]:
    from unlearning.local import parameters_dict

    return {name: parameters_dict(m) for name, m in models.items()}


def _declaration(m: Mapping[str, float]) -> dict[str, Any]:
    from unlearning.verification.protected import from_words

    words = [m[k] for k in (f"protected-commitment-{i}" for i in range(8)) if k in m]
    return {
        "declared": int(m.get("protected-declared", 0)),
        "checked": int(m.get("num-protected", 0)),
        "forget": int(m.get("num-forget", 0)),
        "commitment": from_words(words) if len(words) == 8 else None,
    }


def _scores_of(reply: Any) -> dict[str, Tensor]:
    from unlearning.federation import protocol as P

    return P.from_record(P.arrays_of(reply, P.SCORES))


class FederatedScorer:
    """The nodes of one verification, reached through ``fed`` (discovered once)."""

    def __init__(self, fed: Federation, target: Target | None, task: Task) -> None:
        self.fed, self.target, self.task = fed, target, task
        self._declared: dict[int, dict[str, Any]] = {}
        fed.discover(target)

    def _query(
        self,
        mtype: str,
        phase: str,
        per_node: Mapping[int, Mapping[str, Any]],
        models: Mapping[str, nn.Module] | None = None,
    ) -> dict[int, Any]:
        params = _params(models) if models else None
        return self.fed.node_query(mtype, phase, self.target, per_node, params)

    def forget_counts(self, target: Target) -> list[tuple[int, int, int, list[int]]]:
        from unlearning.federation import protocol as P

        replies = self._query(P.PROBE, "verify-probe", {n.partition_id: {} for n in self.fed.nodes})
        out = []
        for pid, r in sorted(replies.items()):
            m = P.metrics_of(r)
            covers = sorted(int(k.rsplit("-", 1)[1]) for k in m if k.startswith("covers-example-"))
            out.append((pid, int(m["num-forget"]), int(m["num-canaries"]), covers))
            self._declared[pid] = _declaration(m)
        return out

    def protected_declarations(self) -> dict[int, dict[str, Any]]:
        """Per node that answered the probe: {"declared": strings in its protected.txt, "checked": those
        found in the target's records, "forget": the target's examples it holds, "commitment": the salted
        sha256 of its list} (unlearning.verification.protected); numbers and a hash only."""
        return dict(self._declared)

    def retained_counts(self) -> list[tuple[int, int]]:
        from unlearning.federation import protocol as P

        replies = self._query(P.PROBE, "verify-probe", {n.partition_id: {} for n in self.fed.nodes})
        return [(pid, int(P.metrics_of(r).get("num-retained", 0))) for pid, r in sorted(replies.items())]

    def forget_kinds(self, selection: Sequence[NodeSelection], kinds: Sequence[str]) -> set[str]:
        from unlearning.federation import protocol as P

        per = {
            s.partition_id: {"indices": json.dumps(s.indices), "kinds": json.dumps(list(kinds))}
            for s in selection
            if s.indices
        }
        found: set[str] = set()
        for r in self._query(P.PROBE, "verify-kinds", per).values():
            m = P.metrics_of(r)
            found |= {k for i, k in enumerate(kinds) if m.get(f"kind-{i}", 0.0) > 0}
        return found

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
        from unlearning.federation import protocol as P

        per = {
            s.partition_id: {
                "indices": json.dumps(s.indices),
                "min-k": k,
                "bf16": bf16,
                "transform": transform,
                "set": probe_set,
                "shift": shift,
            }
            for s in selection
            if s.indices
        }
        if not per:
            empty = torch.zeros(0)
            return {name: Scores(empty, empty, empty, None, empty) for name in models}
        replies = self._query(P.SCORE, "verify-score", per, models)
        parts = [_scores_of(replies[pid]) for pid in per]  # selection (partition) order
        out: dict[str, Scores] = {}
        for name in models:

            def cat(field: str, name: str = name) -> Tensor:
                return torch.cat([p[f"{name}/{field}"] for p in parts])

            has_min_k = all(f"{name}/min_k" in p for p in parts)
            out[name] = Scores(
                cat("loss"),
                cat("correct"),
                cat("tokens"),
                cat("min_k") if has_min_k else None,
                cat("min_k_pp"),
            )
        return out

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
        from unlearning.federation import protocol as P

        per = {
            pid: {
                "canaries": candidates,
                "extraction": extraction,
                "seed": seed,
                "samples": samples,
                "shifts": json.dumps(list(shifts)),
            }
            for pid in partitions
        }
        replies = self._query(P.SCORE, "verify-canaries", per, models)
        out: list[dict[str, Any]] = []
        for pid in partitions:
            s = _scores_of(replies[pid])
            if "canary/repetitions" not in s:
                continue
            node = node_label(pid, self.fed.names)  # the manifest's name (alice), else node-<partition>
            for i in range(len(s["canary/repetitions"])):
                entry: dict[str, Any] = {
                    "node": node,
                    "canary": f"{node}#{i + 1}",
                    "secret_length": int(s["canary/secret_length"][i]),
                    "repetitions": int(s["canary/repetitions"][i]),
                    "extraction": bool(s["canary/extraction"][i] > 0),
                    "protected": "canary/protected" in s and bool(s["canary/protected"][i] > 0),
                    "extracted": {},
                    "sampled": {},
                    "shifted": {},
                }
                for name in models:
                    if f"{name}/exposure" in s and not math.isnan(float(s[f"{name}/exposure"][i])):
                        entry[name] = {
                            "exposure": float(s[f"{name}/exposure"][i]),
                            "z": float(s[f"{name}/z"][i]),
                        }
                    if f"{name}/extracted" in s:
                        entry["extracted"][name] = bool(s[f"{name}/extracted"][i] > 0)
                    if f"{name}/sampled" in s:
                        entry["sampled"][name] = int(s[f"{name}/sampled"][i])
                    if shifts:
                        entry["shifted"][name] = {sh: bool(s[f"{name}/shift/{sh}"][i] > 0) for sh in shifts}
                out.append(entry)
        return out

    def relearn(
        self, partition: int, indices: list[int], models: Mapping[str, nn.Module], *, steps: int, seed: int
    ) -> dict[str, nn.Module]:
        import copy

        from unlearning.federation import protocol as P

        reply = self._query(
            P.RELEARN,
            "verify-relearn",
            {partition: {"indices": json.dumps(indices), "relearn-steps": steps, "seed": seed}},
            models,
        )[partition]
        got = P.models_of(reply)
        return {name: P.load_record(copy.deepcopy(m), got[name]) for name, m in models.items()}
