"""The unlearning suite (issue 16 item 4): do the defaults of ``gradient_ascent_ewc`` generalise to cases and
seeds nobody tuned them on? ``python bench/unlearning.py --suite [--seeds 101,102,103] [--cases ...]
[--variant NAME=JSON ...] [--write]`` (``--write`` replaces the "## Unlearning suite" section of
bench/RESULTS.md).

The cases and the test seeds below were fixed before any tuning and are not changed to make a case pass.
Per task and seed: a dataset and its federatedly trained original (data, model and job seeds = the seed);
per case: the default unlearning job (the candidate), the retrained reference (``retrain``, job seed = the
seed) and a second retrained model (job seed + 1000: another batch order from the same initial model), each
verified against the reference with the catalogue's metrics. The second retrained model gives the retrained
figure of the per-example attack (it is anchored by the reference, so it cannot score the reference itself)
and its spread across seeds, and is every target's control: judged like a candidate, a target it misses is
one that exact retraining misses too (the measurement's own noise, not the method). A third retrained model
(job seed + 2000) is the control of the TPR target, whose spread the second ones define. Targets per case
(issue 16 item 4):

- population MIA AUC within 0.03 of the reference's (``mia_auc_gap``);
- the per-example attack's TPR at 1 % FPR (``mia_tpr_at_1pct_fpr``, RMIA anchored by the reference) within the
  retrained models' spread across the seeds (their min..max);
- retained quality at most 5 % worse than the original's (LM: perplexity of the retained training data on the
  nodes; digits: its accuracy);
- canaries at chance: the Bonferroni-corrected exposure p-value of the target's canaries against never-seen
  secrets >= 0.05 (``canary_exposure_pvalue``), as for the retrained model;
- every recovery attack of the catalogue (``*_recovery``): the candidate's recovery at most the reference's
  under the same attack + 0.10;
- cost: CPU seconds of the job over retraining's (target <= 5 % on the LM cases; reported everywhere).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from results import replace_section  # bench/results.py

from unlearning import JobResult, JobSpec, Target, init_dataset, init_model, run_job
from unlearning.data import load_node_data, node_dirs, read_manifest
from unlearning.verification import VerifySpec, metric_names, verify

# ---- fixed before tuning: do not edit to make a case pass ---------------------------------------------------

#: the seeds the suite reports. No default was tuned on them: bench/calibrate.py and bench/attacks.py use seed
#: 0 (retrained models 0..5), bench/unlearning.py's tables seed 0 (digits-class was also checked on 1 and 2).
TEST_SEEDS = (101, 102, 103)
#: the seeds defaults may be tuned on (the stop rule was chosen on these): those the benchmarks already used
TUNING_SEEDS = (0, 1, 2)
#: the second retrained model of each case: job seed = the seed + this
ALT_RETRAIN = 1000
#: the third (the TPR target's control: is it within the second retrained models' spread?): the seed + this
ALT2_RETRAIN = 2000

#: the community LM of bench/calibrate.py ("small", 3 nodes, 8 rounds) and its digits setup
LM_DATA = {"nodes": 3, "authors_per_node": 8, "passages_per_node": 16, "notebook_authors": 4}
LM_TRAIN: dict[str, Any] = {"rounds": 8, "local": {"steps": 10}}
DIGITS_DATA = {"nodes": 5, "partition": "dirichlet", "noise": 0.4}
DIGITS_TRAIN: dict[str, Any] = {"rounds": 30, "local": {"epochs": 5.0}}

#: case -> (task, what it forgets); targets are resolved per seed by ``_target``
CASES: dict[str, tuple[str, str]] = {
    "lm-source-node0": ("lm", "data source node-0/notebook: fictitious facts + 8 canaries (1-32 copies)"),
    "lm-source-node1": ("lm", "data source node-1/bios: fictitious author facts, on another node"),
    "lm-topic": ("lm", "topic category: the topic with the most passages, on every node"),
    "lm-secret": ("lm", "behaviour: the most repeated canary's secret (a memorised access code)"),
    "digits-client": ("digits", "data source node-0/digits: a client of noisy non-IID digits"),
    "digits-class": ("digits", "category: class 7, on every node"),
}

# -------------------------------------------------------------------------------------------------------------

MIA_GAP = 0.03
UTILITY = 0.05
PVALUE = 0.05
RECOVERY = 0.10
LM_COST = 0.05
BASE_METRICS = [
    "mia_auc",
    "mia_auc_gap",
    "mia_tpr_at_1pct_fpr",
    "canary_exposure_pvalue",
    "retained_utility_drop",
    "extraction_rate",
    "sampled_extraction_rate",
    "forget_accuracy_gap",
    "forget_perplexity_ratio",
]


def recovery_metrics() -> list[str]:
    """Every recovery attack in the catalogue (relearning, int8 and 4-bit quantisation, ...)."""
    return [m for m in metric_names() if m.endswith("_recovery")]


def _job(work: Path, base: str, job_id: str, **kw: Any) -> JobResult:
    spec = JobSpec(
        artifact_root=str(work / "art"),
        dataset_dir=str(work / "data"),
        base_version=base,
        job_id=job_id,
        **kw,
    )
    r = run_job(spec)
    if r.status != "succeeded":
        raise RuntimeError(f"{job_id}: {r.error}")
    return r


def kept_job_file(work: Path, name: str) -> Path:
    """Where ``--keep`` saves the result of the job ``name`` (e.g. ``lm-secret-retrain``) in a work folder."""
    return work / f"kept-{name}.json"


#: where ``--keep`` saves the original model's version in a work folder
KEPT_ORIGINAL = "kept-original.txt"


def _kept_job(work: Path, name: str, make: Callable[[], JobResult], keep: bool) -> JobResult:
    """``make()``, or with ``keep`` the result of an earlier run in the same work folder (``--keep``)."""
    saved = kept_job_file(work, name)
    if keep and saved.exists():
        return JobResult.from_dict(json.loads(saved.read_text()))
    r = make()
    if keep:
        saved.write_text(json.dumps(r.to_dict(), default=str))
    return r


def train_original(task: str, work: Path, seed: int, keep: bool = False) -> str:
    saved = work / KEPT_ORIGINAL
    if keep and saved.exists():
        return saved.read_text()
    version = _train_original(task, work, seed)
    if keep:
        saved.write_text(version)
    return version


def _train_original(task: str, work: Path, seed: int) -> str:
    if task == "lm":
        init_dataset("community-lm", work / "data", seed=seed, **LM_DATA)
        v0 = init_model(work / "art", "community-lm", size="small", seed=seed)
        train = LM_TRAIN
    else:
        init_dataset("digits", work / "data", seed=seed, **DIGITS_DATA)
        v0 = init_model(work / "art", "digits", seed=seed)
        train = DIGITS_TRAIN
    return str(_job(work, v0.version, "train", kind="train", seed=seed, **train).model_version)


def _target(case: str, work: Path) -> Target:
    if case == "digits-client":
        return Target("data_source", "node-0/digits")
    if case == "digits-class":
        return Target("category", "7")
    if case == "lm-source-node0":
        return Target("data_source", "node-0/notebook")
    if case == "lm-source-node1":
        return Target("data_source", "node-1/bios")
    if case == "lm-topic":
        topics = Counter(
            str(r["category"])
            for d in node_dirs(work / "data")
            for r in load_node_data(d).train
            if r.get("category")
        )
        return Target("category", topics.most_common(1)[0][0])
    canaries = [c for c in read_manifest(work / "data")["canaries"] if c["inserted"]]
    secret = max(canaries, key=lambda c: c["repetitions"])
    return Target("behaviour", examples=[{"prompt": secret["prefix"], "completion": secret["secret"]}])


def _metrics(report: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, m in report.metrics.items():
        out[name] = {
            "applies": m.applies,
            "value": m.value,
            "values": dict(m.values),
            "reason": m.reason,
        }
        if name == "retained_utility_drop":
            out[name]["mean"] = m.details.get("mean", {})
    return out


def _retained(metrics: dict[str, Any], task: str) -> dict[str, float | None]:
    """Retained quality of original and candidate and the relative worsening (LM: perplexity, digits:
    accuracy, both of the retained training data on the nodes)."""
    mean = metrics.get("retained_utility_drop", {}).get("mean", {})
    o, c = mean.get("original", {}), mean.get("candidate", {})
    if task == "lm":
        if o.get("retain-loss") is None or c.get("retain-loss") is None:
            return {"original": None, "candidate": None, "worse": None}
        po, pc = math.exp(o["retain-loss"]), math.exp(c["retain-loss"])
        return {"original": po, "candidate": pc, "worse": pc / po - 1.0}
    ao, ac = o.get("retain-accuracy"), c.get("retain-accuracy")
    if ao is None or ac is None:
        return {"original": None, "candidate": None, "worse": None}
    return {"original": ao, "candidate": ac, "worse": (ao - ac) / ao}


def run_case(
    case: str,
    work: Path,
    original: str,
    seed: int,
    variants: dict[str, dict[str, Any]],
    log: Any,
    spread: bool = True,
    keep: bool = False,
) -> dict[str, Any]:
    task = CASES[case][0]
    target = _target(case, work)
    t0 = time.perf_counter()

    def retrain(job_id: str, job_seed: int) -> JobResult:
        return _kept_job(
            work,
            job_id,
            lambda: _job(
                work, original, job_id, kind="unlearn", target=target, method="retrain", seed=job_seed
            ),
            keep,
        )

    ref = retrain(f"{case}-retrain", seed)
    alt = retrain(f"{case}-retrain-alt", seed + ALT_RETRAIN) if spread else None
    alt2 = retrain(f"{case}-retrain-alt2", seed + ALT2_RETRAIN) if spread else None
    log(f"  {case}: retrained x{3 if spread else 1} in {time.perf_counter() - t0:.0f} s")
    names = [*BASE_METRICS, *recovery_metrics(), "cost_ratio"]

    def report(candidate: JobResult, names: list[str] = names) -> dict[str, Any]:
        r = verify(
            VerifySpec(
                artifact_root=str(work / "art"),
                dataset_dir=str(work / "data"),
                candidate_version=str(candidate.model_version),
                original_version=original,
                reference_version=str(ref.model_version),
                target=json.loads(target.to_json()),
                tests=[],
                metrics=names,
                job_cost=candidate.to_dict()["cost"],
                reference_cost=ref.to_dict()["cost"],
                seed=seed,
            )
        )
        return _metrics(r)

    out: dict[str, Any] = {
        "target": target.to_dict(),
        "retrain_cpu_s": ref.cost.cpu_s,
        # the second retrained model, verified like a candidate: it gives the retrained spread of the attack's
        # TPR and is the control of every target (a target it misses is below the measurement's own noise)
        "retrained": report(alt) if alt is not None else {},
        "candidates": {},
    }
    if alt is not None and alt2 is not None:
        out["retrained_cost"] = alt.cost.cpu_s / ref.cost.cpu_s
        out["retrained_retained"] = _retained(out["retrained"], task)
        out["retrained_third"] = report(alt2, ["mia_tpr_at_1pct_fpr"])
    for name, config in variants.items():
        t1 = time.perf_counter()
        unl = _job(
            work,
            original,
            # a kept folder may hold an earlier run's job of this name
            f"{case}-{name}-{time.time_ns()}" if keep else f"{case}-{name}",
            kind="unlearn",
            target=target,
            method="gradient_ascent_ewc",
            method_config=config,
            seed=seed,
        )
        m = report(unl)
        out["candidates"][name] = {
            "metrics": m,
            "cpu_s": unl.cost.cpu_s,
            "cost": unl.cost.cpu_s / ref.cost.cpu_s,
            "retained": _retained(m, task),
            "details": {
                k: v for k, v in unl.metrics.get("method", {}).items() if isinstance(v, (int, float))
            },
        }
        log(
            f"  {case} [{name}]: job {unl.cost.cpu_s:.1f} CPU s (retrain {ref.cost.cpu_s:.1f}), "
            f"{time.perf_counter() - t1:.0f} s with verification; "
            + ", ".join(f"{k} {_f(v)}" for k, v in _row_values(out, name).items())
        )
    return out


def run_suite(
    seeds: list[int],
    cases: list[str],
    variants: dict[str, dict[str, Any]],
    log: Any,
    spread: bool = True,
    save: Any = None,
    keep: Path | None = None,
) -> dict[str, Any]:
    """Every case x seed; ``save(results)`` after each case (a long run that is stopped keeps what it did).
    ``keep``: a folder whose per-seed work folders (original, retrained models) later runs reuse: the suite is
    deterministic, so a rerun with other variants skips the training (for tuning runs)."""
    results: dict[str, dict[str, Any]] = {c: {} for c in cases}
    for task in ("digits", "lm"):  # the quick task first
        mine = [c for c in cases if CASES[c][0] == task]
        if not mine:
            continue
        for seed in seeds:
            with contextlib.ExitStack() as stack:
                if keep is not None:
                    work = keep / f"{task}-{seed}"
                    work.mkdir(parents=True, exist_ok=True)
                else:
                    work = Path(stack.enter_context(tempfile.TemporaryDirectory()))
                t0 = time.perf_counter()
                original = train_original(task, work, seed, keep is not None)
                log(f"{task} seed {seed}: original in {time.perf_counter() - t0:.0f} s")
                for case in mine:
                    results[case][str(seed)] = run_case(
                        case, work, original, seed, variants, log, spread, keep is not None
                    )
                    if save is not None:
                        save(results)
    return results


# ---- reading the results -------------------------------------------------------------------------------


def _v(metrics: dict[str, Any], name: str, role: str | None = None) -> float | None:
    m = metrics.get(name)
    if not m or not m["applies"]:
        return None
    x = m["values"].get(role) if role else m["value"]
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


def _row_values(case_seed: dict[str, Any], variant: str) -> dict[str, float | None]:
    """The figures of one case and seed for one candidate variant."""
    c = case_seed["candidates"][variant]
    m, r = c["metrics"], case_seed["retrained"]
    row: dict[str, float | None] = {
        "mia_auc": _v(m, "mia_auc"),
        "mia_auc_ref": _v(m, "mia_auc", "reference"),
        "mia_auc_gap": _v(m, "mia_auc_gap"),
        "tpr1": _v(m, "mia_tpr_at_1pct_fpr"),
        "tpr1_retrained": _v(r, "mia_tpr_at_1pct_fpr"),
        "tpr1_original": _v(m, "mia_tpr_at_1pct_fpr", "original"),
        "retained_orig": c["retained"]["original"],
        "retained_cand": c["retained"]["candidate"],
        "retained_worse": c["retained"]["worse"],
        "canary_p": _v(m, "canary_exposure_pvalue"),
        "canary_p_retrained": _v(r, "canary_exposure_pvalue"),
        "canary_p_original": _v(m, "canary_exposure_pvalue", "original"),
        "cost": c["cost"],
        "forget_acc_gap": _v(m, "forget_accuracy_gap"),
        "forget_ppl_ratio": _v(m, "forget_perplexity_ratio"),
        "sampled": _v(m, "sampled_extraction_rate"),
        "sampled_ref": _v(m, "sampled_extraction_rate", "reference"),
        "sampled_original": _v(m, "sampled_extraction_rate", "original"),
    }
    for name in recovery_metrics():
        row[name] = _v(m, name)
        row[f"{name}_ref"] = _v(m, name, "reference")
    return row


def _f(x: Any, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _ms(xs: list[float | None], digits: int = 3) -> str:
    """mean ± sd (n) of the measured values; n/a when none."""
    ys = [x for x in xs if x is not None]
    if not ys:
        return "n/a"
    sd = statistics.stdev(ys) if len(ys) > 1 else 0.0
    return f"{statistics.fmean(ys):.{digits}f} ± {sd:.{digits}f}" + (
        f" ({len(ys)}/{len(xs)} measured)" if len(ys) < len(xs) else ""
    )


def control(per_seed: dict[str, Any]) -> dict[str, Any]:
    """The second retrained model of each seed as a candidate named "control" (seeds of runs that verified it
    with every metric; earlier runs verified only the spread's metrics): what an exact retraining scores under
    the suite's targets."""
    out: dict[str, Any] = {}
    for seed, x in per_seed.items():
        if "retrained_retained" not in x:
            continue
        c = {"metrics": x["retrained"], "cost": x["retrained_cost"], "retained": x["retrained_retained"]}
        out[seed] = {**x, "candidates": {"control": c}}
    return out


def judge(case: str, per_seed: dict[str, Any], variant: str) -> list[dict[str, Any]]:
    """One line per target: name, the numbers, met / missed (per seed: how many met)."""
    task = CASES[case][0]
    rows = [_row_values(per_seed[s], variant) for s in per_seed]
    n = len(rows)
    out: list[dict[str, Any]] = []

    def add(name: str, figures: str, oks: list[bool | None], each: str = "") -> None:
        measured = [o for o in oks if o is not None]
        if not measured:
            status = "does not apply"
        elif all(measured) and len(measured) == n:
            status = "met"
        elif all(measured):
            status = f"met where measured ({len(measured)}/{n})"
        else:
            status = f"**missed** ({sum(measured)}/{len(measured)} seeds met)"
        out.append({"target": name, "figures": figures, "status": status, "each": each})

    fag = [r["forget_acc_gap"] for r in rows]
    fpr = [r["forget_ppl_ratio"] for r in rows]
    if any(x is not None for x in fag + fpr):
        add(
            "forgetting (reported): forget accuracy gap to retrained / forget perplexity over retrained's",
            f"accuracy gap {_ms(fag)}, perplexity ratio {_ms(fpr)}",
            [None for _ in rows],
        )
        out[-1]["status"] = "reported (no target)"
    gaps = [r["mia_auc_gap"] for r in rows]
    add(
        f"MIA AUC within {MIA_GAP} of retrained",
        f"candidate {_ms([r['mia_auc'] for r in rows])}, retrained {_ms([r['mia_auc_ref'] for r in rows])}, "
        f"gap {_ms(gaps)} (each: {', '.join(_f(g) for g in gaps)})",
        [None if g is None else g <= MIA_GAP for g in gaps],
        f"gap each {', '.join(_f(g) for g in gaps)}",
    )
    retr = [r["tpr1_retrained"] for r in rows if r["tpr1_retrained"] is not None]
    lo, hi = (min(retr), max(retr)) if retr else (None, None)
    add(
        "TPR at 1 % FPR within retrained spread",
        f"candidate {_ms([r['tpr1'] for r in rows])} (each: {', '.join(_f(r['tpr1']) for r in rows)}), "
        f"retrained {_f(lo)}..{_f(hi)}, original {_ms([r['tpr1_original'] for r in rows])}",
        [None if r["tpr1"] is None or lo is None else lo - 1e-9 <= r["tpr1"] <= hi + 1e-9 for r in rows],
    )
    what = "perplexity" if task == "lm" else "accuracy"
    add(
        f"retained {what} at most {int(100 * UTILITY)} % worse than original",
        f"original {_ms([r['retained_orig'] for r in rows])}, candidate {_ms([r['retained_cand'] for r in rows])}, "
        f"worse by {_ms([None if r['retained_worse'] is None else 100 * r['retained_worse'] for r in rows], 1)} %",
        [None if r["retained_worse"] is None else r["retained_worse"] <= UTILITY for r in rows],
    )
    add(
        f"canaries at chance (corrected p >= {PVALUE})",
        f"candidate p {_ms([r['canary_p'] for r in rows])}, retrained {_ms([r['canary_p_retrained'] for r in rows])}, "
        f"original {_ms([r['canary_p_original'] for r in rows])}",
        [None if r["canary_p"] is None else r["canary_p"] >= PVALUE for r in rows],
    )
    for name in recovery_metrics():
        cand = [r[name] for r in rows]
        ref = [r[f"{name}_ref"] for r in rows]
        add(
            f"{name} <= retrained + {RECOVERY}",
            f"candidate {_ms(cand)}, retrained {_ms(ref)}",
            [None if c is None or f is None else c <= f + RECOVERY for c, f in zip(cand, ref, strict=True)],
        )
    cand = [r["sampled"] for r in rows]
    ref = [r["sampled_ref"] for r in rows]
    add(
        f"sampled_extraction_rate (best-of-N) <= retrained + {RECOVERY}",
        f"candidate {_ms(cand)}, retrained {_ms(ref)}, original {_ms([r['sampled_original'] for r in rows])}",
        [None if c is None or f is None else c <= f + RECOVERY for c, f in zip(cand, ref, strict=True)],
    )
    costs = [r["cost"] for r in rows]
    add(
        f"cost / retraining CPU{f' <= {LM_COST}' if task == 'lm' else ' (reported)'}",
        f"{_ms(costs)} (each: {', '.join(_f(c) for c in costs)})",
        [c <= LM_COST for c in costs] if task == "lm" else [None for _ in costs],
    )
    if task != "lm":
        out[-1]["status"] = "reported (no target)"
    return out


def tables(results: dict[str, Any], variant: str) -> list[str]:
    lines: list[str] = []
    missing = [c for c in CASES if not results.get(c)]
    if missing:
        lines += ["", f"**Not measured in this run: {', '.join(missing)}** (no seed finished)."]
    for case, per_seed in results.items():
        if not per_seed:
            continue
        seeds = ", ".join(per_seed)
        lines += [
            "",
            f"### {case} (seeds {seeds})",
            "",
            CASES[case][1] + ".",
            "",
            "| target | mean ± sd over seeds | verdict | a second retrained model (control) |",
            "|---|---|---|---|",
        ]
        targets = judge(case, per_seed, variant)
        lines += [
            f"| {t['target']} | {t['figures']} | {t['status']} | {c} |"
            for t, c in zip(targets, _control_cells(case, per_seed, targets), strict=True)
        ]
    return lines


def _tpr_control(per_seed: dict[str, Any]) -> str:
    """The TPR target's control: a third retrained model per seed against the second retrained models'
    spread (the second ones define it, so they cannot be its control)."""
    spread = [_v(x["retrained"], "mia_tpr_at_1pct_fpr") for x in per_seed.values()]
    third = [_v(x.get("retrained_third", {}), "mia_tpr_at_1pct_fpr") for x in per_seed.values()]
    ys = [y for y in spread if y is not None]
    if not ys or all(t is None for t in third):
        return "not measured"
    lo, hi = min(ys), max(ys)
    oks = [lo - 1e-9 <= t <= hi + 1e-9 for t in third if t is not None]
    verdict = "met" if all(oks) else f"**missed** ({sum(oks)}/{len(oks)} seeds met)"
    return f"a third retrained model: {verdict}; each {', '.join(_f(t) for t in third)}"


def _control_cells(case: str, per_seed: dict[str, Any], targets: list[dict[str, Any]]) -> list[str]:
    """Per target of ``judge`` (``targets``), what the control (a second retrained model) scores: a target the
    control misses on a seed is one that exact retraining misses there too."""
    ctl = control(per_seed)
    if not ctl:
        return ["not measured (an earlier run)" for _ in targets]
    judged = {c["target"]: c for c in judge(case, ctl, "control")}
    cells = []
    for t in targets:
        c = judged.get(t["target"], {"status": "reported (no target)", "each": ""})
        if t["target"].startswith("TPR"):
            cells.append(_tpr_control(per_seed))
        elif t["target"].startswith("cost"):
            cells.append("the baseline (retraining)")
        elif c["status"].startswith("reported"):
            cells.append("")
        else:
            extra = f"; {c['each']}" if c["each"] else ""
            cells.append(
                c["status"]
                + extra
                + (f" ({len(ctl)}/{len(per_seed)} seeds)" if len(ctl) < len(per_seed) else "")
            )
    return cells


def comparison(results: dict[str, Any], variants: list[str]) -> list[str]:
    """Variants side by side (stop-rule choice): per case, the MIA gap, TPR, retained and cost."""
    lines = [
        "| case | variant | MIA AUC - retrained's (signed) | MIA AUC gap | TPR@1% | retained worse % | canary p | cost |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case, per_seed in results.items():
        for v in variants:
            if not per_seed or any(v not in x["candidates"] for x in per_seed.values()):
                continue  # a variant of an earlier run that did not cover this case
            rows = [_row_values(per_seed[s], v) for s in per_seed]
            signed = [
                None if r["mia_auc"] is None or r["mia_auc_ref"] is None else r["mia_auc"] - r["mia_auc_ref"]
                for r in rows
            ]
            lines.append(
                f"| {case} | {v} | {_ms(signed)} | {_ms([r['mia_auc_gap'] for r in rows])} | {_ms([r['tpr1'] for r in rows])} | "
                f"{_ms([None if r['retained_worse'] is None else 100 * r['retained_worse'] for r in rows], 1)} | "
                f"{_ms([r['canary_p'] for r in rows])} | {_ms([r['cost'] for r in rows])} |"
            )
    return lines


def _variants_block(results: dict[str, Any]) -> list[str]:
    names = sorted({v for per_seed in results.values() for s in per_seed.values() for v in s["candidates"]})
    if names == ["defaults"]:
        return []
    return [
        "### Variants on the same seeds (each over the defaults; mean ± sd)",
        "",
        *comparison(results, ["defaults", *[n for n in names if n != "defaults"]]),
        "",
    ]


NOTES = "<!-- suite notes: kept when the tables are regenerated -->"


def write_results(
    results: dict[str, Any], command: str, seeds: list[int], wall_s: float, runs: int = 1
) -> None:
    from results import current_section

    old = current_section("Unlearning suite")
    notes = old[old.find(NOTES) :].rstrip() if NOTES in old else NOTES
    body = [
        "## Unlearning suite",
        "",
        f"`{command}` ({f'{runs} processes, one per seed, the longest' if runs > 1 else 'one process,'} "
        f"{wall_s / 60:.0f} minutes; 1 torch thread, in-process federation, a shared 2-core x86 VM, "
        f"`nice -n 10`). `gradient_ascent_ewc` with the defaults on cases and seeds fixed before tuning "
        f"(bench/suite.py: test seeds {', '.join(map(str, seeds))}; the defaults were tuned on seeds "
        f"{', '.join(map(str, TUNING_SEEDS))}, never on these). Per seed a new dataset, original and "
        "retrained reference; the LM is the small community LM on 3 nodes (8 rounds of 10 steps), digits "
        "noisy (sigma 0.4) non-IID digits on 5 nodes (30 rounds of 5 epochs) for both digits cases. Verdicts: met when every seed meets the target; the figures are "
        "mean ± sd over the seeds. The retrained spread of TPR at 1 % FPR comes from a second retrained model "
        "per seed (another batch order) verified against the reference. The last column is the control: that "
        "second retrained model judged by the same targets (for the TPR target a third one, against the "
        "second ones' spread); a target the control misses is one exact retraining misses too.",
        *tables(results, "defaults"),
        "",
        *_variants_block(results),
        notes,
    ]
    replace_section(body)


def merge(paths: list[Path]) -> tuple[dict[str, Any], list[int], float]:
    """The results of several runs (each case's seeds together), their seeds and the longest run's wall time."""
    merged: dict[str, dict[str, Any]] = {}
    seeds: list[int] = []
    wall = 0.0
    for path in paths:
        saved = json.loads(path.read_text())
        if "results" not in saved:
            raise SystemExit(f"{path}: not the --json of a suite run")
        for case, per_seed in saved["results"].items():
            merged.setdefault(case, {}).update(per_seed)
        seeds += [s for s in saved["seeds"] if s not in seeds]
        wall = max(wall, float(saved["wall_s"]))
    return merged, seeds, wall


def parse_variants(items: list[str] | None) -> dict[str, dict[str, Any]]:
    variants: dict[str, dict[str, Any]] = {"defaults": {}}
    for item in items or []:
        name, _, config = item.partition("=")
        if not name or not config:
            raise SystemExit(f"--variant takes NAME=JSON, got {item!r}")
        variants[name] = json.loads(config)
    return variants


def main(args: argparse.Namespace, command: str) -> None:
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else list(TEST_SEEDS)
    cases = args.cases.split(",") if args.cases else list(CASES)
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        raise SystemExit(f"unknown case(s) {', '.join(unknown)}; cases: {', '.join(CASES)}")
    if args.write and sorted(seeds) != sorted(TEST_SEEDS):
        raise SystemExit("--write reports the test seeds only: run without --seeds")
    if args.from_json:  # the section from finished runs (their --json), e.g. one process per seed
        merged, seeds, wall = merge([Path(p) for p in args.from_json])
        runs = len(args.from_json)
        print("\n".join(tables(merged, "defaults")))
        if args.write:
            if sorted(seeds) != sorted(TEST_SEEDS):
                raise SystemExit(f"--write reports the test seeds {TEST_SEEDS}; these runs have {seeds}")
            write_results(merged, "python bench/unlearning.py --suite", seeds, wall, runs)
        return
    variants = parse_variants(args.variant)
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:6.0f} s] {msg}", flush=True)

    out = Path(args.json) if args.json else Path(tempfile.gettempdir(), "unlearning-suite.json")

    def save(results: dict[str, Any]) -> None:
        saved = {
            "command": command,
            "seeds": seeds,
            "wall_s": time.perf_counter() - t0,
            "variants": variants,
            "results": results,
        }
        out.write_text(json.dumps(saved, indent=1, default=str))

    if args.keep and args.write:
        raise SystemExit("--write measures from scratch: run it without --keep")
    results = run_suite(seeds, cases, variants, log, spread=not args.no_spread, save=save, keep=args.keep)
    save(results)
    wall = time.perf_counter() - t0
    print("\n".join(tables(results, "defaults")))
    if len(variants) > 1:
        print("\n".join(["", *comparison(results, list(variants))]))
    log(f"done; results in {out}")
    if args.write:
        write_results(results, command, seeds, wall)
