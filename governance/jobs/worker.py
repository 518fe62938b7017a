"""The job worker: claims unlearning jobs, runs them with the unlearning library, verifies the result, and
keeps its lease alive while it works. ``commons serve`` runs one inside the service; ``commons worker`` runs
more beside it against the same database.

A job's life in a worker::

    claim (lease) -> [running] run_job (progress -> heartbeat; cancel checked at each round boundary)
                  -> start_verification (the new model version is registered with the job)
                  -> [verifying] verify (progress -> heartbeat) -> sign -> complete (report, passed?)

A ``verify`` job (queued by ``POST /api/v1/models/{version}/verify`` for a version made outside the service)
skips the run: the stored version itself is verified. Either way the worker signs the report with the
service's verifier key (:func:`sign_verification`): the registry accepts no other report.

If the worker dies, its lease expires and another worker claims the job: a running job restarts from the
base version (its half-written artifacts are never registered), a verifying job resumes at verification.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from governance.audit.keys import verifier_signing_key
from governance.audit.report_signature import sign_report
from governance.jobs import evaluation
from governance.services import jobs, registry
from governance.services.context import Ctx
from governance.settings import Settings

log = logging.getLogger("commons.worker")

Verifier = Callable[
    [Ctx, jobs.Claim, dict[str, Any], Callable[[dict[str, Any]], None]], tuple[dict[str, Any], bool]
]


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class _Live:
    """What the heartbeat thread reports and what it learned."""

    progress: dict[str, Any] = field(default_factory=dict)
    cancel: threading.Event = field(default_factory=threading.Event)
    cancel_requested: bool = False
    lease_lost: bool = False


def flower_settings(settings: Settings) -> Any:
    """The service's Flower settings in the library's terms (unlearning's FlowerSettings)."""
    from unlearning.api import FlowerSettings

    certs = settings.flower_root_certificates
    return FlowerSettings(
        superlink=settings.flower_superlink,
        root_certificates=str(certs) if certs is not None else None,
        insecure=settings.flower_insecure if settings.flower_insecure is not None else certs is None,
        job_timeout_s=settings.flower_job_timeout,
        poll_interval_s=settings.flower_poll_interval,
        simulation_num_cpus=settings.simulation_num_cpus,
        exchange_timeout_s=settings.flower_exchange_timeout,
        node_timeout_s=settings.flower_node_timeout,
        node_data_dir=str(nodes.resolve()) if (nodes := settings.effective_node_data_dir) else None,
    )


def _permanent(exc: BaseException) -> bool:
    """Whether another attempt cannot fix ``exc``: the job's configuration is wrong (no base model, an invalid
    spec or settings), not the federation (a node that died, a timeout)."""
    from unlearning.api import JobSpecError
    from unlearning.contract import ContractError

    return isinstance(exc, (jobs.PermanentJobError, JobSpecError, ContractError))


def run_unlearning(
    ctx: Ctx, claim: jobs.Claim, progress: Callable[[Any], None], cancel: threading.Event, suffix: str = ""
) -> Any:
    """Build the library's JobSpec from the job row and run it (the default runner)."""
    from unlearning.api import JobSpec, run_job
    from unlearning.contract import DEFAULT_METHOD, Target

    spec = claim.spec
    if spec.get("kind") == "train":
        return run_training(ctx, claim, progress, cancel)
    base = spec.get("base_version") or _base_now(ctx)
    if not base:
        raise jobs.PermanentJobError(
            "no base model version: release one (`commons registry adopt`), or set "
            "COMMONS_BASE_MODEL_VERSION, then retry the job"
        )
    job_spec = JobSpec(
        kind="unlearn",
        job_id=f"job-{claim.job_id}-a{claim.attempt}{suffix}",
        artifact_root=str(ctx.settings.artifact_dir.resolve()),
        dataset_dir=str(ctx.settings.effective_dataset_dir.resolve()),
        base_version=base,
        method=spec.get("method") or DEFAULT_METHOD,
        method_config=dict(spec.get("method_config") or {}),
        target=Target.from_dict(spec["target"]),
        seed=int(spec.get("seed", 0)),
        runtime=spec.get("runtime", "in-process"),
        departed=list(spec["departed"]) if spec.get("departed") else None,
    )
    return run_job(job_spec, progress, cancel, flower_settings(ctx.settings))


def _base_now(ctx: Ctx) -> str | None:
    """The base of a job queued before any was released: the latest released version now. While a training
    job that releases the base is unfinished, the attempt waits for it (a transient failure, retried)."""
    from governance.db.engine import read_session
    from governance.services import job_queue, training

    with read_session(ctx.engine) as s:
        base = job_queue.base_version(s, ctx)
    if base is None and (pending := training.base_pending(ctx)) is not None:
        raise RuntimeError(f"the base model is still being prepared (job #{pending}); this job waits for it")
    return base


def run_training(
    ctx: Ctx, claim: jobs.Claim, progress: Callable[[Any], None], cancel: threading.Event
) -> Any:
    """A training job (governance.services.training): federated rounds from the spec's base version."""
    from unlearning.api import JobSpec, run_job

    spec = claim.spec
    job_spec = JobSpec(
        kind="train",
        job_id=f"job-{claim.job_id}-a{claim.attempt}",
        artifact_root=str(ctx.settings.artifact_dir.resolve()),
        dataset_dir=str(ctx.settings.effective_dataset_dir.resolve()),
        base_version=str(spec["base_version"]),
        rounds=int(spec.get("rounds", 1)),
        seed=int(spec.get("seed", 0)),
        runtime=spec.get("runtime", "in-process"),
        num_threads=int(spec.get("num_threads") or 1),
    )
    return run_job(job_spec, progress, cancel, flower_settings(ctx.settings))


def retrain_reference(
    ctx: Ctx,
    claim: jobs.Claim,
    progress: Callable[[Any], None],
    cancel: threading.Event,
    departed: list[str] | None = None,
) -> Any:
    """The gold standard the candidate is measured against: FedAvg from the same start without the forget
    data (the ``retrain`` method), and without the nodes the candidate's job left out (``departed``: a
    departed member's node, for FedEraser)."""
    spec = {**claim.spec, "method": "retrain", "method_config": {}}
    if departed:
        spec["departed"] = sorted(set(departed) | set(claim.spec.get("departed") or []))
    reference = jobs.Claim(
        claim.job_id,
        claim.attempt,
        spec,
        claim.acceptance_tests,
        claim.state,
        None,
        claim.proposal_id,
    )
    return run_unlearning(ctx, reference, progress, cancel, suffix="-reference")


def default_verifier(
    ctx: Ctx, claim: jobs.Claim, result: dict[str, Any], progress: Callable[[dict[str, Any]], None]
) -> tuple[dict[str, Any], bool]:
    """Verify the candidate against the acceptance tests the members voted on (unlearning.verification),
    with a retrained reference unless ``COMMONS_VERIFY_WITH_REFERENCE=false``."""
    from unlearning.api import VerifySpec, verify

    if claim.spec.get("kind") in ("verify", "train") and not claim.acceptance_tests:
        owed = _regressions_owed(ctx, result.get("parent_version"))
        if not owed:  # nothing to measure: the report attests the bytes and that nothing is owed
            return integrity_report(ctx, claim, result), True
    reference_version = reference_cost = None
    if ctx.settings.verify_with_reference and claim.spec.get("target"):

        def on_ref(event: Any) -> None:
            progress({"phase": "reference", "round": event.round, "total_rounds": event.total_rounds})

        left_out = ((result.get("metrics") or {}).get("method") or {}).get("departed-nodes")
        ref = retrain_reference(ctx, claim, on_ref, threading.Event(), departed=left_out)
        if getattr(ref, "status", None) != "succeeded":
            raise RuntimeError(f"the retrained reference failed: {getattr(ref, 'error', None)}")
        reference_version, reference_cost = ref.model_version, ref.to_dict().get("cost")
    from governance.db.engine import read_session
    from governance.services import data_sources, registry
    from unlearning.api import RegressionCheck

    with read_session(ctx.engine) as s:  # earlier approved unlearnings of the lineage are re-verified too
        regressions = [
            RegressionCheck(**{**c, "tests": evaluation.metric_tests(c["tests"])})
            for c in registry.regression_checks_from(s, result.get("parent_version"))
        ]
        protected = data_sources.protected_commitment(s, claim.proposal_id)  # the nodes' lists are checked
    spec = VerifySpec(
        artifact_root=str(ctx.settings.artifact_dir.resolve()),
        dataset_dir=str(ctx.settings.effective_dataset_dir.resolve()),
        candidate_version=result["model_version"],
        tests=evaluation.metric_tests(claim.acceptance_tests),  # probes' tests: judged by the evaluation
        target=claim.spec.get("target"),
        original_version=result.get("parent_version"),
        reference_version=reference_version,
        job_cost=result.get("cost"),
        reference_cost=reference_cost,
        regressions=regressions,
        protected_commitment=protected,
        proposal_id=claim.proposal_id,
        job_id=f"job-{claim.job_id}",
        # a deployment job's verification reaches the members' nodes through the SuperLink too: the service's
        # dataset directory then needs only the published manifest (and held-out split)
        runtime="deployment" if claim.spec.get("runtime") == "deployment" else "in-process",
    )
    report = verify(
        spec,
        progress=lambda p: progress({"phase": "verify", "stage": p.stage, "done": p.done, "total": p.total}),
        flower=flower_settings(ctx.settings),
    )
    store_report_page(ctx, report.to_dict())
    return report.to_dict(), bool(report.passed)


def store_report_page(ctx: Ctx, report: dict[str, Any]) -> None:
    """The report's HTML page, rendered once now and kept in the artifact store: the report pages serve it
    as stored (a page that could not be written is rendered when viewed instead)."""
    from unlearning.api import store_report_html

    try:
        store_report_html(ctx.settings.artifact_dir, report)
    except OSError:
        log.exception("could not store the report page of %s", report.get("candidate_version"))


def sign_verification(ctx: Ctx, report: dict[str, Any]) -> dict[str, Any]:
    """The report signed with the service's verifier key: what makes it count for the release gate."""
    return sign_report(verifier_signing_key(ctx.settings), report)


def stored_result(ctx: Ctx, version: str) -> dict[str, Any]:
    """A ``verify`` job's "result": the stored version itself (its bytes re-hashed against its manifest)."""
    from unlearning.api import stored_version

    stored = stored_version(ctx.settings.artifact_dir, version)
    return {
        "model_version": version,
        "content_hash": stored.content_hash,
        "parent_version": stored.parent,
        "task": stored.task,
        "cost": {},
    }


def _regressions_owed(ctx: Ctx, parent: str | None) -> list[dict[str, Any]]:
    from governance.db.engine import read_session
    from governance.services import registry

    with read_session(ctx.engine) as s:
        return registry.regression_checks_from(s, parent)


def integrity_report(ctx: Ctx, claim: jobs.Claim, result: dict[str, Any]) -> dict[str, Any]:
    """The report of a ``verify`` job that owes no acceptance test and no regression check: the stored bytes
    were re-hashed against their manifest (:func:`stored_result`) and nothing else is owed."""
    import hashlib
    import platform

    from unlearning.contract import policy_hash

    return {
        "candidate_version": result["model_version"],
        "candidate_hash": result["content_hash"],
        "policy_hash": policy_hash([]),
        "config_hash": hashlib.sha256(b"commons integrity verification v1").hexdigest(),
        "seed": 0,
        "precision": "n/a",
        "libraries": {"python": platform.python_version()},
        "passed": True,
        "summary": "PASS: the stored files match their hashes; no acceptance test or regression is owed",
        "tests": [],
        "regressions": [],
        "metrics": {},
        "job_id": f"job-{claim.job_id}",
    }


def verify_and_release_base(ctx: Ctx, version: str, parent: str | None = None) -> Any:
    """Register a trained base version of the artifact store, have the service's worker verify it (a
    ``verify`` job, run here) and release it (operators and ``commons demo``). Returns the released version."""
    from governance.domain.review import SYSTEM
    from governance.services import gate

    gate.register_base_version(ctx, version, parent=parent)
    queued = gate.queue_verification(ctx, SYSTEM, version)
    worker = Worker(ctx, name="base-verifier")
    for _ in range(100):
        if jobs.get(ctx, int(queued["job_id"]))["state"] in ("succeeded", "failed", "cancelled"):
            break
        if not worker.run_once():
            break
    return gate.release(ctx, SYSTEM, version)


def discard_orphans(ctx: Ctx, job_id: int) -> list[str]:
    """Delete the model versions that earlier, dead attempts of this job wrote but never registered.

    A worker killed after writing its version but before ``start_verification`` committed leaves a version
    nobody refers to; one killed during verification leaves its retrained reference (``job-<id>-a<n>-reference``)
    while its candidate is already registered. Every attempt (a resumed verification too) first removes the
    dead attempts' versions that the registry has no row for, so that each job results in exactly one model
    version (the one registered with the job) and the reference its report names. A version the registry knows
    is never deleted, whatever became of the attempt that wrote it.
    """
    from unlearning.api import discard_job_versions

    dead = {f"job-{job_id}-a{n}" for n in jobs.dead_attempts(ctx, job_id)}
    if not dead:
        return []
    removed = discard_job_versions(ctx.settings.artifact_dir, dead, keep=registry.known_versions(ctx))
    if removed:
        log.warning(
            "job %s: removed %d unregistered version(s) of dead attempts: %s", job_id, len(removed), removed
        )
    return removed


def _task_of(ctx: Ctx, version: str | None) -> str | None:
    """The task a model version belongs to (its manifest says), for the registry."""
    from unlearning.api import ArtifactError, stored_version

    if not version:
        return None
    try:
        return stored_version(ctx.settings.artifact_dir, version).task
    except ArtifactError:
        return None


class Worker:
    def __init__(
        self,
        ctx: Ctx,
        name: str | None = None,
        *,
        runner: Callable[[Ctx, jobs.Claim, Callable[[Any], None], threading.Event], Any] = run_unlearning,
        verifier: Verifier = default_verifier,
    ) -> None:
        self.ctx = ctx
        self.name = name or worker_name()
        self.runner, self.verifier = runner, verifier
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.run_forever, name=f"commons-worker-{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful stop: the current job stops at its next round boundary and its lease is released."""
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def run_forever(self) -> None:
        log.info("worker %s started", self.name)
        while not self.stopping.is_set():
            try:
                did = self.run_once()
            except Exception:  # a broken database connection, say: wait and try again
                log.exception("worker %s: claim failed", self.name)
                did = False
            if not did:
                self.stopping.wait(self.ctx.settings.worker_poll_seconds)
        log.info("worker %s stopped", self.name)

    def run_once(self) -> bool:
        """Claim and work one job; False when there was none."""
        claim = jobs.claim(self.ctx, self.name)
        if claim is None:
            return False
        log.info("worker %s: job %s attempt %s (%s)", self.name, claim.job_id, claim.attempt, claim.state)
        self.work(claim)
        return True

    # -- one job

    def work(self, claim: jobs.Claim) -> None:
        live = _Live()
        done = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(claim, live, done), daemon=True)
        beat.start()
        try:
            self._work(claim, live)
        except jobs.LeaseLost:
            log.warning(
                "worker %s lost the lease on job %s; another worker takes it over", self.name, claim.job_id
            )
        except Exception as exc:
            log.exception("job %s failed", claim.job_id)
            self._safe(
                jobs.fail_attempt,
                claim,
                f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}",
                permanent=_permanent(exc),
            )
        finally:
            done.set()
            beat.join(timeout=10)

    def _work(self, claim: jobs.Claim, live: _Live) -> None:
        discard_orphans(self.ctx, claim.job_id)  # what dead attempts left, their references included
        result = claim.result if claim.state == "verifying" else None
        if result is None and claim.spec.get("kind") == "verify":  # a version made outside: verify it as is
            result = stored_result(self.ctx, str(claim.spec["verify_version"]))
            jobs.start_verification(self.ctx, claim.job_id, self.name, result)
        elif result is None:

            def on_progress(event: Any) -> None:
                before = live.progress or {}
                if event.phase == "info":  # the federation's roll call: how many nodes take part
                    nodes_total = int(event.metrics.get("nodes", 0)) or None
                else:
                    nodes_total = before.get("nodes_total")
                same_phase = before.get("phase") == event.phase and event.round > 1
                live.progress = {
                    "phase": event.phase,
                    "round": event.round,
                    "total_rounds": event.total_rounds,
                    "metrics": dict(event.metrics),
                    "nodes_done": getattr(event, "nodes", None),  # job_progress: nodes that answered
                    "nodes_total": nodes_total,
                    "phase_started": before.get("phase_started")
                    if same_phase
                    else self.ctx.clock.now().isoformat(),
                }
                if event.round == event.total_rounds:
                    self._safe(jobs.record_milestone, claim, live.progress)

            res = self.runner(self.ctx, claim, on_progress, live.cancel)
            if live.lease_lost:
                return
            status = getattr(res, "status", None)
            if status == "cancelled" or live.cancel.is_set():
                if live.cancel_requested:
                    jobs.mark_cancelled(self.ctx, claim.job_id, self.name)
                else:  # shutting down: someone else resumes it
                    jobs.release(self.ctx, claim.job_id, self.name)
                return
            if status != "succeeded":
                jobs.fail_attempt(
                    self.ctx,
                    claim.job_id,
                    self.name,
                    getattr(res, "error", None) or f"job {status}",
                    permanent=not getattr(res, "retriable", True),
                )
                return
            result = res.to_dict()
            result.setdefault("task", _task_of(self.ctx, result.get("model_version")))
            if (
                claim.spec.get("kind") == "train"
            ):  # its integrity report attests the stored bytes: re-hash them
                stored = stored_result(self.ctx, str(result["model_version"]))
                if stored["content_hash"] != result.get("content_hash"):
                    raise RuntimeError(f"the stored model {result['model_version']} does not match its hash")
            jobs.start_verification(self.ctx, claim.job_id, self.name, result)
        if self.stopping.is_set():
            jobs.release(self.ctx, claim.job_id, self.name)
            return

        def on_verify(p: dict[str, Any]) -> None:
            before = live.progress or {}
            same = before.get("phase") == p.get("phase") and before.get("stage") == p.get("stage")
            started = before.get("phase_started") if same else self.ctx.clock.now().isoformat()
            live.progress = {**p, "phase_started": started}  # job_progress: the stage's pace, for time left

        report, passed = self.verifier(self.ctx, claim, result, on_verify)
        # every candidate: the nodes' A/B evaluation against the released version, and the accepted probes
        report, passed = evaluation.with_evaluation(
            report, passed, evaluation.evaluate(self.ctx, result, on_verify), claim.acceptance_tests
        )
        if live.lease_lost:
            return
        report = sign_verification(self.ctx, report)
        jobs.complete(self.ctx, claim.job_id, self.name, report, passed)
        if passed and claim.spec.get("kind") == "train" and claim.spec.get("release_as_base"):
            from governance.domain.review import SYSTEM
            from governance.services import gate

            gate.release(self.ctx, SYSTEM, str(result["model_version"]))

    def _heartbeat(self, claim: jobs.Claim, live: _Live, done: threading.Event) -> None:
        interval = max(0.5, self.ctx.settings.job_lease_seconds / 4)
        while True:
            # wake every 0.2 s to pass on a shutdown at once; renew the lease every ``interval``
            deadline = time.monotonic() + interval
            while time.monotonic() < deadline and not done.is_set():
                if self.stopping.is_set():
                    live.cancel.set()
                done.wait(0.2)
            if done.is_set():
                return
            try:
                live.cancel_requested = jobs.heartbeat(self.ctx, claim.job_id, self.name, live.progress)
            except jobs.LeaseLost:
                live.lease_lost = True
                live.cancel.set()
                return
            except Exception:
                log.exception("heartbeat of job %s failed; retrying", claim.job_id)
                continue
            if live.cancel_requested or self.stopping.is_set():
                live.cancel.set()

    def _safe(self, fn: Callable[..., Any], claim: jobs.Claim, *args: Any, **kwargs: Any) -> None:
        with contextlib.suppress(jobs.LeaseLost):
            fn(self.ctx, claim.job_id, self.name, *args, **kwargs)
