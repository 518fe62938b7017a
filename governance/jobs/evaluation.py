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
    try:
        out = evaluate_candidate(spec)
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


def with_evaluation(
    report: dict[str, Any], passed: bool, evaluation: dict[str, Any]
) -> tuple[dict[str, Any], bool]:
    """``report`` with the evaluation attached; a blocking probe fails it (named in the summary)."""
    from unlearning.api import failing_probes

    report = {**report, "community_evaluation": evaluation}
    failing = failing_probes(evaluation)
    if failing:
        names = ", ".join(f"probe {p['id']} ({p['status']})" for p in failing)
        summary = str(report.get("summary", ""))
        report["summary"] = f"FAIL: {names}; " + (summary[6:] if summary.startswith("PASS: ") else summary)
        report["passed"], report["verdict"], passed = False, "fail", False
    return report, passed
