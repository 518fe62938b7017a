"""The null distribution of the membership-inference gap tests on a data source of ``--calibrate``
(bench/calibrate.py): models retrained without the source with seeds 1..N (another batch order from the same
initial model), each verified against the seed-0 retrained reference, and the original model the same way.
A default test must pass about 95 % of the retrained models and fail the original (issue 16, item 5).

Reported per model: ``mia_auc_gap`` (the largest |AUC - AUC_reference| over the attacks) and
``mia_auc_gap_pvalue`` (the Bonferroni-corrected DeLong p-value of that gap), and their false-fail rates.

    python bench/auc_null.py --task lm --models 12
    python bench/auc_null.py --task digits --models 12
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from calibrate import _targets, train_original  # bench/calibrate.py
from verification import _job  # bench/verification.py

from unlearning.verification import VerifySpec, verify

METRICS = ["mia_auc_gap", "mia_auc_gap_pvalue"]


def _measure(work: Path, target: Any, candidate: str, original: str, reference: str) -> dict[str, Any]:
    report = verify(
        VerifySpec(
            artifact_root=str(work / "art"),
            dataset_dir=str(work / "data"),
            candidate_version=candidate,
            original_version=original,
            reference_version=reference,
            target=json.loads(target.to_json()),
            tests=[],
            metrics=METRICS,
        )
    )
    out: dict[str, Any] = {}
    for name in METRICS:
        m = report.metrics[name]
        assert m.value is not None, m
        out[name] = float(m.value)
    p = report.metrics["mia_auc_gap_pvalue"].details
    out["members"], out["nonmembers"] = p["members"], p["nonmembers"]
    out["se"] = {a: round(r["se"]["candidate"], 4) for a, r in p["attacks"].items()}
    return out


def main(task: str, n: int, gap_threshold: float = 0.05, alpha: float = 0.05) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        original = train_original(task, work)
        target = _targets(task, work)["data_source"]
        print(f"original trained in {time.perf_counter() - t0:.0f} s; target {target.to_json()}", flush=True)
        versions: list[str] = []
        rows: list[dict[str, Any]] = []
        for seed in range(n + 1):
            job = _job(work, original, f"r{seed}", kind="unlearn", target=target, method="retrain", seed=seed)
            versions.append(str(job.model_version))
            if seed == 0:
                continue
            row = {"seed": seed, **_measure(work, target, versions[-1], original, versions[0])}
            rows.append(row)
            print(json.dumps(row), flush=True)
        orig = _measure(work, target, original, original, versions[0])
        print(json.dumps({"original": orig}), flush=True)
    gaps = [r["mia_auc_gap"] for r in rows]
    ps = [r["mia_auc_gap_pvalue"] for r in rows]
    summary = {
        "task": task,
        "models": len(rows),
        "members": rows[0]["members"],
        "nonmembers": rows[0]["nonmembers"],
        "gaps": sorted(round(g, 4) for g in gaps),
        "pvalues": sorted(round(p, 4) for p in ps),
        "gap_fails": sum(g > gap_threshold for g in gaps),
        "pvalue_fails": sum(p < alpha for p in ps),
        "original_gap": round(orig["mia_auc_gap"], 4),
        "original_pvalue": orig["mia_auc_gap_pvalue"],
    }
    print(
        f"{task}: {len(rows)} retrained models ({summary['members']} forget vs {summary['nonmembers']} held-out "
        f"examples): gap mean {statistics.fmean(gaps):.3f}, max {max(gaps):.3f}; `mia_auc_gap <= "
        f"{gap_threshold}` fails {summary['gap_fails']}, `mia_auc_gap_pvalue >= {alpha}` fails "
        f"{summary['pvalue_fails']} (p min {min(ps):.3f}); the original: gap {orig['mia_auc_gap']:.3f}, "
        f"p {orig['mia_auc_gap_pvalue']:.2g}"
    )
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=["lm", "digits"], default="lm")
    ap.add_argument("--models", type=int, default=12, help="retrained models beside the reference")
    args = ap.parse_args()
    main(args.task, args.models)
