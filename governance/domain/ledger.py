"""The contribution ledger's rules: which model versions hold a data source (pure; no I/O).

A version's holding of a data source follows its lineage (the registry's parent chain), root first:

- an ``init`` version, or a version without a parent, holds no data (``never``);
- a ``train`` version holds what its parent holds, plus every source its own training job trained on (the job
  records them: ``trained``); when the job recorded none (``trained`` is None) a source its parent did not
  hold is ``unknown``;
- an ``unlearn`` version holds what its parent holds, less the data source it unlearned (``removed``);
  unlearning a category or a behaviour leaves a source held (only part of it is forgotten);
- a version whose parent is not in the registry inherits ``unknown``.

A training job on a version that unlearned a source never trains on it again (the lineage's exclusions travel
with every later job, and the job records only the sources it used), so ``removed`` stays removed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

CONTAINS, NEVER, REMOVED, UNKNOWN = "contains", "never", "removed", "unknown"
MAX_DEPTH = 10_000  # a lineage longer than this is cut (and reads as unknown)


def federation_name(node_id: str, name: str) -> str:
    """A registered data source's name in the federation (``node-0/notebook``), as jobs and datasets name it."""
    return name if "/" in name else f"{node_id}/{name}"


@dataclass(frozen=True)
class VersionFacts:
    version: str
    parent: str | None
    kind: str  # init | train | unlearn
    state: str  # the registry's state (candidate | verified | failed | released | rejected)
    trained: frozenset[str] | None = None  # train: the sources its own job trained on (None: not recorded)
    unlearned: frozenset[str] = frozenset()  # unlearn: the data source(s) it unlearned


@dataclass(frozen=True)
class Holding:
    status: str  # contains | never | removed | unknown
    since: str | None = None  # the version that brought the source in (contains) or removed it (removed)


def holdings(versions: Mapping[str, VersionFacts], source: str) -> dict[str, Holding]:
    """Every version's holding of ``source`` (a federation name)."""
    out: dict[str, Holding] = {}
    for start in versions:
        chain: list[str] = []
        v: str | None = start
        while v is not None and v in versions and v not in out and len(chain) < MAX_DEPTH:
            if v in chain:  # a cycle in the registry's parents: nothing can be said
                break
            chain.append(v)
            v = versions[v].parent
        if v is None:
            below = Holding(NEVER)
        elif v in out:
            below = out[v]
        else:  # a parent the registry does not know, a cycle, or a lineage cut at MAX_DEPTH
            below = Holding(UNKNOWN)
        for name in reversed(chain):
            below = step(versions[name], below, source)
            out[name] = below
    return out


def step(facts: VersionFacts, parent: Holding, source: str) -> Holding:
    """A version's holding given its parent's (see the module docstring)."""
    if facts.kind == "init":
        return Holding(NEVER)
    if facts.kind == "unlearn":
        return Holding(REMOVED, facts.version) if source in facts.unlearned else parent
    if facts.trained is not None and source in facts.trained:
        return parent if parent.status == CONTAINS else Holding(CONTAINS, facts.version)
    if facts.trained is None and parent.status != CONTAINS:
        return Holding(UNKNOWN)
    return parent


def answer(holding: Holding | None) -> str:
    """The answer to "is my data in the released model?": yes | no | unknown | no released model."""
    if holding is None:
        return "no released model"
    return {CONTAINS: "yes", NEVER: "no", REMOVED: "no"}.get(holding.status, "unknown")
