"""How the three runtimes scale with the number of nodes: wall time and peak memory of one small job.

    nice -n 10 .venv/bin/python bench/scale.py                       # everything (about an hour on 2 cores)
    .venv/bin/python bench/scale.py --runtimes in-process --nodes 5 50   # a quick look

The job is the same everywhere: digits (1,797 rows, IID over N nodes), the tiny model, one FedAvg round of
one local epoch, no evaluation, no contribution measurement: a discovery exchange and one training exchange with every node. Each point
runs in a fresh child process (``--point``), which builds the dataset and the initial model, then times
``run_job`` alone; the parent samples the summed resident memory of the child and every process below it
(Ray's daemons and actors, the SuperLink, SuperNodes and their app processes) every 0.25 s. For the
Deployment Engine the child first starts a ``LocalFederation`` on 127.0.0.1 (TLS off: this measures Flower, and
TLS on loopback costs little) with the SuperLink state of ``--state`` (default: in memory, the documented
choice; ``sqlite`` is the ``--database FILE`` state); its start-up is reported apart from the job.

In-process and simulation run at 5, 50, 200, 500 and 1,000 nodes; the Deployment Engine at 3, 10 and 20
(20 SuperNodes are 20 processes of ~260 MB, plus the app processes of every message). Results go to
bench/RESULTS.md, section "## Scale" (--no-write to skip).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

IN_PROCESS_NODES = [5, 50, 200, 500, 1000]
SIMULATION_NODES = [5, 50, 200, 500, 1000]
DEPLOYMENT_NODES = [3, 10, 20]
PAGE = os.sysconf("SC_PAGE_SIZE")


def _tree_rss(root_pid: int) -> tuple[int, int]:
    """(summed RSS in bytes, number of processes) of ``root_pid`` and all its descendants, from /proc."""
    parent: dict[int, int] = {}
    rss: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            pid = int(stat.parent.name)
            parent[pid] = int(fields[1])
            rss[pid] = int(fields[21]) * PAGE
        except (OSError, IndexError, ValueError):
            continue
    total, count = 0, 0
    for pid in rss:
        p = pid
        while p > 1 and p != root_pid:
            p = parent.get(p, 0)
        if p == root_pid:
            total += rss[pid]
            count += 1
    return total, count


def _tree_cpu(root_pid: int) -> float:
    """CPU seconds (user + system, the reaped children's included) of ``root_pid`` and every live process
    below it, from /proc."""
    parent: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            pid = int(stat.parent.name)
            parent[pid] = int(fields[1])
            ticks[pid] = sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
        except (OSError, IndexError, ValueError):
            continue
    total = 0
    for pid, t in ticks.items():
        p = pid
        while p > 1 and p != root_pid:
            p = parent.get(p, 0)
        if p == root_pid:
            total += t
    return total / os.sysconf("SC_CLK_TCK")


def run_point(runtime: str, nodes: int, state: str, timeout: float) -> dict[str, Any]:
    """One measurement in a fresh child process; returns its report plus the sampled peak memory."""
    with tempfile.TemporaryDirectory(prefix="commons-scale-") as tmp:
        out = Path(tmp) / "point.json"
        argv = [sys.executable, __file__, "--point", runtime, str(nodes), tmp, "--state", state]
        env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "OMP_NUM_THREADS": "1"}
        started = time.monotonic()
        child = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        peak, peak_procs = 0, 0
        while child.poll() is None:
            total, count = _tree_rss(child.pid)
            if total > peak:
                peak, peak_procs = total, count
            if time.monotonic() - started > timeout:
                child.kill()
                break
            time.sleep(0.25)
        output = child.communicate()[0].decode(errors="replace")
        if not out.exists():
            return {"runtime": runtime, "nodes": nodes, "state": state, "ok": False, "error": output[-2000:]}
        report: dict[str, Any] = json.loads(out.read_text())
        report.update(
            peak_rss_mb=round(peak / 2**20), peak_processes=peak_procs, load=round(os.getloadavg()[0], 1)
        )
        return report


def _point(runtime: str, nodes: int, workdir: Path, state: str) -> None:
    """The child: build the dataset and model, then time the job (and, for deployment, the federation)."""
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    import torch

    from unlearning import JobSpec, init_dataset, init_model, run_job
    from unlearning.data import read_manifest
    from unlearning.federation.flower_runtimes import FlowerSettings

    torch.set_num_threads(1)
    data, art = workdir / "data", workdir / "art"
    init_dataset("digits", data, nodes=nodes, seed=0)
    v0 = init_model(art, "digits", size="tiny", seed=0)
    spec = JobSpec(
        kind="train",
        job_id=f"scale-{runtime}-{nodes}",
        artifact_root=str(art),
        dataset_dir=str(data),
        base_version=v0.version,
        rounds=1,
        local={"epochs": 1.0},
        evaluate=False,
        contribution={
            "method": "none"
        },  # GTG-Shapley's subset evaluations grow with the nodes: not measured here
        runtime=runtime,
    )
    report: dict[str, Any] = {"runtime": runtime, "nodes": nodes, "state": state}
    if runtime != "deployment":
        started, cpu = time.monotonic(), _tree_cpu(os.getpid())
        result = run_job(spec, flower=FlowerSettings(job_timeout_s=3600))
        report["job_s"] = round(time.monotonic() - started, 2)
        report["job_cpu_s"] = round(_tree_cpu(os.getpid()) - cpu, 2)
    else:
        from unlearning.federation.deployment import LocalFederation

        manifest = read_manifest(data)
        node_configs = [
            {"partition-id": i, "num-partitions": nodes, "data-path": str(data / node["path"])}
            for i, node in enumerate(manifest["nodes"])
        ]
        database = str(workdir / "superlink-state.db") if state == "sqlite" else None
        started = time.monotonic()
        fed = LocalFederation(workdir / "flwr", node_configs, artifact_root=art, database=database)
        fed.start(timeout=900)  # twenty SuperNodes on a loaded 2-core machine take minutes to come up
        try:
            report["federation_up_s"] = round(time.monotonic() - started, 2)
            settings = FlowerSettings(superlink=fed.address, poll_interval_s=0.5, job_timeout_s=1800)
            started, cpu = time.monotonic(), _tree_cpu(os.getpid())
            result = run_job(spec, flower=settings)
            report["job_s"] = round(time.monotonic() - started, 2)
            report["job_cpu_s"] = round(_tree_cpu(os.getpid()) - cpu, 2)
            log = (fed.workdir / "superlink.log").read_text(errors="replace")
            report["database_locked"] = log.count("database is locked")  # SQLite's busy timeout ran out
            report["http_500"] = log.count('HTTP/1.1" 500')
        finally:
            fed.stop()
    report["ok"] = result.status == "succeeded"
    report["error"] = result.error
    (workdir / "point.json").write_text(json.dumps(report))


SQLITE_LABEL = "deployment, SQLite state"


def _label(r: dict[str, Any]) -> str:
    return SQLITE_LABEL if r["runtime"] == "deployment" and r.get("state") == "sqlite" else str(r["runtime"])


def _row(r: dict[str, Any]) -> str:
    if not r.get("ok"):
        err = str(r.get("error") or "failed").strip().splitlines()
        return f"| {_label(r)} | {r['nodes']} | failed: {err[-1][:120] if err else ''} | | | | | |"
    per_node = 1000 * r.get("job_cpu_s", 0.0) / r["nodes"]
    up = f"{r['federation_up_s']:.1f}" if "federation_up_s" in r else ""
    return (
        f"| {_label(r)} | {r['nodes']} | {r['job_s']:.1f} | {r.get('job_cpu_s', 0):.1f} | {per_node:.0f} | {r['peak_rss_mb']:,} "
        f"({r['peak_processes']}) | {up} | {r.get('load', '')} |"
    )


def _kept_rows(measured: list[dict[str, Any]]) -> list[str]:
    """Table rows of the current section for points not measured in this run (a run of one runtime keeps
    the others' rows)."""
    from bench.results import current_section

    done = {(_label(r), int(r["nodes"])) for r in measured}
    kept = []
    for line in current_section("Scale").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        labels = ("in-process", "simulation", "deployment", SQLITE_LABEL)
        if (
            len(cells) > 2
            and cells[0] in labels
            and cells[1].isdigit()
            and (cells[0], int(cells[1])) not in done
        ):
            kept.append(line)
    return kept


def write_results(rows: list[dict[str, Any]], state: str) -> None:
    from bench.results import replace_section

    order = {"in-process": 0, "simulation": 1, "deployment": 2, SQLITE_LABEL: 3}
    table = sorted(
        [*_kept_rows(rows), *(_row(r) for r in rows)],
        key=lambda line: (order[line.split("|")[1].strip()], int(line.split("|")[2])),
    )

    lines = [
        "## Scale",
        "",
        f"`nice -n 10 .venv/bin/python bench/scale.py` ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
        "other work running beside it). One train job: digits over N nodes (IID), tiny model, one FedAvg "
        "round of one local epoch, no evaluation and no contribution measurement (a discovery exchange and a training exchange with every "
        "node). Job time is `run_job` alone (wall), job CPU the CPU seconds of every process of the job in that "
        "time (user + system; less sensitive than wall time to the load beside it); peak memory is the summed RSS of the job's process and every "
        "process below it (for deployment: the SuperLink, the SuperNodes and their app processes), sampled "
        "every 0.25 s. Deployment: a LocalFederation on 127.0.0.1 (plain HTTP), SuperLink state in memory "
        "unless noted; federation up is the time until every SuperNode was online. Load: the machine's "
        "1-minute load average when the point ended (2 cores: above 2, the job shared its CPUs).",
        "",
        "| runtime | nodes | job s | job CPU s | CPU ms per node | peak RSS MB (processes) | federation up s | load |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *table,
    ]
    for r in rows:
        if r.get("runtime") == "deployment" and "database_locked" in r:
            lines.append(
                f"\n{_label(r)}, {r['nodes']} nodes: the SuperLink's log holds {r['database_locked']} "
                f'"database is locked" and {r["http_500"]} HTTP 500 answers.'
            )
    replace_section(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runtimes", nargs="+", default=["in-process", "simulation", "deployment"])
    ap.add_argument("--nodes", nargs="+", type=int, default=None, help="for in-process and simulation")
    ap.add_argument("--deploy-nodes", nargs="+", type=int, default=DEPLOYMENT_NODES)
    ap.add_argument("--state", choices=["memory", "sqlite"], default="memory")
    ap.add_argument("--timeout", type=float, default=2400.0, help="seconds per point")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--point", nargs=3, metavar=("RUNTIME", "NODES", "WORKDIR"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.point:
        _point(args.point[0], int(args.point[1]), Path(args.point[2]), args.state)
        return 0
    plan: list[tuple[str, int]] = []
    for runtime in args.runtimes:
        if runtime == "deployment":
            plan += [(runtime, n) for n in args.deploy_nodes]
        else:
            default = IN_PROCESS_NODES if runtime == "in-process" else SIMULATION_NODES
            plan += [(runtime, n) for n in (args.nodes or default)]
    rows = []
    for runtime, nodes in plan:
        row = run_point(runtime, nodes, args.state, args.timeout)
        print(json.dumps(row), flush=True)
        rows.append(row)
        if not args.no_write:
            write_results(rows, args.state)
    return 0 if all(r.get("ok") for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
