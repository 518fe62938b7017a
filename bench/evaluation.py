"""Community evaluation (unlearning/evaluation.py): does the nodes' per-group A/B comparison find the group a
candidate degraded, and what does it cost?

Digits (default MLP, 5 IID nodes): the released version is FedAvg-trained; candidate A is retrained without any
class-3 example (the ``retrain`` method on category 3), candidate B is the released version trained two more
rounds on everything (a candidate that should degrade no group). For each seed: the worst group and its drop,
the disparity (largest accuracy gap between groups) of the candidate and of the released version, the wall
time of ``evaluate_candidate`` and the bytes it exchanged. Community LM (tiny, 5 nodes, groups = topics): the
cost of one evaluation. Writes the "## Community evaluation" section of bench/RESULTS.md.

    FLWR_TELEMETRY_ENABLED=0 python bench/evaluation.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

from bench.results import replace_section
from unlearning.api import (
    EvaluationSpec,
    JobSpec,
    evaluate_candidate,
    init_dataset,
    init_model,
    run_job,
)
from unlearning.contract import Target


def _run(spec: JobSpec) -> str:
    r = run_job(spec)
    assert r.status == "succeeded" and r.model_version, r.error
    return r.model_version


def _evaluate(art: Path, data: Path, candidate: str, released: str) -> tuple[dict[str, Any], float]:
    t0 = time.perf_counter()
    ev = evaluate_candidate(EvaluationSpec(str(art), str(data), candidate, released_version=released))
    return ev, time.perf_counter() - t0


def digits(seed: int, work: Path) -> list[dict[str, Any]]:
    data, art = work / f"d{seed}", work / f"a{seed}"
    init_dataset("digits", data, nodes=5, seed=seed)
    v0 = init_model(art, "digits", seed=seed)
    common = {"artifact_root": str(art), "dataset_dir": str(data), "seed": seed}
    released = _run(JobSpec(kind="train", job_id="t", base_version=v0.version, rounds=5, **common))
    without3 = _run(
        JobSpec(
            kind="unlearn",
            job_id="r",
            base_version=released,
            method="retrain",
            target=Target(kind="category", value="3"),
            **common,
        )
    )
    more = _run(JobSpec(kind="train", job_id="m", base_version=released, rounds=2, **common))
    rows = []
    for name, cand in (
        ("A: retrained without class 3", without3),
        ("B: two more rounds on everything", more),
    ):
        ev, wall = _evaluate(art, data, cand, released)
        d = ev["disparity"]
        rows.append(
            {
                "seed": seed,
                "candidate": name,
                "global": ev["global"]["change"],
                "worst_group": ev["worst_group"]["group"],
                "drop": ev["worst_group"]["change"],
                "disparity": (d["candidate"]["gap"], d["released"]["gap"]),
                "worst_node": (ev["worst_node"]["node"], ev["worst_node"]["change"]),
                "wall": wall,
                "bytes": ev["bytes"],
                "n": ev["global"]["n"],
            }
        )
    return rows


def lm(work: Path) -> dict[str, Any]:
    data, art = work / "lm", work / "lma"
    init_dataset("community-lm", data, nodes=5, seed=0)
    v0 = init_model(art, "community-lm", size="tiny", seed=0)
    common = {"artifact_root": str(art), "dataset_dir": str(data), "local": {"steps": 10}}
    released = _run(JobSpec(kind="train", job_id="t", base_version=v0.version, rounds=2, **common))
    cand = _run(JobSpec(kind="train", job_id="m", base_version=released, rounds=1, **common))
    ev, wall = _evaluate(art, data, cand, released)
    return {"groups": len(ev["groups"]), "n": ev["global"]["n"], "wall": wall, "bytes": ev["bytes"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows = [r for s in range(args.seeds) for r in digits(s, work)]
        lm_row = lm(work)
    lines = [
        "## Community evaluation",
        "",
        '`python bench/evaluation.py --seeds 3` (unlearning/evaluation.py; docs/verification.md, "Community '
        'evaluation"). Digits, default MLP, 5 IID nodes, groups = the class; the released version is trained 5 '
        "FedAvg rounds; candidate A is retrained without any class-3 example, candidate B is the released version "
        "trained 2 more rounds on everything. Accuracy on the nodes' local validation data; changes are candidate "
        "- released; disparity is the largest accuracy gap between two groups (candidate / released).",
        "",
        "| seed | candidate | global change | worst group (change) | disparity cand. / released | worst node "
        "(change) | evaluation wall s | bytes exchanged |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['seed']} | {r['candidate']} | {r['global']:+.3f} | {r['worst_group']} ({r['drop']:+.3f}) | "
            f"{r['disparity'][0]:.3f} / {r['disparity'][1]:.3f} | {r['worst_node'][0]} ({r['worst_node'][1]:+.3f}) "
            f"| {r['wall']:.2f} | {r['bytes']:,} |"
        )
    lines += [
        "",
        "The mean hides what the group figure shows: retraining without class 3 moves the global accuracy by a "
        "few points, the worst node by 10 to 20, and class 3 by 90 to 100, where the disparity jumps to 1.0; a "
        "candidate trained further on everything moves no group by more than a few points.",
        "",
        f"Community LM (tiny, 5 nodes, groups = topics): one evaluation of a candidate against the released "
        f"version on {lm_row['n']} validation examples in {lm_row['groups']} groups took {lm_row['wall']:.2f} s "
        f"and exchanged {lm_row['bytes']:,} bytes (two models to each node, counts and sums back).",
        "",
        f"Machine: {os.cpu_count()} CPU cores (shared). Wall times include the in-process federation's setup.",
    ]
    replace_section(lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
