"""Each node's contribution to a training job (GTG-Shapley, unlearning/contribution.py): what it costs on top
of training, and how close the default (4 sweeps of guided permutations, truncation) comes to the exact
per-round Shapley values (every permutation).

    python bench/contribution.py            # digits (4 nodes: clean, clean, a copy, label-noised) and the LM
    python bench/contribution.py --no-lm    # digits only

Writes the section "Contribution (GTG-Shapley)" of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from bench.results import replace_section
from unlearning import JobResult, JobSpec, init_dataset, init_model, run_job
from unlearning.data import read_jsonl, write_dataset

TITLE = "Contribution (GTG-Shapley)"


def digits_community(base: Path) -> Path:
    """node-0, node-1 clean; node-2 a copy of node-1's data; node-3 with every label random (clean validation)."""
    init_dataset("digits", base / "src", nodes=3, seed=0)

    def load(k: int, name: str) -> list[dict[str, Any]]:
        return [
            {a: b for a, b in r.items() if a != "source"}
            for r in read_jsonl(base / "src" / f"node-{k}" / name)
        ]

    rng = random.Random(0)
    noisy = []
    for r in load(2, "digits.jsonl"):
        label = rng.randrange(10)
        noisy.append({**r, "label": label, "category": str(label)})
    train = {0: load(0, "digits.jsonl"), 1: load(1, "digits.jsonl"), 2: load(1, "digits.jsonl"), 3: noisy}
    val = {k: load(min(k, 2) if k != 2 else 1, "validation.jsonl") for k in range(4)}
    write_dataset(
        base / "data",
        task="digits",
        seed=0,
        nodes={f"node-{k}": {"digits": rs} for k, rs in train.items()},
        validation={f"node-{k}": rs for k, rs in val.items()},
        heldout={"validation": [], "test": []},
    )
    return base / "data"


def train(
    root: Path,
    data: Path,
    base: str,
    job_id: str,
    rounds: int,
    local: dict[str, Any],
    contribution: dict[str, Any],
) -> tuple[JobResult, float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    r = run_job(
        JobSpec(
            kind="train",
            job_id=job_id,
            artifact_root=str(root),
            dataset_dir=str(data),
            base_version=base,
            rounds=rounds,
            local=local,
            contribution=contribution,
            evaluate=False,
        )
    )
    assert r.status == "succeeded", r.error
    return r, time.perf_counter() - t0, time.process_time() - c0


def scenario(
    name: str, root: Path, data: Path, base: str, rounds: int, local: dict[str, Any], exact_cap: int
) -> dict[str, Any]:
    train(root, data, base, f"{name}-warm-up", 1, local, {"method": "none"})  # imports and first-use costs
    plain, wall0, cpu0 = train(root, data, base, f"{name}-plain", rounds, local, {"method": "none"})
    gtg, wall1, cpu1 = train(root, data, base, f"{name}-gtg", rounds, local, {})
    exact, _, _ = train(
        root, data, base, f"{name}-exact", rounds, local, {"max_permutations": exact_cap, "tolerance": 1e-9}
    )
    c, e = gtg.contribution, exact.contribution
    assert c is not None and e is not None
    scores = {n["node"]: n["score"] for n in c["nodes"]}
    exact_scores = {n["node"]: n["score"] for n in e["nodes"]}
    gap = max(abs(scores[k] - exact_scores[k]) for k in scores) / max(abs(e["total_improvement"]), 1e-12)
    return {
        "name": name,
        "rounds": rounds,
        "nodes": len(scores),
        "train_node_cpu_s": plain.cost.node_cpu_s,
        "train_bytes": sum(rc.bytes_to_nodes for rc in plain.cost.rounds if rc.phase == "train"),
        "train_wall_s": wall0,
        "train_cpu_s": cpu0,
        "with_wall_s": wall1,
        "with_cpu_s": cpu1,
        "cost": c["cost"],
        "exact_cost": e["cost"],
        "utility": c["utility"],
        "total": c["total_improvement"],
        "residual": c["residual"],
        "scores": scores,
        "exact_scores": exact_scores,
        "gap": gap,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-lm", action="store_true")
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        data = digits_community(base / "digits")
        v0 = init_model(base / "art", "digits", size="tiny", seed=0)
        out.append(scenario("digits", base / "art", data, v0.version, args.rounds, {"epochs": 1.0}, 24))
        if not args.no_lm:
            init_dataset("community-lm", base / "lm", nodes=5, seed=0)
            l0 = init_model(base / "art", "community-lm", size="tiny", seed=0)
            out.append(scenario("community-lm", base / "art", base / "lm", l0.version, 3, {"steps": 20}, 120))
    lines = [
        f"## {TITLE}",
        "",
        "`python bench/contribution.py` (one run, 1 torch thread, in-process federation). Each node's contribution to",
        "a training job by GTG-Shapley with its defaults (4 sweeps of guided permutations per round at most,",
        "between- and within-round truncation at 1e-3), against the same job without it, and against exact per-round",
        "Shapley values (every permutation). digits: node-0 and node-1 clean, node-2 a copy of node-1's data, node-3",
        "with random labels; community-lm: the 5-node reference corpus. Utility: validation accuracy (digits) or",
        "minus the validation loss (LM), evaluated by the nodes on their own validation data.",
        "",
        "Timings are CPU seconds (the nodes' own, as they report them; the process's, which in process includes",
        "the nodes', after a warm-up job): the machine was shared, so wall seconds are left out.",
        "",
        "| task | rounds | nodes | training: node CPU s | contribution: node CPU s | server CPU s (subset models) | process CPU s without / with | models evaluated | exchanges | MB to nodes (training / contribution) | exact: models evaluated | max gap to exact / improvement | residual |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in out:
        c = r["cost"]
        lines.append(
            f"| {r['name']} | {r['rounds']} | {r['nodes']} | {r['train_node_cpu_s']:.1f} | {c['node_cpu_s']:.1f} | "
            f"{c['server_cpu_s']:.2f} | {r['train_cpu_s']:.1f} / {r['with_cpu_s']:.1f} | {c['evaluations']} | "
            f"{c['exchanges']} | {r['train_bytes'] / 1e6:.1f} / {c['bytes_to_nodes'] / 1e6:.1f} | "
            f"{r['exact_cost']['evaluations']} | {r['gap']:.3f} | {r['residual']:.2g} |"
        )
    lines.append("")
    for r in out:
        cells = ", ".join(f"{k} {v:+.3f} (exact {r['exact_scores'][k]:+.3f})" for k, v in r["scores"].items())
        lines.append(f"- {r['name']} ({r['utility']}, improvement {r['total']:.3f}): {cells}.")
    replace_section(lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
