"""Default acceptance tests against the two models that define the question (``python bench/verification.py
--calibrate``; see that module's docstring).

Per task (the community LM, digits) one dataset and one trained original; per target kind the retrained
reference (``retrain``, seed 0) and ``--seeds`` more retrained models (seeds 1..K: another batch order from the
same initial model). Every default policy is evaluated with the retrained reference on the retrained models
(they must pass: false-fail rate at most 5 %) and on the original (it must fail). The old defaults (before
issue 16) are evaluated on the same reports, for comparison.

The exposure null: ``--null-secrets`` never-inserted secrets of the canaries' format (fresh names, 6 random
digits), scored by every retrained model of the data-source target (a model that never saw them), give the
distribution of exposure under the null, the false-fail rate of ``max exposure <= 3`` over n canaries, and that
of the Bonferroni-corrected p-value ``>= 0.05`` (drawn as groups of n null secrets).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from results import replace_section  # bench/results.py
from verification import _job  # bench/verification.py

from unlearning import Target, init_dataset, init_model
from unlearning.artifacts import ArtifactStore
from unlearning.contract import DatasetFacts, cannot_measure, default_acceptance_tests
from unlearning.data import load_node_data, node_dirs, read_manifest
from unlearning.metrics import canary_exposure
from unlearning.tasks import make_task
from unlearning.verification import VerifySpec, evaluate_tests, policy_passes, verify
from unlearning.verification.extraction import corrected_pvalue, exposure_pvalue

#: the defaults before issue 16 (for comparison)
OLD_DEFAULTS: dict[str, list[dict[str, Any]]] = {
    "data_source": [
        {"metric": "mia_auc_gap", "comparator": "<=", "threshold": 0.05},
        {"metric": "canary_exposure", "comparator": "<=", "threshold": 3.0},
        {"metric": "retained_utility_drop", "comparator": "<=", "threshold": 0.05},
        {"metric": "relearn_recovery", "comparator": "<=", "threshold": 0.5},
    ],
    "category": [
        {"metric": "forget_accuracy_gap", "comparator": "<=", "threshold": 0.05},
        {"metric": "retained_utility_drop", "comparator": "<=", "threshold": 0.05},
        {"metric": "worst_node_utility_drop", "comparator": "<=", "threshold": 0.1},
    ],
    "behaviour": [
        {"metric": "extraction_rate", "comparator": "<=", "threshold": 0.0},
        {"metric": "canary_exposure", "comparator": "<=", "threshold": 3.0},
        {"metric": "retained_utility_drop", "comparator": "<=", "threshold": 0.05},
    ],
}

#: the setups (small enough to run on a laptop; the LM is the "small" community LM)
LM_DATA = {"nodes": 3, "seed": 0, "authors_per_node": 8, "passages_per_node": 16, "notebook_authors": 4}
LM_TRAIN = {"rounds": 8, "local": {"steps": 10}}
#: digits as bench/verification.py's digits-client (noisy, non-IID): a client the original has memorised
DIGITS_DATA = {"nodes": 5, "seed": 0, "partition": "dirichlet", "noise": 0.4}
DIGITS_TRAIN = {"rounds": 30, "local": {"epochs": 5.0}}


def _targets(task: str, work: Path) -> dict[str, Target]:
    if task == "digits":
        return {"data_source": Target("data_source", "node-0/digits"), "category": Target("category", "7")}
    canaries = [c for c in read_manifest(work / "data")["canaries"] if c["inserted"]]
    secret = max(canaries, key=lambda c: c["repetitions"])  # the most repeated: the original knows it
    topics = Counter(
        str(r["category"])
        for d in node_dirs(work / "data")
        for r in load_node_data(d).train
        if r.get("category")
    )
    topic = topics.most_common(1)[0][0]  # the topic with the most passages
    return {
        "data_source": Target("data_source", "node-0/notebook"),
        "category": Target("category", topic),
        "behaviour": Target(
            "behaviour", examples=[{"prompt": secret["prefix"], "completion": secret["secret"]}]
        ),
    }


#: the registered task each setup trains (the defaults a proposal on it starts from are that task's)
TASK_NAMES = {"lm": "community-lm", "digits": "digits"}


def _measurable(tests: list[dict[str, Any]], task: str) -> list[dict[str, Any]]:
    """The tests a proposal on ``task`` would vote (a test the task cannot measure blocks: issue 19)."""
    facts = DatasetFacts(task=TASK_NAMES[task])
    return [t for t in tests if cannot_measure(t["metric"], facts) is None]


def _outcomes(report: Any, tests: list[dict[str, Any]]) -> dict[str, Any]:
    metrics = {k: m.__dict__ for k, m in report.metrics.items()}
    out = evaluate_tests(tests, metrics)
    return {"passed": policy_passes(out), "tests": [o.__dict__ for o in out]}


def _null_exposures(work: Path, versions: list[str], count: int, candidates: int) -> list[float]:
    """Exposure of ``count`` never-inserted secrets of the canaries' format under each model."""
    store = ArtifactStore(work / "art")
    rng = random.Random(1234)
    out: list[float] = []
    for version in versions:
        mv = store.get(version)
        task = make_task(mv.task, mv.model_config)
        model = mv.load_into(task.build_model(0))
        for i in range(count):
            name = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(7)).title()
            secret = "".join(rng.choice("0123456789") for _ in range(6))
            e, _ = canary_exposure(
                model, task, f"{name}'s access code is ", secret, candidates=candidates, seed=i
            )
            out.append(e)
    return out


def _false_fail(exposures: list[float], n: int, candidates: int) -> dict[str, float]:
    """False-fail rates over groups of ``n`` null secrets: ``max exposure <= 3`` and corrected p >= 0.05."""
    groups = [exposures[i : i + n] for i in range(0, len(exposures) - n + 1, n)]
    old = sum(max(g) > 3.0 for g in groups) / len(groups)
    new = sum(corrected_pvalue([exposure_pvalue(e, candidates) for e in g]) < 0.05 for g in groups) / len(
        groups
    )
    single = sum(e > 3.0 for e in exposures) / len(exposures)
    return {"groups": len(groups), "old": old, "new": new, "single_over_3": single}


def train_original(task: str, work: Path) -> str:
    """The task's dataset in ``work/data`` and its federatedly trained original model (the version id)."""
    if task == "lm":
        init_dataset("community-lm", work / "data", **LM_DATA)
        v0 = init_model(work / "art", "community-lm", size="small", seed=0)
        train = LM_TRAIN
    else:
        init_dataset("digits", work / "data", **DIGITS_DATA)
        v0 = init_model(work / "art", "digits", seed=0)
        train = DIGITS_TRAIN
    return str(_job(work, v0.version, "train", kind="train", **train).model_version)


def calibrate_task(task: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        original = train_original(task, work)
        out: dict[str, Any] = {"train_s": time.perf_counter() - t0, "targets": {}}
        for kind, target in _targets(task, work).items():
            retrained = [
                str(
                    _job(
                        work,
                        original,
                        f"retrain-{kind}-{s}",
                        kind="unlearn",
                        target=target,
                        method="retrain",
                        seed=s,
                    ).model_version
                )
                for s in range(args.seeds + 1)
            ]
            defaults = [t.to_dict() for t in default_acceptance_tests(kind, TASK_NAMES[task])]
            old_defaults = _measurable(OLD_DEFAULTS[kind], task)
            rows: dict[str, list[Any]] = {"retrained": [], "original": []}
            values: dict[str, dict[str, list[float | None]]] = {"retrained": {}, "original": {}}
            for role, candidates in (("retrained", retrained[1:]), ("original", [original])):
                for cand in candidates:
                    report = verify(
                        VerifySpec(
                            artifact_root=str(work / "art"),
                            dataset_dir=str(work / "data"),
                            candidate_version=cand,
                            original_version=original,
                            reference_version=retrained[0],
                            target=json.loads(target.to_json()),
                            tests=defaults,
                        )
                    )
                    rows[role].append(
                        {"new": _outcomes(report, defaults), "old": _outcomes(report, old_defaults)}
                    )
                    for name, m in report.metrics.items():
                        if m.applies:
                            values[role].setdefault(name, []).append(m.value)
            entry: dict[str, Any] = {"defaults": defaults, "rows": rows, "values": values}
            if task == "lm" and kind == "data_source":
                n = sum(
                    1 for c in read_manifest(work / "data")["canaries"] if c.get("source") == target.value
                )
                null = _null_exposures(work, retrained, args.null_secrets, 1000)
                entry["null"] = {"canaries": n, "secrets": len(null), **_false_fail(null, n, 1000)}
                entry["null"]["mean_bits"] = statistics.fmean(null)
            out["targets"][kind] = entry
            print(f"{task}/{kind}: {summary_line(entry)}", flush=True)
        out["total_s"] = time.perf_counter() - t0
        return out


def summary_line(entry: dict[str, Any]) -> str:
    r, o = entry["rows"]["retrained"], entry["rows"]["original"]
    return (
        f"retrained pass {sum(x['new']['passed'] for x in r)}/{len(r)} (old defaults {sum(x['old']['passed'] for x in r)}/{len(r)}), "
        f"original pass {sum(x['new']['passed'] for x in o)}/{len(o)} (old {sum(x['old']['passed'] for x in o)}/{len(o)})"
    )


def _fmt(x: Any) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.3g}" if math.isfinite(x) else "n/a"
    return str(x)


def _policy(defaults: list[dict[str, Any]]) -> str:
    return ", ".join(
        f"`{t['metric']} {t['comparator']} {t['threshold']:g}{' (vs reference)' if t['relative_to_reference'] else ''}`"
        for t in defaults
    )


def _by_metric(row: dict[str, Any], metric: str) -> dict[str, Any]:
    return next(o for o in row["new"]["tests"] if o["metric"] == metric)


def tables(results: dict[str, Any], args: argparse.Namespace) -> list[str]:
    out = [
        "| task | target kind | retrained passes (new defaults) | original passes (new) | retrained passes (old defaults) | original passes (old) |",
        "|---|---|---|---|---|---|",
    ]
    for task, res in results.items():
        for kind, e in res["targets"].items():
            r, o = e["rows"]["retrained"], e["rows"]["original"]
            out.append(
                f"| {task} | {kind} | {sum(x['new']['passed'] for x in r)}/{len(r)} | "
                f"{sum(x['new']['passed'] for x in o)}/{len(o)} | {sum(x['old']['passed'] for x in r)}/{len(r)} | "
                f"{sum(x['old']['passed'] for x in o)}/{len(o)} |"
            )
    out += [
        "",
        "Per test (new defaults): how often the retrained models and the original pass it, and the measured values.",
        "",
    ]
    out += [
        "| task | target kind | test | retrained pass | retrained values | original | original value |",
        "|---|---|---|---|---|---|---|",
    ]
    for task, res in results.items():
        for kind, e in res["targets"].items():
            for t in e["defaults"]:
                rs = [_by_metric(x, t["metric"]) for x in e["rows"]["retrained"]]
                os_ = [_by_metric(x, t["metric"]) for x in e["rows"]["original"]]
                name = f"`{t['metric']} {t['comparator']} {t['threshold']:g}{' (vs ref)' if t['relative_to_reference'] else ''}`"
                passes = sum(x["status"] == "pass" for x in rs)
                na = all(x["status"] == "not_applicable" for x in rs)
                vals = ", ".join(_fmt(x["measured"]) for x in rs)
                out.append(
                    f"| {task} | {kind} | {name} | {'does not apply' if na else f'{passes}/{len(rs)}'} | {vals} | "
                    f"{os_[0]['status']} | {_fmt(os_[0]['measured'])} |"
                )
    for task, res in results.items():
        for kind, e in res["targets"].items():
            if "null" in e:
                n = e["null"]
                out += [
                    "",
                    f"Exposure null ({task}, {kind}): {n['secrets']} never-inserted secrets of the canaries' format scored by "
                    f"the {args.seeds + 1} retrained models (1000 candidates): mean {n['mean_bits']:.2f} bits, "
                    f"{100 * n['single_over_3']:.1f} % above 3 bits (theory: 12.5 %). In {n['groups']} groups of "
                    f"{n['canaries']} (the target's canaries): `max exposure <= 3` false-fails {100 * n['old']:.1f} % "
                    f"(theory: 1 - 0.875^{n['canaries']} = {100 * (1 - 0.875 ** n['canaries']):.0f} %), "
                    f"`canary_exposure_pvalue >= 0.05` false-fails {100 * n['new']:.1f} % (at most 5 % by construction).",
                ]
    return out


def write_results(results: dict[str, Any], args: argparse.Namespace, command: str) -> None:
    policies = [
        f"- {kind} ({TASK_NAMES[task]}): {_policy([t.to_dict() for t in default_acceptance_tests(kind, TASK_NAMES[task])])}"
        for task in results
        for kind in results[task]["targets"]
    ]
    body = [
        "## Default policies",
        "",
        f"`{command}` (1 torch thread, in-process federation). Setups: community LM `small` on 3 nodes "
        f"({LM_DATA['authors_per_node']} authors and {LM_DATA['passages_per_node']} passages per node, 8 canaries "
        f"of 1-32 repetitions, {LM_TRAIN['rounds']} rounds of {LM_TRAIN['local']['steps']} steps); noisy digits "
        f"(sigma {DIGITS_DATA['noise']}, Dirichlet) on {DIGITS_DATA['nodes']} nodes, the default MLP "
        f"({DIGITS_TRAIN['rounds']} rounds of {DIGITS_TRAIN['local']['epochs']:g} epochs). Per target: the retrained reference (seed 0) "
        f"and {args.seeds} retrained models (seeds 1-{args.seeds}: another batch order from the same initial "
        "model) verified against it with the default tests, and the original verified against it. A default "
        "policy must pass the retrained models and fail the original. The defaults:",
        "",
        *policies,
        *(
            [
                "",
                f"**Not measured in this run: {', '.join(t for t in ('lm', 'digits') if t not in results)}** "
                "(tests/integration/test_verification.py checks every default policy on the tiny LM and on "
                "digits: a retrained model passes, the original fails).",
            ]
            if set(results) != {"lm", "digits"}
            else []
        ),
        "",
        *tables(results, args),
        "",
    ]
    replace_section(body)


def run_calibration(args: argparse.Namespace, command: str) -> None:
    results = {task: calibrate_task(task, args) for task in args.tasks.split(",")}
    print("\n".join(tables(results, args)))
    Path(tempfile.gettempdir(), f"calibration-{args.tasks.replace(',', '-')}.json").write_text(
        json.dumps(results, default=str, indent=1)
    )
    if args.write:
        write_results(results, args, command)
