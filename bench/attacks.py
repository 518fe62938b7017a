"""Per-example membership inference and the recovery attacks (issue 16 items 1 and 2), original vs candidate vs
retrained: ``python bench/verification.py --attacks [--write]`` (``--write`` replaces the "## Per-example
attacks and recovery" section of bench/RESULTS.md).

Per task, the setups of ``--calibrate`` (bench/calibrate.py: the small community LM on 3 nodes, noisy non-IID
digits on 5 nodes), seed 0 throughout: one trained original; per target the default unlearning method (the
candidate), the retrained reference (``retrain``, seed 0) and ``--seeds`` models retrained with other seeds
(1..K). Each candidate and retrained model is verified against the reference (seed 0) with the new metrics
and the old ones they sit beside; the original's figures are those of the candidate's report
(``values.original``); the retrained figure is the mean over the retrained models verified as candidates
(the per-example attack is anchored by the reference, so it cannot score the reference itself).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from calibrate import train_original  # bench/calibrate.py
from results import replace_section  # bench/results.py
from verification import _job  # bench/verification.py

from unlearning import Target
from unlearning.verification import VerifySpec, verify

METRICS = [
    "mia_auc",
    "mia_tpr_at_1pct_fpr",
    "mia_tpr_at_01pct_fpr",
    "quantization_recovery",
    "quantization4_recovery",
    "relearn_recovery",
    "extraction_rate",
    "sampled_extraction_rate",
]


def _targets(task: str) -> dict[str, Target]:
    if task == "digits":
        return {"data_source": Target("data_source", "node-0/digits"), "category": Target("category", "7")}
    return {"data_source": Target("data_source", "node-0/notebook")}


def run_task(task: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        original = train_original(task, work)
        out: dict[str, Any] = {"train_s": time.perf_counter() - t0, "targets": {}}
        for kind, target in _targets(task).items():
            unl = _job(work, original, f"unlearn-{kind}", kind="unlearn", target=target)
            retrained = [
                _job(
                    work,
                    original,
                    f"retrain-{kind}-{s}",
                    kind="unlearn",
                    target=target,
                    method="retrain",
                    seed=s,
                )
                for s in range(args.seeds + 1)
            ]

            def report(candidate: str, target: Target = target, reference: Any = retrained[0]) -> Any:
                return verify(
                    VerifySpec(
                        artifact_root=str(work / "art"),
                        dataset_dir=str(work / "data"),
                        candidate_version=candidate,
                        original_version=original,
                        reference_version=str(reference.model_version),
                        target=json.loads(target.to_json()),
                        tests=[],
                        metrics=METRICS,
                    )
                )

            cand = report(str(unl.model_version))
            others = [report(str(r.model_version)) for r in retrained[1:]]
            rows: dict[str, dict[str, Any]] = {}
            for name in METRICS:
                m = cand.metrics[name]
                if not m.applies:
                    rows[name] = {"applies": False, "reason": m.reason}
                    continue
                retr = [o.metrics[name].value for o in others]
                rows[name] = {
                    "applies": True,
                    "original": m.values.get("original"),
                    "candidate": m.value,
                    "reference": m.values.get("reference"),
                    "retrained": retr,
                    "reason": m.reason,
                    "null": m.details.get("by_model", {}).get("candidate"),
                }
            out["targets"][kind] = {
                "rows": rows,
                "unlearn_cpu_s": unl.cost.cpu_s,
                "verify_cpu_s": cand.timing.get("cpu_s"),
                "verify_wall_s": cand.timing.get("wall_s"),
            }
            print(f"{task}/{kind}: {json.dumps(rows, default=str)[:2000]}", flush=True)
        out["total_s"] = time.perf_counter() - t0
        return out


def _f(x: Any) -> str:
    return "n/a" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)


def tables(results: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for task, r in results.items():
        for kind, t in r["targets"].items():
            lines += [
                "",
                f"### {task} / {kind}",
                "",
                f"Unlearning job {_f(t['unlearn_cpu_s'])} CPU s; this verification {_f(t['verify_cpu_s'])} CPU s "
                f"({_f(t['verify_wall_s'])} wall s) for these metrics.",
                "",
                "| metric | original | candidate | retrained (other seeds: mean, each) | reference under the same attack |",
                "|---|---|---|---|---|",
            ]
            for name, row in t["rows"].items():
                if not row["applies"]:
                    lines.append(f"| {name} | does not apply: {row['reason']} | | | |")
                    continue
                retr = [x for x in row["retrained"] if x is not None]
                mean = statistics.fmean(retr) if retr else None
                each = ", ".join(_f(x) for x in row["retrained"])
                cand = (
                    _f(row["candidate"]) if row["candidate"] is not None else f"unmeasured ({row['reason']})"
                )
                lines.append(
                    f"| {name} | {_f(row['original'])} | {cand} | {_f(mean)} ({each}) | {_f(row['reference'])} |"
                )
    return lines


def write_results(results: dict[str, Any], command: str) -> None:
    body = [
        "## Per-example attacks and recovery",
        "",
        f"`{command}` (seed 0; 1 torch thread, in-process federation; a shared 2-core x86 VM without a GPU).",
        "The setups of `--calibrate`: the small community LM on 3 nodes (8 rounds), noisy non-IID digits on 5",
        "nodes (30 rounds). Candidate: the default unlearning method. Every model is verified against the",
        "retrained reference (seed 0); the retrained column verifies models retrained with other seeds as",
        "candidates. TPR at 1 % / 0.1 % FPR: RMIA anchored by the reference, forget examples vs published",
        "held-out non-members (at most 128 each: 0.1 % FPR is measured at no false positive). Recovery",
        "metrics: share of the candidate's forgetting undone (unmeasured when the candidate's forget loss is",
        "not above the original's); the reference column is the retrained reference under the same attack.",
        *tables(results),
        "",
    ]
    replace_section(body)


def run_attacks(args: argparse.Namespace, command: str) -> None:
    results = {task: run_task(task, args) for task in args.tasks.split(",")}
    print("\n".join(tables(results)))
    if args.write:
        write_results(results, command)
