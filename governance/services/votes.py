"""Casting votes, in batches: one transaction records many votes and their audit entries.

``cast_votes`` is the only way a vote is stored. Each vote is checked by the domain on its own (a refused vote
gets its own error and changes nothing); the accepted ones are written together, so a burst of votes costs one
transaction, one lock of the proposal and of the audit head, and a few multi-row statements instead of a
dozen statements per vote. ``VoteBatcher`` gathers the votes that arrive while a batch is being written
(group commit); with one vote at a time it degenerates to a transaction per vote.

One client cannot break other people's votes: every vote is checked (:func:`check_request`: the choice, a
bounded proposal id, a reason without NUL and within its length) before it joins a batch, and if a batch's
transaction fails all the same, its votes are written again one by one, so that a bad vote fails alone.

While a poll with a hidden tally (``secret_tally``) is open, a vote's audit entry commits to its choice (and
to its reason, empty or not, so that the presence of a reason says nothing) as salted hashes; the lifecycle
reveals the choices into the log when the poll closes (``lifecycle.reveal_votes``).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from governance.bounds import is_id
from governance.db import delegation as delegation_db
from governance.db.engine import write_session
from governance.db.models import CurrentVote, Elector, Proposal, VoteRecord
from governance.domain.errors import DomainError, InvalidInput, NotAuthenticated, NotFound
from governance.domain.proposals import Action
from governance.domain.review import SYSTEM, ActorView, decide
from governance.domain.voting import VoteChoice, parse_vote
from governance.schemas import VotePublic
from governance.services import lifecycle, members
from governance.services.audit import entry, record_many
from governance.services.context import Ctx

log = logging.getLogger("commons.votes")


@dataclass(frozen=True)
class VoteRequest:
    """A vote to cast: by a known ``actor``, or by whoever holds ``token`` (resolved with the batch)."""

    proposal_id: int
    actor: ActorView | None
    choice: str
    reason: str | None = None
    token: str | None = None


@dataclass
class VoteOutcome:
    vote: VotePublic | None = None
    error: BaseException | None = None  # a DomainError, or what failed the vote's own transaction


def check_request(r: VoteRequest) -> tuple[VoteChoice, str | None]:
    """Everything about a vote that can be checked without the database; raises the DomainError to answer."""
    if not is_id(r.proposal_id):  # an id no table can hold (governance/bounds.py)
        raise NotFound(f"no proposal {r.proposal_id}")
    if not isinstance(r.choice, str) or not (r.reason is None or isinstance(r.reason, str)):
        raise InvalidInput("a vote's choice and reason are text", field="choice")
    return parse_vote(r.choice, r.reason)


def cast_votes(ctx: Ctx, requests: list[VoteRequest]) -> list[VoteOutcome]:
    now = ctx.clock.now()
    requests = list(requests)  # token requests get their actor filled in
    outcomes = [VoteOutcome() for _ in requests]
    parsed: dict[int, tuple[VoteChoice, str | None]] = {}
    by_proposal: dict[int, list[int]] = defaultdict(list)
    for i, r in enumerate(requests):
        try:
            parsed[i] = check_request(r)
        except DomainError as exc:
            outcomes[i].error = exc
            continue
        by_proposal[r.proposal_id].append(i)
    if not by_proposal:
        return outcomes
    with write_session(ctx.engine) as s:
        tokens = [r.token for r in requests if r.actor is None and r.token]
        if tokens:  # one query authenticates every token of the batch
            actors = members.authenticate_many(s, tokens, now=now)
            for i, r in enumerate(requests):
                if r.actor is None:
                    actor = actors.get(r.token or "")
                    if actor is None:
                        outcomes[i].error = NotAuthenticated("the API token is unknown or revoked")
                        by_proposal[r.proposal_id].remove(i)
                    else:
                        requests[i] = replace(r, actor=actor)
        for pid, idxs in by_proposal.items():
            if idxs:
                _cast_on_proposal(s, ctx, pid, idxs, requests, parsed, outcomes, now)
    return outcomes


def _cast_on_proposal(
    s: Session,
    ctx: Ctx,
    pid: int,
    idxs: list[int],
    requests: list[VoteRequest],
    parsed: dict[int, tuple[VoteChoice, str | None]],
    outcomes: list[VoteOutcome],
    now: datetime,
) -> None:
    try:
        p: Proposal = lifecycle.load_proposal(s, pid, lock=True)
    except DomainError as exc:
        for i in idxs:
            outcomes[i].error = exc
        return
    voters = {_actor(requests[i]).member_id for i in idxs} - {None}
    electors = set(
        s.exec(
            select(Elector.member_id).where(Elector.proposal_id == pid, col(Elector.member_id).in_(voters))
        ).all()
    )
    voted = set(
        s.exec(
            select(CurrentVote.member_id).where(
                CurrentVote.proposal_id == pid, col(CurrentVote.member_id).in_(voters)
            )
        ).all()
    )
    # the snapshot without per-actor queries (EDIT loads nothing extra); sizes in one round trip
    electorate_size, turnout = s.exec(
        select(
            select(func.count()).select_from(Elector).where(Elector.proposal_id == pid).scalar_subquery(),
            select(func.count())
            .select_from(CurrentVote)
            .where(CurrentVote.proposal_id == pid)
            .scalar_subquery(),
        )
    ).one()
    base = replace(lifecycle.proposal_view(s, p, SYSTEM, Action.EDIT), electorate_size=electorate_size)
    weight = delegation_db.turnout(s, p)  # None: the poll froze no delegation
    if weight is not None:
        turnout = weight.total
    accepted: list[tuple[int, bool]] = []  # (request index, was a change of vote)
    events = []
    for i in idxs:
        actor = _actor(requests[i])
        mid = actor.member_id
        view = replace(
            base,
            voting_deadline=p.voting_deadline,
            deadline_extended=p.deadline_extended,
            turnout=turnout,
            actor_is_elector=mid in electors,
            actor_has_voted=mid in voted,
            turnout_gain=weight.gain(mid) if weight is not None and mid is not None else None,
        )
        try:
            d = decide(view, actor, Action.VOTE, now, ctx.policy)
        except DomainError as exc:
            outcomes[i].error = exc
            continue
        assert mid is not None
        accepted.append((i, mid in voted))
        if weight is not None:
            turnout += view.turnout_gain or 0
            weight.add(mid)
        elif mid not in voted:
            turnout += 1
        voted.add(mid)
        if d.updates:  # a late quorum extends the deadline (once); later votes must see it
            lifecycle.apply_updates(p, d.updates)
        events.extend(d.events[1:])  # the vote itself is recorded below, with its choice
    if not accepted:
        return
    rows: list[dict[str, Any]] = [
        {
            "proposal_id": pid,
            "member_id": _actor(requests[i]).member_id,
            "choice": parsed[i][0].value,
            "reason": parsed[i][1],
            "cast_at": now,
        }
        for i, _ in accepted
    ]
    ids = s.connection().execute(_INSERT_RECORDS, rows).scalars().all()
    latest: dict[int, dict[str, Any]] = {}
    for row, rid in zip(rows, ids, strict=True):
        latest[row["member_id"]] = {
            "proposal_id": pid,
            "member_id": row["member_id"],
            "record_id": rid,
            "choice": row["choice"],
            "cast_at": now,
        }
    _upsert_current(s, list(latest.values()))
    audit_entries = []
    for (i, changed), row, rid in zip(accepted, rows, ids, strict=True):
        payload: dict[str, Any] = {"choice": row["choice"], "record": rid}
        secret: dict[str, str] | None = {"reason": row["reason"]} if row["reason"] else None
        if p.secret_tally:  # hidden until the close: commit to the choice and to a reason, empty or not
            payload = {"record": rid}
            secret = {"choice": row["choice"], "reason": row["reason"] or ""}
        audit_entries.append(
            entry(
                actor=row["member_id"],
                action="proposal.vote_changed" if changed else "proposal.vote_cast",
                subject=f"proposal:{pid}",
                payload=payload,
                sensitive=secret,
                at=now,
            )
        )
        outcomes[i].vote = VotePublic(
            proposal_id=pid,
            member_id=row["member_id"],
            choice=row["choice"],
            reason=row["reason"],
            cast_at=now,
        )
    record_many(s, audit_entries)
    if events:
        lifecycle.record_vote_events(s, p, events, now)


def cast_isolated(ctx: Ctx, requests: list[VoteRequest]) -> list[VoteOutcome]:
    """``cast_votes`` in one transaction; if that transaction fails, each vote again in a transaction of its
    own, so that whatever broke the batch fails alone and the other votes land."""
    try:
        with _WRITER_LOCK:
            return cast_votes(ctx, requests)
    except Exception as exc:
        if len(requests) == 1:
            return [VoteOutcome(error=exc)]
        log.warning(
            "vote batch of %d failed (%s: %s); casting its votes one by one",
            len(requests),
            type(exc).__name__,
            exc,
        )
    outcomes = []
    for r in requests:
        try:
            with _WRITER_LOCK:
                outcomes += cast_votes(ctx, [r])
        except Exception as exc:
            outcomes.append(VoteOutcome(error=exc))
    return outcomes


def _actor(r: VoteRequest) -> ActorView:
    assert r.actor is not None  # token requests were resolved first
    return r.actor


_RECORD_TABLE = VoteRecord.__table__  # type: ignore[attr-defined]
_CURRENT_TABLE = CurrentVote.__table__  # type: ignore[attr-defined]
# Core statements, built once: the vote path runs them for every batch
_INSERT_RECORDS = insert(_RECORD_TABLE).returning(_RECORD_TABLE.c.id, sort_by_parameter_order=True)


def _upsert(dialect: Any) -> Any:
    stmt: Any = dialect.insert(_CURRENT_TABLE)
    return stmt.on_conflict_do_update(
        index_elements=["proposal_id", "member_id"],
        set_={
            "record_id": stmt.excluded.record_id,
            "choice": stmt.excluded.choice,
            "cast_at": stmt.excluded.cast_at,
        },
    )


_UPSERT_CURRENT = {"postgresql": _upsert(postgresql), "sqlite": _upsert(sqlite)}


def _upsert_current(s: Session, rows: list[dict[str, Any]]) -> None:
    """Insert or replace each member's current vote; the primary key keeps one per member and proposal."""
    s.connection().execute(_UPSERT_CURRENT[s.get_bind().dialect.name], rows)


_WRITER_LOCK = threading.Lock()  # inline batches and thread batches never write at once
Resolve = Callable[[VotePublic | None, BaseException | None], None]


class VoteBatcher:
    """Group commit for votes: a single thread writes every vote that arrived while the previous batch was
    being written. Callers wait on a thread future (``cast``) or an asyncio future (``cast_async``); the
    async path lets the vote endpoint run on the event loop without a thread per request."""

    def __init__(self, ctx: Ctx, max_batch: int = 128, inline: bool = False) -> None:
        self.ctx, self.max_batch, self.inline = ctx, max_batch, inline
        self._pending: list[tuple[VoteRequest, asyncio.Future[VotePublic]]] = []
        self._queue: queue.SimpleQueue[tuple[VoteRequest, Resolve] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def cast(self, request: VoteRequest, timeout: float = 60.0) -> VotePublic:
        check_request(request)  # a vote that cannot be stored is refused before it joins a batch
        fut: Future[VotePublic] = Future()

        def resolve(vote: VotePublic | None, error: BaseException | None) -> None:
            if error is not None:
                fut.set_exception(error)
            else:
                assert vote is not None
                fut.set_result(vote)

        self._submit(request, resolve)
        return fut.result(timeout=timeout)

    async def cast_async(self, request: VoteRequest) -> VotePublic:
        check_request(request)  # a vote that cannot be stored is refused before it joins a batch
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[VotePublic] = loop.create_future()
        if self.inline:
            # SQLite: write the votes that arrived in this turn of the event loop right here, in one batch,
            # without handing them to a thread (no GIL hand-offs between the loop and a writer thread)
            self._pending.append((request, fut))
            if len(self._pending) == 1:
                loop.call_soon(self._drain_inline)
            return await fut

        def settle(vote: VotePublic | None, error: BaseException | None) -> None:
            if fut.done():
                return
            if error is not None:
                fut.set_exception(error)
            else:
                fut.set_result(vote)  # type: ignore[arg-type]

        def resolve(vote: VotePublic | None, error: BaseException | None) -> None:
            loop.call_soon_threadsafe(settle, vote, error)

        self._submit(request, resolve)
        return await fut

    def _drain_inline(self) -> None:
        batch, self._pending = self._pending, []
        outcomes = cast_isolated(self.ctx, [req for req, _ in batch])
        for (_, fut), out in zip(batch, outcomes, strict=True):
            if fut.done():
                continue
            if out.error is not None:
                fut.set_exception(out.error)
            else:
                fut.set_result(out.vote)  # type: ignore[arg-type]

    def _submit(self, request: VoteRequest, resolve: Resolve) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="commons-votes", daemon=True)
                self._thread.start()
        self._queue.put((request, resolve))

    def stop(self) -> None:
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            try:
                outcomes = cast_isolated(self.ctx, [req for req, _ in batch])
            except (
                BaseException
            ) as exc:  # not even one by one (e.g. interrupted): nothing of this batch was written
                log.warning("vote batch of %d failed: %s", len(batch), exc)
                for _, resolve in batch:
                    resolve(None, exc)
                continue
            for (_, resolve), out in zip(batch, outcomes, strict=True):
                resolve(out.vote, out.error)


def cast(ctx: Ctx, request: VoteRequest) -> VotePublic:
    """Cast one vote: through the service's batcher when it runs one, else in a transaction of its own."""
    batcher: VoteBatcher | None = ctx.vote_batcher
    if batcher is not None:
        return batcher.cast(request)
    (out,) = cast_votes(ctx, [request])
    if out.error is not None:
        raise out.error
    assert out.vote is not None
    return out.vote


async def cast_async(ctx: Ctx, request: VoteRequest) -> VotePublic:
    """``cast`` for the event loop: awaits the batcher (or a worker thread when there is none)."""
    batcher: VoteBatcher | None = ctx.vote_batcher
    if batcher is not None:
        return await batcher.cast_async(request)
    return await asyncio.to_thread(cast, ctx, request)
