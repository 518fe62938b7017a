"""Every change is recorded in the tamper-evident audit log in the same transaction (governance/audit)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from governance.audit import log as audit_log
from governance.audit.canonical import normalise

jsonable = normalise  # plain JSON: timestamps as ISO-8601 text, floats as exact decimal text


def record(
    session: Session,
    *,
    actor: int | None,
    action: str,
    subject: str,
    payload: dict[str, Any],
    sensitive: dict[str, str] | None = None,
    at: datetime | None = None,
) -> None:
    audit_log.append_many(
        session,
        [entry(actor=actor, action=action, subject=subject, payload=payload, sensitive=sensitive, at=at)],
    )


def entry(
    *,
    actor: int | None,
    action: str,
    subject: str,
    payload: dict[str, Any],
    sensitive: dict[str, str] | None = None,
    at: datetime | None = None,
) -> audit_log.NewEntry:
    """An audit entry for ``record_many``; members are written ``member:<id>``, the system ``system``."""
    return audit_log.NewEntry(
        actor=f"member:{actor}" if actor is not None else "system",
        action=action,
        subject=subject,
        payload=payload,
        sensitive=sensitive or None,
        at=at,
    )


def record_many(session: Session, entries: list[audit_log.NewEntry]) -> None:
    audit_log.append_many(session, entries)
