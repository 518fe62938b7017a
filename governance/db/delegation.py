"""Delegations (migration 0005): the standing delegations members make and revoke, the delegations each poll
froze when its vote opened, and the tags a proposal carries (a delegation may be scoped to a tag).

The queries here are the ones the lifecycle needs (freeze a poll's delegations with its electorate, count a
poll with them); the use cases are in governance/services/delegation.py, the rules in
governance/domain/delegation.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Column, text
from sqlmodel import Field, Session, SQLModel, col, select

import governance.db.base  # noqa: F401  (naming convention first)
from governance.db.base import utcnow
from governance.db.models import Conflict, CurrentVote, DataSource, Elector, Proposal
from governance.db.types import UTCDateTime
from governance.domain.delegation import (
    ELECTION,
    Delegation,
    Scope,
    ScopeKind,
    Topic,
    Turnout,
    applicable,
    delegated_tally,
    resolve,
)
from governance.domain.proposals import ProposalKind, TargetKind
from governance.domain.voting import Tally, VoteChoice, VotingRules, tally


def _ts(nullable: bool = False, **kw: Any) -> Any:
    return Field(sa_column=Column(UTCDateTime(), nullable=nullable), **kw)


class DelegationRow(SQLModel, table=True):
    """A member's standing delegation; revoking sets ``revoked_at`` (rows are never deleted)."""

    __tablename__ = "delegation"
    id: int | None = Field(default=None, primary_key=True)
    delegator_id: int = Field(foreign_key="member.id", index=True)
    delegate_id: int = Field(foreign_key="member.id", index=True)
    scope: str = Field(max_length=16)
    scope_value: str = Field(default="", max_length=100)
    created_at: datetime = _ts(default_factory=utcnow)
    revoked_at: datetime | None = _ts(nullable=True, default=None)


class PollDelegation(SQLModel, table=True):
    """The delegation that counts in a poll for each delegator, frozen when its vote opens (with the
    electorate), and the depth limit in force then. A delegator who revokes during the poll withdraws it
    (``withdrawn_at``): the row stays, so the poll is still counted as one with delegations."""

    __tablename__ = "poll_delegation"
    proposal_id: int = Field(foreign_key="proposal.id", primary_key=True)
    delegator_id: int = Field(foreign_key="member.id", primary_key=True)
    delegate_id: int = Field(foreign_key="member.id")
    delegation_id: int = Field(foreign_key="delegation.id")
    max_depth: int
    withdrawn_at: datetime | None = _ts(
        nullable=True, default=None
    )  # revoked by the delegator during the poll


class ProposalTag(SQLModel, table=True):
    """A tag on a proposal, set by its proposer until its vote opens."""

    __tablename__ = "proposal_tag"
    proposal_id: int = Field(foreign_key="proposal.id", primary_key=True)
    tag: str = Field(max_length=40, primary_key=True)


def to_domain(row: DelegationRow) -> Delegation:
    assert row.id is not None
    return Delegation(row.id, row.delegator_id, row.delegate_id, Scope(ScopeKind(row.scope), row.scope_value))


def lock(s: Session) -> None:
    """Serialise the changes that read the delegation graph (a new delegation's cycle check, a poll's
    freeze). SQLite's write transactions are serial already; PostgreSQL takes a transaction advisory lock."""
    if s.get_bind().dialect.name == "postgresql":
        s.exec(text("SELECT pg_advisory_xact_lock(180005)"))  # type: ignore[call-overload]


def active(s: Session) -> list[Delegation]:
    rows = s.exec(
        select(DelegationRow).where(col(DelegationRow.revoked_at).is_(None)).order_by(col(DelegationRow.id))
    ).all()
    return [to_domain(r) for r in rows]


def tags_of(s: Session, proposal_id: int) -> list[str]:
    return sorted(s.exec(select(ProposalTag.tag).where(ProposalTag.proposal_id == proposal_id)).all())


def topic(s: Session, p: Proposal) -> Topic:
    assert p.id is not None
    if p.kind == ProposalKind.ELECTION.value:
        kind: str | None = ELECTION
    else:
        kind = p.target_kind
    category = None
    if kind == TargetKind.CATEGORY.value and p.target:
        category = p.target.get("category")
    return Topic(kind, category, frozenset(tags_of(s, p.id)))


def recused(s: Session, p: Proposal) -> set[int]:
    """Who may not cast the votes they carry on ``p``: the targeted data source's owner, an election's
    candidate, and every member who declared a conflict of interest on it."""
    out = set(s.exec(select(Conflict.member_id).where(Conflict.proposal_id == p.id)).all())
    if p.data_source_id is not None:
        owner = s.exec(select(DataSource.owner_id).where(DataSource.id == p.data_source_id)).first()
        if owner is not None:
            out.add(owner)
    if p.election_candidate_id is not None:
        out.add(p.election_candidate_id)
    return out


def freeze(s: Session, p: Proposal, max_depth: int) -> list[list[int]]:
    """Freeze the delegations that count in ``p``'s poll, after its electorate: for each elector, the
    applicable delegation to another elector. Returns the edges ``[delegator, delegate]``, sorted."""
    assert p.id is not None
    lock(s)
    electors = set(s.exec(select(Elector.member_id).where(Elector.proposal_id == p.id)).all())
    standing = [d for d in active(s) if d.delegator in electors and d.delegate in electors]
    chosen = applicable(standing, topic(s, p))
    for d in chosen.values():
        s.add(
            PollDelegation(
                proposal_id=p.id,
                delegator_id=d.delegator,
                delegate_id=d.delegate,
                delegation_id=d.id,
                max_depth=max_depth,
            )
        )
    s.flush()
    return sorted([d.delegator, d.delegate] for d in chosen.values())


def frozen(s: Session, proposal_id: int) -> tuple[dict[int, int], int]:
    """A poll's frozen delegations that still count (delegator -> delegate) and its depth limit (0 when it
    froze none)."""
    rows = s.exec(
        select(
            PollDelegation.delegator_id,
            PollDelegation.delegate_id,
            PollDelegation.max_depth,
            PollDelegation.withdrawn_at,
        ).where(PollDelegation.proposal_id == proposal_id)
    ).all()
    edges = {a: b for a, b, _, gone in rows if gone is None}
    return edges, max((d for _, _, d, _ in rows), default=0)


def poll_tally(
    s: Session, p: Proposal, direct: Mapping[int, str], electorate: int, rules: VotingRules
) -> Tally:
    """The tally of ``p``'s poll from its current votes (member -> choice): with the frozen delegations, the
    delegated votes shown apart; without any, the plain tally."""
    assert p.id is not None
    edges, depth = frozen(s, p.id)
    if not depth:  # the poll froze no delegation
        return tally((VoteChoice(c) for c in direct.values()), electorate, rules)
    electors = set(direct) | set(edges) | set(edges.values())
    who = recused(s, p)
    res = resolve(electors=electors, edges=edges, direct=direct, recused=who, max_depth=depth)
    return delegated_tally(res, electorate=electorate, rules=rules, edges=edges, recused=who)


def turnout(s: Session, p: Proposal) -> Turnout | None:
    """The weighted turnout of ``p``'s poll as votes arrive (None: the poll froze no delegation)."""
    assert p.id is not None
    edges, depth = frozen(s, p.id)
    if not depth:
        return None
    voted = s.exec(select(CurrentVote.member_id).where(CurrentVote.proposal_id == p.id)).all()
    return Turnout(edges=edges, voted=voted, recused=recused(s, p), max_depth=depth)
