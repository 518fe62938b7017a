"""A verification report names the nodes it computed on by their names in the dataset's manifest (a
bring-your-own dataset keeps alice/ and bob/), ``node-<partition>`` only where the manifest names none
(issue 19): the probes, the metrics' shared state and the nodes' canary replies."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from unlearning.tasks import make_task
from unlearning.tasks.base import Target
from unlearning.verification.node_labels import manifest_node_names, node_label, nodes_where
from unlearning.verification.probes import Canary, NodeSelection, Probes, build_probes
from unlearning.verification.registry import Verification
from unlearning.verification.spec import VerifySpec

MANIFEST = {
    "nodes": [
        {"node": "alice", "path": "alice", "sources": []},
        {"path": "bob", "sources": []},  # no name: its folder is its name
        {"sources": []},  # neither: node-2
    ]
}


def test_labels_are_the_manifests_names_and_node_k_only_where_it_names_none() -> None:
    names = manifest_node_names(MANIFEST)
    assert names == {0: "alice", 1: "bob"}
    assert [node_label(p, names) for p in range(3)] == ["alice", "bob", "node-2"]
    assert nodes_where([0, 1, 2], names) == "nodes: alice, bob, node-2"
    assert manifest_node_names({}) == {} and manifest_node_names({"nodes": "junk"}) == {}


class _Nodes:
    """The nodes' answers, by partition: forget counts for the probe, protected-string declarations."""

    def forget_counts(self, target: Target) -> list[tuple[int, int, int, list[int]]]:
        return [(0, 3, 0, []), (1, 2, 0, []), (2, 0, 0, [])]

    def forget_kinds(self, selection: Sequence[NodeSelection], kinds: Sequence[str]) -> set[str]:
        return set()

    def protected_declarations(self) -> dict[int, dict[str, Any]]:
        return {
            0: {"declared": 1, "checked": 0, "forget": 3, "commitment": "ab" * 32},
            1: {"declared": 2, "checked": 2, "forget": 2, "commitment": "cd" * 32},
        }


def _verification(tmp_path: Path) -> Verification:
    (tmp_path / "manifest.json").write_text(json.dumps(MANIFEST))
    task = make_task("digits", {"kind": "mlp", "inputs": 64, "hidden": [16], "classes": 10})
    target = Target("data_source", "bob/chess")
    probes = build_probes(task, target, tmp_path, max_examples=8, seed=0, scorer=_Nodes())  # type: ignore[arg-type]
    spec = VerifySpec(
        "",
        str(tmp_path),
        "mv-x",
        [],
        target=target.to_dict(),
        protected_commitment={"count": 2, "sha256": "ab" * 32},
    )
    return Verification(spec, task, target, probes, {})


def test_the_probes_and_the_metrics_state_name_the_nodes_as_the_manifest_does(tmp_path: Path) -> None:
    v = _verification(tmp_path)
    assert v.probes.node_names == {0: "alice", 1: "bob"}
    assert v.probes.where_forget() == ["nodes: alice, bob"]
    # protected strings: counted by name; a node whose list differs from the commitment is named too
    v.probes.canaries = [Canary("", "", True, node=1, protected=True), Canary("", "", True, node=0)]
    assert v.protected_strings() == {"checked": 2, "where": {"bob": 2}}
    assert (v.protected_problem() or "").startswith("alice checked 1 protected string(s)")
    # utility: the federated evaluation keys its nodes by partition id as a string ("0", "1", ...)
    v.utility_fn = lambda: {"candidate": {"nodes": {"0": {}, "1": {}, "2": {}}}}
    v.utility()
    assert "nodes: alice, bob, node-2" in v.where


def test_a_probe_built_by_hand_without_names_keeps_node_k() -> None:
    probes = Probes(
        [], {"x": torch.zeros(0, 64)}, None, "", None, nodes=[NodeSelection(0, [0, 1]), NodeSelection(3, [0])]
    )
    assert probes.where_forget() == ["nodes: node-0, node-3"]


def test_the_nodes_canary_replies_are_labelled_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    import unlearning.verification.nodes as nodes_mod

    class _Fed:
        names = {0: "alice", 1: "bob"}

    scorer = nodes_mod.FederatedScorer.__new__(nodes_mod.FederatedScorer)
    scorer.fed, scorer.target = _Fed(), Target("data_source", "bob/chess")  # type: ignore[assignment]
    one = {
        "canary/repetitions": torch.tensor([4.0]),
        "canary/secret_length": torch.tensor([6.0]),
        "canary/extraction": torch.tensor([1.0]),
    }

    def query(*_: Any, **__: Any) -> dict[int, Mapping[str, torch.Tensor]]:
        return {1: one, 2: one}

    monkeypatch.setattr(scorer, "_query", query)
    monkeypatch.setattr(nodes_mod, "_scores_of", lambda reply: reply)
    found = scorer.canaries([1, 2], {}, candidates=0, seed=0, extraction=False)
    assert [(c["node"], c["canary"]) for c in found] == [("bob", "bob#1"), ("node-2", "node-2#1")]
