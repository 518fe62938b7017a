"""CPU seconds of one suite case's default unlearning job, repeated in one warm process: for comparing two trees'
job cost on the same trained models without the suite's other work in between.

    python bench/job_cpu.py --keep DIR --case lm-secret --seed 101 [--repeat 3]

``DIR`` is a ``--keep`` folder of ``python bench/unlearning.py --suite`` that has run the case for the seed (its
original and retrained reference are reused; nothing is trained here). The first job runs as a warm-up (the
process's first job pays its imports) and is not counted; each later job's CPU seconds are printed, with the
reference's retraining CPU seconds and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
# the repository first: bench/unlearning.py would otherwise shadow the package (bench/ stays next, for suite)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import suite
import torch

from unlearning import JobResult


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep", type=Path, required=True, help="a --keep folder of the suite")
    ap.add_argument("--case", required=True, choices=list(suite.CASES))
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--repeat", type=int, default=3, help="jobs counted after the warm-up (default 3)")
    args = ap.parse_args()
    if args.repeat < 1:
        raise SystemExit("--repeat must be at least 1")
    torch.set_num_threads(1)
    task = suite.CASES[args.case][0]
    work = args.keep / f"{task}-{args.seed}"
    kept_ref = suite.kept_job_file(work, f"{args.case}-retrain")
    if not (work / suite.KEPT_ORIGINAL).is_file() or not kept_ref.is_file():
        raise SystemExit(
            f"{work}: no kept original or retrained reference for {args.case}; run "
            f"`python bench/unlearning.py --suite --seeds {args.seed} --cases {args.case} --keep {args.keep}` first"
        )
    original = (work / suite.KEPT_ORIGINAL).read_text()
    ref = JobResult.from_dict(json.loads(kept_ref.read_text()))
    target = suite._target(args.case, work)
    cpu = []
    for i in range(args.repeat + 1):
        r = suite._job(
            work,
            original,
            f"{args.case}-cpu-{time.time_ns()}",
            kind="unlearn",
            target=target,
            method="gradient_ascent_ewc",
            seed=args.seed,
        )
        if i:
            cpu.append(r.cost.cpu_s)
    mean = statistics.fmean(cpu)
    print(
        f"{args.case} seed {args.seed}: job {' '.join(f'{c:.2f}' for c in cpu)} CPU s (mean {mean:.2f}), "
        f"retraining {ref.cost.cpu_s:.2f}, ratio {mean / ref.cost.cpu_s:.3f}"
    )


if __name__ == "__main__":
    main()
