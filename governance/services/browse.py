"""Read models for the web UI's pages: who is who, what needs a member now, a proposal's timeline, the audit
log with filters and an entry's proof. Reads only; every change goes through the other services."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_
from sqlmodel import col, select

from governance.audit import log as audit_log
from governance.audit import merkle
from governance.audit.keys import checkpoint_json, signing_key
from governance.audit.models import AuditEntryRow
from governance.db.engine import read_session
from governance.db.models import CurrentVote, Member, MemberRole, Proposal, ProposalEvent, VoteRecord
from governance.domain.proposals import Action, ProposalState
from governance.domain.review import ActorView, allowed
from governance.schemas import ProposalPublic, VotePublic
from governance.services import comments, lifecycle, proposals
from governance.services.context import Ctx

S = ProposalState
OPEN_STATES = (S.DRAFT, S.SUBMITTED, S.TRIAGE, S.VOTING, S.COUNCIL_REVIEW, S.APPEAL_WINDOW)


def names(ctx: Ctx, ids: set[int | None] | list[int | None]) -> dict[int, str]:
    """Handles of the members with these ids."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    with read_session(ctx.engine) as s:
        rows = s.exec(select(Member.id, Member.handle).where(col(Member.id).in_(wanted))).all()
        return {mid: handle for mid, handle in rows if mid is not None}


def my_vote(ctx: Ctx, proposal_id: int, member_id: int | None) -> VotePublic | None:
    """The vote of this member that counts now (shown to the member only, secret tally or not)."""
    if member_id is None:
        return None
    with read_session(ctx.engine) as s:
        cur = s.get(CurrentVote, (proposal_id, member_id))
        if cur is None:
            return None
        rec = s.get(VoteRecord, cur.record_id)
        return VotePublic(
            proposal_id=proposal_id,
            member_id=member_id,
            choice=cur.choice,
            reason=rec.reason if rec is not None else None,
            cast_at=cur.cast_at,
        )


@dataclass
class Dashboard:
    """What needs this member now, by role."""

    triage: list[ProposalPublic] = field(default_factory=list)
    votes_to_cast: list[ProposalPublic] = field(default_factory=list)
    votes_cast: list[ProposalPublic] = field(default_factory=list)
    council: list[ProposalPublic] = field(default_factory=list)
    appeals: list[ProposalPublic] = field(default_factory=list)
    drafts: list[ProposalPublic] = field(default_factory=list)
    mine_open: list[ProposalPublic] = field(default_factory=list)
    open_count: int = 0
    reported_comments: list[comments.ReportedComment] = field(default_factory=list)  # reviewers' queue


def dashboard(ctx: Ctx, actor: ActorView, limit: int = 500) -> Dashboard:
    """Open proposals, sorted into what the domain allows this member to do with each."""
    now = ctx.clock.now()
    out = Dashboard()
    with read_session(ctx.engine) as s:
        rows = s.exec(
            select(Proposal)
            .where(col(Proposal.state).in_([st.value for st in OPEN_STATES]))
            .where(or_(col(Proposal.state) != S.DRAFT.value, col(Proposal.proposer_id) == actor.member_id))
            .order_by(col(Proposal.id).desc())
            .limit(limit)
        ).all()
        out.open_count = len(rows)
        for p in rows:
            pub = proposals.to_public(p)
            view = lifecycle.proposal_view(s, p, actor, None)
            if p.proposer_id == actor.member_id:
                (out.drafts if p.state == S.DRAFT.value else out.mine_open).append(pub)
            if allowed(view, actor, Action.TRIAGE_APPROVE, now) or allowed(
                view, actor, Action.TRIAGE_REJECT, now
            ):
                out.triage.append(pub)
            if allowed(view, actor, Action.VOTE, now):
                (out.votes_cast if view.actor_has_voted else out.votes_to_cast).append(pub)
            if allowed(view, actor, Action.RATIFY, now):
                out.council.append(pub)
            if allowed(view, actor, Action.APPEAL, now):
                out.appeals.append(pub)
    out.votes_to_cast.sort(key=lambda p: p.voting_deadline or now)
    out.reported_comments = comments.reported(ctx, actor)
    return out


@dataclass
class TimelineItem:
    at: datetime
    action: str
    actor_id: int | None
    from_state: str | None = None
    to_state: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    seq: int | None = None  # the audit entry that records it


def timeline(ctx: Ctx, proposal_id: int, hide_choices: bool) -> list[TimelineItem]:
    """Every stage of a proposal: its readable history joined to the audit entries that record it, plus the
    audited events the history does not hold (votes, comments). ``hide_choices`` while a secret vote is open."""
    subject = f"proposal:{proposal_id}"
    with read_session(ctx.engine) as s:
        history = s.exec(
            select(ProposalEvent)
            .where(ProposalEvent.proposal_id == proposal_id)
            .order_by(col(ProposalEvent.id))
        ).all()
        entries = audit_log.entries_for_subject(s, subject)
    by_action: dict[str, list[ProposalEvent]] = defaultdict(list)
    for e in history:
        by_action[f"proposal.{e.action}"].append(e)
    revealed = {  # a hidden tally's choices, revealed into the log when its vote closed
        v["seq"]: v["choice"]
        for entry in entries
        if entry.action == lifecycle.REVEAL_ACTION
        for v in entry.payload.get("votes", [])
    }
    items: list[TimelineItem] = []
    for entry in entries:
        actor_id = _member_id(entry.actor)
        queue = by_action.get(entry.action)
        if queue:
            e = queue.pop(0)
            payload = {k: v for k, v in e.payload.items() if k not in ("reason", "rationale", "evidence")}
            items.append(
                TimelineItem(
                    at=e.at,
                    action=e.action,
                    actor_id=e.actor_id,
                    from_state=e.from_state,
                    to_state=e.to_state,
                    details=_brief(payload),
                    reason=e.payload.get("reason"),
                    seq=entry.seq,
                )
            )
            continue
        details = {k: v for k, v in entry.payload.items() if k not in ("from", "to")}
        if entry.action in lifecycle.VOTE_ACTIONS and revealed.get(entry.seq):
            details["choice"] = revealed[entry.seq]
        if entry.action == lifecycle.REVEAL_ACTION:
            details = {"votes": len(details.get("votes", []))}
        if hide_choices and entry.action in lifecycle.VOTE_ACTIONS:
            details.pop("choice", None)
        items.append(
            TimelineItem(
                at=entry.timestamp,
                action=entry.action.removeprefix("proposal."),
                actor_id=actor_id,
                details=_brief(details),
                seq=entry.seq,
            )
        )
    for queue in by_action.values():  # history without an audit entry (none expected); shown all the same
        for e in queue:
            items.append(TimelineItem(e.at, e.action, e.actor_id, e.from_state, e.to_state))
    items.sort(key=lambda i: (i.at, i.seq if i.seq is not None else -1))
    return items


def _member_id(actor: str | None) -> int | None:
    if actor and actor.startswith("member:"):
        try:
            return int(actor.split(":", 1)[1])
        except ValueError:
            return None
    return None


def _brief(payload: dict[str, Any]) -> dict[str, Any]:
    keep: dict[str, Any] = {}
    for k, v in payload.items():
        if k in ("actor", "record", "comment", "acceptance_tests", "title", "kind") or v in (None, [], {}):
            continue
        if k in MEMBER_KEYS and isinstance(v, list) and all(isinstance(x, int) for x in v):
            keep[k] = v  # member ids: the page names them by handle
        else:
            keep[k] = v if isinstance(v, str | int | float | bool) else json.dumps(v, sort_keys=True)
    return keep


#: timeline details that hold member ids (council decisions, support for a cancellation)
MEMBER_KEYS = ("ratify", "veto", "support", "member")


@dataclass
class AuditRow:
    seq: int
    at: datetime
    actor: str | None
    action: str
    subject: str
    payload: dict[str, Any]


@dataclass
class AuditPage:
    rows: list[AuditRow]
    tree_size: int
    next_before: int | None  # pass as ``before`` for the next (older) page
    actions: list[str]
    newer_after: int | None = None  # pass as ``after`` for the previous (newer) page


def audit_search(
    ctx: Ctx,
    *,
    action: str | None = None,
    actor: str | None = None,
    subject: str | None = None,
    before: int | None = None,
    limit: int = 50,
    text: str | None = None,
    after: int | None = None,
) -> AuditPage:
    """Newest first. ``action`` matches a prefix ("proposal." for every proposal event), ``subject`` and
    ``actor`` match exactly (``member:3``, ``proposal:12``, ``system``); ``text`` is found anywhere in the
    entry (its actor, action, subject or payload: free text is stored as salted hashes, so it finds names,
    targets, versions, not what was written in a reason), case-insensitively. Pages: ``before`` (older
    than) or ``after`` (newer than) a sequence number."""
    limit = max(1, min(limit, 200))

    def filtered(q: Any) -> Any:
        if action:
            q = q.where(col(AuditEntryRow.action).startswith(action, autoescape=True))
        if actor:
            q = q.where(AuditEntryRow.actor == actor)
        if subject:
            q = q.where(AuditEntryRow.subject == subject)
        if needle := (text or "").strip().lower():  # the audit text filter
            q = q.where(func.lower(col(AuditEntryRow.body)).contains(needle, autoescape=True))
        return q

    with read_session(ctx.engine) as s:
        if after is not None and before is None:  # the newer page: the ``limit`` entries just after ``after``
            q = filtered(select(AuditEntryRow)).where(AuditEntryRow.seq > after)
            found = list(reversed(s.exec(q.order_by(col(AuditEntryRow.seq).asc()).limit(limit)).all()))
        else:
            q = filtered(select(AuditEntryRow)).order_by(col(AuditEntryRow.seq).desc()).limit(limit)
            if before is not None:
                q = q.where(AuditEntryRow.seq < before)
            found = list(s.exec(q).all())

        def exists(cond: Any) -> bool:
            return s.exec(filtered(select(AuditEntryRow.seq)).where(cond).limit(1)).first() is not None

        older = bool(found) and exists(AuditEntryRow.seq < found[-1].seq)
        newer = bool(found) and exists(AuditEntryRow.seq > found[0].seq)
        size = audit_log.tree_head(s).size
        actions = sorted(
            a for a in s.exec(select(AuditEntryRow.action).group_by(col(AuditEntryRow.action))).all()
        )
    rows = []
    for r in found:
        e = audit_log._public(r)
        rows.append(AuditRow(e.seq, e.timestamp, e.actor, e.action, e.subject, e.payload))
    nxt = rows[-1].seq if older else None
    return AuditPage(rows, size, nxt, actions, rows[0].seq if newer else None)


@dataclass
class EntryProof:
    seq: int
    entry: dict[str, Any]
    body: str  # the canonical entry bytes, as text: what is hashed into the leaf
    leaf_hash: str
    tree_size: int
    root_hash: str
    proof: list[str]
    checkpoint: str  # the signed note
    verifier_key: str
    verified: bool  # checked on the server too, with the same algorithm the page runs


def audit_entry(ctx: Ctx, seq: int) -> EntryProof:
    with read_session(ctx.engine) as s:
        found = audit_log.get_entry(s, seq)
        proof = audit_log.inclusion_proof(s, seq)
    cp = checkpoint_json(ctx.settings, proof.tree_size, proof.root_hash)
    ok = merkle.leaf_hash(found.body.encode("utf-8")) == proof.leaf_hash and merkle.verify_inclusion(
        seq, proof.tree_size, proof.leaf_hash, proof.hashes, proof.root_hash
    )
    return EntryProof(
        seq=seq,
        entry=found.to_json()["entry"],
        body=found.body,
        leaf_hash=proof.leaf_hash.hex(),
        tree_size=proof.tree_size,
        root_hash=proof.root_hash.hex(),
        proof=[h.hex() for h in proof.hashes],
        checkpoint=str(cp["checkpoint"]),
        verifier_key=signing_key(ctx.settings).verifier.encode(),
        verified=ok,
    )


@dataclass
class RoleGrant:
    role: str
    granted_at: datetime
    granted_by: int | None
    election_id: int | None  # set when an election granted it


def role_grants(ctx: Ctx, member_ids: list[int]) -> dict[int, list[RoleGrant]]:
    with read_session(ctx.engine) as s:
        rows = s.exec(
            select(MemberRole).where(col(MemberRole.member_id).in_(member_ids)).order_by(col(MemberRole.role))
        ).all()
    out: dict[int, list[RoleGrant]] = defaultdict(list)
    for r in rows:
        out[r.member_id].append(RoleGrant(r.role, r.granted_at, r.granted_by, r.election_id))
    return out


def known_categories(ctx: Ctx, limit: int = 200) -> list[str]:
    """Category names earlier proposals named (offered in the target picker)."""
    with read_session(ctx.engine) as s:
        rows = s.exec(
            select(Proposal.target)
            .where(Proposal.target_kind == "category")
            .order_by(col(Proposal.id).desc())
            .limit(limit)
        ).all()
    return sorted({str(t["category"]) for t in rows if isinstance(t, dict) and t.get("category")})


def count_proposals(ctx: Ctx) -> int:
    with read_session(ctx.engine) as s:
        return int(s.exec(select(func.count()).select_from(Proposal)).one())
