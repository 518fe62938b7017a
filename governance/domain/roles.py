"""Roles a member may hold (several at once)."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    MEMBER = "member"
    REVIEWER = "reviewer"
    COUNCIL = "council"
    ADMIN = "admin"


ELECTED_ROLES = frozenset({Role.REVIEWER, Role.COUNCIL})


def parse_role(value: str) -> Role:
    from governance.domain.errors import InvalidInput

    try:
        return Role(value)
    except ValueError:
        allowed = ", ".join(r.value for r in Role)
        raise InvalidInput(f"unknown role {value!r}; expected one of: {allowed}", field="role") from None
