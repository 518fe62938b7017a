"""Passwords and sign-in for the web UI.

Passwords are hashed with argon2id (argon2-cffi) into ``member.password_hash``; ``commons member password``
sets one, a member changes their own on their page, and an admin's invitation link lets a new member choose
one. A session remembers the member and a fingerprint of their password hash, so setting a new password ends
every other session. ``LoginLimiter`` refuses sign-in after repeated failures per handle and address.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlmodel import select

from governance.db.engine import read_session, write_session
from governance.db.models import Member
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


def session_member(ctx: Ctx, member_id: int, fp: str) -> SessionMember | None:
    """Who a session stands for, or None when the member left or their password changed since."""
    with read_session(ctx.engine) as s:
        m = s.get(Member, member_id)
        if m is None or not m.active or not m.password_hash or fingerprint(m.password_hash) != fp:
            return None
        return SessionMember(ActorView(member_id, roles_of(s, member_id)), m.handle, m.display_name)


def invitation_fingerprint(ctx: Ctx, member_id: int) -> str:
    """What an invitation link binds to: the member's current password (none yet, for a new member)."""
    with read_session(ctx.engine) as s:
        m = s.get(Member, member_id)
        if m is None:
            raise NotFound(f"no member {member_id}")
        return fingerprint(m.password_hash)


class LoginLimiter:
    """At most ``max_failures`` failed sign-ins per key (handle and address) in ``window``; in memory."""

    def __init__(self, max_failures: int = 5, window: timedelta = timedelta(minutes=15)) -> None:
        self.max_failures, self.window = max_failures, window
        self._failures: dict[str, list[datetime]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: datetime) -> list[datetime]:
        kept = [t for t in self._failures.get(key, []) if now - t < self.window]
        if kept:
            self._failures[key] = kept
        else:
            self._failures.pop(key, None)
        return kept

    def retry_after(self, key: str, now: datetime) -> timedelta | None:
        """How long this key must wait before trying again, or None when it may try now."""
        with self._lock:
            recent = self._recent(key, now)
            if len(recent) < self.max_failures:
                return None
            return recent[-self.max_failures] + self.window - now

    def failed(self, key: str, now: datetime) -> None:
        with self._lock:
            if len(self._failures) > 10_000:  # bound the memory a flood of handles can take
                for k in list(self._failures):
                    self._recent(k, now)
            self._failures.setdefault(key, []).append(now)

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)
