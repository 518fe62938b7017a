"""verify(): measure a candidate model version against the original and the retrained reference, judge the
policy (the proposal's acceptance tests) and the regression suite, and return a VerificationReport."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from unlearning.artifacts import ArtifactStore, ModelVersion, library_versions
from unlearning.contract import cannot_measure
from unlearning.data import sha256_file
from unlearning.tasks import Target, make_task
from unlearning.tasks.base import Task
from unlearning.verification.catalog import CATALOG
from unlearning.verification.nodes import FederatedScorer, federation, local_grid
from unlearning.verification.probes import build_probes
from unlearning.verification.registry import (
    METRIC_FUNCTIONS,
    Verification,
    facts_of,
    not_applicable,
    unmeasured,
)
from unlearning.verification.spec import (
    MetricResult,
    RegressionCheck,
    RegressionOutcome,
    VerificationReport,
    VerifyProgress,
    VerifyProgressCallback,
    VerifySpec,
    VerifySpecError,
    evaluate_tests,
    policy_hash,
    policy_passes,
)
from unlearning.verification.utility import excluded_for, federated_utility

if TYPE_CHECKING:
    from unlearning.federation.protocol import Grid

log = logging.getLogger("unlearning.verification")


def _load(store: ArtifactStore, version: str, task: Task, seed: int) -> nn.Module:
    model = store.get(version).load_into(task.build_model(seed))
    model.eval()
    return model


def _target(d: dict[str, Any] | None) -> Target | None:
    if not d:
        return None
    try:
        return Target.from_dict(d)
    except ValueError as exc:
        raise VerifySpecError(f"invalid target: {exc}") from exc


def _measure(
    v: Verification, names: list[str], progress: VerifyProgressCallback | None, stage: str
) -> dict[str, MetricResult]:
    out: dict[str, MetricResult] = {}
    facts = facts_of(v)
    for i, name in enumerate(names):
        v.where.clear()
        why = cannot_measure(name, facts)  # what the metric declares it needs (the catalogue), not met here
        try:
            out[name] = not_applicable(name, why) if why else METRIC_FUNCTIONS[name](v)
        except Exception as exc:  # one broken measurement must not hide the others; it blocks its tests
            log.exception("metric %s failed", name)
            out[name] = unmeasured(name, f"error while measuring: {type(exc).__name__}: {exc}")
        if out[name].applies:  # where its figures were computed: nodes (by name) or the service (what)
            out[name].details.setdefault(
                "computed_at", sorted(v.where) or ["service: the jobs' reported costs"]
            )
        if progress is not None:
            progress(VerifyProgress(stage, i + 1, len(names), name))
    return out


def verify(
    spec: VerifySpec, progress: VerifyProgressCallback | None = None, *, grid: Grid | None = None
) -> VerificationReport:
    """Verify ``spec.candidate_version`` (blocking; call it from a worker thread).

    Every metric is measured on the same probes for the original model, the candidate and (when
    ``reference_version`` is set) the retrained reference. Per-example work on members' data runs on the
    nodes that hold it (in process on ``spec.dataset_dir``'s node directories, or on ``grid`` when given):
    they score their forget examples and canaries and evaluate utility, and only scores and counts come
    back; this process reads only the manifest and the published held-out split of ``spec.dataset_dir``. An invalid spec raises
    :class:`VerifySpecError`; a missing or modified model version raises the artifact store's error. A
    metric that fails while measuring is reported as unmeasured (and blocks the tests that name it).
    """
    import unlearning.verification.metrics  # noqa: F401  (registers every metric)

    spec.validate()
    t0, c0 = time.perf_counter(), time.process_time()
    threads = torch.get_num_threads()
    torch.set_num_threads(spec.num_threads)
    try:
        store = ArtifactStore(spec.artifact_root)
        cand = store.get(spec.candidate_version)
        original_version = spec.original_version or cand.parent
        if not original_version:
            raise VerifySpecError("the candidate has no parent: give original_version")
        orig = store.get(original_version)
        ref = store.get(spec.reference_version) if spec.reference_version else None
        task = make_task(cand.task, cand.model_config)
        target = _target(spec.target)
        dataset_dir = Path(spec.dataset_dir)
        models: dict[str, nn.Module] = {
            "original": _load(store, orig.version, task, spec.seed),
            "candidate": _load(store, cand.version, task, spec.seed),
        }
        if ref is not None:
            models["reference"] = _load(store, ref.version, task, spec.seed)
        lineage = dict(cand.manifest.get("training", {}))
        nodes_grid = grid if grid is not None else local_grid_for(spec)

        def make_verification(
            t: Target | None, ms: dict[str, nn.Module], tests: list[dict[str, Any]] | None
        ) -> Verification:
            if progress is not None:
                progress(VerifyProgress("probes", 0, 1, "building probe sets"))
            excluded = excluded_for(lineage, t)
            fed = federation(spec, task, cand.model_config, excluded, nodes_grid)
            scorer = FederatedScorer(fed, t, task)
            probes = build_probes(
                task, t, dataset_dir, max_examples=spec.probe_examples, seed=spec.seed, scorer=scorer
            )
            return Verification(
                spec=spec,
                task=task,
                target=t,
                probes=probes,
                models=ms,
                utility_fn=lambda: federated_utility(fed, ms, t),
            )

        names = list(spec.metrics) if spec.metrics is not None else list(CATALOG)
        names += [t["metric"] for t in spec.tests if t["metric"] not in names]
        metrics: dict[str, MetricResult] = {}
        outcomes = []
        if target is not None:
            v = make_verification(target, models, spec.tests)
            metrics = _measure(v, names, progress, "metric")
            outcomes = evaluate_tests(spec.tests, {k: asdict(m) for k, m in metrics.items()})
        regressions = [
            _regression(r, store, task, models["candidate"], make_verification, progress)
            for r in spec.regressions
        ]
        passed = (policy_passes(outcomes) if target is not None else True) and all(
            r.passed for r in regressions
        )
        if target is None and not regressions:
            passed = False
        models_info: dict[str, dict[str, Any] | None] = {
            "original": _info(orig),
            "candidate": _info(cand),
            "reference": _info(ref) if ref is not None else None,
        }
        manifest = dataset_dir / "manifest.json"
        config_hash = spec.config_hash(
            {k: (m or {}).get("content_hash") for k, m in models_info.items()},
            sha256_file(manifest) if manifest.is_file() else "",
        )
        report = VerificationReport(
            candidate_version=cand.version,
            candidate_hash=cand.content_hash,
            policy_hash=policy_hash(spec.tests),
            config_hash=config_hash,
            seed=spec.seed,
            precision=spec.precision,
            libraries={**library_versions(), **_extra_versions()},
            task=cand.task,
            target=spec.target,
            models=models_info,
            metrics=metrics,
            tests=outcomes,
            regressions=regressions,
            passed=passed,
            summary=_summary(passed, outcomes, regressions, target is not None),
            settings=spec.settings(),
            timing={"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0},
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            proposal_id=spec.proposal_id,
            job_id=spec.job_id,
        )
    finally:
        torch.set_num_threads(threads)
    if progress is not None:
        progress(VerifyProgress("done", 1, 1, report.summary))
    return report


def _regression(
    r: RegressionCheck,
    store: ArtifactStore,
    task: Task,
    candidate: nn.Module,
    make: Any,
    progress: VerifyProgressCallback | None,
) -> RegressionOutcome:
    target = _target(r.target)
    ms = {"original": _load(store, r.original_version, task, 0), "candidate": candidate}
    if r.reference_version:
        ms["reference"] = _load(store, r.reference_version, task, 0)
    v: Verification = make(target, ms, r.tests)
    names = sorted({t["metric"] for t in r.tests})
    metrics = _measure(v, names, progress, "regression")
    outcomes = evaluate_tests(r.tests, {k: asdict(m) for k, m in metrics.items()})
    return RegressionOutcome(
        label=r.label,
        proposal_id=r.proposal_id,
        target=r.target,
        policy_hash=policy_hash(r.tests),
        passed=policy_passes(outcomes),
        tests=outcomes,
        metrics=metrics,
    )


def local_grid_for(spec: VerifySpec) -> Grid:
    """The in-process federation over the dataset's node directories (one for the whole verification)."""
    if spec.runtime != "in-process":
        raise VerifySpecError(f"runtime {spec.runtime!r} needs a Flower Grid passed to verify()")
    return local_grid(spec.dataset_dir)


def _info(mv: ModelVersion) -> dict[str, Any]:
    return {"version": mv.version, "content_hash": mv.content_hash, "parent": mv.parent}


def _extra_versions() -> dict[str, str]:
    import numpy
    import scipy
    import sklearn

    return {"numpy": numpy.__version__, "scipy": scipy.__version__, "scikit-learn": sklearn.__version__}


def _summary(
    passed: bool, outcomes: list[Any], regressions: list[RegressionOutcome], has_target: bool
) -> str:
    failing = [f"{o.metric} ({o.status})" for o in outcomes if o.blocks]
    failing += [f"regression {r.label}" for r in regressions if not r.passed]
    measured = sum(1 for o in outcomes if o.status == "pass")
    if passed:
        return f"PASS: {measured} acceptance test(s) passed, {len(regressions)} regression check(s) passed"
    if not has_target and not regressions:
        return "FAIL: nothing to verify (no target and no regression checks)"
    if not failing:
        return "FAIL: no acceptance test could be measured on this task"
    return "FAIL: " + ", ".join(failing)
