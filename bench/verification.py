"""Verification benchmark: how long verify() takes against the unlearning job it verifies (target: no more
than the job itself), and what it reports, in one run per scenario.

Scenarios (federated, in process, through unlearning.run_job and unlearning.verification.verify):
  digits-class   clean digits, 5 nodes IID, default MLP; forget class 7 (default acceptance tests for a category)
  digits-client  noisy digits (sigma 0.4), 5 nodes Dirichlet 1.0; forget node-0/digits (data-source defaults)
  lm-source      community LM, 5 nodes; forget node-0/notebook (facts + 8 canaries), data-source defaults

Each scenario trains the original, runs the default unlearning method and the retrain reference, then verifies
the candidate with and without the reference. Usage: python bench/verification.py [--only NAME] [--write]
(--write replaces the "## Verification" section of bench/RESULTS.md).

``--calibrate`` checks the default acceptance tests (unlearning.contract.default_acceptance_tests) against the
two models that define the question, for every target kind and task: models *retrained* without the target
(other seeds: another batch order from the same initial model) verified against the retrained reference (seed
0) must pass, the *original* must fail. It also measures the null distribution of canary exposure: never-
inserted secrets of the canaries' format, scored by the retrained models, give the false-fail rate of the old
``canary_exposure <= 3`` and of ``canary_exposure_pvalue >= 0.05`` at the target's number of canaries.
(--write replaces the "## Default policies" section of bench/RESULTS.md.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from results import replace_section  # bench/results.py

from unlearning import JobResult, JobSpec, Target, init_dataset, init_model, run_job
from unlearning.verification import VerifySpec, verify

torch.set_num_threads(1)

DEFAULTS = {
    "category": [
        {"metric": "forget_accuracy_gap", "comparator": "<=", "threshold": 0.05},
        {"metric": "retained_utility_drop", "comparator": "<=", "threshold": 0.05},
        {"metric": "worst_node_utility_drop", "comparator": "<=", "threshold": 0.1},
    ],
    "data_source": [
        {"metric": "mia_auc_gap", "comparator": "<=", "threshold": 0.05},
        {"metric": "canary_exposure", "comparator": "<=", "threshold": 3.0},
        {"metric": "retained_utility_drop", "comparator": "<=", "threshold": 0.05},
        {"metric": "relearn_recovery", "comparator": "<=", "threshold": 0.5},
    ],
}
SHOW = [
    "forget_accuracy_gap",
    "forget_perplexity_ratio",
    "forget_quality",
    "mia_auc",
    "mia_auc_gap",
    "canary_exposure",
    "extraction_rate",
    "retained_utility_drop",
    "worst_node_utility_drop",
    "relearn_recovery",
    "quantization_recovery",
    "cost_ratio",
]


def _job(work: Path, base: str, job_id: str, **kw: Any) -> JobResult:
    r = run_job(
        JobSpec(
            artifact_root=str(work / "art"),
            dataset_dir=str(work / "data"),
            base_version=base,
            job_id=job_id,
            **kw,
        )
    )
    if r.status != "succeeded":
        raise RuntimeError(f"{job_id}: {r.error}")
    return r


def scenario(name: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    if name.startswith("digits"):
        client = name == "digits-client"
        init_dataset(
            "digits",
            work / "data",
            nodes=5,
            seed=0,
            partition="dirichlet" if client else "iid",
            noise=0.4 if client else 0.0,
        )
        v0 = init_model(work / "art", "digits", seed=0)
        rounds, local = 30, {"epochs": 5.0}
        target = Target("data_source", "node-0/digits") if client else Target("category", "7")
        method_config: dict[str, Any] = {}
    else:
        init_dataset("community-lm", work / "data", nodes=5, seed=0)
        v0 = init_model(work / "art", "community-lm", size=args.lm_size, seed=0)
        rounds, local = args.lm_rounds, {"steps": 10}
        target = Target("data_source", "node-0/notebook")
        method_config = {}
    t0 = time.perf_counter()
    trained = _job(work, v0.version, "train", kind="train", rounds=rounds, local=local)
    train_s = time.perf_counter() - t0
    assert trained.model_version is not None
    unl = _job(
        work, trained.model_version, "unlearn", kind="unlearn", target=target, method_config=method_config
    )
    ref = _job(work, trained.model_version, "retrain", kind="unlearn", target=target, method="retrain")
    assert unl.model_version is not None
    spec = VerifySpec(
        artifact_root=str(work / "art"),
        dataset_dir=str(work / "data"),
        candidate_version=unl.model_version,
        tests=DEFAULTS[target.kind],
        target=json.loads(target.to_json()),
        job_cost=unl.to_dict()["cost"],
        reference_cost=ref.to_dict()["cost"],
    )
    without = verify(spec)
    spec.reference_version = ref.model_version
    with_ref = verify(spec)
    return {
        "train_s": train_s,
        "unlearn_s": unl.cost.wall_s,
        "retrain_s": ref.cost.wall_s,
        "verify_s": with_ref.timing["wall_s"],
        "verify_noref_s": without.timing["wall_s"],
        "summary": with_ref.summary,
        "summary_noref": without.summary,
        "metrics": {k: with_ref.to_dict()["metrics"][k] for k in SHOW},
        "tests": [t.__dict__ for t in with_ref.tests],
    }


def _v(x: Any) -> str:
    return "n/a" if x is None else f"{x:.3g}" if isinstance(x, float) else str(x)


def tables(results: dict[str, Any]) -> list[str]:
    out = [
        "| scenario | unlearning job s | retrain s | verify s (with reference) | verify / job | verify s (no reference) | verdict (with reference) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        out.append(
            f"| {name} | {r['unlearn_s']:.1f} | {r['retrain_s']:.1f} | {r['verify_s']:.1f} | "
            f"{r['verify_s'] / r['unlearn_s']:.2f} | {r['verify_noref_s']:.1f} | {r['summary']} |"
        )
    for name, r in results.items():
        out += [
            "",
            f"### {name}",
            "",
            "| metric | value | original | candidate | reference |",
            "|---|---|---|---|---|",
        ]
        for k, m in r["metrics"].items():
            vals = m.get("values") or {}
            value = _v(m["value"]) if m["applies"] else "does not apply"
            out.append(
                f"| {k} | {value} | {_v(vals.get('original'))} | {_v(vals.get('candidate'))} | {_v(vals.get('reference'))} |"
            )
    return out


def write_results(results: dict[str, Any], command: str) -> None:
    body = [
        "## Verification",
        "",
        f"`{command}` (1 torch thread, in-process federation, 5 nodes; the verification includes the federated",
        "evaluation of original, candidate and reference on every node, 1000-candidate exposure for every canary",
        "and control, the relearning attack and int8 quantisation). Times are wall seconds in one run.",
        "",
        *tables(results),
        "",
    ]
    replace_section(body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["digits-class", "digits-client", "lm-source"], default=None)
    ap.add_argument("--lm-size", default="default")
    ap.add_argument("--lm-rounds", type=int, default=30)
    ap.add_argument(
        "--write", action="store_true", help="replace the ## Verification section of bench/RESULTS.md"
    )
    ap.add_argument("--calibrate", action="store_true", help="check the default policies (see above)")
    ap.add_argument(
        "--attacks",
        action="store_true",
        help="per-example membership inference and recovery attacks (bench/attacks.py)",
    )
    ap.add_argument(
        "--retained",
        action="store_true",
        help="the retained-data attack, format shifts and the report page's speed (bench/retained.py)",
    )
    ap.add_argument("--fit-rounds", type=int, default=4, help="--retained: extra rounds on the retained data")
    ap.add_argument(
        "--seeds", type=int, default=5, help="--calibrate, --attacks: retrained candidates per target"
    )
    ap.add_argument("--null-secrets", type=int, default=200, help="--calibrate: secrets per retrained model")
    ap.add_argument("--tasks", default="lm,digits", help="--calibrate, --attacks: lm, digits or both")
    args = ap.parse_args()
    if args.retained:
        from retained import run_retained  # bench/retained.py

        run_retained(args, " ".join(["python bench/verification.py", *sys.argv[1:]]))
        return
    if args.attacks:
        from attacks import run_attacks  # bench/attacks.py

        run_attacks(args, " ".join(["python bench/verification.py", *sys.argv[1:]]))
        return
    if args.calibrate:
        from calibrate import run_calibration  # bench/calibrate.py

        run_calibration(args, " ".join(["python bench/verification.py", *sys.argv[1:]]))
        return
    names = [args.only] if args.only else ["digits-class", "digits-client", "lm-source"]
    results: dict[str, Any] = {}
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            results[name] = scenario(name, Path(tmp), args)
        r = results[name]
        print(f"{name}: job {r['unlearn_s']:.1f} s, verify {r['verify_s']:.1f} s; {r['summary']}", flush=True)
    print("\n".join(tables(results)))
    if args.write:
        write_results(results, "python bench/verification.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
