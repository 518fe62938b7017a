"""FedEraser benchmark: a member has left; its node's contribution is removed with the remaining nodes alone
(method ``federaser``, from the history that training kept every k rounds) and compared with retraining
without that node (method ``retrain`` with the node ``departed``), same seeds, one run.

Scenarios (federated, in process, through unlearning.run_job; the departed node is stopped, never contacted):
  digits  noisy digits (sigma 0.4, so that membership inference has signal), 5 nodes (Dirichlet 1.0), node-0
          departs; trained ``--digits-rounds`` rounds of one local epoch;
  lm      community LM (byte-level), 5 nodes, node-0 departs; ``--lm-rounds`` rounds of ``--lm-steps`` steps.
Each trains twice (keep_updates_every 1 and 2: the same model, two histories) and runs federaser with its
default calibration (half a training round per kept interval) on each.

Measured centrally (the benchmark reads every file): held-out and forget-set (the departed node's training
data) accuracy or perplexity, membership-inference AUC (forget vs held-out losses) and its gap to the
retrained model's, CPU seconds / optimizer steps / energy against retraining's, the kept history's size.
Usage: python bench/federaser.py [--only digits|lm] [--write] (--write replaces the "## FedEraser" section of
bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from results import replace_section  # bench/results.py

from unlearning import ArtifactStore, JobResult, JobSpec, Target, init_dataset, init_model
from unlearning.data import load_heldout, load_node_data
from unlearning.federation.apps import build_client_app
from unlearning.federation.flower_runtimes import FlowerSettings, prepared
from unlearning.federation.local_grid import LocalGrid
from unlearning.federation.server import execute_job
from unlearning.local import per_example
from unlearning.metrics import loss_auc
from unlearning.tasks import Task, make_task

torch.set_num_threads(1)
DEPARTED = 0


def run(spec: JobSpec, stop: int | None = None) -> tuple[JobResult, set[int]]:
    """``spec`` on an in-process grid with node ``stop`` stopped; the result and the destinations used."""
    sent: set[int] = set()
    grid = LocalGrid.for_dataset(
        build_client_app(),
        Path(spec.dataset_dir),
        observer=lambda d, m: sent.add(m.metadata.dst_node_id) if d == "to-node" else None,
    )
    if stop is not None:
        grid.stop_node(1000 + stop)
    r = execute_job(grid, prepared(spec, FlowerSettings(node_timeout_s=2.0)))
    if r.status != "succeeded":
        raise RuntimeError(f"{spec.job_id}: {r.error}")
    return r, sent


def load(root: Path, version: str) -> tuple[Task, torch.nn.Module]:
    v = ArtifactStore(root).get(version)
    task = make_task(v.task, v.model_config)
    return task, v.load_into(task.build_model(0))


def evaluate(task: Task, model: torch.nn.Module, forget: list[Any], test: list[Any]) -> dict[str, float]:
    fl, fc = per_example(model, task.to_batch(forget), task)
    tl, tc = per_example(model, task.to_batch(test), task)
    if task.is_classifier:
        quality = {"test acc": float(tc.mean()), "forget acc": float(fc.mean())}
    else:
        quality = {"test ppl": math.exp(float(tl.mean())), "forget ppl": math.exp(float(fl.mean()))}
    return {**quality, "MIA AUC": loss_auc(fl, tl)}


def scenario(
    name: str, work: Path, rounds: int, local: dict[str, Any], seed: int = 0, size: str = "default"
) -> dict[str, Any]:
    data, root = work / f"{name}-data", work / f"{name}-art"
    if name == "digits":
        init_dataset("digits", data, nodes=5, partition="dirichlet", alpha=1.0, seed=seed, noise=0.4)
        v0 = init_model(root, "digits", seed=seed)
        source = f"node-{DEPARTED}/digits"
    else:
        init_dataset("community-lm", data, nodes=5, seed=seed)
        v0 = init_model(root, "community-lm", size=size, seed=seed)
        source = f"node-{DEPARTED}/notebook"
    forget = list({str(r): r for r in load_node_data(data / f"node-{DEPARTED}").train}.values())
    test = load_heldout(data, "test")
    base = {"artifact_root": str(root), "dataset_dir": str(data), "seed": seed, "evaluate": False}
    trained: dict[int, JobResult] = {}
    train_s: dict[int, float] = {}
    for k in (1, 2):
        t0 = time.perf_counter()
        trained[k], _ = run(
            JobSpec(
                kind="train",
                job_id=f"train-k{k}",
                base_version=v0.version,
                rounds=rounds,
                local=local,
                keep_updates_every=k,
                **base,
            )
        )
        train_s[k] = time.perf_counter() - t0
    task, original = load(root, str(trained[1].model_version))
    rows: dict[str, dict[str, Any]] = {"original": evaluate(task, original, forget, test)}
    target = Target("data_source", source)
    unlearn = {"kind": "unlearn", "target": target, **base}
    runs: dict[str, JobResult] = {}
    runs["retrain without the node"], sent = run(
        JobSpec(
            job_id="retrain",
            base_version=str(trained[1].model_version),
            method="retrain",
            departed=[f"node-{DEPARTED}"],
            **unlearn,
        ),
        stop=DEPARTED,
    )
    assert 1000 + DEPARTED not in sent
    for k in (1, 2):
        runs[f"federaser, kept every {k}"], sent = run(
            JobSpec(
                job_id=f"federaser-k{k}",
                base_version=str(trained[k].model_version),
                method="federaser",
                **unlearn,
            ),
            stop=DEPARTED,
        )
        assert 1000 + DEPARTED not in sent  # the departed node was never contacted
    ref = runs["retrain without the node"]
    for label, r in runs.items():
        _, model = load(root, str(r.model_version))
        row = evaluate(task, model, forget, test)
        rows[label] = {
            **row,
            "cpu s": r.cost.cpu_s,
            "steps": r.cost.optimizer_steps,
            "energy J": r.cost.energy_j or 0.0,
            "cost / retrain (cpu)": r.cost.cpu_s / ref.cost.cpu_s,
            "cost / retrain (steps)": r.cost.optimizer_steps / max(1, ref.cost.optimizer_steps),
        }
        if label.startswith("federaser"):
            rows[label]["history MB"] = r.metrics["method"]["history-bytes"] / 1e6
    for row in rows.values():
        row["MIA gap"] = abs(row["MIA AUC"] - rows["retrain without the node"]["MIA AUC"])
    return {
        "rows": rows,
        "train_s": train_s,
        "params": sum(p.numel() for p in original.parameters()),
        "energy_method": ref.cost.energy_method,
        "energy_basis": ref.cost.energy_basis,
        "rounds": rounds,
        "local": local,
    }


def table(result: dict[str, Any]) -> list[str]:
    rows = result["rows"]
    cols: list[str] = []
    for row in rows.values():
        cols += [c for c in row if c not in cols]
    out = ["| model | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, row in rows.items():
        cells = []
        for c in cols:
            v = row.get(c)
            if v is None:
                cells.append("—")
            elif c == "steps":
                cells.append(f"{v:.0f}")
            else:
                cells.append(f"{v:.3f}" if abs(v) < 100 else f"{v:.0f}")
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=["digits", "lm"], action="append")
    ap.add_argument("--digits-rounds", type=int, default=20)
    ap.add_argument("--lm-rounds", type=int, default=24)
    ap.add_argument("--lm-steps", type=int, default=10)
    ap.add_argument("--lm-size", default="default", help="community-lm size (tiny, small, default)")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only or ["digits", "lm"]:
            t0 = time.perf_counter()
            if name == "digits":
                results[name] = scenario(name, Path(tmp), args.digits_rounds, {"epochs": 1.0})
            else:
                results[name] = scenario(
                    name, Path(tmp), args.lm_rounds, {"steps": args.lm_steps}, size=args.lm_size
                )
            print(f"{name}: {time.perf_counter() - t0:.0f} s", flush=True)
            print("\n".join(table(results[name])), flush=True)
            if args.write:  # after each scenario: a long run keeps what it measured
                write(results)


def write(results: dict[str, dict[str, Any]]) -> None:
    lines = [
        "## FedEraser (a departed member)",
        "",
        f"`{' '.join(['python', 'bench/federaser.py', *sys.argv[1:]])}` (in process, 1 torch thread, shared",
        "2-core machine). A member has",
        "left: node-0 is stopped and never contacted (the grid records every destination). `federaser` rebuilds",
        "the model from the global models and node updates that training kept every k rounds, calibrating the",
        "remaining nodes' updates by half a training round of local work per kept interval; `retrain without the",
        "node` is FedAvg from the initial model on the four remaining nodes (`departed: [node-0]`). Forget set:",
        "node-0's whole training data; MIA AUC: its losses against the held-out test split's; MIA gap:",
        "|AUC - the retrained model's|. Cost ratios are the unlearning job's CPU seconds (and optimizer steps)",
        "over retraining's. History: what the training job kept in the artifact store (float32 safetensors,",
        "(1 + nodes) x parameters x 4 bytes per kept interval).",
        "",
    ]
    for name, r in results.items():
        basis = r["energy_basis"]
        how = (
            f"estimated: CPU s x {basis.get('watts_per_core', 0):.3g} W per core"
            if r["energy_method"] == "estimated"
            else "measured (RAPL)"
        )
        lines += [
            f"### {name}: {r['params']:,} parameters, {r['rounds']} rounds of {r['local']}, "
            f"training {r['train_s'][1]:.0f} s; energy {how}",
            "",
            *table(r),
            "",
        ]
    replace_section(lines)


if __name__ == "__main__":
    main()
