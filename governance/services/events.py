"""Outbound events: webhook deliveries (an outbox written in the event's own transaction) and in-app
notifications. Delivery happens later, off the request path (governance/jobs/webhooks.py)."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlmodel import Session, col, select

from governance.audit.canonical import normalise
from governance.db.engine import read_session, write_session
from governance.db.models import (
    CurrentVote,
    Elector,
    Notification,
    Proposal,
    Webhook,
    WebhookAttempt,
    WebhookDelivery,
)
from governance.domain.errors import InvalidInput, NotFound, PermissionDenied
from governance.domain.jobs import parse_events
from governance.domain.review import ActorView
from governance.domain.roles import Role
from governance.services.audit import record
from governance.services.context import Ctx


def emit(s: Session, event: str, payload: dict[str, Any], now: datetime) -> int:
    """Queue ``event`` for every active webhook subscribed to it; returns how many deliveries were queued."""
    hooks = s.exec(select(Webhook.id, Webhook.events).where(col(Webhook.active).is_(True))).all()
    rows = [
        {
            "webhook_id": hid,
            "event": event,
            "payload": {"event": event, "at": now.isoformat(), "data": normalise(payload)},
            "state": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for hid, events in hooks
        if event in events
    ]
    if rows:
        s.execute(insert(WebhookDelivery), rows)
    return len(rows)


def notify(
    s: Session,
    member_ids: list[int],
    *,
    kind: str,
    message: str,
    proposal_id: int | None,
    dedupe_key: str,
    now: datetime,
) -> int:
    """In-app notifications; a (member, dedupe_key) pair is notified once."""
    if not member_ids:
        return 0
    seen = set(
        s.exec(
            select(Notification.member_id).where(
                Notification.dedupe_key == dedupe_key, col(Notification.member_id).in_(member_ids)
            )
        ).all()
    )
    rows = [
        {
            "member_id": m,
            "kind": kind,
            "message": message,
            "proposal_id": proposal_id,
            "dedupe_key": dedupe_key,
            "created_at": now,
        }
        for m in sorted(set(member_ids) - seen)
    ]
    if rows:
        s.execute(insert(Notification), rows)
    return len(rows)


def proposal_changed(s: Session, p: Proposal, from_state: str, now: datetime) -> None:
    """Webhooks and notifications for a proposal's state change (called by the proposal service)."""
    assert p.id is not None
    emit(
        s,
        "proposal.state_changed",
        {"proposal_id": p.id, "title": p.title, "from": from_state, "to": p.state},
        now,
    )
    notify(
        s,
        [p.proposer_id],
        kind="proposal",
        message=f"Your proposal #{p.id} '{p.title}' is now {p.state.replace('_', ' ')}.",
        proposal_id=p.id,
        dedupe_key=f"proposal:{p.id}:{p.state}:{p.council_round}",
        now=now,
    )
    if p.state == "voting":
        electors = list(s.exec(select(Elector.member_id).where(Elector.proposal_id == p.id)).all())
        deadline = p.voting_deadline.strftime("%Y-%m-%d %H:%M UTC") if p.voting_deadline else "the deadline"
        notify(
            s,
            electors,
            kind="vote_open",
            message=f"Vote open on #{p.id} '{p.title}' until {deadline}.",
            proposal_id=p.id,
            dedupe_key=f"vote_open:{p.id}:{p.council_round}",
            now=now,
        )


def remind_voters(ctx: Ctx, within_hours: float = 24.0) -> int:
    """Remind electors who have not voted that a vote closes within ``within_hours`` (once per vote)."""
    from datetime import timedelta

    now = ctx.clock.now()
    sent = 0
    with write_session(ctx.engine) as s:
        closing = s.exec(
            select(Proposal).where(
                Proposal.state == "voting",
                col(Proposal.voting_deadline) > now,
                col(Proposal.voting_deadline) <= now + timedelta(hours=within_hours),
            )
        ).all()
        for p in closing:
            assert p.id is not None and p.voting_deadline is not None
            voted = select(CurrentVote.member_id).where(CurrentVote.proposal_id == p.id)
            silent = list(
                s.exec(
                    select(Elector.member_id).where(
                        Elector.proposal_id == p.id, col(Elector.member_id).not_in(voted)
                    )
                ).all()
            )
            sent += notify(
                s,
                silent,
                kind="vote_reminder",
                message=f"The vote on #{p.id} '{p.title}' closes {p.voting_deadline:%Y-%m-%d %H:%M} UTC; "
                "you have not voted yet.",
                proposal_id=p.id,
                dedupe_key=f"vote_reminder:{p.id}",
                now=now,
            )
    return sent


# -- notifications, read side --------------------------------------------------------------------------------


def list_notifications(ctx: Ctx, member_id: int, unread_only: bool = False) -> list[dict[str, Any]]:
    with read_session(ctx.engine) as s:
        q = (
            select(Notification)
            .where(Notification.member_id == member_id)
            .order_by(col(Notification.id).desc())
        )
        if unread_only:
            q = q.where(col(Notification.read_at).is_(None))
        return [
            {
                "id": n.id,
                "kind": n.kind,
                "message": n.message,
                "proposal_id": n.proposal_id,
                "created_at": n.created_at,
                "read_at": n.read_at,
            }
            for n in s.exec(q.limit(200)).all()
        ]


def mark_read(ctx: Ctx, member_id: int, notification_id: int) -> None:
    with write_session(ctx.engine) as s:
        n = s.get(Notification, notification_id)
        if n is None or n.member_id != member_id:
            raise NotFound(f"no notification {notification_id} of yours")
        if n.read_at is None:
            n.read_at = ctx.clock.now()
            s.add(n)


# -- webhooks, management ------------------------------------------------------------------------------------


def _webhook_public(h: Webhook) -> dict[str, Any]:
    return {"id": h.id, "url": h.url, "events": h.events, "active": h.active, "created_at": h.created_at}


def _require_operator(actor: ActorView | None) -> None:
    if actor is not None and Role.ADMIN not in actor.roles:
        raise PermissionDenied("only an admin (or the operator's CLI) manages webhooks")


def add_webhook(
    ctx: Ctx, url: str, events: list[str], actor: ActorView | None = None, secret: str | None = None
) -> dict[str, Any]:
    """Register a webhook with the operator's secret (or a random one); returns it with the secret (shown
    once)."""
    _require_operator(actor)
    if secret is not None and not 16 <= len(secret) <= 200:
        raise InvalidInput("a webhook secret has 16 to 200 characters", field="secret")
    url = url.strip()
    if not url.startswith(("http://", "https://")) or len(url) > 2000 or " " in url:
        raise InvalidInput("the webhook URL must be an http(s) URL", field="url")
    subscribed = parse_events(events)
    secret = secret or "whsec_" + secrets.token_urlsafe(32)
    now = ctx.clock.now()
    with write_session(ctx.engine) as s:
        h = Webhook(
            url=url,
            secret=secret,
            events=subscribed,
            created_by=actor.member_id if actor else None,
            created_at=now,
        )
        s.add(h)
        s.flush()
        record(
            s,
            actor=actor.member_id if actor else None,
            action="webhook.added",
            subject=f"webhook:{h.id}",
            payload={"url": url, "events": subscribed},
            at=now,
        )
        return {**_webhook_public(h), "secret": secret}


def list_webhooks(ctx: Ctx, actor: ActorView | None = None) -> list[dict[str, Any]]:
    _require_operator(actor)
    with read_session(ctx.engine) as s:
        return [_webhook_public(h) for h in s.exec(select(Webhook).order_by(col(Webhook.id))).all()]


def remove_webhook(ctx: Ctx, webhook_id: int, actor: ActorView | None = None) -> None:
    _require_operator(actor)
    now = ctx.clock.now()
    with write_session(ctx.engine) as s:
        h = s.get(Webhook, webhook_id)
        if h is None:
            raise NotFound(f"no webhook {webhook_id}")
        h.active = False  # deliveries and their attempts stay on record
        s.add(h)
        record(
            s,
            actor=actor.member_id if actor else None,
            action="webhook.removed",
            subject=f"webhook:{webhook_id}",
            payload={},
            at=now,
        )


def deliveries(ctx: Ctx, webhook_id: int, actor: ActorView | None = None) -> list[dict[str, Any]]:
    _require_operator(actor)
    with read_session(ctx.engine) as s:
        rows = s.exec(
            select(WebhookDelivery)
            .where(WebhookDelivery.webhook_id == webhook_id)
            .order_by(col(WebhookDelivery.id))
        ).all()
        out = []
        for d in rows:
            attempts = s.exec(
                select(WebhookAttempt)
                .where(WebhookAttempt.delivery_id == d.id)
                .order_by(col(WebhookAttempt.id))
            ).all()
            out.append(
                {
                    "id": d.id,
                    "event": d.event,
                    "state": d.state,
                    "attempts": [
                        {
                            "at": a.at,
                            "status_code": a.status_code,
                            "error": a.error,
                            "duration_ms": a.duration_ms,
                        }
                        for a in attempts
                    ],
                    "delivered_at": d.delivered_at,
                }
            )
        return out
