"""Community evaluation of every candidate the worker verifies (docs/verification.md, "Community evaluation").

After the verification proper, the worker asks the nodes to evaluate the candidate against the currently
released version on their local validation data, per node and per group, and runs the members' accepted
probes on it (``unlearning.api.evaluate_candidate``). The result goes into the report before the worker signs
it (``report["community_evaluation"]``), so it is stored with the version and the gate reads exactly what the
verifier signed. A probe that fails (or applies but cannot run) fails the report, and the gate denies the
version naming the probe, like a failed regression check; only the council's override gets past it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

from governance.db.engine import read_session
from governance.services import probes, registry
from governance.services.context import Ctx

log = logging.getLogger("commons.worker")


def _finite(value: Any) -> Any:
    """Strict JSON: a non-finite float (a diverged model's loss) becomes null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def evaluate(ctx: Ctx, result: dict[str, Any], progress: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """The community evaluation of the candidate ``result["model_version"]`` (never raises: an evaluation
    that cannot run says why, and every accepted probe is then ``error``, which blocks)."""
    from unlearning.api import EvaluationSpec, evaluate_candidate

    with read_session(ctx.engine) as s:
        accepted = probes.accepted_for_run(s)
        released = registry.latest_released_version(s)
    dataset = ctx.settings.effective_dataset_dir.resolve()
    if not accepted and not (dataset / "manifest.json").is_file():
        return {"not_run": f"no dataset manifest at {dataset} and no accepted probe", "probes": []}
    progress({"phase": "evaluate", "stage": "community evaluation", "done": 0, "total": 1})
    spec = EvaluationSpec(
        artifact_root=str(ctx.settings.artifact_dir.resolve()),
        dataset_dir=str(dataset),
        candidate_version=str(result["model_version"]),
        released_version=released,
        group_by=ctx.settings.evaluation_group_by,
        probes=accepted,
    )
    from governance.jobs.worker import flower_settings

    try:
        out = evaluate_candidate(spec, flower_settings(ctx.settings))
    except Exception as exc:
        log.exception("community evaluation of %s failed", result.get("model_version"))
        reason = f"the evaluation could not run: {type(exc).__name__}: {exc}"
        return {
            "error": reason,
            "probes": [
                {
                    "id": p["id"],
                    "title": p["title"],
                    "kind": p["spec"]["kind"],
                    "status": "error",
                    "reason": reason,
                }
                for p in accepted
            ],
        }
    for row, p in zip(out["probes"], accepted, strict=True):
        row["spec_hash"] = p["spec_hash"]
    progress({"phase": "evaluate", "stage": "community evaluation", "done": 1, "total": 1})
    return dict(_finite(out))


def metric_tests(tests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The acceptance tests the verification measures: all but those naming a probe (``probe_<id>``)."""
    from unlearning.contract import probe_test_id

    return [t for t in tests if probe_test_id(str(t.get("metric", ""))) is None]


def probe_outcomes(tests: list[dict[str, Any]], evaluation: dict[str, Any]) -> list[dict[str, Any]]:
    """The outcome of each acceptance test naming a probe: its value is the number of the probe's prompts
    (pairs) that failed on the candidate; a probe that could not run (or did not) is unmeasured, one that
    cannot be measured on this model (a classifier) is not_applicable: both block (a voted test nobody could
    measure never counts as passed)."""
    from unlearning.contract import VOTED_BUT_UNMEASURABLE, compare, normalise_tests, probe_test_id

    ran = {p.get("id"): p for p in evaluation.get("probes") or []}
    out = []
    for t in normalise_tests(tests):
        probe_id = probe_test_id(t["metric"])
        if probe_id is None:
            continue
        p = ran.get(probe_id)
        row = {**t, "measured": None}
        if p is None:
            row.update(status="unmeasured", reason=f"probe {probe_id} did not run on this candidate")
        elif p.get("status") == "not_applicable":
            row.update(status="not_applicable", reason=f"{VOTED_BUT_UNMEASURABLE}: {p.get('reason', '')}")
        elif p.get("status") not in ("pass", "fail"):
            row.update(status="unmeasured", reason=f"probe {probe_id} could not run: {p.get('reason', '')}")
        else:
            n = float(len(p.get("failures") or []))
            ok = compare(n, t["comparator"], t["threshold"])
            row.update(
                measured=n,
                status="pass" if ok else "fail",
                reason=f"{t['metric']} = {n:g} failing {'meets' if ok else 'fails'} "
                f"{t['comparator']} {t['threshold']:g}: {p.get('reason', '')}",
            )
        out.append(row)
    return out


def with_evaluation(
    report: dict[str, Any],
    passed: bool,
    evaluation: dict[str, Any],
    tests: list[dict[str, Any]] | None = None,
) -> tuple[dict[str, Any], bool]:
    """``report`` with the evaluation attached: the acceptance tests naming a probe judged from it (with the
    policy hash of every test, as the members voted them), and a blocking probe failing the report (named
    in the summary)."""
    from unlearning.api import failing_probes
    from unlearning.contract import BLOCKING_TEST_STATUSES, policy_hash

    report = {**report, "community_evaluation": evaluation}
    judged = probe_outcomes(list(tests or []), evaluation)
    if judged:
        outcomes = [*(report.get("tests") or []), *judged]
        report["tests"], report["policy_hash"] = outcomes, policy_hash(list(tests or []))
        blocks = any(o.get("status") in BLOCKING_TEST_STATUSES for o in outcomes)
        passed = (
            not blocks
            and any(o.get("status") == "pass" for o in outcomes)
            and all(r.get("passed") for r in report.get("regressions") or [])
        )
        report["passed"], report["verdict"] = passed, "pass" if passed else "fail"
        blocking = [f"{o['metric']} ({o['status']})" for o in judged if o["status"] in BLOCKING_TEST_STATUSES]
        summary = str(report.get("summary", ""))
        rest = summary.split(": ", 1)[1] if ": " in summary else summary
        if blocking:
            report["summary"] = f"FAIL: {', '.join(blocking)}; {rest}"
        elif passed and summary.startswith("FAIL"):
            report["summary"] = f"PASS: {', '.join(o['metric'] for o in judged)} and the other tests"
    failing = failing_probes(evaluation)
    if failing:
        names = ", ".join(f"probe {p['id']} ({p['status']})" for p in failing)
        summary = str(report.get("summary", ""))
        rest = summary[6:] if summary.startswith(("PASS: ", "FAIL: ")) else summary
        report["summary"] = f"FAIL: {names}; {rest}"
        report["passed"], report["verdict"], passed = False, "fail", False
    return report, passed
