"""Passwords and sign-in for the web UI.

Passwords are hashed with argon2id (argon2-cffi) into ``member.password_hash``; ``commons member password``
sets one, a member changes their own on their page, and an admin's invitation link lets a new member choose
one. A session is a row (``ui_session``) that the browser's cookie names by a random token: signing out
deletes it, so a copied cookie dies with the session; it remembers a fingerprint of the member's password
hash, so setting a new password ends every other session. ``LoginLimiter`` refuses sign-in after repeated
failures per handle, per address and overall; the failures are rows (``login_attempt``), so the limits hold
across restarts and across the processes of one deployment.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete
from sqlmodel import col, select

from governance.db.base import utcnow
from governance.db.engine import read_session, write_session
from governance.db.models import LoginAttempt, Member, UiSession
from governance.domain.errors import InvalidInput, NotFound, PermissionDenied
from governance.domain.review import ActorView
from governance.services.audit import record
from governance.services.context import Ctx
from governance.services.members import roles_of

MIN_PASSWORD = 10
MAX_PASSWORD = 1024

_hasher = PasswordHasher()


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    # verified against when the handle is unknown, so that a miss costs as much as a wrong password
    return _hasher.hash("commons: no such member")


def fingerprint(password_hash: str | None) -> str:
    """A short digest of the stored hash: it changes whenever the password does."""
    return hashlib.sha256((password_hash or "").encode()).hexdigest()[:16]


def check_password_rules(password: str, field: str = "password") -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"a password has at least {MIN_PASSWORD} characters", field=field)
    if len(password) > MAX_PASSWORD:
        raise InvalidInput(f"a password has at most {MAX_PASSWORD} characters", field=field)
    if not password.strip():
        raise InvalidInput("a password cannot be only spaces", field=field)


def set_password(ctx: Ctx, member_id: int, password: str, actor: ActorView | None = None) -> str:
    """Set a member's password (``actor`` None: the operator or a valid invitation). Returns the fingerprint."""
    if actor is not None and actor.member_id != member_id:
        raise PermissionDenied("you may only set your own password")
    check_password_rules(password)
    hashed = _hasher.hash(password)
    with write_session(ctx.engine) as s:
        m = s.get(Member, member_id)
        if m is None:
            raise NotFound(f"no member {member_id}")
        m.password_hash = hashed
        s.add(m)
        record(
            s,
            at=ctx.clock.now(),
            actor=actor.member_id if actor is not None else None,
            action="member.password_set",
            subject=f"member:{member_id}",
            payload={},
        )
    return fingerprint(hashed)


def change_password(ctx: Ctx, actor: ActorView, current: str, new: str) -> str:
    """A signed-in member changes their password; the current one is checked first."""
    if actor.member_id is None:
        raise PermissionDenied("only a member has a password")
    with read_session(ctx.engine) as s:
        m = s.get(Member, actor.member_id)
        stored = m.password_hash if m is not None else None
    if not stored or not _verify(stored, current):
        raise InvalidInput("the current password is not right", field="current_password")
    return set_password(ctx, actor.member_id, new, actor)


def _verify(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class SignedIn:
    member_id: int
    fingerprint: str


def login(ctx: Ctx, handle: str, password: str) -> SignedIn | None:
    """The member whose handle and password these are, or None (unknown, inactive, no password, wrong)."""
    with read_session(ctx.engine) as s:
        m = s.exec(select(Member).where(Member.handle == handle.strip().lower())).first()
    if m is None or m.id is None or not m.active or not m.password_hash:
        _verify(_dummy_hash(), password)
        return None
    if not _verify(m.password_hash, password):
        return None
    stored = m.password_hash
    if _hasher.check_needs_rehash(stored):
        with write_session(ctx.engine) as s:
            row = s.get(Member, m.id)
            if row is not None and row.password_hash == stored:
                row.password_hash = stored = _hasher.hash(password)
                s.add(row)
    return SignedIn(m.id, fingerprint(stored))


@dataclass(frozen=True)
class SessionMember:
    actor: ActorView
    handle: str
    display_name: str
    session_key: str = ""  # the session's token hash: what the CSRF token is bound to


SESSION_LIFETIME = timedelta(days=7)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(ctx: Ctx, grant: SignedIn) -> str:
    """A new server-side session for a member who just signed in; returns the token the cookie carries.
    Sessions live on wall-clock time (not the community's clock): they are security bookkeeping."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    with write_session(ctx.engine) as s:
        # a member's expired sessions go when they sign in again
        s.connection().execute(
            delete(UiSession).where(
                col(UiSession.member_id) == grant.member_id, col(UiSession.expires_at) <= now
            )
        )
        s.add(
            UiSession(
                token_hash=_token_hash(token),
                member_id=grant.member_id,
                password_fp=grant.fingerprint,
                created_at=now,
                expires_at=now + SESSION_LIFETIME,
            )
        )
    return token


def end_session(ctx: Ctx, token: str) -> None:
    """Sign out: the session's row goes, so its cookie (and any copy of it) no longer signs anyone in."""
    with write_session(ctx.engine) as s:
        s.connection().execute(delete(UiSession).where(col(UiSession.token_hash) == _token_hash(token)))


def session_member(ctx: Ctx, token: str) -> SessionMember | None:
    """Who a session's token stands for, or None: no such session (signed out, forged), expired, the member
    left, or their password changed since."""
    key = _token_hash(token)
    with read_session(ctx.engine) as s:
        row = s.exec(select(UiSession).where(UiSession.token_hash == key)).first()
        if row is None or row.expires_at <= utcnow():
            return None
        m = s.get(Member, row.member_id)
        if (
            m is None
            or not m.active
            or not m.password_hash
            or fingerprint(m.password_hash) != row.password_fp
        ):
            return None
        return SessionMember(
            ActorView(row.member_id, roles_of(s, row.member_id)), m.handle, m.display_name, key
        )


def invitation_fingerprint(ctx: Ctx, member_id: int) -> str:
    """What an invitation link binds to: the member's current password (none yet, for a new member)."""
    with read_session(ctx.engine) as s:
        m = s.get(Member, member_id)
        if m is None:
            raise NotFound(f"no member {member_id}")
        return fingerprint(m.password_hash)


class LoginLimiter:
    """Failed sign-ins in the last ``window``: at most ``per_handle`` for one handle, ``per_address`` from one
    address, ``overall`` in all (a slow, wide guessing run). Stored as ``login_attempt`` rows, on the
    community's clock (``ctx.clock``), so the limits survive a restart."""

    def __init__(
        self,
        ctx: Ctx,
        per_handle: int = 5,
        per_address: int = 20,
        overall: int = 500,
        window: timedelta = timedelta(minutes=15),
    ) -> None:
        self.ctx, self.window = ctx, window
        self.per_handle, self.per_address, self.overall = per_handle, per_address, overall

    def retry_after(self, handle: str, address: str, now: datetime) -> timedelta | None:
        """How long to wait before trying again, or None when this handle and address may try now."""
        since = now - self.window
        handle, address = handle[:64], address[:64]
        with read_session(self.ctx.engine) as s:
            recent = select(LoginAttempt.at).where(col(LoginAttempt.at) > since)
            waits: list[datetime] = []
            for q, limit in (
                (recent.where(LoginAttempt.handle == handle), self.per_handle),
                (recent.where(LoginAttempt.address == address), self.per_address),
                (recent, self.overall),
            ):
                # the limit-th most recent failure: once it leaves the window, one more try is allowed
                at = s.exec(q.order_by(col(LoginAttempt.at).desc()).offset(limit - 1).limit(1)).first()
                if at is not None:
                    waits.append(at + self.window)
        return max(waits) - now if waits else None

    def failed(self, handle: str, address: str, now: datetime) -> None:
        with write_session(self.ctx.engine) as s:
            s.add(LoginAttempt(handle=handle[:64], address=address[:64], at=now))
            # the table holds one window: older rows are dropped as new ones come
            s.connection().execute(delete(LoginAttempt).where(col(LoginAttempt.at) <= now - self.window))

    def succeeded(self, handle: str, address: str) -> None:
        """A right password clears this handle's failures (the address's and the overall ones stay)."""
        with write_session(self.ctx.engine) as s:
            s.connection().execute(delete(LoginAttempt).where(col(LoginAttempt.handle) == handle[:64]))
