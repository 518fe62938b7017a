"""The same unlearning job on the three runtimes (in-process, simulation, deployment), digits and the community
LM, as ratios to in-process from one run; writes its section of bench/RESULTS.md.

    nice -n 10 .venv/bin/python bench/federation.py [--nodes 3] [--flower-default]

Each task: a dataset over N nodes, a base model trained in process, then one gradient_ascent_ewc unlearning job
(discovery, Fisher, ascent, Fisher, repair, evaluation) run in process, in Flower's simulation engine (Ray,
a subprocess), and twice on the Deployment Engine (a LocalFederation on 127.0.0.1 started beforehand: a
SuperLink, N warm SuperNodes and their long-running ClientApp executors; the first run pays the nodes' first
loading of their data). Every runtime must produce the in-process model byte for byte. ``--flower-default``
adds a deployment run of the digits job with Flower's own isolation (a fresh ``flwr-clientapp`` process per
message) for comparison. Overhead per exchange: the job's message exchanges' time (JobCost.rounds) beyond
in-process's, divided by their number; outside exchanges: the rest of the job's time (the ServerApp's
process or the simulation starting, the model loaded and the version written).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the package before bench/unlearning.py

import torch
from results import replace_section  # bench/results.py (the script's directory)

from unlearning import JobResult, JobSpec, Target, init_dataset, init_model, run_job
from unlearning.data import read_manifest
from unlearning.federation.deployment import LocalFederation
from unlearning.federation.flower_runtimes import FlowerSettings

TITLE = "Federation runtimes: the same job in process, in simulation and on the Deployment Engine"


def setup(work: Path, task: str, nodes: int) -> dict[str, Any]:
    data, root = work / f"{task}-data", work / f"{task}-art"
    if task == "digits":
        init_dataset("digits", data, nodes=nodes, seed=0)
        v0 = init_model(root, "digits", size="tiny", seed=0)
        train: dict[str, Any] = {"rounds": 2, "local": {"epochs": 1.0}}
        target = Target("category", "7")
        config: dict[str, Any] = {"max_rounds": 2, "repair_rounds": 2}
    else:
        init_dataset("community-lm", data, nodes=nodes, seed=0)
        v0 = init_model(root, "community-lm", size="tiny", seed=0)
        train = {"rounds": 2, "local": {"steps": 5}}
        target = Target("data_source", "node-0/notebook")
        config = {"repair_rounds": 2, "ascent": {"max_steps": 5}}
    base = run_job(
        JobSpec(
            kind="train",
            job_id="train",
            artifact_root=str(root),
            dataset_dir=str(data),
            base_version=v0.version,
            **train,
        )
    )
    assert base.status == "succeeded", base.error
    return {"data": data, "root": root, "base": base.model_version, "target": target, "config": config}


def unlearn(
    s: dict[str, Any], job_id: str, runtime: str, flower: FlowerSettings | None
) -> tuple[JobResult, float]:
    spec = JobSpec(
        kind="unlearn",
        job_id=job_id,
        artifact_root=str(s["root"]),
        dataset_dir=str(s["data"]),
        base_version=s["base"],
        method="gradient_ascent_ewc",
        method_config=dict(s["config"]),
        target=s["target"],
        runtime=runtime,
    )
    t0 = time.perf_counter()
    result = run_job(spec, flower=flower)
    took = time.perf_counter() - t0
    assert result.status == "succeeded", f"{runtime}: {result.error}"
    return result, took


def federation(s: dict[str, Any], workdir: Path, isolation: str) -> LocalFederation:
    nodes: list[dict[str, str | int]] = [
        {"partition-id": i, "num-partitions": len(ns), "data-path": str(s["data"] / n["path"])}
        for ns in [read_manifest(s["data"])["nodes"]]
        for i, n in enumerate(ns)
    ]
    fed = LocalFederation(workdir, nodes, artifact_root=s["root"])
    fed.isolation = isolation
    return fed


def measure(
    task: str, work: Path, nodes: int, flower_default: bool, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    s = setup(work, task, nodes)
    rows: list[dict[str, Any]] = []
    ref, base_s = unlearn(s, "in-process", "in-process", None)
    exchanges = len(ref.cost.rounds)

    base_exchanges = sum(r.wall_s for r in ref.cost.rounds)

    def row(runtime: str, took: float, result: JobResult, up_s: float | None = None) -> None:
        same = result.content_hash == ref.content_hash
        in_exchanges = sum(r.wall_s for r in result.cost.rounds)
        rows.append(
            {
                "task": task,
                "runtime": runtime,
                "job_s": took,
                "ratio": took / base_s,
                # the exchanges' own time beyond in-process's, and what the run spent outside them (starting
                # the ServerApp's process or the simulation, loading the model, writing the version)
                "per_exchange_s": (in_exchanges - base_exchanges) / exchanges,
                "outside_s": took - in_exchanges,
                "exchanges": exchanges,
                "same_model": same,
                "up_s": up_s,
            }
        )
        log(f"{task} {runtime}: {took:.1f} s ({took / base_s:.2f}x), same model: {same}")

    row("in-process", base_s, ref)
    result, took = unlearn(s, "simulation", "simulation", None)
    row("simulation", took, result)
    variants = [("process", "deployment (warm nodes)")]
    if flower_default and task == "digits":  # the LM at Flower's pace would take most of an hour
        variants.append(("subprocess", "deployment (Flower's process per message)"))
    for isolation, label in variants:
        fed = federation(s, work / f"{task}-flwr-{isolation}", isolation)
        t0 = time.perf_counter()
        fed.start(timeout=180)
        up = time.perf_counter() - t0
        try:
            settings = FlowerSettings(superlink=fed.address, poll_interval_s=0.2, job_timeout_s=1800)
            runs = 2 if isolation == "process" else 1
            for k in range(runs):
                result, took = unlearn(s, f"deployment-{isolation}-{k}", "deployment", settings)
                row(f"{label}, run {k + 1}" if runs > 1 else label, took, result, up if k == 0 else None)
        finally:
            fed.stop()
    return rows


def write(rows: list[dict[str, Any]], nodes: int, command: str) -> None:
    lines = [
        f"## {TITLE}",
        "",
        f"`{command}` ({date.today().isoformat()}, {os.cpu_count()} cores, {platform.machine()}, torch "
        f"{torch.__version__}; other work ran beside it: absolute times are noisy, ratios less so).",
        "",
        f"One gradient_ascent_ewc unlearning job over {nodes} nodes on 127.0.0.1 (tiny models; digits: a category, "
        "2 ascent and 2 repair rounds; community LM: a data source, up to 5 ascent steps and 2 repair rounds; "
        "the job's message exchanges: discovery, Fisher, ascent, Fisher, repair, evaluation). Deployment: a "
        "LocalFederation started beforehand (its start-up time is beside its first run): SuperNodes with "
        "`--isolation process` and one long-running ClientApp executor each "
        "(`python -m unlearning.federation.node_runtime`), the ServerApp polling its replies every 0.05-0.25 s. "
        "Run 1 pays each node's first load of its data; run 2 is the steady state. Every runtime produced the "
        "in-process model byte for byte where the last column says yes.",
        "",
        "| task | runtime | job s | x in-process | overhead per exchange s | outside exchanges s | exchanges "
        "| federation up s | same model |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        up = f"{r['up_s']:.1f}" if r["up_s"] is not None else ""
        per = f"{r['per_exchange_s']:.2f}" if r["runtime"] != "in-process" else ""
        lines.append(
            f"| {r['task']} | {r['runtime']} | {r['job_s']:.1f} | {r['ratio']:.2f} | {per} | "
            f"{r['outside_s']:.1f} | {r['exchanges']} | {up} | {'yes' if r['same_model'] else 'NO'} |"
        )
    replace_section(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--tasks", default="digits,community-lm")
    parser.add_argument("--flower-default", action="store_true", help="also Flower's process per message")
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="commons-federation-bench-") as tmp:
        for task in args.tasks.split(","):
            rows += measure(task, Path(tmp), args.nodes, args.flower_default, lambda m: print(m, flush=True))
    command = "nice -n 10 .venv/bin/python bench/federation.py " + " ".join(sys.argv[1:])
    if not args.no_write:
        write(rows, args.nodes, command.strip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
