"""Unlearning benchmark: original vs gradient_ascent vs gradient_ascent_ewc vs retrain, same seeds, one run.

Scenarios (all federated, in process, through unlearning.run_job):
  digits-client  noisy digits (sigma 0.4, so that membership inference has signal), 5 nodes (Dirichlet 1.0),
                 forget node 0's whole data source;
  digits-class   clean digits, 5 nodes IID, forget class 7;
  lm-source      community LM (1.08 M parameters, byte-level), 5 nodes, forget node-0/notebook (fictitious
                 facts + 8 canaries inserted 1-32 times).

Metrics are measured centrally by the benchmark (it plays the experimenter and reads every file); the
service's own verification is elsewhere. Usage: python bench/unlearning.py [--only NAME] [--write]
(--write replaces the "## Unlearning" section of bench/RESULTS.md). ``--suite``: the fixed suite of cases and
seeds of issue 16 (bench/suite.py).
"""

from __future__ import annotations

import argparse
import json
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
from results import current_section, replace_section  # bench/results.py

from unlearning import ArtifactStore, JobResult, JobSpec, Target, init_dataset, init_model, run_job
from unlearning.data import load_heldout, load_node_data, read_manifest
from unlearning.local import per_example
from unlearning.metrics import canary_exposure, loss_auc
from unlearning.tasks import Task, make_task

torch.set_num_threads(1)
METHODS = ["gradient_ascent", "gradient_ascent_ewc", "retrain"]
# variants benchmarked beside the defaults: name -> (method, method_config)
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    # the LM without its data-source defaults (CausalLMTask.method_defaults): what session 1 measured
    "gradient_ascent_ewc, generic settings": (
        "gradient_ascent_ewc",
        {
            "secrets": "",
            "stop_reference": "validation",
            "dedup": False,
            "retain_weight": 0.0,
            "stop": "auto",
            "ascent": {"max_steps": 200, "lr": 1e-4, "check_every": 1},
            "auc": 0.55,
            "reference": "halimi",
            "fisher_examples": 64,
            "repair_rounds": 3,
            "repair_local": {},
            "repair_guard": 0.0,
        },
    ),
}


def load(root: Path, version: str) -> tuple[Task, torch.nn.Module]:
    v = ArtifactStore(root).get(version)
    task = make_task(v.task, v.model_config)
    return task, v.load_into(task.build_model(0))


def work_s(r: JobResult) -> float:
    """Seconds spent in the job's message exchanges other than evaluation (training / unlearning work)."""
    return sum(c.wall_s for c in r.cost.rounds if not c.phase.startswith("evaluate") and c.phase != "info")


def job(root: Path, data: Path, base: str, job_id: str, **kw: Any) -> JobResult:
    spec = JobSpec(artifact_root=str(root), dataset_dir=str(data), base_version=base, job_id=job_id, **kw)
    r = run_job(spec)
    if r.status != "succeeded":
        raise RuntimeError(f"{job_id}: {r.error}")
    return r


def unlearn(
    root: Path,
    data: Path,
    base: str,
    job_id: str,
    method: str,
    config: dict[str, Any],
    target: Target,
    seed: int,
) -> tuple[JobResult, Task, torch.nn.Module]:
    """One unlearning job on ``base``; returns its result and the unlearned model, loaded."""
    r = job(
        root,
        data,
        base,
        job_id,
        kind="unlearn",
        method=method,
        target=target,
        method_config=config,
        seed=seed,
    )
    return (r, *load(root, str(r.model_version)))


def cost_cells(r: JobResult) -> dict[str, float]:
    return {"cpu s": r.cost.cpu_s, "work s": work_s(r), "steps": r.cost.optimizer_steps}


def all_train(data: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for n in read_manifest(data)["nodes"]:
        out += load_node_data(data / n["path"]).train
    return out


# ---- digits ------------------------------------------------------------------------------------------------


def digits_eval(
    task: Task,
    model: torch.nn.Module,
    forget: list[Any],
    test: list[Any],
    mia_members: list[Any],
    mia_non: list[Any],
) -> dict[str, float]:
    fl, fc = per_example(model, task.to_batch(forget), task)
    _, tc = per_example(model, task.to_batch(test), task)
    ml, _ = per_example(model, task.to_batch(mia_members), task)
    nl, _ = per_example(model, task.to_batch(mia_non), task)
    return {
        "forget acc": float(fc.mean()),
        "test acc": float(tc.mean()),
        "forget loss": float(fl.mean()),
        "MIA AUC": loss_auc(ml, nl),
    }


def digits_scenario(
    kind: str, work: Path, seed: int = 0, variants: dict[str, tuple[str, dict[str, Any]]] | None = None
) -> dict[str, Any]:
    data, root = work / f"{kind}-data", work / f"{kind}-art"
    if kind == "digits-client":
        init_dataset("digits", data, nodes=5, partition="dirichlet", alpha=1.0, seed=seed, noise=0.4)
        target = Target("data_source", "node-0/digits")
    else:
        init_dataset("digits", data, nodes=5, partition="iid", seed=seed)
        target = Target("category", "7")
    v0 = init_model(root, "digits", seed=seed)
    local = {"epochs": 5.0}
    t0 = time.perf_counter()
    trained = job(root, data, v0.version, "train", kind="train", rounds=30, local=local, seed=seed)
    train_s = time.perf_counter() - t0
    records = all_train(data)
    forget = [r for r in records if target.matches(r)]
    test = load_heldout(data, "test")
    if kind == "digits-client":
        mia_m, mia_n = forget, test
        test_eval = test
    else:
        mia_m, mia_n = forget, [r for r in test if target.matches(r)]
        test_eval = [r for r in test if not target.matches(r)]  # utility on the other classes
    rows: dict[str, dict[str, float]] = {}
    task, model = load(root, str(trained.model_version))
    rows["original"] = {**digits_eval(task, model, forget, test_eval, mia_m, mia_n), **cost_cells(trained)}
    if kind == "digits-class":
        rows["original"]["test acc (class 7)"] = float(
            per_example(model, task.to_batch(mia_n), task)[1].mean()
        )
    runs = variants if variants is not None else {m: (m, {}) for m in METHODS}
    for i, (m, (method, config)) in enumerate(runs.items()):
        r, task, model = unlearn(
            root, data, str(trained.model_version), f"m{i}", method, config, target, seed
        )
        rows[m] = {**digits_eval(task, model, forget, test_eval, mia_m, mia_n), **cost_cells(r)}
        if kind == "digits-class":
            rows[m]["test acc (class 7)"] = float(per_example(model, task.to_batch(mia_n), task)[1].mean())
        rows[m]["details"] = {k: v for k, v in r.metrics.get("method", {}).items() if isinstance(v, float)}  # type: ignore[assignment]
    return {"rows": rows, "train_s": train_s}


# ---- community LM ------------------------------------------------------------------------------------------


def lm_eval(
    task: Task,
    model: torch.nn.Module,
    forget: list[Any],
    retain: list[Any],
    held: list[Any],
    canaries: list[dict[str, Any]],
) -> dict[str, float]:
    fl, _ = per_example(model, task.to_batch(forget), task)
    rl, _ = per_example(model, task.to_batch(retain), task)
    hl, _ = per_example(model, task.to_batch(held), task)
    facts = [r for r in forget if r.get("kind") == "fact"]
    ml, _ = per_example(model, task.to_batch(facts), task)
    exposures = {}
    for c in canaries:
        e, _ = canary_exposure(model, task, c["prefix"], c["secret"], candidates=1000)
        exposures.setdefault(c["repetitions"], []).append(e)
    row = {
        "forget ppl": math.exp(float(fl.mean())),
        "retain ppl": math.exp(float(rl.mean())),
        "held-out ppl": math.exp(float(hl.mean())),
        "MIA AUC": loss_auc(ml, hl),
    }
    for reps, es in sorted(exposures.items()):
        row[f"exposure x{reps}"] = sum(es) / len(es)
    return row


def lm_scenario(
    work: Path,
    seed: int = 0,
    rounds: int = 30,
    steps: int = 10,
    size: str = "default",
    methods: list[str] | None = None,
) -> dict[str, Any]:
    data, root = work / "lm-data", work / "lm-art"
    init_dataset("community-lm", data, nodes=5, seed=seed)
    manifest = read_manifest(data)
    target = Target("data_source", "node-0/notebook")
    v0 = init_model(root, "community-lm", size=size, seed=seed)
    t0 = time.perf_counter()
    trained = job(
        root, data, v0.version, "train", kind="train", rounds=rounds, local={"steps": steps}, seed=seed
    )
    train_s = time.perf_counter() - t0
    records = all_train(data)
    forget = list({r["text"]: r for r in records if target.matches(r)}.values())  # each line once
    retain = [r for r in records if not target.matches(r)][::4]
    held = load_heldout(data, "test")
    canaries = manifest["canaries"]
    rows: dict[str, dict[str, float]] = {}
    task, model = load(root, str(trained.model_version))
    rows["original"] = {**lm_eval(task, model, forget, retain, held, canaries), **cost_cells(trained)}
    for i, m in enumerate(methods if methods is not None else [*METHODS, *VARIANTS]):
        method, config = VARIANTS.get(m, (m, {}))
        r, task, model = unlearn(
            root, data, str(trained.model_version), f"m{i}", method, config, target, seed
        )
        rows[m] = {**lm_eval(task, model, forget, retain, held, canaries), **cost_cells(r)}
        rows[m]["details"] = {k: v for k, v in r.metrics.get("method", {}).items() if isinstance(v, float)}  # type: ignore[assignment]
    return {"rows": rows, "train_s": train_s}


# ---- report ------------------------------------------------------------------------------------------------


def table(result: dict[str, Any]) -> str:
    rows = result["rows"]
    cols = [c for c in rows["original"] if c not in ("details",)]
    key = "work s"
    # --lm-methods may leave retraining out: no ratio then
    retrain_cost = rows["retrain"][key] if "retrain" in rows else float("nan")
    out = ["| method | " + " | ".join(cols) + " | cost / retrain |", "|---" * (len(cols) + 2) + "|"]
    for name, row in rows.items():
        cells = []
        for c in cols:
            v = row.get(c, float("nan"))
            cells.append(f"{v:.0f}" if c == "steps" else f"{v:.3f}" if abs(v) < 100 else f"{v:.0f}")
        ratio = "—" if name == "original" else f"{row[key] / retrain_cost:.3f}"
        out.append(f"| {name} | " + " | ".join(cells) + f" | {ratio} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=["digits-client", "digits-class", "lm-source"], action="append")
    ap.add_argument("--lm-rounds", type=int, default=48)
    ap.add_argument("--lm-steps", type=int, default=10)
    ap.add_argument("--lm-size", default="default")
    ap.add_argument("--lm-methods", nargs="*", help="LM rows to run (default: the methods and the variants)")
    ap.add_argument(
        "--write", action="store_true", help="replace the ## Unlearning section of bench/RESULTS.md"
    )
    ap.add_argument("--json", type=Path)
    ap.add_argument("--seed", type=int, default=0, help="data, model and job seed (the tables use 0)")
    ap.add_argument("--suite", action="store_true", help="the fixed suite of cases x seeds (bench/suite.py)")
    ap.add_argument("--seeds", help="--suite: comma-separated seeds (default: the test seeds)")
    ap.add_argument("--cases", help="--suite: comma-separated cases (default: all)")
    ap.add_argument(
        "--variant",
        action="append",
        help="--suite: NAME=JSON method_config beside the defaults (data-source cases)",
    )
    ap.add_argument(
        "--from-json",
        type=Path,
        nargs="+",
        help="--suite --write: write the section from the --json of finished runs (e.g. one per seed)",
    )
    ap.add_argument(
        "--keep",
        type=Path,
        help="--suite: keep each seed's original and retrained models in this folder and reuse them (tuning)",
    )
    ap.add_argument(
        "--no-spread",
        action="store_true",
        help="--suite: no second and third retrained models (no TPR spread, no control; faster)",
    )
    args = ap.parse_args()
    if args.suite:
        import suite  # bench/suite.py

        suite.main(args, " ".join(["python bench/unlearning.py", *sys.argv[1:]]))
        return
    which = args.only or ["digits-client", "digits-class", "lm-source"]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in which:
            t0 = time.perf_counter()
            if name.startswith("digits"):
                results[name] = digits_scenario(name, work, seed=args.seed)
            else:
                results[name] = lm_scenario(
                    work,
                    seed=args.seed,
                    rounds=args.lm_rounds,
                    steps=args.lm_steps,
                    size=args.lm_size,
                    methods=args.lm_methods,
                )
            results[name]["wall_s"] = time.perf_counter() - t0
            print(
                f"\n### {name}  (train {results[name]['train_s']:.1f} s)\n\n{table(results[name])}\n",
                flush=True,
            )
            for m, row in results[name]["rows"].items():
                if "details" in row:
                    print(
                        f"  {m}: " + json.dumps({k: round(v, 3) for k, v in row["details"].items()}),
                        flush=True,
                    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float))
    if args.write:
        write_results(results)


NOTES = "<!-- notes: kept when the tables are regenerated -->"


def write_results(results: dict[str, Any]) -> None:
    body = [
        "## Unlearning",
        "",
        "Generated by `python bench/unlearning.py --write` (see docs/unlearning.md for the methods).",
        "",
    ]
    for name, res in results.items():
        body += [f"### {name} (training {res['train_s']:.0f} s)", "", table(res), ""]
    old = current_section("Unlearning")
    notes = old[old.find(NOTES) :].rstrip() if NOTES in old else NOTES + "\n\n(Write the analysis here.)"
    replace_section([*body, notes])


if __name__ == "__main__":
    main()
