"""Which of a proposal's acceptance tests cannot be measured on this community's model and dataset, and why:
said before the vote (the proposal form, its page, the API and ``commons proposal show``), because a voted
test that cannot be measured never counts as passed (docs/governance.md, "Acceptance tests").

The rules are the library's (:func:`unlearning.contract.cannot_measure`, over what each metric declares it
needs); this module only gathers the facts the service holds: the base model's task (the registry) and what
the dataset's manifest and published held-out split say about the target (:func:`unlearning.api.dataset_facts`).
Reads only: nothing here writes.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from governance.db.engine import read_session
from governance.db.models import DataSource, Job, Proposal
from governance.db.registry import ModelVersionRow
from governance.services import job_queue
from governance.services.context import Ctx
from unlearning.api import dataset_facts
from unlearning.contract import (
    DatasetFacts,
    cannot_measure,
    default_acceptance_tests,
    probe_test_id,
    task_family,
)


def base_task(s: Session, ctx: Ctx, p: Proposal | None = None) -> str | None:
    """The task of the model a proposal's unlearning starts from (its job's base version once queued, else
    the version a job would start from now), when the registry knows it."""
    version = None
    if p is not None and p.id is not None:
        job = s.exec(select(Job).where(Job.proposal_id == p.id).order_by(col(Job.id).desc())).first()
        version = (job.spec or {}).get("base_version") if job is not None else None
    version = version or job_queue.base_version(s, ctx)
    row = s.get(ModelVersionRow, version) if version else None
    return row.task if row is not None and row.task != "unknown" else None


def protected_strings(s: Session, p: Proposal | None) -> int | None:
    """How many protected strings the owner of the data source ``p`` targets registered a commitment to
    (``commons data-source register --protected``: its node checks them like canaries); None without one."""
    if p is None or p.target_kind != "data_source" or p.data_source_id is None:
        return None
    d = s.get(DataSource, p.data_source_id)
    return d.protected_count if d is not None and d.protected_sha256 is not None else None


def facts(s: Session, ctx: Ctx, target: dict[str, Any] | None, p: Proposal | None = None) -> DatasetFacts:
    """What is known about measuring tests on ``target`` (a federation target: ``kind``, ``value``,
    ``examples``, ``pattern``; None: the target is not chosen yet), with the protected strings registered
    for the data source ``p`` targets."""
    dataset = ctx.settings.effective_dataset_dir
    return dataset_facts(dataset, target, base_task(s, ctx, p), protected=protected_strings(s, p))


def unmeasurable(tests: list[dict[str, Any]], known: DatasetFacts) -> dict[str, str]:
    """The tests (by metric) that cannot be measured given ``known``, each with why in a sentence."""
    out = {}
    for t in tests:
        name = str(t.get("metric", ""))
        if probe_test_id(name) is None:
            why = cannot_measure(name, known)
        elif task_family(known.task) == "classifier":  # a probe's prompts need a language model
            why = f"a community probe is prompts, and the base model is a classifier ({known.task})"
        else:
            why = None
        if why:
            out[name] = why
    return out


def for_proposal(s: Session, ctx: Ctx, p: Proposal) -> dict[str, str]:
    """The proposal's acceptance tests that cannot be measured on this dataset, by metric, with why."""
    if not p.acceptance_tests or not p.target_kind:
        return {}
    try:
        target = job_queue.federation_target(s, p)
    except Exception:  # a data source that is gone: nothing to say about its tests here
        return {}
    return unmeasurable(list(p.acceptance_tests), facts(s, ctx, target, p))


def default_tests(s: Session, ctx: Ctx, p: Proposal, kind: str) -> list[dict[str, Any]]:
    """The tests a proposal that names none starts from: its kind's defaults for the base model's task
    (:func:`unlearning.contract.default_acceptance_tests`), less those this dataset cannot measure for the
    target (a data source without canaries has no canary test), as long as one remains."""
    target = job_queue.federation_target(s, p)
    known = facts(s, ctx, target, p)
    tests = [t.to_dict() for t in default_acceptance_tests(kind, known.task)]
    kept = [t for t in tests if cannot_measure(t["metric"], known) is None]
    return kept or tests


def form_facts(ctx: Ctx, kind: str) -> DatasetFacts:
    """What the new-proposal form can say before the target is chosen: the base model's task, and whether the
    dataset publishes a held-out split at all."""
    with read_session(ctx.engine) as s:
        return facts(s, ctx, {"kind": kind})


def proposal_facts(ctx: Ctx, proposal_id: int) -> DatasetFacts:
    """What is known about measuring tests on an existing proposal's target (its draft's tests editor)."""
    with read_session(ctx.engine) as s:
        p = s.get(Proposal, proposal_id)
        if p is None or not p.target_kind:
            return DatasetFacts()
        try:
            target = job_queue.federation_target(s, p)
        except Exception:  # a data source that is gone: what the target kind alone tells
            target = {"kind": p.target_kind}
        return facts(s, ctx, target, p)
