"""The null distribution of ``mia_auc_gap`` on the LM data source of ``--calibrate`` (bench/calibrate.py):
models retrained without node-0/notebook with seeds 1..N (another batch order from the same initial model),
each verified against the seed-0 retrained reference with that one metric. A default threshold must pass
about 95 % of them (issue 16, item 5).

    python bench/auc_null.py 12
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from calibrate import _targets, train_original  # bench/calibrate.py
from verification import _job  # bench/verification.py

from unlearning.verification import VerifySpec, verify


def main(n: int, threshold: float = 0.05) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        original = train_original("lm", work)
        target = _targets("lm", work)["data_source"]
        print(f"original trained in {time.perf_counter() - t0:.0f} s; target {target.to_json()}", flush=True)
        versions: list[str] = []
        gaps: list[float] = []
        for seed in range(n + 1):
            job = _job(work, original, f"r{seed}", kind="unlearn", target=target, method="retrain", seed=seed)
            versions.append(str(job.model_version))
            if seed == 0:
                continue
            report = verify(
                VerifySpec(
                    artifact_root=str(work / "art"),
                    dataset_dir=str(work / "data"),
                    candidate_version=versions[-1],
                    original_version=original,
                    reference_version=versions[0],
                    target=json.loads(target.to_json()),
                    tests=[],
                    metrics=["mia_auc_gap"],
                )
            )
            gap = report.metrics["mia_auc_gap"].value
            assert gap is not None, report.metrics["mia_auc_gap"]
            gaps.append(float(gap))
            print(json.dumps({"seed": seed, "gap": round(float(gap), 4)}), flush=True)
    above = sum(g > threshold for g in gaps)
    print(
        f"{len(gaps)} retrained models: gap mean {statistics.fmean(gaps):.3f}, max {max(gaps):.3f}; "
        f"{above} of {len(gaps)} above {threshold} (false-fail rate of `mia_auc_gap <= {threshold}`)"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 12)
