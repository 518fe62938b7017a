"""Whether a metric can be measured on a model and a dataset, and if not, why (pure data, no torch).

Every metric in the catalogue (:data:`unlearning.contract.METRICS`) declares what it needs
(:attr:`unlearning.contract.MetricSpec.needs`, names from :data:`NEEDS`): a classifier or a language model,
forget examples, published held-out examples of the target's distribution, canaries of the target, something
to extract. The same declaration answers two questions:

- before the vote, from what the service knows (the base model's task, the dataset's manifest and published
  held-out split, the proposal's target): which of a proposal's tests cannot be measured here
  (:func:`unlearning.contract.cannot_measure`);
- during verification, from the probes actually built: the runner reports a metric whose needs are not met as
  ``not_applicable`` with the same sentence, before its function runs (unlearning/verification/runner.py).

A fact that is not known (``None``) is taken as met: the service warns only about what it knows cannot be
measured. A voted test that cannot be measured never counts as passed (unlearning/verification/spec.py,
``evaluate_tests``).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLASSIFIER, LANGUAGE_MODEL = "classifier", "causal-lm"

#: the statuses of an acceptance test's outcome that stop a release: every one but ``pass``
#: (``not_applicable``: the members voted the test, but it cannot be measured on this model and data)
BLOCKING_TEST_STATUSES = ("fail", "unmeasured", "not_applicable")
#: how a voted test that cannot be measured is reported: ``f"{VOTED_BUT_UNMEASURABLE}: {why}"``
VOTED_BUT_UNMEASURABLE = "the members voted this test, but it cannot be measured here"

#: the kind of model each registered task trains (unlearning/tasks; a unit test checks this table against
#: the tasks' ``is_classifier``): a task name not listed here is not known, and no test is ruled out by it
TASK_FAMILIES: dict[str, str] = {
    "digits": CLASSIFIER,
    "community-lm": LANGUAGE_MODEL,
    "causal-lm": LANGUAGE_MODEL,
}


def task_family(task: str | None) -> str | None:
    """``classifier`` or ``causal-lm`` for a task name (or a family name), None when not known."""
    if task in (CLASSIFIER, LANGUAGE_MODEL):
        return task
    return TASK_FAMILIES.get(task or "")


@dataclass(frozen=True)
class DatasetFacts:
    """What is known about the model and the data a verification would run on; None: not known."""

    task: str | None = None  # the base model's task name (digits, community-lm, causal-lm) or family
    target_kind: str | None = None  # data_source | category | behaviour
    forget_examples: int | None = None  # examples of the target: members' records and the proposal's own
    heldout: int | None = None  # published held-out examples of the target's distribution (non-members)
    heldout_reason: str = ""  # why there are none, when known
    heldout_rest: int | None = None  # published held-out examples outside the target
    canaries: int | None = None  # inserted canaries the target covers
    extractable: int | None = None  # canaries and prompt/completion examples greedy extraction can try
    # strings the data source's owner declared in its node's protected.txt and registered a commitment to
    # (`commons data-source register --protected`): the node checks those its records hold like canaries
    protected: int | None = None

    @property
    def family(self) -> str | None:
        return task_family(self.task)


def _task_words(f: DatasetFacts) -> str:
    fam = f.family
    what = "a classifier" if fam == CLASSIFIER else "a language model"
    return f"{what} ({f.task})" if f.task and f.task != fam else what


def _classifier(f: DatasetFacts) -> str | None:
    if f.family == LANGUAGE_MODEL:
        return f"it needs a classifier, and the base model is {_task_words(f)}"
    return None


def _language_model(f: DatasetFacts) -> str | None:
    if f.family == CLASSIFIER:
        return f"it needs a language model, and the base model is {_task_words(f)}"
    return None


def _at_least(n: int, what: str, attr: str, why: str = "") -> Callable[[DatasetFacts], str | None]:
    """A count of at least ``n`` (``what``: the sentence's words for them, e.g. "a forget example")."""

    def check(f: DatasetFacts) -> str | None:
        have: int | None = getattr(f, attr)
        if have is None or have >= n:
            return None
        return f"it needs {what}, and {why or f'the dataset holds {have} for this target'}"

    return check


def _heldout(f: DatasetFacts) -> str | None:
    if f.target_kind == "behaviour":
        return (
            "membership inference needs held-out examples of the target's distribution, and a behaviour's "
            "examples have none"
        )
    if f.heldout is None or f.heldout >= 2:
        return None
    why = f.heldout_reason or f"the dataset publishes {f.heldout}"
    return f"membership inference needs at least 2 held-out examples of the target's distribution: {why}"


def _canaries(f: DatasetFacts) -> str | None:
    if f.target_kind == "category":
        return "it measures canaries, and a category target holds none (a category is a topic, not a secret)"
    if f.canaries is None or f.canaries > 0 or f.protected:  # protected strings: known on the node only
        return None
    return "it measures canaries, and the target covers no inserted canary (no secret to measure)"


def _extractable(f: DatasetFacts) -> str | None:
    if f.target_kind == "category":
        return "it extracts secrets or forbidden completions, and a category target holds none"
    if f.extractable is None or f.extractable > 0 or f.protected:  # the node tries its protected strings
        return None
    return "it extracts secrets or forbidden completions, and the target has no canary or prompt/completion example"


#: every need a metric may declare: a check that returns why it is not met (None: met or not known)
NEEDS: dict[str, Callable[[DatasetFacts], str | None]] = {
    "classifier": _classifier,
    "language_model": _language_model,
    "forget_examples": _at_least(1, "a forget example", "forget_examples"),
    "two_forget_examples": _at_least(2, "at least 2 forget examples", "forget_examples"),
    "heldout": _heldout,
    "heldout_rest": _at_least(
        2,
        "at least 2 published held-out examples outside the target",
        "heldout_rest",
        "the dataset publishes fewer (a held-out split: `commons model init` or the dataset's heldout/)",
    ),
    "canaries": _canaries,
    "extractable": _extractable,
}


def unmet(needs: tuple[str, ...], facts: DatasetFacts) -> str | None:
    """Why a metric with these ``needs`` cannot be measured given ``facts`` (the first unmet need, in the
    order declared), or None when it can be, as far as the facts tell."""
    for need in needs:
        why = NEEDS[need](facts)
        if why:
            return why
    return None


__all__ = [
    "BLOCKING_TEST_STATUSES",
    "CLASSIFIER",
    "LANGUAGE_MODEL",
    "NEEDS",
    "TASK_FAMILIES",
    "VOTED_BUT_UNMEASURABLE",
    "DatasetFacts",
    "dataset_facts",
    "task_family",
    "unmet",
]


# ---- what a dataset tells before any model runs (the service's view: manifest and published split) -------


def _published(root: Path | None) -> tuple[dict[str, Any], list[dict[str, Any]], bool]:
    """(manifest, held-out test records, whether the split exists) of a dataset; read again only when a
    file changes (a proposal's page reads them on every view)."""
    if root is None:
        return {}, [], False
    files = (root / "manifest.json", root / "heldout" / "test.jsonl")
    stamp = tuple(f.stat().st_mtime_ns if f.is_file() else None for f in files)
    return _read_published(str(root), stamp)


@functools.lru_cache(maxsize=4)
def _read_published(
    root: str, stamp: tuple[int | None, ...]
) -> tuple[dict[str, Any], list[dict[str, Any]], bool]:
    manifest_file, split = Path(root) / "manifest.json", Path(root) / "heldout" / "test.jsonl"
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8")) if stamp[0] is not None else {}
        lines = split.read_text(encoding="utf-8").splitlines() if stamp[1] is not None else []
        held = [r for r in (json.loads(line) for line in lines if line.strip()) if isinstance(r, dict)]
    except (OSError, ValueError):  # unreadable: nothing known (never a warning on a guess)
        return {}, [], False
    return (manifest if isinstance(manifest, dict) else {}), held, stamp[1] is not None


def dataset_facts(
    dataset_dir: Path | None,
    target: Mapping[str, Any] | None,
    task: str | None = None,
    *,
    protected: int | None = None,
) -> DatasetFacts:
    """What the service can know before the vote, from the dataset's manifest and its published held-out
    split (``heldout/test.jsonl``; no member's record is read) and the target (a :class:`Target` dict:
    ``kind``, ``value``, ``examples``, ``pattern``): the facts ``cannot_measure`` reads. ``task`` is the base
    model's (the registry's); the manifest's when not given. ``protected``: how many protected strings the
    owner of a data-source target registered a commitment to (its node checks them like canaries, so the
    canary and extraction tests are not ruled out for want of manifest canaries). What the published files
    do not tell (how many examples of a category the members hold) stays None: never warned about."""
    manifest, held, has_split = _published(dataset_dir)
    task = task or manifest.get("task")
    kind = str((target or {}).get("kind") or "") or None
    protected = protected if kind == "data_source" else None
    if not manifest or dataset_dir is None:
        return DatasetFacts(task=task, target_kind=kind, protected=protected)
    no_split = "" if has_split else "the dataset publishes no held-out split (heldout/test.jsonl)"
    if not (target or {}).get("value") and not (target or {}).get("examples"):  # the target not chosen yet
        none = 0 if no_split else None
        return DatasetFacts(
            task=task, target_kind=kind, heldout=none, heldout_reason=no_split, heldout_rest=none
        )
    listed = [c for c in manifest.get("canaries", []) if c.get("inserted")]
    t = dict(target or {})
    value = str(t.get("value") or "")
    examples = [e for e in t.get("examples") or [] if isinstance(e, Mapping)]
    forget: int | None = None
    canaries: int | None = None
    extractable: int | None = None
    if kind == "data_source":
        counts = {
            s.get("name"): int(s.get("records", 0))
            for n in manifest.get("nodes", [])
            for s in n.get("sources", [])
        }
        forget = counts.get(value)
        pool = [r for r in held if r.get("kind") != "canary"]
        rest = [r for r in held if r.get("source") != value]
        if listed:  # the manifest lists the inserted canaries (a published one may leave them out: unknown)
            canaries = extractable = sum(1 for c in listed if c.get("source") == value)
    elif kind == "category":
        known = [str(c) for c in manifest.get("categories", [])]
        forget = 0 if known and value not in known else None
        pool = [r for r in held if str(r.get("category")) == value]
        rest = [r for r in held if str(r.get("category")) != value]
    else:
        completions = [str(e.get("completion", "")) for e in examples]
        # the proposal's examples are a lower bound: the nodes' records that hold a completion count too
        forget = len(examples) if len(examples) >= 2 else None
        digits = {c.rstrip(".") for c in completions if c.rstrip(".").isdigit()}
        covered = [
            c
            for c in listed
            if any(
                x and (x in f"{c.get('prefix', '')}{c.get('secret', '')}" or str(c.get("secret")) in x)
                for x in completions
            )
        ]
        found = len(digits | {str(c.get("secret")) for c in covered})
        canaries = found if found or listed else None
        extractable = len(examples) + len(covered) if examples or listed else None
        pool = []
        rest = [r for r in held if not any(x and x in str(r.get("text", "")) for x in completions)]
    return DatasetFacts(
        task=task,
        target_kind=kind,
        forget_examples=forget,
        heldout=len(pool),
        heldout_reason=no_split
        or (f"the published held-out split has {len(pool)} for this target" if len(pool) < 2 else ""),
        heldout_rest=len(rest),
        canaries=canaries,
        extractable=extractable,
        protected=protected,
    )
