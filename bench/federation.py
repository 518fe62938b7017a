"""The same unlearning job on the three runtimes (in-process, simulation, deployment), digits and the community
LM, as ratios to in-process from one run; writes its section of bench/RESULTS.md (after every task).

    nice -n 5 .venv/bin/python bench/federation.py [--nodes 3] [--tasks digits,community-lm,community-lm-long]
        [--flower-default] [--flower-serverapp] [--skip-simulation] [--no-write]

Each task: a dataset over N nodes, a base model trained in process, then one gradient_ascent_ewc unlearning job
(discovery, Fisher, ascent, Fisher, repair, evaluation) run in process, in Flower's simulation engine (Ray,
a subprocess), and twice on the Deployment Engine (a LocalFederation on 127.0.0.1 started beforehand: a
SuperLink with its ServerApp executor, N warm SuperNodes and their long-running ClientApp executors; the first
run pays the nodes' first loading of their data and the executors' imports). Every runtime must produce the
in-process model byte for byte. ``--flower-default`` adds a deployment run of the digits job with Flower's own
isolation (a fresh ``flwr-clientapp`` process per message) for comparison, ``--flower-serverapp`` two
deployment runs with Flower's own ServerApp process per run (``flwr-serverapp`` started by
``flower-superexec``) instead of the forking executor (unlearning.federation.serverapp_runtime).
``community-lm-long`` is a longer LM job: the small model (165 k parameters, 21 tensors), up to 20 ascent
steps and 3 repair rounds of 20 local steps, so that more of its time is compute. ``--skip-simulation``
leaves the simulation out. Overhead per exchange: the job's message exchanges' time (JobCost.rounds) beyond
in-process's, divided by their number; outside exchanges: the rest of the job's time (the ServerApp's
process or the simulation starting, the model loaded and the version written), of which Flower's run start
and end is the job's time beyond the ServerApp's own (JobCost.wall_s).
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
    elif task == "community-lm":
        init_dataset("community-lm", data, nodes=nodes, seed=0)
        v0 = init_model(root, "community-lm", size="tiny", seed=0)
        train = {"rounds": 2, "local": {"steps": 5}}
        target = Target("data_source", "node-0/notebook")
        config = {"repair_rounds": 2, "ascent": {"max_steps": 5}}
    elif task == "community-lm-long":
        init_dataset("community-lm", data, nodes=nodes, seed=0)
        v0 = init_model(root, "community-lm", size="small", seed=0)
        train = {"rounds": 2, "local": {"steps": 20}}  # repair rounds take the lineage's 20 local steps
        target = Target("data_source", "node-0/notebook")
        config = {"repair_rounds": 3, "ascent": {"max_steps": 20}}
    else:
        raise SystemExit(f"unknown task {task!r}: digits, community-lm or community-lm-long")
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


def federation(s: dict[str, Any], workdir: Path, isolation: str, server_isolation: str) -> LocalFederation:
    nodes: list[dict[str, str | int]] = [
        {"partition-id": i, "num-partitions": len(ns), "data-path": str(s["data"] / n["path"])}
        for ns in [read_manifest(s["data"])["nodes"]]
        for i, n in enumerate(ns)
    ]
    fed = LocalFederation(workdir, nodes, artifact_root=s["root"])
    fed.isolation = isolation
    fed.server_isolation = server_isolation
    return fed


def measure(
    task: str,
    work: Path,
    nodes: int,
    flower_default: bool,
    flower_serverapp: bool,
    log: Callable[[str], None],
    simulation: bool = True,
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
                # of which Flower's part: from StartRun to the ServerApp's job starting, and from its end to
                # the run reported finished (the rest is the job's own work outside exchanges)
                "flower_s": took - result.cost.wall_s,
                "exchanges": exchanges,
                "same_model": same,
                "up_s": up_s,
            }
        )
        r = rows[-1]
        log(
            f"{task} {runtime}: {took:.1f} s ({took / base_s:.2f}x), per exchange +{r['per_exchange_s']:.2f} s, "
            f"outside exchanges {r['outside_s']:.1f} s (Flower's run start and end {r['flower_s']:.1f} s), "
            f"same model: {same}, exchanges: {exchanges}"
        )

    row("in-process", base_s, ref)
    if simulation:
        result, took = unlearn(s, "simulation", "simulation", None)
        row("simulation", took, result)
    # (ClientApp isolation, ServerApp isolation, label, runs)
    variants = [("process", "process", "deployment (warm nodes, ServerApp executor)", 2)]
    if flower_serverapp:
        variants.append(
            ("process", "subprocess", "deployment (warm nodes, Flower's flwr-serverapp per run)", 2)
        )
    if flower_default and task == "digits":  # the LM at Flower's pace would take most of an hour
        variants.append(("subprocess", "subprocess", "deployment (Flower's process per message)", 1))
    for isolation, server_isolation, label, runs in variants:
        name = f"{isolation}-{server_isolation}"
        fed = federation(s, work / f"{task}-flwr-{name}", isolation, server_isolation)
        t0 = time.perf_counter()
        fed.start(timeout=180)
        up = time.perf_counter() - t0
        log(f"{task} {label}: federation up in {up:.1f} s")
        try:
            settings = FlowerSettings(superlink=fed.address, poll_interval_s=0.2, job_timeout_s=1800)
            for k in range(runs):
                result, took = unlearn(s, f"deployment-{name}-{k}", "deployment", settings)
                row(f"{label}, run {k + 1}" if runs > 1 else label, took, result, up if k == 0 else None)
        finally:
            fed.stop()
    return rows


def write(rows: list[dict[str, Any]], nodes: int, command: str) -> None:
    lines = [
        f"## {TITLE}",
        "",
        f"`{command}` ({date.today().isoformat()}, {os.cpu_count()} cores, {platform.machine()}, torch "
        f"{torch.__version__}; load average {os.getloadavg()[0]:.1f} when this was written; other work ran "
        "beside it: absolute times are noisy, ratios less so).",
        "",
        f"One gradient_ascent_ewc unlearning job over {nodes} nodes on 127.0.0.1 (digits: tiny model, a category, "
        "2 ascent and 2 repair rounds; community-lm: tiny model (12 tensors, 27 k parameters), a data source, "
        "up to 5 ascent steps and 2 repair rounds of 5 local steps; community-lm-long: the small model "
        "(165 k parameters, 21 tensors), up to 20 ascent steps and 3 repair rounds of 20 local steps; the job's message "
        "exchanges: discovery, Fisher, ascent, Fisher, repair, evaluation). Every model travels as one packed "
        "array per message record (unlearning/federation/packing.py). Deployment: a LocalFederation started "
        "beforehand (its start-up time is beside its first run): SuperNodes with `--isolation process` and one "
        "long-running ClientApp executor each (`python -m unlearning.federation.node_runtime`: a task is handed "
        "to the executor once its message's objects are stored, through a long-polled AcquireTask); the SuperLink "
        "with `--isolation process` and its ServerApp runs forked from one executor that imported torch and "
        "the apps once (`python -m unlearning.federation.serverapp_runtime`), or, where the row says so, "
        "Flower's `flwr-serverapp` process per run; the ServerApp polls its replies every 0.05-0.25 s. Run 1 "
        "pays each node's first load of its data; run 2 is the steady state. Overhead per exchange: the "
        "exchanges' time beyond in-process's, per exchange; outside exchanges: the rest of the job's time, of "
        "which 'run start and end' is the runtime's own (from submitting the run to the ServerApp's job "
        "starting, and from its end to the run reported finished). Every runtime produced the in-process "
        "model byte for byte where the last column says yes.",
        "",
        "| task | runtime | job s | x in-process | overhead per exchange s | outside exchanges s "
        "| of which run start and end s | exchanges | federation up s | same model |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        up = f"{r['up_s']:.1f}" if r["up_s"] is not None else ""
        per = f"{r['per_exchange_s']:.2f}" if r["runtime"] != "in-process" else ""
        lines.append(
            f"| {r['task']} | {r['runtime']} | {r['job_s']:.1f} | {r['ratio']:.2f} | {per} | "
            f"{r['outside_s']:.1f} | {r['flower_s']:.1f} | {r['exchanges']} | {up} | "
            f"{'yes' if r['same_model'] else 'NO'} |"
        )
    replace_section(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--tasks", default="digits,community-lm")
    parser.add_argument("--flower-default", action="store_true", help="also Flower's process per message")
    parser.add_argument(
        "--flower-serverapp", action="store_true", help="also Flower's flwr-serverapp process per run"
    )
    parser.add_argument("--skip-simulation", action="store_true", help="leave the simulation runtime out")
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows: list[dict[str, Any]] = []
    niceness = os.nice(0)
    command = (f"nice -n {niceness} " if niceness else "") + ".venv/bin/python bench/federation.py "
    command += " ".join(sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="commons-federation-bench-") as tmp:
        for task in args.tasks.split(","):
            rows += measure(
                task,
                Path(tmp),
                args.nodes,
                args.flower_default,
                args.flower_serverapp,
                lambda m: print(m, flush=True),
                simulation=not args.skip_simulation,
            )
            if not args.no_write:  # after every task: a run cut short keeps what it measured
                write(rows, args.nodes, command.strip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
