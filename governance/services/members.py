"""Members, roles and API tokens."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import func
from sqlmodel import Session, col, select

from governance.db.engine import read_session, write_session
from governance.db.models import ApiToken, Member, MemberRole
from governance.domain.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from governance.domain.review import ActorView
from governance.domain.roles import Role, parse_role
from governance.schemas import MemberCreate, MemberPublic, TokenCreated, TokenPublic
from governance.services.audit import record
from governance.services.context import Ctx

TOKEN_PREFIX = "cmn_"


def hash_token(token: str) -> str:
    # API tokens are 256-bit random values, so a fast hash is enough (passwords use argon2)
    return hashlib.sha256(token.encode()).hexdigest()


def roles_of(session: Session, member_id: int) -> frozenset[Role]:
    rows = session.exec(select(MemberRole.role).where(MemberRole.member_id == member_id)).all()
    return frozenset(Role(r) for r in rows)


def _public(session: Session, m: Member) -> MemberPublic:
    assert m.id is not None
    return MemberPublic(
        id=m.id,
        handle=m.handle,
        display_name=m.display_name,
        roles=sorted(r.value for r in roles_of(session, m.id)),
        active=m.active,
        created_at=m.created_at,
    )


def _require_admin(actor: ActorView | None) -> None:
    if actor is not None and Role.ADMIN not in actor.roles:
        raise PermissionDenied("only an admin may manage members and roles")


def add_member(ctx: Ctx, data: MemberCreate, actor: ActorView | None = None) -> MemberPublic:
    """Add a member. ``actor`` None means the operator (CLI); otherwise it must be an admin."""
    _require_admin(actor)
    roles = {parse_role(r) for r in data.roles} | {Role.MEMBER}
    with write_session(ctx.engine) as s:
        if s.exec(select(Member.id).where(Member.handle == data.handle)).first() is not None:
            raise Conflict(f"a member with handle {data.handle!r} already exists")
        m = Member(
            handle=data.handle, display_name=data.display_name, email=data.email, created_at=ctx.clock.now()
        )
        s.add(m)
        s.flush()
        assert m.id is not None
        for r in sorted(roles):
            s.add(
                MemberRole(member_id=m.id, role=r.value, granted_at=ctx.clock.now(), granted_by=_mid(actor))
            )
        s.flush()
        record(
            s,
            at=ctx.clock.now(),
            actor=_mid(actor),
            action="member.added",
            subject=f"member:{m.id}",
            payload={"handle": m.handle, "roles": sorted(r.value for r in roles)},
        )
        return _public(s, m)


def _mid(actor: ActorView | None) -> int | None:
    return actor.member_id if actor is not None else None


def set_roles(ctx: Ctx, member_id: int, roles: list[str], actor: ActorView | None = None) -> MemberPublic:
    """Assign roles by hand (admin or operator). Elections grant roles through proposals instead."""
    _require_admin(actor)
    wanted = {parse_role(r) for r in roles} | {Role.MEMBER}
    with write_session(ctx.engine) as s:
        m = s.get(Member, member_id)
        if m is None:
            raise NotFound(f"no member {member_id}")
        current = roles_of(s, member_id)
        if actor is not None and actor.member_id == member_id and Role.ADMIN in current - wanted:
            raise InvalidInput("you cannot remove your own admin role", field="roles")
        for r in current - wanted:
            row = s.get(MemberRole, (member_id, r.value))
            s.delete(row)
        for r in wanted - current:
            s.add(
                MemberRole(
                    member_id=member_id, role=r.value, granted_at=ctx.clock.now(), granted_by=_mid(actor)
                )
            )
        s.flush()
        record(
            s,
            at=ctx.clock.now(),
            actor=_mid(actor),
            action="member.roles_set",
            subject=f"member:{member_id}",
            payload={
                "added": sorted(r.value for r in wanted - current),
                "removed": sorted(r.value for r in current - wanted),
            },
        )
        return _public(s, m)


def get_member(ctx: Ctx, member_id: int) -> MemberPublic:
    with read_session(ctx.engine) as s:
        m = s.get(Member, member_id)
        if m is None:
            raise NotFound(f"no member {member_id}")
        return _public(s, m)


def find_member(ctx: Ctx, handle: str) -> MemberPublic:
    with read_session(ctx.engine) as s:
        m = s.exec(select(Member).where(Member.handle == handle)).first()
        if m is None:
            raise NotFound(f"no member with handle {handle!r}")
        return _public(s, m)


def list_members(ctx: Ctx, role: str | None = None, limit: int = 100, offset: int = 0) -> list[MemberPublic]:
    with read_session(ctx.engine) as s:
        q = select(Member).order_by(col(Member.id)).limit(limit).offset(offset)
        if role is not None:
            r = parse_role(role)
            q = q.where(col(Member.id).in_(select(MemberRole.member_id).where(MemberRole.role == r.value)))
        return [_public(s, m) for m in s.exec(q).all()]


def count_members(ctx: Ctx) -> int:
    with read_session(ctx.engine) as s:
        return int(s.exec(select(func.count()).select_from(Member)).one())


def create_token(ctx: Ctx, member_id: int, name: str, actor: ActorView | None = None) -> TokenCreated:
    """A new API token for a member; the secret is returned once and only its hash is stored."""
    if actor is not None and actor.member_id != member_id and Role.ADMIN not in actor.roles:
        raise PermissionDenied("you may only create tokens for yourself")
    name = name.strip()
    if not name or len(name) > 100:
        raise InvalidInput("a token needs a name of 1-100 characters", field="name")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with write_session(ctx.engine) as s:
        if s.get(Member, member_id) is None:
            raise NotFound(f"no member {member_id}")
        t = ApiToken(
            member_id=member_id,
            name=name,
            prefix=secret[:10],
            token_hash=hash_token(secret),
            created_at=ctx.clock.now(),
        )
        s.add(t)
        s.flush()
        record(
            s,
            at=ctx.clock.now(),
            actor=_mid(actor),
            action="token.created",
            subject=f"member:{member_id}",
            payload={"token_id": t.id, "name": name, "prefix": t.prefix},
        )
        return TokenCreated(**_token_public(t).model_dump(), token=secret)


def _token_public(t: ApiToken) -> TokenPublic:
    assert t.id is not None
    return TokenPublic(
        id=t.id,
        name=t.name,
        prefix=t.prefix,
        created_at=t.created_at,
        last_used_at=t.last_used_at,
        revoked_at=t.revoked_at,
    )


def list_tokens(ctx: Ctx, member_id: int) -> list[TokenPublic]:
    with read_session(ctx.engine) as s:
        rows = s.exec(
            select(ApiToken).where(ApiToken.member_id == member_id).order_by(col(ApiToken.id))
        ).all()
        return [_token_public(t) for t in rows]


def revoke_token(ctx: Ctx, token_id: int, actor: ActorView) -> TokenPublic:
    with write_session(ctx.engine) as s:
        t = s.get(ApiToken, token_id)
        if t is None or (t.member_id != actor.member_id and Role.ADMIN not in actor.roles):
            raise NotFound(f"no token {token_id} of yours")
        if t.revoked_at is None:
            t.revoked_at = ctx.clock.now()
            s.add(t)
            record(
                s,
                at=ctx.clock.now(),
                actor=actor.member_id,
                action="token.revoked",
                subject=f"member:{t.member_id}",
                payload={"token_id": t.id},
            )
        return _token_public(t)


# ``api_token.last_used_at`` is bookkeeping of the credential, not community state: it is written at most once
# a minute per token (a conditional UPDATE, so concurrent requests change the row once), never by anything else
# a read does (docs/architecture.md, "reads never write")
TOKEN_USE_RESOLUTION = timedelta(minutes=1)


def _touch_tokens(session: Session, token_ids: list[int], now: datetime) -> None:
    stale = sa.or_(
        col(ApiToken.last_used_at).is_(None), col(ApiToken.last_used_at) <= now - TOKEN_USE_RESOLUTION
    )
    session.connection().execute(
        sa.update(ApiToken).where(col(ApiToken.id).in_(token_ids), stale).values(last_used_at=now)
    )


def authenticate(ctx: Ctx, token: str) -> ActorView | None:
    """The member a bearer token belongs to, or None for an unknown, revoked or inactive one. The token's
    ``last_used_at`` is brought up to date, in a small transaction of its own, when it is a minute old or more."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    with read_session(ctx.engine) as s:
        row = s.exec(
            select(ApiToken, Member.active)
            .join(Member, col(Member.id) == ApiToken.member_id)
            .where(ApiToken.token_hash == hash_token(token))
        ).first()
        if row is None or row[0].revoked_at is not None or not row[1]:
            return None
        t = row[0]
        actor = ActorView(t.member_id, roles_of(s, t.member_id))
    now = ctx.clock.now()
    if t.id is not None and (t.last_used_at is None or t.last_used_at <= now - TOKEN_USE_RESOLUTION):
        with write_session(ctx.engine) as w:
            _touch_tokens(w, [t.id], now)
    return actor


_TOKEN_T = ApiToken.__table__  # type: ignore[attr-defined]
_MEMBER_T = Member.__table__  # type: ignore[attr-defined]
_ROLE_T = MemberRole.__table__  # type: ignore[attr-defined]
# a Core statement built once: the vote batcher runs it for every batch
_TOKENS_TO_ROLES = (
    sa.select(
        _TOKEN_T.c.token_hash, _TOKEN_T.c.member_id, _ROLE_T.c.role, _TOKEN_T.c.id, _TOKEN_T.c.last_used_at
    )
    .join(_MEMBER_T, _MEMBER_T.c.id == _TOKEN_T.c.member_id)
    .join(_ROLE_T, _ROLE_T.c.member_id == _TOKEN_T.c.member_id)
    .where(
        _TOKEN_T.c.token_hash.in_(sa.bindparam("hashes", expanding=True)),
        _TOKEN_T.c.revoked_at.is_(None),
        _MEMBER_T.c.active.is_(True),
    )
)


def authenticate_many(
    session: Session, tokens: list[str], now: datetime | None = None
) -> dict[str, ActorView]:
    """Resolve many bearer tokens in one query (the vote batcher's path); unknown or revoked ones are absent.
    Given ``now`` (and a write session: the batch's own), the tokens' ``last_used_at`` a minute old or more
    are brought up to date in that same transaction."""
    by_hash = {hash_token(t): t for t in tokens if t.startswith(TOKEN_PREFIX)}
    if not by_hash:
        return {}
    rows = session.connection().execute(_TOKENS_TO_ROLES, {"hashes": list(by_hash)}).all()
    roles: dict[str, set[Role]] = {}
    owner: dict[str, int] = {}
    stale: set[int] = set()
    for h, mid, role, token_id, last_used in rows:
        roles.setdefault(h, set()).add(Role(role))
        owner[h] = mid
        if now is not None and (last_used is None or last_used <= now - TOKEN_USE_RESOLUTION):
            stale.add(token_id)
    if stale and now is not None:
        _touch_tokens(session, sorted(stale), now)
    return {by_hash[h]: ActorView(owner[h], frozenset(r)) for h, r in roles.items()}
