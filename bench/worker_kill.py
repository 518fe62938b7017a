"""Kill job workers with SIGKILL at random points of unlearning jobs and check that nothing is lost.

    .venv/bin/python bench/worker_kill.py [--trials 20] [--seed 0]

Sets up a small federation (digits, 3 nodes, a base model trained federatedly) on a fresh SQLite database,
then for each trial: a proposal is approved (its job is queued), `commons worker` processes are started and
killed with SIGKILL at a random moment after they claimed the job (0-3 kills per job), until a worker that
is left alone finishes it. After every trial it checks: the job finished with a verification report, exactly
one model version exists for the job (in the registry row and in the artifact store), and the proposal is
verified only if the report passed. Results go to bench/RESULTS.md ("## Worker kills").
tests/integration/test_worker_kill.py runs the same harness with 3 trials.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@dataclass
class Harness:
    root: Path
    env: dict[str, str]
    ctx: Any
    people: dict[str, Any]
    log: list[str] = field(default_factory=list)


def setup(root: Path) -> Harness:
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    from governance.db.engine import make_engine
    from governance.db.migrate import upgrade
    from governance.schemas import MemberCreate
    from governance.services import members
    from governance.services.context import Ctx
    from governance.settings import Settings
    from unlearning import JobSpec, init_dataset, init_model, run_job

    data = root / "data"
    url = f"sqlite:///{data / 'commons.db'}"
    data.mkdir(parents=True, exist_ok=True)
    upgrade(url)
    init_dataset("digits", data / "dataset", nodes=3, seed=0)
    init = init_model(data / "artifacts", "digits", seed=0)
    base = run_job(
        JobSpec(
            kind="train",
            job_id="base",
            artifact_root=str(data / "artifacts"),
            dataset_dir=str(data / "dataset"),
            base_version=init.version,
            rounds=2,
        )
    )
    assert base.model_version is not None, base.error
    env = {
        **os.environ,
        "COMMONS_ENVIRONMENT": "development",
        "COMMONS_DATA_DIR": str(data),
        "COMMONS_DATABASE_URL": url,
        "COMMONS_BASE_MODEL_VERSION": base.model_version,
        "COMMONS_JOB_LEASE_SECONDS": "2",
        "COMMONS_WORKER_POLL_SECONDS": "0.2",
        "COMMONS_VERIFY_WITH_REFERENCE": "false",
        "COMMONS_JOB_MAX_ATTEMPTS": "50",
        "FLWR_TELEMETRY_ENABLED": "0",
    }
    settings = Settings(
        environment="development",
        data_dir=data,
        database_url=url,
        base_model_version=base.model_version,
        job_lease_seconds=2,
        quorum=0.3,
        triage_approvals_required=1,
        job_max_attempts=50,
    )
    ctx = Ctx.create(make_engine(url), settings)
    people = {}
    for handle, roles in [
        ("rev", ["reviewer"]),
        ("c1", ["council"]),
        ("c2", ["council"]),
        ("m1", []),
        ("m2", []),
    ]:
        m = members.add_member(ctx, MemberCreate(handle=handle, display_name=handle, roles=roles))
        people[handle] = members.authenticate(ctx, members.create_token(ctx, m.id, "kill").token)
    return Harness(root, env, ctx, people)


def approve(h: Harness, label: str) -> int:
    """A proposal taken to approval by the real services (review periods shortened to a second)."""
    from governance.demo import fast_policy_settings
    from governance.schemas import ProposalCreate
    from governance.services import lifecycle, proposals

    fast = fast_policy_settings(h.ctx, 1.0)
    pid = proposals.create(
        fast,
        ProposalCreate(
            title=f"Forget digit {label}", target={"kind": "category", "category": label}, submit=True
        ),
        h.people["m1"],
    ).id
    proposals.triage(fast, pid, h.people["rev"], "approve", None)
    for m in ("m1", "m2", "rev"):
        proposals.vote(fast, pid, h.people[m], "approve", None)
    time.sleep(1.2)
    lifecycle.sweep(fast, pid)
    for c in ("c1", "c2"):
        proposals.council(fast, pid, h.people[c], "ratify", None)
    time.sleep(1.2)
    lifecycle.sweep(fast, pid)
    return pid


def start_worker(h: Harness, name: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "governance.cli", "worker", "--name", name],
        env=h.env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def trial(h: Harness, n: int, rng: random.Random) -> dict[str, Any]:
    from governance.services import jobs

    pid = approve(h, str(n % 10))
    (job,) = jobs.list_jobs(h.ctx, proposal_id=pid)
    kills = rng.randint(1, 3)
    killed_in: list[str] = []
    for k in range(kills):
        w = start_worker(h, f"t{n}-k{k}")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # wait until this worker holds the job
            cur = jobs.get(h.ctx, job["id"])
            if cur["lease_owner"] == f"t{n}-k{k}" or cur["state"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 3.0))
        state = jobs.get(h.ctx, job["id"])["state"]
        w.send_signal(signal.SIGKILL)
        w.wait()
        killed_in.append(state)
        if state in ("succeeded", "failed", "cancelled"):
            break
    survivor = start_worker(h, f"t{n}-final")
    deadline = time.monotonic() + 300
    while jobs.get(h.ctx, job["id"])["state"] not in ("succeeded", "failed", "cancelled"):
        if time.monotonic() > deadline:
            survivor.kill()
            raise RuntimeError(f"job {job['id']} did not finish")
        time.sleep(0.2)
    survivor.send_signal(signal.SIGTERM)
    survivor.wait(timeout=60)
    return check(h, job["id"], pid, killed_in)


def check(h: Harness, job_id: int, pid: int, killed_in: list[str]) -> dict[str, Any]:
    from governance.services import jobs, proposals

    done = jobs.get(h.ctx, job_id)
    versions_dir = h.ctx.settings.artifact_dir / "versions"
    mine = []
    for d in versions_dir.iterdir():
        m = json.loads((d / "manifest.json").read_text())
        if str(m.get("job_id", "")).startswith(f"job-{job_id}-a"):
            mine.append(d.name)
    state = proposals.get_detail(h.ctx, pid).state
    report = done["report"] or {}
    problems = []
    if done["state"] != "succeeded":
        problems.append(f"job ended {done['state']}: {done['error']}")
    if not report:
        problems.append("no verification report")
    if mine != [done["model_version"]]:
        problems.append(f"model versions of the job: {mine}, registered: {done['model_version']}")
    passed = report.get("passed")
    if (state == "verified") != bool(passed):
        problems.append(f"proposal {state} but report passed={passed}")
    return {
        "job": job_id,
        "kills": len(killed_in),
        "killed_in": killed_in,
        "attempts": done["attempt"],
        "versions": len(mine),
        "proposal": state,
        "problems": problems,
    }


def run(trials: int, seed: int, root: Path | None = None) -> list[dict[str, Any]]:
    h = setup(root or Path(tempfile.mkdtemp(prefix="commons-kill-")))
    rng = random.Random(seed)
    return [trial(h, n, rng) for n in range(trials)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    t0 = time.time()
    results = run(args.trials, args.seed)
    kills = sum(r["kills"] for r in results)
    bad = [r for r in results if r["problems"]]
    phases: dict[str, int] = {}
    for r in results:
        for st in r["killed_in"]:
            phases[st] = phases.get(st, 0) + 1
    lines = [
        "## Worker kills",
        "",
        f"`bench/worker_kill.py --trials {args.trials} --seed {args.seed}`: {args.trials} jobs (digits, 3 nodes), "
        f"{kills} SIGKILLs of `commons worker` at random moments after the claim "
        f"(by job state at the kill: {', '.join(f'{k} {v}' for k, v in sorted(phases.items()))}), "
        f"{time.time() - t0:.0f} s in all.",
        "",
        f"**{len(results) - len(bad)}/{len(results)} jobs finished with a verification report and exactly one "
        f"model version; proposals verified only with a passing report.**"
        + ("" if not bad else f" Problems: {bad}"),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    for r in results:
        print(r)
    if not args.no_write:
        from votes import write_section  # bench/votes.py

        write_section(ROOT / "bench" / "RESULTS.md", "## Worker kills", text)
    if bad:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
