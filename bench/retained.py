"""The per-example attack on the retained data, the format-shifted probes and the report page's speed (issue 16
items 1, 2 and 6; issue 19): ``python bench/verification.py --retained [--tasks lm,digits] [--write]``
(``--write`` replaces the "## Retained data, format shifts and the report page" section of bench/RESULTS.md).

Per task, the setups of ``--calibrate`` (bench/calibrate.py), seed 0, a data-source target (node 0's source):
the original; the default unlearning method (the candidate); models retrained without the target with seeds
0 (the reference every model is verified against) and 1 (the "retrained" column); and a model that fits the
retained data more closely than retraining does (the seed-1 retrained model trained ``--fit-rounds`` more
rounds on what the nodes retain: the "onion" case the retained attack is for). Then the candidate's report
with every metric of the catalogue, rendered as the report page: the median render time of 20, and the stored
page's read time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from calibrate import DIGITS_TRAIN, LM_TRAIN, train_original  # bench/calibrate.py
from results import replace_section  # bench/results.py
from verification import _job  # bench/verification.py

from unlearning import Target
from unlearning.verification import VerifySpec, verify
from unlearning.verification.html import render_html
from unlearning.verification.pages import report_page, store_page

METRICS = [
    "retained_mia_tpr_at_1pct_fpr",
    "mia_tpr_at_1pct_fpr",
    "extraction_rate",
    "format_shift_extraction_rate",
    "format_shift_recovery",
]
TARGETS = {"lm": Target("data_source", "node-0/notebook"), "digits": Target("data_source", "node-0/digits")}


def run_task(task: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        original = train_original(task, work)
        target = TARGETS[task]
        unl = _job(work, original, "unlearn", kind="unlearn", target=target)
        ref, retrained = (
            str(
                _job(
                    work, original, f"retrain-{s}", kind="unlearn", target=target, method="retrain", seed=s
                ).model_version
            )
            for s in (0, 1)
        )
        local = (LM_TRAIN if task == "lm" else DIGITS_TRAIN).get("local", {})
        fitted = str(
            _job(work, retrained, "fit", kind="train", rounds=args.fit_rounds, local=local).model_version
        )

        def report(candidate: str, metrics: list[str] | None) -> Any:
            return verify(
                VerifySpec(
                    artifact_root=str(work / "art"),
                    dataset_dir=str(work / "data"),
                    candidate_version=candidate,
                    original_version=original,
                    reference_version=ref,
                    target=json.loads(target.to_json()),
                    tests=[],
                    metrics=metrics,
                )
            )

        full = report(str(unl.model_version), None)  # every metric: the page a reader sees
        models = {"retrained": report(retrained, METRICS), "fitted": report(fitted, METRICS)}
        rows: dict[str, dict[str, Any]] = {}
        for name in METRICS:
            m = full.metrics[name]
            if not m.applies:
                rows[name] = {"applies": False, "reason": m.reason}
                continue
            rows[name] = {
                "applies": True,
                "original": m.values.get("original"),
                "candidate": m.value,
                "reason": m.reason,
                "reference": m.values.get("reference"),
                **{k: r.metrics[name].value for k, r in models.items()},
            }
        times = []
        for _ in range(20):
            s = time.perf_counter()
            page = render_html(full)
            times.append(time.perf_counter() - s)
        store_page(work / "art", full)
        s = time.perf_counter()
        stored = report_page(work / "art", full.to_dict())
        read_s = time.perf_counter() - s
        assert stored == page
        out = {
            "rows": rows,
            "render_ms": 1000 * statistics.median(times),
            "read_ms": 1000 * read_s,
            "page_kb": len(page.encode()) / 1024,
            "svgs": page.count('<svg xmlns="'),
            "verify_wall_s": full.timing.get("wall_s"),
            "total_s": time.perf_counter() - t0,
        }
        print(f"{task}: {json.dumps(out, default=str)}", flush=True)
        return out


def _f(x: Any) -> str:
    return "n/a" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)


def tables(results: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for task, r in results.items():
        lines += [
            "",
            f"### {task} / data source",
            "",
            f"Report page (every metric of the catalogue): rendered in {r['render_ms']:.1f} ms (median of 20), "
            f"{r['page_kb']:.0f} KiB with {r['svgs']} plots; the stored page read in {r['read_ms']:.2f} ms. The "
            f"verification with every metric took {_f(r['verify_wall_s'])} wall s.",
            "",
            "| metric | original | candidate | retrained (seed 1) | fitted to the retained data | reference under the same attack |",
            "|---|---|---|---|---|---|",
        ]
        for name, row in r["rows"].items():
            if not row["applies"]:
                lines.append(f"| {name} | does not apply: {row['reason']} | | | | |")
                continue
            cand = _f(row["candidate"]) if row["candidate"] is not None else f"unmeasured ({row['reason']})"
            lines.append(
                f"| {name} | {_f(row['original'])} | {cand} | {_f(row['retrained'])} | {_f(row['fitted'])} | "
                f"{_f(row['reference'])} |"
            )
    return lines


def write_results(results: dict[str, Any], command: str) -> None:
    body = [
        "## Retained data, format shifts and the report page",
        "",
        f"`{command}` (seed 0; 1 torch thread, in-process federation; a shared 2-core x86 VM without a GPU, beside",
        "other work: times are indicative). The setups of `--calibrate`; a data-source target (node 0's source).",
        'Every model is verified against the model retrained with seed 0. "fitted to the retained data": the',
        "model retrained with seed 1, trained further on what the nodes retain (the case the retained attack is",
        "for). `retained_mia_tpr_at_1pct_fpr`: RMIA anchored by the reference on retained examples vs held-out",
        "examples outside the target. Format shifts: lower case, upper case, whitespace, a prefix template, a",
        "question. The report page took 3.7-6.6 s per view with matplotlib (issue 19).",
        *tables(results),
        "",
    ]
    replace_section(body)


def run_retained(args: argparse.Namespace, command: str) -> None:
    results = {task: run_task(task, args) for task in args.tasks.split(",")}
    print("\n".join(tables(results)))
    if args.write:
        write_results(results, command)
